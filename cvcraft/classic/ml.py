"""Classic machine learning on images: a feature extractor + a scikit-learn classifier in
one Pipeline, found by name ("hog_svm", "lbp_random_forest", "bovw_sift_logreg", ...).

``create_classic_model(name)`` returns a Pipeline (features -> StandardScaler -> classifier)
with fit / predict / predict_proba on uint8 HWC images; ``fit_classic`` trains one and
scores it on a validation split with ``cvcraft.metrics.classification``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from cvcraft.classic.image_features import (
    BagOfVisualWords,
    ColorHistogram,
    HOGFeatures,
    LBPFeatures,
    RawPixels,
)
from cvcraft.errors import ConfigError, DataError
from cvcraft.registry import Registry, did_you_mean

FEATURES: Registry[Callable[..., Any]] = Registry("classic feature")
CLASSIFIERS: Registry[Callable[..., Any]] = Registry("classic classifier")

FEATURES.register("pixels", RawPixels)
FEATURES.register("hog", HOGFeatures)
FEATURES.register("lbp", LBPFeatures)
FEATURES.register("colorhist", ColorHistogram)
FEATURES.register("bovw_sift", lambda **kw: BagOfVisualWords("sift", **kw))
FEATURES.register("bovw_orb", lambda **kw: BagOfVisualWords("orb", **kw))


@CLASSIFIERS.register("logreg")
def logreg(C: float = 1.0, max_iter: int = 1000, random_state: int = 0):  # noqa: N803
    """Multinomial logistic regression (softmax on a linear score)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=max_iter, random_state=random_state)


@CLASSIFIERS.register("linear_svm")
def linear_svm(C: float = 0.01, random_state: int = 0):  # noqa: N803
    """Linear SVM (hinge loss), probabilities by 3-fold sigmoid calibration."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import LinearSVC

    return CalibratedClassifierCV(LinearSVC(C=C, random_state=random_state), cv=3)


@CLASSIFIERS.register("svm")
def svm(
    C: float = 10.0,  # noqa: N803
    gamma: str | float = "scale",
    probability: bool = True,
    random_state: int = 0,
):
    """Kernel SVM with the RBF kernel exp(-gamma |x - x'|^2); probabilities (for top-5 and
    ROC AUC) by 3-fold sigmoid (Platt) calibration of its decision values."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    base = SVC(C=C, kernel="rbf", gamma=gamma, random_state=random_state)
    return CalibratedClassifierCV(base, cv=3, ensemble=False) if probability else base


@CLASSIFIERS.register("knn")
def knn(n_neighbors: int = 5, weights: str = "distance"):
    """k nearest neighbours (Euclidean, distance-weighted votes)."""
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(n_neighbors=n_neighbors, weights=weights)


@CLASSIFIERS.register("random_forest")
def random_forest(n_estimators: int = 200, max_depth: int | None = None, random_state: int = 0):
    """Random forest: bagged, feature-subsampled decision trees."""
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(
        n_estimators=n_estimators, max_depth=max_depth, random_state=random_state, n_jobs=1
    )


@CLASSIFIERS.register("adaboost")
def adaboost(n_estimators: int = 100, learning_rate: float = 0.5, random_state: int = 0):
    """AdaBoost (SAMME) on decision stumps."""
    from sklearn.ensemble import AdaBoostClassifier

    return AdaBoostClassifier(
        n_estimators=n_estimators, learning_rate=learning_rate, random_state=random_state
    )


@CLASSIFIERS.register("gradient_boosting")
def gradient_boosting(max_iter: int = 100, learning_rate: float = 0.1, random_state: int = 0):
    """Gradient-boosted trees on binned features (scikit-learn's histogram GBDT)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        max_iter=max_iter, learning_rate=learning_rate, random_state=random_state
    )


@CLASSIFIERS.register("pca_svm")
def pca_svm(n_components: int | float = 0.95, C: float = 10.0, random_state: int = 0):  # noqa: N803
    """PCA (whitened, keeping n_components or that share of variance) then an RBF SVM."""
    from sklearn.decomposition import PCA
    from sklearn.pipeline import Pipeline

    return Pipeline(
        [
            ("pca", PCA(n_components=n_components, whiten=True, random_state=random_state)),
            ("svm", svm(C=C, random_state=random_state)),
        ]
    )


@CLASSIFIERS.register("stacking")
def stacking(random_state: int = 0):
    """Stacking: logistic regression, random forest and a linear SVM, combined by a
    logistic regression on their cross-validated probabilities."""
    from sklearn.ensemble import StackingClassifier

    return StackingClassifier(
        [
            ("logreg", logreg(random_state=random_state)),
            ("rf", random_forest(100, random_state=random_state)),
            ("linsvm", linear_svm(random_state=random_state)),
        ],
        final_estimator=logreg(random_state=random_state),
        cv=3,
        stack_method="predict_proba",
    )


def split_name(name: str) -> tuple[str, str]:
    """ "hog_linear_svm" -> ("hog", "linear_svm"): the longest known feature prefix."""
    for feat in sorted(FEATURES.names(), key=len, reverse=True):
        if name.startswith(feat + "_") and name[len(feat) + 1 :] in CLASSIFIERS:
            return feat, name[len(feat) + 1 :]
    known = list_classic_models()
    raise ConfigError(
        f"unknown classic model {name!r}.{did_you_mean(name, known)} Names are "
        f"<feature>_<classifier>: features {', '.join(FEATURES.names())}; classifiers "
        f"{', '.join(CLASSIFIERS.names())}"
    )


def list_classic_models(pattern: str = "*") -> list[str]:
    """Every <feature>_<classifier> combination matching ``pattern``."""
    import fnmatch

    names = [f"{f}_{c}" for f in FEATURES.names() for c in CLASSIFIERS.names()]
    return sorted(n for n in names if fnmatch.fnmatch(n, pattern))


def create_classic_model(
    name: str,
    feature_params: dict[str, Any] | None = None,
    classifier_params: dict[str, Any] | None = None,
    scale: bool = True,
):
    """Pipeline [features, (StandardScaler), classifier] for ``name`` = <feature>_<classifier>.

    e.g. create_classic_model("hog_svm", {"cell": 4}, {"C": 5}).fit(images, labels)
    """
    import inspect

    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    feat, clf = split_name(name)
    parts = []
    for what, reg, key, params in (
        ("feature", FEATURES, feat, feature_params),
        ("classifier", CLASSIFIERS, clf, classifier_params),
    ):
        factory = reg.get(key)
        try:
            if not isinstance(factory, type) and factory.__name__ != "<lambda>":
                inspect.signature(factory).bind(**(params or {}))
            parts.append(factory(**(params or {})))
        except TypeError as e:
            raise ConfigError(f"{what} {key!r} of {name!r}: {e}") from None
    steps = [("features", parts[0])]
    if scale:
        steps.append(("scale", StandardScaler()))
    steps.append(("classifier", parts[1]))
    return Pipeline(steps)


def fit_classic(
    model_name: str,
    train_images,
    train_labels,
    val_images,
    val_labels,
    num_classes: int | None = None,
    return_model: bool = False,
    **params: Any,
):
    """Train ``model_name`` on the train split and score it on the val split.

    params: feature_params / classifier_params / scale (see ``create_classic_model``).
    -> metrics dict (``ClassificationMetrics.compute()``: top1, top5, precision/recall/F1,
    confusion matrix, ROC AUC) plus fit_seconds, predict_seconds, train_top1, num_features;
    with return_model=True -> (metrics, fitted pipeline).
    """
    import torch

    from cvcraft.metrics.classification import ClassificationMetrics

    ytr = np.asarray(train_labels, dtype=np.int64)
    yva = np.asarray(val_labels, dtype=np.int64)
    if len(ytr) != len(train_images) or len(yva) != len(val_images):
        raise DataError(
            f"{len(train_images)} train images but {len(ytr)} labels, {len(val_images)} val "
            f"images but {len(yva)} labels"
        )
    if len(np.unique(ytr)) < 2:
        raise DataError("the train split needs at least two classes")
    c = int(num_classes or max(ytr.max(), yva.max()) + 1)
    model = create_classic_model(model_name, **params)
    t0 = time.perf_counter()
    model.fit(train_images, ytr)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    proba = model.predict_proba(val_images)
    pred_s = time.perf_counter() - t0
    # classes the model never saw get probability 0 (columns follow model.classes_)
    scores = np.zeros((len(yva), c))
    scores[:, model.classes_] = proba
    m = ClassificationMetrics(c, topk=(1, min(5, c)))
    m.update(torch.from_numpy(scores), torch.from_numpy(yva))
    out = m.compute()
    out["train_top1"] = float((model.predict(train_images) == ytr).mean())
    out["fit_seconds"] = fit_s
    out["predict_seconds"] = pred_s
    out["num_features"] = int(model[:-1].transform(val_images[:1]).shape[1])
    return (out, model) if return_model else out
