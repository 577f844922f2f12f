"""A fitted scikit-learn classifier as plain arrays + a JSON spec, and its probabilities
computed back from them — so a classic model is saved without pickle (pickle runs code on
load; a checkpoint is loaded with ``weights_only=True``).

Only estimators whose inference is re-written here can be saved (``SAVEABLE``): logistic
regression (softmax / sigmoid of ``x W^T + b``), linear and RBF SVMs behind sigmoid
(Platt) calibration, k nearest neighbours, random forests, and PCA in front of any of them.
AdaBoost, histogram gradient boosting and stacking raise ``ConfigError`` (use them through
``fit_classic`` without saving). Each is checked against the estimator's own
``predict_proba`` in ``tests/classic/test_sklearn_arrays.py``.

Layout: ``export_estimator(est) -> (spec, arrays)``; ``spec`` is a JSON tree naming each
part's kind and scalars, ``arrays`` maps flat names (``clf_cal0_coef``) to numpy arrays;
``predict_proba_arrays(spec, arrays, X) -> (N, K)`` over the estimator's ``classes_``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cvcraft.errors import ConfigError

# classifier names of classic/ml.py whose fitted state these functions can store
SAVEABLE = ("logreg", "linear_svm", "svm", "knn", "random_forest", "pca_svm")
Arrays = dict[str, np.ndarray]


def export_estimator(est: Any, prefix: str = "clf") -> tuple[dict[str, Any], Arrays]:
    """(spec, arrays) of a fitted classifier or transformer (see the module docstring)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.svm import SVC, LinearSVC

    arrays: Arrays = {}
    kind = type(est).__name__
    if isinstance(est, LogisticRegression | LinearSVC):
        arrays[f"{prefix}_coef"] = np.asarray(est.coef_, np.float64)
        arrays[f"{prefix}_intercept"] = np.asarray(est.intercept_, np.float64).ravel()
        spec: dict[str, Any] = {"kind": "logreg" if kind == "LogisticRegression" else "linear"}
    elif isinstance(est, SVC):
        if est.kernel != "rbf":
            raise ConfigError(f"SVC kernel={est.kernel!r}: only the RBF kernel can be saved")
        arrays[f"{prefix}_sv"] = np.asarray(est.support_vectors_, np.float64)
        arrays[f"{prefix}_w"] = svc_pair_weights(est)
        arrays[f"{prefix}_intercept"] = np.asarray(est.intercept_, np.float64)
        spec = {"kind": "svc_rbf", "gamma": float(est._gamma), "classes": len(est.classes_),
                "ovr": est.decision_function_shape == "ovr"}  # fmt: skip
    elif isinstance(est, CalibratedClassifierCV):
        if est.method != "sigmoid":
            raise ConfigError(f"CalibratedClassifierCV method={est.method!r}: only sigmoid")
        members = []
        for i, cc in enumerate(est.calibrated_classifiers_):
            base, base_arrays = export_estimator(cc.estimator, f"{prefix}_cal{i}")
            arrays.update(base_arrays)
            arrays[f"{prefix}_cal{i}_a"] = np.array([c.a_ for c in cc.calibrators], np.float64)
            arrays[f"{prefix}_cal{i}_b"] = np.array([c.b_ for c in cc.calibrators], np.float64)
            # one calibrator per decision column (a single one for two classes)
            pos = np.searchsorted(cc.classes, cc.estimator.classes_)[: len(cc.calibrators)]
            arrays[f"{prefix}_cal{i}_pos"] = pos.astype(np.int64)
            members.append(base)
        spec = {"kind": "calibrated", "members": members, "classes": len(est.classes_)}
    elif isinstance(est, KNeighborsClassifier):
        if est.effective_metric_ != "euclidean":
            raise ConfigError(f"KNN metric {est.effective_metric_!r}: only euclidean is saved")
        arrays[f"{prefix}_x"] = np.asarray(est._fit_X, np.float64)
        arrays[f"{prefix}_y"] = np.asarray(est._y, np.int64)
        spec = {"kind": "knn", "k": int(est.n_neighbors), "weights": est.weights,
                "classes": len(est.classes_)}  # fmt: skip
        if est.weights not in ("uniform", "distance"):
            raise ConfigError("KNN weights must be uniform or distance to be saved")
    elif kind == "RandomForestClassifier":
        arrays.update(forest_arrays(est, prefix))
        spec = {"kind": "forest"}
    elif isinstance(est, PCA):
        arrays[f"{prefix}_mean"] = np.asarray(est.mean_, np.float64)
        arrays[f"{prefix}_components"] = np.asarray(est.components_, np.float64)
        arrays[f"{prefix}_var"] = np.asarray(est.explained_variance_, np.float64)
        spec = {"kind": "pca", "whiten": bool(est.whiten)}
    elif isinstance(est, Pipeline):
        steps = []
        for i, (_, step) in enumerate(est.steps):
            s, a = export_estimator(step, f"{prefix}_s{i}")
            steps.append(s)
            arrays.update(a)
        spec = {"kind": "pipeline", "steps": steps}
    else:
        raise ConfigError(
            f"a fitted {kind} cannot be saved without pickle; savable classic classifiers: "
            f"{', '.join(SAVEABLE)} (use fit_classic for the others)"
        )
    if hasattr(est, "classes_"):
        arrays[f"{prefix}_classes"] = np.asarray(est.classes_).astype(np.int64)
    return spec, arrays


def svc_pair_weights(est: Any) -> np.ndarray:
    """(S, P) weights so the one-vs-one decisions are ``K(x, SV) @ W + intercept``.

    Pair p = (i, j), i < j: ``W[SV of i, p] = dual_coef[j - 1]``, ``W[SV of j, p] =
    dual_coef[i]`` (libsvm's layout); two classes: ``W = dual_coef^T``, one column."""
    dual = np.asarray(est.dual_coef_, np.float64)  # (C - 1, S)
    c = len(est.classes_)
    if c == 2:
        return dual.T.copy()
    owner = np.repeat(np.arange(c), est.n_support_)  # (S,) class of each support vector
    i, j = np.triu_indices(c, 1)  # the P pairs in libsvm's order
    s = np.arange(len(owner))[:, None]
    w = np.where(owner[:, None] == i, dual[np.clip(j - 1, 0, None)[None, :], s], 0.0)
    return np.where(owner[:, None] == j, dual[i[None, :], s], w)


def forest_arrays(est: Any, prefix: str) -> Arrays:
    """The trees of a random forest padded to one (T, M) node table each: children, split
    feature and threshold, and per-node class probabilities (T, M, K)."""
    trees = [t.tree_ for t in est.estimators_]
    m = max(t.node_count for t in trees)
    k = len(est.classes_)
    left = np.full((len(trees), m), -1, np.int64)
    right, feat = left.copy(), np.zeros((len(trees), m), np.int64)
    thr, value = np.zeros((len(trees), m)), np.zeros((len(trees), m, k))
    for n, t in enumerate(trees):  # one row per tree: copying its arrays, not its nodes
        c = t.node_count
        left[n, :c], right[n, :c] = t.children_left, t.children_right
        feat[n, :c], thr[n, :c] = np.maximum(t.feature, 0), t.threshold
        v = t.value[:, 0, :k]
        value[n, :c] = v / np.where(v.sum(1, keepdims=True) == 0, 1.0, v.sum(1, keepdims=True))
    return {f"{prefix}_left": left, f"{prefix}_right": right, f"{prefix}_feature": feat,
            f"{prefix}_threshold": thr, f"{prefix}_value": value}  # fmt: skip


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # = 1 / (1 + exp(-z)) without overflow


def decision_arrays(spec: dict[str, Any], arrays: Arrays, prefix: str, x: np.ndarray) -> np.ndarray:
    """The decision values a linear model or an RBF SVC gives (N,) for two classes, else
    (N, C) — what ``decision_function`` returns."""
    if spec["kind"] in ("logreg", "linear"):
        d = x @ arrays[f"{prefix}_coef"].T + arrays[f"{prefix}_intercept"]
        return d[:, 0] if d.shape[1] == 1 else d
    if spec["kind"] != "svc_rbf":
        raise ConfigError(f"no decision function for {spec['kind']!r}")
    sv = arrays[f"{prefix}_sv"]
    d2 = (x * x).sum(1)[:, None] + (sv * sv).sum(1)[None, :] - 2.0 * x @ sv.T
    k = np.exp(-spec["gamma"] * np.maximum(d2, 0.0))  # (N, S) RBF kernel
    dec = k @ arrays[f"{prefix}_w"] + arrays[f"{prefix}_intercept"]  # (N, P) one-vs-one
    c = spec["classes"]
    if c == 2:
        return dec[:, 0]
    if not spec["ovr"]:
        return dec
    # one-vs-rest from one-vs-one: votes plus confidences squashed into (-1/3, 1/3)
    i, j = np.triu_indices(c, 1)
    onehot_i, onehot_j = np.eye(c)[i], np.eye(c)[j]  # (P, C)
    votes = (dec >= 0) @ onehot_i + (dec < 0) @ onehot_j
    conf = dec @ onehot_i - dec @ onehot_j
    return votes + conf / (3.0 * (np.abs(conf) + 1.0))


def transform_arrays(spec: dict[str, Any], arrays: Arrays, prefix: str, x: np.ndarray):
    """A transformer step (PCA): ``(x - mean) @ components^T`` (/ sqrt(variance) if whiten)."""
    if spec["kind"] != "pca":
        raise ConfigError(f"{spec['kind']!r} is not a transformer")
    z = (x - arrays[f"{prefix}_mean"]) @ arrays[f"{prefix}_components"].T
    return z / np.sqrt(arrays[f"{prefix}_var"]) if spec["whiten"] else z


def predict_proba_arrays(
    spec: dict[str, Any], arrays: Arrays, x: np.ndarray, prefix: str = "clf"
) -> np.ndarray:
    """Class probabilities (N, K) over the estimator's ``classes_`` from its exported arrays."""
    kind = spec["kind"]
    if kind == "logreg":
        d = decision_arrays(spec, arrays, prefix, x)
        if d.ndim == 1:
            p = _sigmoid(d)
            return np.stack([1.0 - p, p], 1)
        return _softmax(d)
    if kind == "calibrated":
        probs = []
        for i, member in enumerate(spec["members"]):
            p_ = f"{prefix}_cal{i}"
            d = decision_arrays(member, arrays, p_, x)
            d = d[:, None] if d.ndim == 1 else d
            a, b, pos = arrays[f"{p_}_a"], arrays[f"{p_}_b"], arrays[f"{p_}_pos"]
            c = spec["classes"]
            p = np.zeros((len(x), c))
            col = pos + 1 if c == 2 else pos
            p[:, col] = _sigmoid(-(a * d + b))  # Platt: 1 / (1 + exp(a d + b))
            if c == 2:
                p[:, 0] = 1.0 - p[:, 1]
            else:
                s = p.sum(1, keepdims=True)
                p = np.where(s != 0, p / np.where(s == 0, 1.0, s), 1.0 / c)
            p[(p > 1.0) & (p <= 1.0 + 1e-5)] = 1.0
            probs.append(p)
        return np.mean(probs, 0)
    if kind == "knn":
        return knn_proba(spec, arrays, prefix, x)
    if kind == "forest":
        return forest_proba(arrays, prefix, x)
    if kind == "pipeline":
        *head, last = spec["steps"]
        for i, step in enumerate(head):
            x = transform_arrays(step, arrays, f"{prefix}_s{i}", x)
        return predict_proba_arrays(last, arrays, x, f"{prefix}_s{len(head)}")
    raise ConfigError(f"no probabilities for a {kind!r}")


def knn_proba(spec: dict[str, Any], arrays: Arrays, prefix: str, x: np.ndarray) -> np.ndarray:
    """k nearest training points (Euclidean); each votes 1 (uniform) or 1/distance
    (distance; a point at distance 0 takes the whole vote), normalised per row."""
    fx, fy = arrays[f"{prefix}_x"], arrays[f"{prefix}_y"]
    k = spec["k"]
    d2 = (x * x).sum(1)[:, None] + (fx * fx).sum(1)[None, :] - 2.0 * x @ fx.T
    d = np.sqrt(np.maximum(d2, 0.0))  # (N, M)
    nn = np.argsort(d, axis=1, kind="stable")[:, :k]  # (N, k)
    dist = np.take_along_axis(d, nn, 1)
    if spec["weights"] == "distance":
        with np.errstate(divide="ignore"):
            w = 1.0 / dist
        exact = (dist == 0).any(1)
        w[exact] = (dist[exact] == 0).astype(np.float64)
    else:
        w = np.ones_like(dist)
    votes = np.zeros((len(x), spec["classes"]))
    np.add.at(votes, (np.arange(len(x))[:, None], fy[nn]), w)
    return votes / votes.sum(1, keepdims=True)


def forest_proba(arrays: Arrays, prefix: str, x: np.ndarray) -> np.ndarray:
    """Mean over trees of the leaf's class probabilities; all samples descend all trees
    together, one level per step (a split sends x[feature] <= threshold left)."""
    left, right = arrays[f"{prefix}_left"], arrays[f"{prefix}_right"]
    feat, thr = arrays[f"{prefix}_feature"], arrays[f"{prefix}_threshold"]
    xf = x.astype(np.float32)  # scikit-learn's trees compare float32 features
    t_idx = np.arange(left.shape[0])[None, :]  # (1, T)
    node = np.zeros((len(x), left.shape[0]), np.int64)  # (N, T)
    rows = np.arange(len(x))[:, None]
    while True:
        inner = left[t_idx, node] >= 0
        if not inner.any():
            break
        go_left = xf[rows, feat[t_idx, node]] <= thr[t_idx, node]
        node = np.where(inner, np.where(go_left, left[t_idx, node], right[t_idx, node]), node)
    return arrays[f"{prefix}_value"][t_idx, node].mean(1)  # (N, K)
