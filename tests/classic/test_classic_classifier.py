"""ClassicClassifier: fitted pipeline -> tensors -> weights_only reload -> the same
probabilities as the scikit-learn Pipeline (the oracle), for every storable classifier."""

import io

import numpy as np
import pytest
import torch

from cvcraft.classic.classic_classifier import ClassicClassifier
from cvcraft.classic.image_features import BagOfVisualWords
from cvcraft.classic.ml import FEATURES, create_classic_model
from cvcraft.classic.sklearn_arrays import SAVEABLE
from cvcraft.errors import ConfigError
from cvcraft.tasks.classify.classic import CLASSIC_CLASSIFIERS, CLASSIC_FEATURES, CLASSIC_MODELS


def stripes(rng, n_per_class=16):
    yy, xx = np.mgrid[0:32, 0:32]
    xs, ys = [], []
    for k, mask in enumerate([yy % 6 < 2, xx % 6 < 2, (xx + yy) % 8 < 2]):
        x = rng.integers(0, 90, (n_per_class, 32, 32, 3)).astype(np.uint8)
        x[:, mask] += rng.integers(90, 160, (n_per_class, 1, 3)).astype(np.uint8)
        xs.append(x)
        ys.append(np.full(n_per_class, k))
    return np.concatenate(xs), np.concatenate(ys)


def reload(model: ClassicClassifier, kwargs: dict) -> ClassicClassifier:
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "layout": model.layout()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)  # no pickle of scikit-learn objects
    fresh = ClassicClassifier.from_layout(model.name, model.num_classes, 3, kwargs, state["layout"])
    fresh.load_state_dict(state["model"], strict=True)
    return fresh


@pytest.mark.parametrize(
    "name", [f"hog_{c}" for c in SAVEABLE] + ["bovw_orb_logreg", "colorhist_random_forest"]
)
def test_reloaded_model_equals_the_sklearn_pipeline(name):
    rng = np.random.default_rng(1)
    x, y = stripes(rng)
    xt, _ = stripes(np.random.default_rng(2), 6)
    fp = {"words": 16, "step": 8} if name.startswith("bovw") else {}
    cp = {"n_estimators": 20} if name.endswith("random_forest") else {}
    model = ClassicClassifier(name, 4, features=fp, classifier=cp).fit(x, y)  # class 3 unseen
    oracle = create_classic_model(name, fp, cp).fit(x, y)
    expect = np.zeros((len(xt), 4))
    expect[:, :3] = oracle.predict_proba(xt)
    again = reload(model, {"features": fp, "classifier": cp})
    np.testing.assert_allclose(model.predict_proba(xt), expect, atol=1e-6)
    np.testing.assert_array_equal(again.predict_proba(xt), model.predict_proba(xt))
    # the module interface: float NCHW in [0, 1] -> log-probabilities
    logp = again(torch.from_numpy(xt).permute(0, 3, 1, 2).float() / 255.0)
    np.testing.assert_allclose(logp.softmax(1).numpy(), expect, atol=1e-5)
    assert (logp.argmax(1).numpy() == oracle.predict(xt)).all()


def test_bovw_nearest_word_equals_kmeans_predict():
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(0)
    d = rng.normal(size=(500, 8)).astype(np.float32)
    km = KMeans(12, n_init=1, random_state=0).fit(d)
    bovw = BagOfVisualWords(words=12)
    bovw.centers_ = km.cluster_centers_.astype(np.float32)
    q = rng.normal(size=(300, 8)).astype(np.float32)
    np.testing.assert_array_equal(bovw.nearest_word(q), km.predict(q))


def test_task_model_list_equals_the_registries():
    assert set(CLASSIC_FEATURES) == set(FEATURES.names())
    assert CLASSIC_CLASSIFIERS == SAVEABLE
    assert "hog_svm" in CLASSIC_MODELS and len(CLASSIC_MODELS) == 36


def test_classic_classifier_errors():
    with pytest.raises(ConfigError, match="cannot be stored without pickle"):
        ClassicClassifier("hog_stacking", 3)
    with pytest.raises(ConfigError, match="unknown classic model"):
        ClassicClassifier("hug_svm", 3)
    with pytest.raises(ConfigError, match="features of hog_svm"):
        ClassicClassifier("hog_svm", 3, features={"cells": 4})
    with pytest.raises(ConfigError, match="not fitted"):
        ClassicClassifier("hog_svm", 3)(torch.zeros(1, 3, 32, 32))
