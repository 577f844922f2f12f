"""`cvcraft train generate devices=2`: two gloo processes equal one process with the same
global batch, for a GAN (two networks, two optimizers, EMA of G) and for DDPM.

Oracle: the same command with devices=1. Gradients are averaged across ranks in another
summation order, so float32 weights differ in the last bits: measured 4e-8 at most (DDPM,
SGD); the tolerance (rtol 1e-5, atol 1e-6) is tighter than the other DDP tests'. The runs use
plain SGD: Adam's first steps are ≈ lr·sign(g), so a gradient component near 0 turns
round-off into a whole step (measured 8.6e-4 on D's first layer with Adam — the same size a
never-all-reduced gradient would leave). Both models are free of BatchNorm (mlp_gan; the
U-Net's GroupNorm is per sample), so per-rank batch statistics cannot differ; every random
draw of a step is made for the global batch and sliced by rank.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from cvcraft.cli import main
from cvcraft.engine.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
RUN = ["data=shapes:80", "imgsz=28", "batch=16", "epochs=2", "noise_dim=8", "val_fraction=0.2",
       "workers=0", "progress=false", "plots=false", "sample_n=4"]  # fmt: skip


def weights(path: Path) -> dict[str, torch.Tensor]:
    st = load_checkpoint(path)
    out = {f"g.{k}": v for k, v in st["model"].items()}
    out.update({f"ema.{k}": v for k, v in (st["ema"] or {}).items()})
    for name, part in (st.get("parts") or {}).items():
        out.update({f"{name}.{k}": v for k, v in part["model"].items()})
    return out


def rows(path: Path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def one_and_two(args: list[str], tmp: Path, monkeypatch) -> tuple[Path, Path]:
    # the torchrun workers must import this checkout's cvcraft, one thread each
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.chdir(ROOT)
    one, two = tmp / "one", tmp / "two"
    assert main(["train", "generate", *RUN, *args, f"out={one}"]) == 0
    assert main(["train", "generate", *RUN, *args, f"out={two}", "devices=2"]) == 0
    a, b = weights(one / "last.pt"), weights(two / "last.pt")
    assert a.keys() == b.keys() and len(a) > 4
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    return one, two


def same_columns(one: Path, two: Path, keys: tuple[str, ...]) -> None:
    ra, rb = rows(one / "metrics.csv"), rows(two / "metrics.csv")
    assert len(ra) == len(rb) == 2
    for x, y in zip(ra, rb):
        for k in keys:
            assert float(y[k]) == pytest.approx(float(x[k]), rel=1e-4, abs=1e-6), k


@pytest.mark.slow  # four CLI runs, two of them spawning 2 torch processes: ~1-2 minutes
def test_ddp_gan_two_processes_equal_one(tmp_path, monkeypatch):
    """Generator, its EMA and the discriminator of a WGAN-GP (MLP GAN, TTUR, n_critic 2): the
    penalty pairs real[i] with fake[i] and its ε[i], so rank r must get the global rows the
    sampler gave it (r, r + R, ...), as DDPM's ε and t must meet their x_0 (a contiguous
    slice, the old code, left the DDPM below 1e-4 apart after one step)."""
    args = ["model=mlp_gan", "model_kwargs={width: 32}", "loss=wgan", "gp_weight=10",
            "optimizer=sgd", "lr=0.01", "d_lr=0.02", "n_critic=2"]  # fmt: skip
    one, two = one_and_two(args, tmp_path, monkeypatch)
    st = load_checkpoint(two / "last.pt")
    assert set(st["parts"]) == {"disc"} and st["ema"] is not None
    # D and G loss columns are all-reduced means over the global batch; the val moments are
    # summed over both ranks' halves of the val set
    same_columns(one, two, ("d_loss", "g_loss", "gp", "moment_dist"))


@pytest.mark.slow
def test_ddp_ddpm_two_processes_equal_one(tmp_path, monkeypatch):
    """Class-conditional DDPM with label dropout (a keyed draw) and its val bits/dim."""
    kw = "model_kwargs={width: 8, diffusion_steps: 100, sample_steps: 4}"
    args = ["model=cddpm", kw, "optimizer=sgd", "lr=0.05", "cond_drop=0.2", "bpd_t=2"]
    one, two = one_and_two(args, tmp_path, monkeypatch)
    same_columns(one, two, ("eps_mse", "val_eps_mse", "val_bpd", "moment_dist"))
