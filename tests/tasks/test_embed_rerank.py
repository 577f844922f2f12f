"""`cvcraft train embed rerank=true open_set=...`: metrics.json's re-ranked numbers and
open-set AUROC recomputed from `predict embed`'s embeddings of the same val images."""

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cvcraft.cli import run
from cvcraft.data.io import write_image
from cvcraft.data.shapes import make_shapes
from cvcraft.errors import ConfigError
from cvcraft.metrics.rerank import rerank_square, square_distances
from cvcraft.metrics.retrieval import open_set_split, retrieval_metrics
from cvcraft.tasks import task_config

TINY = ["data=shapes:120", "imgsz=32", "model=mlp", "epochs=1", "p=3", "k=4", "workers=0",
        "progress=false", "lr=0.01", "optimizer=adam", "warmup_epochs=0", "dim=16",
        "plots=false"]  # fmt: skip


def test_rerank_and_open_set_metrics(tmp_path):
    out = tmp_path / "run"
    run(["train", "embed", *TINY, "rerank=true", "k1=5", "k2=2", "open_set=0.3", f"out={out}"])
    m = json.loads((out / "metrics.json").read_text())
    val = make_shapes(24, 32, 0, "val")
    imgs = tmp_path / "val"
    for i in range(len(val)):
        write_image(imgs / f"{i:03d}.png", val.load_image(i))
    run(["predict", "embed", f"weights={out / 'best.pt'}", f"source={imgs}", "batch=8",
         "plots=false", f"out={tmp_path / 'pred'}"])  # fmt: skip
    emb = np.load(tmp_path / "pred" / "embeddings.npy")
    ids, n = val.labels, len(val)
    d = rerank_square(square_distances(emb, "cosine"), n, k1=5, k2=2, lambda_value=0.3)
    rr = retrieval_metrics(emb, emb, ids, ids, exclude=np.eye(n, dtype=bool), distances=d)
    assert m["rr_map"] == pytest.approx(rr["map"], abs=1e-4)
    assert m["rr_rank1"] == pytest.approx(rr["rank1"], abs=1e-9)
    held = open_set_split(ids, 0.3, 0)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = unit @ unit[~held].T
    sim[np.arange(n)[:, None] == np.flatnonzero(~held)[None, :]] = -np.inf
    known = np.array([(ids[~held] == ids[i]).sum() - (not held[i]) > 0 for i in range(n)])
    assert m["open_set_auroc"] == pytest.approx(roc_auc_score(known, sim.max(1)), abs=1e-4)
    with pytest.raises(ConfigError, match="open_set"):
        task_config("embed", {"open_set": "1.0"})
    with pytest.raises(ConfigError, match="k1 >= 1"):
        task_config("embed", {"k1": "0"})


def test_id_loss_term_by_config():
    """BNNeck's ID loss: triplet + w x cross-entropy of emb @ centres.T, by hand (numpy)."""
    import torch

    from cvcraft.losses.metric import batch_hard_triplet_loss
    from cvcraft.models.embedding import EmbeddingNet
    from cvcraft.tasks.embed.task import embedding_loss, uses_centres

    torch.manual_seed(2)
    net = EmbeddingNet(torch.nn.Flatten(), 12, 4, num_classes=3)
    emb = torch.randn(6, 4, dtype=torch.float64)
    ids = torch.tensor([0, 0, 1, 1, 2, 2])
    cfg = task_config("embed", {"id_weight": 0.5})
    assert uses_centres(cfg)
    logits = emb.numpy() @ net.centres.detach().double().numpy().T
    logp = logits - logits.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    ce = -logp[np.arange(6), ids.numpy()].mean()
    tri = batch_hard_triplet_loss(torch.nn.functional.normalize(emb, dim=1), ids, 0.3)
    got = embedding_loss(cfg, net.double(), emb, ids)
    assert float(got.detach()) == pytest.approx(float(tri) + 0.5 * ce, rel=1e-9)
    with pytest.raises(ConfigError, match="id_weight"):
        task_config("embed", {"id_weight": "1", "center_weight": "0.1"})
