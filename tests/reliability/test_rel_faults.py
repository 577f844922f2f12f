"""Faults and determinism: SIGKILL then resume, corrupted checkpoints, bit-identical reruns.

Oracle: an uninterrupted run with the same config (``deterministic=true``); resumed runs
must end with *bit-equal* weights, reruns with byte-equal ``metrics.csv``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cvcraft.cli import main
from cvcraft.engine.checkpoint import load_checkpoint

TINY = [
    "data=shapes:128",
    "model=lenet5",
    "batch=16",
    "workers=0",
    "deterministic=true",
    "progress=false",
    "plots=false",
    "lr=0.05",
]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "last.pt")["model"]


def assert_bit_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_rerun_bit_identical_and_corrupt_checkpoint_fallback(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", "classify", *TINY, "epochs=3", f"out={a}"]) == 0
    assert main(["train", "classify", *TINY, "epochs=3", f"out={b}"]) == 0
    assert (a / "metrics.csv").read_bytes() == (b / "metrics.csv").read_bytes()
    assert "train_ips" not in (a / "metrics.csv").read_text()  # timing lives in timing.csv
    assert (a / "timing.csv").exists()
    final = weights(a)
    assert_bit_equal(final, weights(b))

    # truncate the newest checkpoint: resume must notice, say so, and use last.prev.pt
    last = b / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    capsys.readouterr()
    assert main(["train", "classify", "resume=true", f"out={b}"]) == 0
    out = capsys.readouterr().out
    assert "does not match its checksum" in out and "using" in out and "last.prev.pt" in out
    assert "epoch 2 done" in out  # replays epoch 3 only
    assert_bit_equal(final, weights(b))
    assert (a / "metrics.csv").read_bytes() == (b / "metrics.csv").read_bytes()


def test_bitflip_in_last_checkpoint_detected(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", "classify", *TINY, "data=shapes:64", "epochs=2", f"out={run}"]) == 0
    data = bytearray((run / "last.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (run / "last.pt").write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["train", "classify", "resume=true", f"out={run}"]) == 0
    assert "skipped" in capsys.readouterr().out


def _cli(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "cvcraft", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        **kw,
    )


@pytest.mark.slow
@pytest.mark.parametrize("wait_for", ["last.pt", "last.prev.pt"])
def test_sigkill_then_resume_equals_uninterrupted(tmp_path, wait_for):
    """kill -9 once the first (or second) checkpoint exists; resume; weights bit-equal."""
    args = ["train", "classify", *TINY, "data=shapes:512", "epochs=5"]
    ref = tmp_path / "ref"
    assert _cli([*args, f"out={ref}"]).wait(timeout=600) == 0
    run = tmp_path / "run"
    proc = _cli([*args, f"out={run}"])
    deadline = time.monotonic() + 300
    while not (run / wait_for).exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "metrics.json").exists()  # it really was interrupted
    done = load_checkpoint(run / "last.pt")["epoch"] if (run / "last.pt").exists() else -1
    assert done < 4
    assert _cli(["train", "classify", "resume=true", f"out={run}"]).wait(timeout=600) == 0
    assert_bit_equal(weights(ref), weights(run))
    assert (ref / "metrics.csv").read_bytes() == (run / "metrics.csv").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("task", ["detect", "segment"])
def test_deterministic_rerun_other_tasks(tmp_path, task):
    args = [
        "train",
        task,
        "data=shapes:16",
        "imgsz=64",
        "epochs=2",
        "batch=4",
        "workers=0",
        "deterministic=true",
        "progress=false",
        "plots=false",
    ]
    assert main([*args, f"out={tmp_path / 'a'}"]) == 0
    assert main([*args, f"out={tmp_path / 'b'}"]) == 0
    assert (tmp_path / "a" / "metrics.csv").read_bytes() == (
        tmp_path / "b" / "metrics.csv"
    ).read_bytes()
