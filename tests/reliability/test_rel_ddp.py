"""DDP: rank sharding equals the single-process global batch; collectives; 2-process CPU runs.

Oracle for the end-to-end runs: the same command with devices=1 (one process, same global
batch). Documented tolerance (RELIABILITY.md): weights within atol 1e-5 — gradients are
averaged across ranks in a different summation order than one process's mean, so float32
results differ in the last bits; metrics agree to the printed precision.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from cvcraft.cli import main
from cvcraft.data.loader import EpochSampler
from cvcraft.engine import distributed as D
from cvcraft.engine.checkpoint import load_checkpoint


@pytest.mark.parametrize("n", [64, 67])
def test_rank_shards_make_the_global_batch(n):
    """Ranks' batch k together = the one-process batch k (train, padded to equal length)."""
    world, b = 2, 8
    one = EpochSampler(n, True, seed=3)
    one.set_epoch(5)
    whole = one.indices()
    parts = []
    for r in range(world):
        s = EpochSampler(n, True, seed=3, num_replicas=world, rank=r)
        s.set_epoch(5)
        parts.append(s.indices())
    assert len({len(p) for p in parts}) == 1
    for k in range(n // (world * b)):
        ranks = np.concatenate([p[k * b : (k + 1) * b] for p in parts])
        assert sorted(ranks) == sorted(whole[k * world * b : (k + 1) * world * b])


def test_eval_shards_cover_every_item_once():
    parts = [EpochSampler(11, False, num_replicas=3, rank=r, pad=False).indices() for r in range(3)]
    assert sorted(np.concatenate(parts).tolist()) == list(range(11))


def test_single_process_fallbacks():
    assert D.rank() == 0 and D.world_size() == 1 and D.is_main_process()
    assert D.all_reduce_sum(3) == 3 and D.all_gather_object({"a": 1}) == [{"a": 1}]
    m = torch.nn.Linear(2, 2)
    assert D.wrap_model(m, True, torch.device("cpu")) is m
    cmd = D.torchrun_command(["train", "classify", "devices=2"], 2)
    assert cmd[1:3] == ["-m", "torch.distributed.run"] and cmd[-4:-3] == ["cvcraft"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, q) -> None:
    from cvcraft.tasks.classify.task import Preprocess

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    from cvcraft.data import ClassifyDataset, build_loader, make_shapes
    from cvcraft.tasks.classify.task import evaluate_classifier

    D.init_distributed(torch.device("cpu"))
    data = make_shapes(21, 16, 0, "val")
    loader = build_loader(ClassifyDataset(data), 4, shuffle=False)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 6))
    out = evaluate_classifier(
        model, loader, Preprocess(None, "none", 3), 6, torch.device("cpu"), topk=2
    )
    cm = D.all_reduce_sum(torch.eye(2, dtype=torch.int64) * (rank + 1))
    got = D.all_gather_object(rank * 10)
    q.put((rank, len(loader.batch_sampler.sampler), out, cm.tolist(), got))
    D.cleanup()


@pytest.mark.slow  # spawning two torch processes takes 20-80 s on a busy 2-core machine
def test_two_process_evaluator_matches_one_process():
    """evaluate_classifier over 2 gloo ranks (unpadded shards) = over all images at once."""
    from cvcraft.data import ClassifyDataset, build_loader, make_shapes
    from cvcraft.tasks.classify.task import Preprocess, evaluate_classifier

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, port, q)) for r in range(2)]
    for p in procs:
        p.start()
    res = sorted(q.get(timeout=90) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 6))
    loader = build_loader(ClassifyDataset(make_shapes(21, 16, 0, "val")), 4, shuffle=False)
    ref = evaluate_classifier(
        model, loader, Preprocess(None, "none", 3), 6, torch.device("cpu"), topk=2
    )
    assert [r[1] for r in res] == [11, 10]  # every image once, no padding
    for _, _, out, cm, got in res:
        assert out["confusion_matrix"] == ref["confusion_matrix"]
        assert out["top1"] == ref["top1"] and out["num_samples"] == 21
        assert out["val_loss"] == pytest.approx(ref["val_loss"], rel=1e-6)
        assert out["roc_auc_ovr"] == pytest.approx(ref["roc_auc_ovr"], rel=1e-9)
        assert cm == [[3, 0], [0, 3]] and got == [0, 10]


RUN = ["data=shapes:256", "batch=32", "epochs=2", "workers=0", "progress=false", "plots=false"]


def _compare(a, b, atol, buffers=True):
    wa, wb = load_checkpoint(a / "last.pt")["model"], load_checkpoint(b / "last.pt")["model"]
    assert wa.keys() == wb.keys()
    for k in wa:
        if buffers or not any(s in k for s in ("running_", "num_batches")):
            torch.testing.assert_close(wa[k], wb[k], atol=atol, rtol=0, msg=k)


@pytest.mark.slow
def test_ddp_classify_matches_single_process(tmp_path):
    """lenet5 has no BatchNorm, so 2 ranks x 16 = 1 process x 32 up to float rounding."""
    args = ["train", "classify", *RUN, "model=lenet5", "lr=0.05"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([*args, f"out={one}"]) == 0
    assert main([*args, f"out={two}", "devices=2"]) == 0
    _compare(one, two, atol=1e-5)
    m1 = (one / "metrics.csv").read_text().splitlines()
    m2 = (two / "metrics.csv").read_text().splitlines()
    assert m1[0] == m2[0] and len(m1) == len(m2) == 3
    # Values, not only the shape of the file: every logged number agrees to the csv's 6
    # significant digits (a loss averaged over one rank's half-batch, or metrics from one
    # rank's half of the val set, differ by far more), except the wall-clock columns.
    header = m1[0].split(",")
    for r1, r2 in zip(m1[1:], m2[1:]):
        for key, a, b in zip(header, r1.split(","), r2.split(",")):
            if key not in ("train_ips", "epoch_time"):
                assert float(b) == pytest.approx(float(a), rel=1e-4, abs=1e-5), key


@pytest.mark.slow
def test_ddp_detect_two_processes(tmp_path):
    """Every BatchNorm frozen (eval mode, fixed statistics) and plain SGD without warmup, so
    the only legitimate difference between 1 x 8 and 2 ranks x 4 is the loss's per-rank
    normalisation (by each rank's assigned-target score sum): with BN in train mode each
    rank's half-batch statistics moved the weights by 0.0088 with and without gradient
    sync alike, so that comparison could not catch a never-all-reduce bug."""
    if importlib.util.find_spec("cvcraft.tasks.detect.task") is None:
        pytest.skip("cvcraft.engine.detect not present")
    from cvcraft.tasks.detect.task import build_detector

    model = build_detector("yolo_n", 3, {})
    bns = [n for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) > 50
    args = [
        "train",
        "detect",
        "data=shapes:32",
        "imgsz=64",
        "batch=8",
        "epochs=1",
        "workers=0",
        "progress=false",
        "plots=false",
        "optimizer=sgd",
        "lr=0.01",
        "warmup_epochs=0",
        "freeze=[" + ", ".join(bns) + "]",
    ]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([*args, f"out={one}"]) == 0
    assert main([*args, f"out={two}", "devices=2"]) == 0
    assert (two / "metrics.csv").exists() and (two / "last.pt").exists()
    # Measured (CPU, this config): max |one - two| = 0.0021 (head.cls.0.2.bias; every other
    # weight within 1e-4), and 0.0089 with gradients never all-reduced (no_sync always on).
    _compare(one, two, atol=4e-3, buffers=False)
    w1 = load_checkpoint(one / "last.pt")["model"]
    w2 = load_checkpoint(two / "last.pt")["model"]
    for k in bns[:3]:  # frozen: the running statistics stayed at their initial values
        assert torch.equal(w1[k + ".running_mean"], w2[k + ".running_mean"])
        assert torch.equal(w1[k + ".running_var"], torch.ones_like(w1[k + ".running_var"]))
    loss = [float(ln.split(",")[1]) for ln in (one / "metrics.csv").read_text().splitlines()[1:]]
    loss2 = [float(ln.split(",")[1]) for ln in (two / "metrics.csv").read_text().splitlines()[1:]]
    assert loss2 == pytest.approx(loss, rel=0.05)  # 15.46 and 15.14: per-rank normalisation


@pytest.mark.slow
def test_ddp_segment_two_processes(tmp_path):
    """2 gloo ranks train a small U-Net; the val confusion matrix is summed across ranks, so
    the pixel count equals the one-process run's exactly and the metrics are close."""
    args = [
        "train",
        "segment",
        "data=shapes:32",
        "imgsz=64",
        "batch=8",
        "epochs=1",
        "workers=0",
        "progress=false",
        "plots=false",
        "model_kwargs={base: 8}",
    ]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([*args, f"out={one}"]) == 0
    assert main([*args, f"out={two}", "devices=2"]) == 0
    # Measured (d4e43d3, CPU): max |one - two| = 0.022 from BN's per-rank half-batch
    # statistics; with gradients never all-reduced (a no_sync-always mutant) it is 0.038. The
    # former 5e-2 let that mutant pass; 0.03 sits between the two.
    _compare(one, two, atol=0.03, buffers=False)
    m1 = json.loads((one / "metrics.json").read_text())
    m2 = json.loads((two / "metrics.json").read_text())
    cm1, cm2 = np.asarray(m1["confusion_matrix"]), np.asarray(m2["confusion_matrix"])
    assert cm1.sum() == cm2.sum()  # every val pixel counted once across the two ranks
    assert m2["pixel_acc"] == pytest.approx(m1["pixel_acc"], abs=0.05)


@pytest.mark.slow
def test_elastic_restart_after_sigkill_resumes(tmp_path, monkeypatch, capsys):
    """Rank 0 is SIGKILLed after epoch 1's checkpoint; torchrun restarts both workers, they
    resume from last.pt and finish with the weights of an uninterrupted 2-process run."""
    args = [
        "train",
        "classify",
        *RUN,
        "epochs=3",
        "model=lenet5",
        "devices=2",
        "deterministic=true",
    ]
    # One OpenMP thread per worker (2 workers on 2 cores). On this machine a gloo worker
    # sometimes aborts at exit ("terminate called without an active exception") after its
    # results are written -- an open problem recorded in the session note, not what this test
    # is about -- so a launch that fails is retried (at most 3 times, fresh folders); the
    # exactness check below still needs both runs to finish and to agree bit for bit.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")

    def launch(out, **env):
        for attempt in range(3):
            folder = out.with_name(f"{out.name}{attempt}")
            with monkeypatch.context() as m:
                for k, v in env.items():
                    m.setenv(k, v)
                if main([*args, f"out={folder}"]) == 0:
                    return folder
        raise AssertionError(f"3 launches of {out.name} failed")

    ref = launch(tmp_path / "ref")
    capsys.readouterr()
    run = launch(tmp_path / "run", CVCRAFT_FAULT_KILL_AFTER_EPOCH="1", CVCRAFT_MAX_RESTARTS="1")
    _compare(ref, run, atol=0.0)
    assert (ref / "metrics.csv").read_bytes() == (run / "metrics.csv").read_bytes()
