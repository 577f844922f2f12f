import numpy as np
import pytest
from skimage.feature import hog as sk_hog
from skimage.feature import local_binary_pattern as sk_lbp
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import SVC

from cvcraft.classic.image_features import ColorHistogram, image_batch
from cvcraft.classic.ml import (
    CLASSIFIERS,
    FEATURES,
    create_classic_model,
    fit_classic,
    list_classic_models,
    split_name,
)
from cvcraft.errors import ConfigError, DataError


def stripes(rng, n_per_class=30, classes=3):
    """Class 0 horizontal stripes, 1 vertical, 2 diagonal, on noise (uint8 HWC)."""
    xs, ys = [], []
    yy, xx = np.mgrid[0:32, 0:32]
    masks = [yy % 6 < 2, xx % 6 < 2, (xx + yy) % 8 < 2]
    for k in range(classes):
        x = rng.integers(0, 80, (n_per_class, 32, 32, 3)).astype(np.uint8)
        x[:, masks[k]] += rng.integers(100, 170, (n_per_class, 1, 3)).astype(np.uint8)
        xs.append(x)
        ys.append(np.full(n_per_class, k))
    x, y = np.concatenate(xs), np.concatenate(ys)
    p = rng.permutation(len(y))
    return x[p], y[p]


@pytest.fixture
def data(rng):
    x, y = stripes(rng)
    return x[:60], y[:60], x[60:], y[60:]


def _grey(x):
    return np.clip(np.rint(x.astype(np.float32) @ np.float32([0.299, 0.587, 0.114])), 0, 255)


def test_hog_svm_equals_the_same_pipeline_in_sklearn_and_skimage(data):
    xtr, ytr, xva, yva = data
    ours = create_classic_model("hog_svm").fit(xtr, ytr)
    feats = FunctionTransformer(
        lambda x: np.stack([sk_hog(i, 9, (8, 8), (2, 2), channel_axis=-1) for i in x])
    )
    svc = CalibratedClassifierCV(SVC(C=10.0, random_state=0), cv=3, ensemble=False)
    ref = make_pipeline(feats, StandardScaler(), svc).fit(xtr, ytr)
    np.testing.assert_array_equal(ours.predict(xva), ref.predict(xva))
    np.testing.assert_allclose(ours.predict_proba(xva), ref.predict_proba(xva), atol=1e-5)


def test_lbp_logreg_equals_sklearn_with_skimage_lbp(data):
    xtr, ytr, xva, yva = data
    ours = create_classic_model("lbp_logreg", {"grid": 2}).fit(xtr, ytr)

    def lbp_hist(x):
        out = []
        for g in _grey(x).astype(np.uint8):
            codes = sk_lbp(g, 8, 1, "uniform").astype(int)
            cells = [codes[:16, :16], codes[:16, 16:], codes[16:, :16], codes[16:, 16:]]
            out.append(np.concatenate([np.bincount(c.ravel(), minlength=10) / 256 for c in cells]))
        return np.array(out)

    ref = make_pipeline(
        FunctionTransformer(lbp_hist),
        StandardScaler(),
        LogisticRegression(max_iter=1000, random_state=0),
    ).fit(xtr, ytr)
    np.testing.assert_allclose(ours.predict_proba(xva), ref.predict_proba(xva), atol=1e-6)


def test_pixels_knn_and_colorhist_rf_equal_sklearn(data):
    xtr, ytr, xva, yva = data
    ours = create_classic_model("pixels_knn", scale=False).fit(xtr, ytr)
    ref = KNeighborsClassifier(5, weights="distance").fit(xtr.reshape(60, -1) / 255.0, ytr)
    np.testing.assert_allclose(
        ours.predict_proba(xva), ref.predict_proba(xva.reshape(30, -1) / 255.0)
    )
    h = ColorHistogram(bins=4, space="rgb").transform(xva)
    ref_h = (
        np.stack(
            [np.histogramdd(i.reshape(-1, 3), bins=4, range=[(0, 256)] * 3)[0].ravel() for i in xva]
        )
        / 1024
    )
    np.testing.assert_allclose(h, ref_h)
    ours = create_classic_model(
        "colorhist_random_forest", {"bins": 4, "space": "rgb"}, {"n_estimators": 20}, scale=False
    ).fit(xtr, ytr)
    rf = RandomForestClassifier(20, random_state=0, n_jobs=1).fit(
        ColorHistogram(bins=4, space="rgb").transform(xtr), ytr
    )
    np.testing.assert_allclose(ours.predict_proba(xva), rf.predict_proba(h))


@pytest.mark.parametrize(
    "name",
    [
        "hog_linear_svm",
        "hog_adaboost",
        "hog_gradient_boosting",
        "hog_pca_svm",
        "hog_stacking",
        "bovw_sift_logreg",
        "bovw_orb_knn",
    ],
)
def test_every_classifier_family_learns_the_toy_task(data, name):
    xtr, ytr, xva, yva = data
    fp = {"words": 16, "step": 8} if name.startswith("bovw") else None
    cp = {"max_iter": 20} if "gradient" in name else None
    model = create_classic_model(name, fp, cp).fit(xtr, ytr)
    proba = model.predict_proba(xva)
    assert proba.shape == (30, 3)
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-6)
    assert accuracy_score(yva, model.predict(xva)) >= 0.8


def test_fit_classic_metrics_equal_sklearn(data):
    xtr, ytr, xva, yva = data
    m, model = fit_classic("hog_logreg", xtr, ytr, xva, yva, return_model=True)
    proba = model.predict_proba(xva)
    pred = proba.argmax(1)
    assert m["top1"] == pytest.approx(accuracy_score(yva, pred))
    assert m["f1_macro"] == pytest.approx(f1_score(yva, pred, average="macro"))
    assert m["roc_auc_ovr"] == pytest.approx(roc_auc_score(yva, proba, multi_class="ovr"))
    assert m["num_features"] == 324 and m["fit_seconds"] > 0 and m["train_top1"] == 1.0
    # a list of images works too
    m2 = fit_classic("hog_logreg", list(xtr), ytr, list(xva), yva)
    assert m2["top1"] == m["top1"]


def test_names_and_registry():
    assert split_name("hog_linear_svm") == ("hog", "linear_svm")
    assert split_name("bovw_sift_svm") == ("bovw_sift", "svm")
    assert len(list_classic_models()) == len(FEATURES) * len(CLASSIFIERS)
    assert "hog_svm" in list_classic_models("hog_*")


def test_ml_errors(data):
    xtr, ytr, xva, yva = data
    with pytest.raises(ConfigError, match="Did you mean"):
        create_classic_model("hog_svn")
    with pytest.raises(ConfigError, match="unexpected keyword"):
        create_classic_model("hog_svm", classifier_params={"depth": 3})
    with pytest.raises(DataError, match="labels"):
        fit_classic("hog_logreg", xtr, ytr[:-1], xva, yva)
    with pytest.raises(DataError, match="two classes"):
        fit_classic("hog_logreg", xtr, np.zeros(60, int), xva, yva)
    with pytest.raises(DataError, match="uint8"):
        image_batch(xtr.astype(np.float32))
    with pytest.raises(DataError, match="different sizes"):
        image_batch([xtr[0], xtr[0][:16]])
    assert image_batch([xtr[0], xtr[0][:16]], size=(8, 8)).shape == (2, 8, 8, 3)
