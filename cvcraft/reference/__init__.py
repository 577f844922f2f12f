"""Hand-written numpy versions of the core operations, to read next to the formula.

Floor 1: this package imports only numpy (and :mod:`cvcraft.errors`), never torch, so it is
an oracle independent of the code it checks. Each function is the textbook formula written
plainly (loops where the loop *is* the algorithm, numpy elsewhere); the tests in
``tests/reference`` hold every one of them equal to torch, torchvision or scikit-learn.
``docs/reference.md`` maps each topic to its file and function.

Modules: :mod:`~cvcraft.reference.formulas` (conv output size, receptive field),
:mod:`~cvcraft.reference.conv`, :mod:`~cvcraft.reference.pool`,
:mod:`~cvcraft.reference.norm`, :mod:`~cvcraft.reference.activations`,
:mod:`~cvcraft.reference.layers` (linear, dropout, softmax + cross-entropy),
:mod:`~cvcraft.reference.attention`, :mod:`~cvcraft.reference.recurrent`,
:mod:`~cvcraft.reference.optim`, :mod:`~cvcraft.reference.schedules`,
:mod:`~cvcraft.reference.boxes` (IoU family, NMS, VOC AP), :mod:`~cvcraft.reference.cluster`
(k-means, PCA), :mod:`~cvcraft.reference.learn` (logistic regression, a two-layer MLP),
:mod:`~cvcraft.reference.canny` (Canny's non-maximum suppression and hysteresis as loops).
"""
