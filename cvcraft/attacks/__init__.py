"""Adversarial examples (floor 2): FGSM, PGD (L-inf and L2) and the TRADES training loss.

Attacks work in pixel space: ``x`` is a float batch in [0, 1] and ``model`` maps such a
batch to logits (wrap normalisation into the model, as ``Preprocess`` does for cvcraft
classifiers). Randomness comes from an explicit ``torch.Generator``.
"""

from cvcraft.attacks.checks import ATTACKS
from cvcraft.attacks.fgsm import fgsm
from cvcraft.attacks.pgd import pgd, pgd_l2
from cvcraft.attacks.trades import trades_loss

__all__ = ["ATTACKS", "fgsm", "pgd", "pgd_l2", "trades_loss"]
