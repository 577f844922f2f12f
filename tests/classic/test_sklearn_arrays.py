"""Fitted scikit-learn classifiers -> arrays -> probabilities, against the estimator's own
predict_proba / decision_function (the oracle) on random data, 2 and 4 classes."""

import numpy as np
import pytest

from cvcraft.classic.ml import CLASSIFIERS
from cvcraft.classic.sklearn_arrays import (
    SAVEABLE,
    decision_arrays,
    export_estimator,
    predict_proba_arrays,
)
from cvcraft.errors import ConfigError


def blobs(rng, classes, n=90, d=6):
    centres = rng.normal(0, 2.0, (classes, d))
    y = np.arange(n) % classes
    return centres[y] + rng.normal(0, 1.5, (n, d)), y


@pytest.mark.parametrize("name", SAVEABLE)
@pytest.mark.parametrize("classes", [2, 4])
def test_proba_equals_sklearn(name, classes):
    rng = np.random.default_rng(classes)
    x, y = blobs(rng, classes)
    kw = {"n_estimators": 15} if name == "random_forest" else {}
    est = CLASSIFIERS.get(name)(**kw).fit(x, y)
    spec, arrays = export_estimator(est)
    xt = rng.normal(0, 3.0, (40, x.shape[1]))
    ours = predict_proba_arrays(spec, arrays, xt)
    np.testing.assert_allclose(ours, est.predict_proba(xt), atol=1e-9)
    assert (arrays["clf_classes"] == est.classes_).all()
    # arrays only: numbers, no objects
    assert all(isinstance(a, np.ndarray) and a.dtype != object for a in arrays.values())


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_svc_decision_ovo_and_ovr(classes):
    from sklearn.svm import SVC

    rng = np.random.default_rng(7)
    x, y = blobs(rng, classes, n=60)
    xt = rng.normal(0, 3.0, (30, x.shape[1]))
    for shape in ("ovo", "ovr"):
        est = SVC(gamma="scale", decision_function_shape=shape).fit(x, y)
        spec, arrays = export_estimator(est)
        ours = decision_arrays(spec, arrays, "clf", xt)
        np.testing.assert_allclose(ours, est.decision_function(xt), atol=1e-8)


def test_knn_exact_match_takes_whole_vote():
    from sklearn.neighbors import KNeighborsClassifier

    x = np.array([[0.0, 0], [1, 0], [0, 1], [5, 5]])
    y = np.array([0, 1, 1, 0])
    est = KNeighborsClassifier(3, weights="distance").fit(x, y)
    spec, arrays = export_estimator(est)
    xt = np.array([[1.0, 0], [0.5, 0.5]])  # on a training point / between three
    np.testing.assert_allclose(predict_proba_arrays(spec, arrays, xt), est.predict_proba(xt))
    assert predict_proba_arrays(spec, arrays, xt)[0].tolist() == [0.0, 1.0]


@pytest.mark.parametrize("name", ["adaboost", "gradient_boosting", "stacking"])
def test_unsaveable_estimators_are_named(name):
    rng = np.random.default_rng(0)
    x, y = blobs(rng, 3)
    est = CLASSIFIERS.get(name)().fit(x, y)
    with pytest.raises(ConfigError, match="cannot be saved without pickle"):
        export_estimator(est)
