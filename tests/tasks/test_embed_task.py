"""End to end: `cvcraft train embed` on tiny shapes; metrics.json's map / rank1 recomputed
by brute force (numpy ranking + sklearn AP per query) from `predict embed`'s embeddings of
the same val images; `cvcraft val embed` agrees."""

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from cvcraft.cli import run
from cvcraft.data.io import write_image
from cvcraft.data.shapes import make_shapes
from cvcraft.models import create_model
from cvcraft.models.embedding import EmbeddingNet, pooled_feature_size
from cvcraft.tasks import task_config
from cvcraft.tasks.embed.task import embedding_loss

TINY = ["data=shapes:120", "imgsz=32", "model=mlp", "epochs=2", "p=3", "k=4", "workers=0",
        "progress=false", "lr=0.01", "optimizer=adam", "warmup_epochs=0", "dim=16"]  # fmt: skip


@pytest.mark.parametrize("loss", ["triplet", "arcface"])
def test_train_then_metrics_equal_brute_force_retrieval(tmp_path, loss):
    out = tmp_path / "run"
    run(["train", "embed", *TINY, f"loss={loss}", f"out={out}"])
    m = json.loads((out / "metrics.json").read_text())
    val = make_shapes(24, 32, 0, "val")  # the val split of shapes:120
    imgs = tmp_path / "val"
    imgs.mkdir()
    for i in range(len(val)):
        write_image(imgs / f"{i:03d}.png", val.load_image(i))
    run(["predict", "embed", f"weights={out / 'best.pt'}", f"source={imgs}", "batch=8",
         f"out={tmp_path / 'pred'}"])  # fmt: skip
    emb = np.load(tmp_path / "pred" / "embeddings.npy").astype(np.float64)
    ids = val.labels
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    dist = 1 - unit @ unit.T
    ranks, aps = [], []
    for q in range(len(ids)):  # leave-one-out: every image queries all the others
        others = np.arange(len(ids)) != q
        match = ids[others] == ids[q]
        if not match.any():
            continue
        order = np.argsort(dist[q, others], kind="stable")
        ranks.append(np.flatnonzero(match[order])[0])
        aps.append(average_precision_score(match, -dist[q, others]))
    assert m["map"] == pytest.approx(np.mean(aps), abs=1e-4)
    assert m["rank1"] == pytest.approx(np.mean(np.array(ranks) < 1), abs=1e-9)
    assert m["rank5"] == pytest.approx(np.mean(np.array(ranks) < 5), abs=1e-9)
    vm = run(["val", "embed", "data=shapes:120", "workers=0", "progress=false",
              f"weights={out / 'best.pt'}", f"out={tmp_path / 'v'}"])  # fmt: skip
    assert vm["map"] == pytest.approx(m["map"], rel=1e-5) and vm["rank1"] == m["rank1"]


def test_learns_to_retrieve_easy_chroma(tmp_path, easy_chroma_folder):
    """A learning threshold: on the easy chroma folder (tests/conftest.py) the triplet-trained
    mlp's val mAP (32 queries) reaches 0.94-1.0 over seeds 0-2 in 8 epochs of 6 steps, while
    lr=0 stays at 0.59-0.66 (random features rank by the brightness shift); see
    tests/MUTATIONS.md, fifth round."""
    m = run(["train", "embed", f"data={easy_chroma_folder}", "imgsz=32", "model=mlp",
             "epochs=8", "p=4", "k=4", "val_fraction=0.25", "workers=0", "progress=false",
             "lr=0.01", "optimizer=adam", "warmup_epochs=0", "dim=16", "seed=0",
             f"out={tmp_path / 'run'}"])  # fmt: skip
    assert m["queries"] == 32
    assert m["map"] >= 0.8


def test_embedding_net_and_losses_by_config():
    torch.manual_seed(0)
    backbone = create_model("mlp", num_classes=0, in_chans=3, img_size=32)
    feat = pooled_feature_size(backbone, 3, 32)
    net = EmbeddingNet(backbone, feat, 8, num_classes=4)
    x = torch.randn(6, 3, 32, 32)
    emb = net(x)
    assert emb.shape == (6, 8)
    cos = net.cosines(emb)
    ref = torch.nn.functional.cosine_similarity(emb[:, None], net.centres[None], dim=2)
    torch.testing.assert_close(cos, ref)
    ids = torch.tensor([0, 0, 1, 1, 2, 3])
    cfg = task_config("embed", {"loss": "cosface", "scale": 10.0})
    logits = 10.0 * (cos - 0.35 * torch.nn.functional.one_hot(ids, 4))
    want = torch.nn.functional.cross_entropy(logits, ids)
    torch.testing.assert_close(embedding_loss(cfg, net, emb, ids), want)


def test_semi_hard_mining_by_config():
    from cvcraft.losses.metric import semi_hard_triplet_loss

    emb = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    ids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    cfg = task_config("embed", {"mining": "semihard", "margin": 0.5})
    want = semi_hard_triplet_loss(torch.nn.functional.normalize(emb, dim=1), ids, 0.5)
    torch.testing.assert_close(embedding_loss(cfg, None, emb, ids), want)


def test_center_loss_term_by_config():
    from cvcraft.losses.metric import batch_hard_triplet_loss, center_loss

    torch.manual_seed(1)
    net = EmbeddingNet(torch.nn.Flatten(), 12, 4, num_classes=3)
    emb = torch.randn(6, 4)
    ids = torch.tensor([0, 0, 1, 1, 2, 2])
    cfg = task_config("embed", {"center_weight": 0.1})
    unit = torch.nn.functional.normalize(emb, dim=1)
    want = batch_hard_triplet_loss(unit, ids, 0.3) + 0.1 * center_loss(emb, ids, net.centres)
    torch.testing.assert_close(embedding_loss(cfg, net, emb, ids), want)


def test_reid_folder_trains_and_evaluates_query_vs_gallery(tmp_path):
    import importlib.util
    from pathlib import Path

    from cvcraft.data.reid import read_reid_split
    from cvcraft.metrics.retrieval import retrieval_metrics

    spec = importlib.util.spec_from_file_location(
        "reid_fixture", Path(__file__).parents[1] / "data" / "test_reid.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    root = mod.make_market(tmp_path / "market")
    out = tmp_path / "run"
    m = run(["train", "embed", f"data={root}", "imgsz=16", "model=mlp", "epochs=1", "p=2",
             "k=2", "workers=0", "progress=false", "dim=8", "hflip=0", f"out={out}"])  # fmt: skip
    assert m["queries"] == 8 and m["skipped_queries"] == 0
    emb = {}
    for split in ("query", "bounding_box_test"):
        run(["predict", "embed", f"weights={out / 'best.pt'}", f"source={root / split}",
             f"out={tmp_path / split}"])  # fmt: skip
        emb[split] = np.load(tmp_path / split / "embeddings.npy")
    _, qp, qc = read_reid_split(root / "query")
    _, gp, gc = read_reid_split(root / "bounding_box_test")
    junk = np.broadcast_to(gp[None, :] == -1, (len(qp), len(gp))).copy()
    ref = retrieval_metrics(emb["query"], emb["bounding_box_test"], qp, gp, query_cams=qc,
                            gallery_cams=gc, exclude=junk)  # fmt: skip
    assert m["map"] == pytest.approx(ref["map"], abs=1e-5)
    assert m["rank1"] == pytest.approx(ref["rank1"])
