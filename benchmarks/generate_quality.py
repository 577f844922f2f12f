"""Sample quality of every generative model family on the MNIST digits (issue 14's targets):
domain-FID, KID, conditional accuracy, the generated-class histogram, bits/dim and the cost.

The judge is an independent classifier: a LeNet-5 trained by ``cvcraft train classify`` on
the generators' own train split (9,000 digits; the 1,000 val digits are its held-out val set,
written as an IDX folder so both tasks see the same split). Its penultimate features give
domain-FID/KID, its top-1 on class-conditional samples the conditional accuracy, its argmax
over unconditional samples the class histogram. Each family is one ``cvcraft train
generate`` run with one sample per val image (1,000); KID over all 1,000 (one subset).

One run per invocation (each stays under ~10 minutes on one thread), results appended to
``WORK/results.jsonl`` with wall time, user+system CPU time and the load average::

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/generate_quality.py --run classifier
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/generate_quality.py --run cgan   # etc.
    python benchmarks/generate_quality.py --table        # the markdown table of every run

Runs: classifier, then any of gan, dcgan, cgan, wgan_gp, vae, ddpm (class-conditional;
ddpm_w32 is the recipe that meets the 0.90 target), ldm and cldm (after vae: they diffuse the
VAE's codes; cldm class-conditional).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import struct
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MNIST = (ROOT / ".." / "shared" / "data" / "mnist").resolve()
COMMON = [f"data={MNIST}", "imgsz=28", "val_fraction=0.1", "kid_subsets=1", "progress=false"]

# Each family's keys (beyond COMMON) and the training budget it got on the shared machine.
# fmt: off
RUNS: dict[str, list[str]] = {
    "gan": ["model=mlp_gan", "epochs=5", "noise_dim=64"],
    "dcgan": ["model=dcgan", "model_kwargs={width: 32}", "epochs=3"],
    "cgan": ["model=cgan_proj", "model_kwargs={width: 32}", "loss=hinge", "spectral_norm=true",
             "d_lr=4e-4", "epochs=40", "val_interval=40"],
    "wgan_gp": ["model=dcgan", "model_kwargs={width: 32}", "loss=wgan", "gp_weight=10",
                "n_critic=5", "betas=[0.0, 0.9]", "lr=2e-4", "epochs=150",
                "val_interval=50"],
    "vae": ["model=vae", "noise_dim=16", "epochs=3", "lr=0.002", "recon_std=0.1"],
    "ddpm": ["model=cddpm", "lr=0.002", "schedule=cosine", "warmup_epochs=1", "epochs=15",
             "val_interval=15", "ema_decay=0.998", "cond_drop=0.1", "guidance=4", "bpd_t=4",
             "model_kwargs={width: 16, sample_steps: 20}"],
    # ddpm without the EMA (re-sampling ddpm's best.pt, its raw weights scored 0.64, its EMA
    # weights 0.49 on 100 samples)
    "ddpm_raw": ["model=cddpm", "lr=0.002", "schedule=cosine", "warmup_epochs=1", "epochs=15",
                 "val_interval=15", "ema=false", "cond_drop=0.1", "guidance=4", "bpd_t=4",
                 "model_kwargs={width: 16, sample_steps: 20}"],
    # width 32, bf16 autocast, 7,000 steps (the width-16 runs above: 2,100 steps, fp32):
    # conditional accuracy 0.988 (46 min on one thread)
    "ddpm_w32": ["model=cddpm", "lr=1e-3", "schedule=cosine", "warmup_epochs=1", "epochs=50",
                 "val_interval=25", "ema=false", "cond_drop=0.1", "guidance=4", "bpd_t=4",
                 "amp=true", "model_kwargs={width: 32, sample_steps: 50}"],
    # twice ddpm_w32's steps (14,000), with the EMA (decay 0.999) and the raw weights both
    # evaluated (val_raw=true: the raw ones are the raw_* keys)
    "ddpm_w32_long": ["model=cddpm", "lr=1e-3", "schedule=cosine", "warmup_epochs=1",
                      "epochs=100", "val_interval=50", "ema_decay=0.999", "val_raw=true",
                      "cond_drop=0.1", "guidance=4", "bpd_t=4", "amp=true",
                      "model_kwargs={width: 32, sample_steps: 50}"],
    # the GAN variants without a row before 2026-12-07
    "infogan": ["model=infogan", "model_kwargs={width: 32}", "epochs=10", "val_interval=10"],
    "biggan": ["model=biggan_small", "model_kwargs={width: 32}", "loss=hinge",
               "spectral_norm=true", "d_lr=4e-4", "epochs=20", "val_interval=20"],
    "wgan_clip": ["model=dcgan", "model_kwargs={width: 32}", "loss=wgan", "clip_value=0.01",
                  "optimizer=rmsprop", "lr=5e-5", "n_critic=5", "epochs=20", "val_interval=20"],
    "ldm": ["model=ldm", "lr=0.002", "epochs=4", "val_interval=4", "noise_dim=16",
            "model_kwargs={width: 32, sample_steps: 20}"],
    "cldm": ["model=cldm", "lr=0.002", "epochs=6", "val_interval=6", "noise_dim=16",
             "cond_drop=0.1", "guidance=2", "model_kwargs={width: 32, sample_steps: 20}"],
    "cldm_long": ["model=cldm", "lr=0.002", "epochs=20", "val_interval=20", "noise_dim=16",
                  "cond_drop=0.1", "guidance=3", "model_kwargs={width: 32, sample_steps: 20}"],
}
# fmt: on


def write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    """An MNIST-style IDX pair ``{prefix}-images-idx3-ubyte.gz`` / ``-labels-idx1-ubyte.gz``."""
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">BBBBIII", 0, 0, 8, 3, *images.shape) + images.tobytes())
    with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">BBBBI", 0, 0, 8, 1, len(labels)) + labels.tobytes())


def train_classifier(work: Path) -> dict:
    from cvcraft.cli import run
    from cvcraft.tasks.generate.data import load_image_splits

    s = load_image_splits(str(MNIST), 28, val_fraction=0.1)  # the generators' split, seed 0
    folder = work / "mnist_split"
    for prefix, x, y in (("train", s.train, s.train_labels), ("t10k", s.val, s.val_labels)):
        write_idx(folder, prefix, x[:, 0].numpy().astype(np.uint8), y.numpy().astype(np.uint8))
    args = [f"data={folder}", "model=lenet5", "imgsz=32", "in_chans=1", "epochs=12", "lr=0.05",
            "progress=false", "plots=false", f"out={work / 'classifier'}"]  # fmt: skip
    m = run(["train", "classify", *args])
    return {"args": ["train", "classify", *args], "top1": m["top1"]}


def train_family(name: str, work: Path) -> dict:
    from cvcraft.cli import run

    cls = work / "classifier" / "best.pt"
    if not cls.exists():
        raise SystemExit(f"train the classifier first: --run classifier (no {cls})")
    extra = [f"first_stage={work / 'vae' / 'best.pt'}"] if "ldm" in name else []
    args = [*COMMON, *RUNS[name], *extra, f"fid_model={cls}", f"out={work / name}"]
    m = run(["train", "generate", *args])
    keys = ("fid", "kid", "cond_acc", "min_class_share", "class_hist", "val_bpd",
            "moment_dist", "train_seconds", "epochs_run")  # fmt: skip
    out = {k: m[k] for k in keys if k in m}
    # with val_raw=true (EMA on), the raw weights' metrics too
    out.update({k: v for k, v in m.items() if k.startswith("raw_") and k[4:] in keys})
    out["args"] = ["train", "generate", *args]  # cond_acc only exists for conditional runs
    return out


def table(work: Path) -> None:
    rows = [json.loads(x) for x in (work / "results.jsonl").read_text().splitlines() if x]
    print("| run | model, epochs | domain-FID | KID | cond_acc | min class share | bits/dim | "
          "wall s | CPU s | load avg (start -> end) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")

    def f(r: dict, k: str, fmt: str) -> str:
        if r.get(k) is None:
            return "—"
        raw = f" (raw {r['raw_' + k]:{fmt}})" if r.get("raw_" + k) is not None else ""
        return format(r[k], fmt) + raw

    for r in rows:
        cost = f"{r['wall']:.0f} | {r['cpu']:.0f} | {r['load0']:.1f} -> {r['load1']:.1f} |"
        if r["run"] == "classifier":
            print(f"| classifier | lenet5, 12 | val top-1 {r['top1']:.4f} | | | | | {cost}")
            continue
        keys = dict(a.split("=", 1) for a in r["args"][2:] if "=" in a)
        print(f"| {r['run']} | {keys['model']}, {keys['epochs']} | {f(r, 'fid', '.2f')} | "
              f"{f(r, 'kid', '.3f')} | {f(r, 'cond_acc', '.3f')} | "
              f"{f(r, 'min_class_share', '.3f')} | {f(r, 'val_bpd', '.3f')} | {cost}")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", choices=["classifier", *RUNS])
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "generate_quality")
    p.add_argument("--table", action="store_true", help="print the table of results.jsonl")
    a = p.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    if a.run:
        load0, t0 = os.getloadavg()[0], time.perf_counter()
        res = train_classifier(a.work) if a.run == "classifier" else train_family(a.run, a.work)
        ru = resource.getrusage(resource.RUSAGE_SELF)
        res.update(run=a.run, wall=time.perf_counter() - t0, cpu=ru.ru_utime + ru.ru_stime,
                   load0=load0, load1=os.getloadavg()[0],
                   when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))  # fmt: skip
        print(json.dumps(res))
        with open(a.work / "results.jsonl", "a") as fh:
            fh.write(json.dumps(res) + "\n")
    if a.table:
        table(a.work)


if __name__ == "__main__":
    main()
