"""`cvcraft train/val/predict generate` end to end on tiny data: the run folder (G and D loss
columns, per-epoch sample grids), exact resume of both networks, sampling a class, and the
bad inputs (grey vs RGB checkpoint, class out of range, n=0, a NaN discriminator loss)."""

import csv
import gzip
import struct

import numpy as np
import pytest
import torch

import cvcraft.tasks.generate.task as gen_task
from cvcraft.cli import run
from cvcraft.engine.checkpoint import load_checkpoint
from cvcraft.errors import ConfigError, DataError, TrainingError
from cvcraft.tasks.generate.data import load_image_splits

TINY = ["data=shapes:48", "imgsz=28", "batch=16", "model_kwargs={width: 8}", "noise_dim=8",
        "progress=false", "sample_n=8", "val_fraction=0.2"]  # fmt: skip


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_train_predict_val_and_bad_input(tmp_path):
    out = tmp_path / "run"
    m = run(["train", "generate", *TINY, "model=cgan", "epochs=2", f"out={out}"])
    assert np.isfinite(m["moment_dist"]) and m["epochs_run"] == 2
    r = rows(out / "metrics.csv")
    assert {"d_loss", "g_loss", "moment_dist"} <= set(r[0]) and len(r) == 2
    assert (out / "plots" / "samples_epoch001.png").exists()
    assert (out / "plots" / "samples_epoch002.png").exists() and (
        out / "plots" / "loss.png"
    ).exists()
    state = load_checkpoint(out / "last.pt")
    assert set(state["parts"]) == {"disc"} and state["conditional"] and state["in_chans"] == 3
    # the generator's Adam and the discriminator's both use the config's betas
    assert state["optimizer"]["param_groups"][0]["betas"] == (0.5, 0.999)
    assert state["parts"]["disc"]["optimizer"]["param_groups"][0]["betas"] == (0.5, 0.999)

    res = run(["predict", "generate", f"weights={out / 'best.pt'}", "n=3", "class=2",
               f"out={tmp_path / 'pred'}"])  # fmt: skip
    assert len(res) == 3 and all(x["class"] == "triangle" for x in res)
    assert (tmp_path / "pred" / "grid.png").exists() and (
        tmp_path / "pred" / "images" / "00002.png"
    ).exists()
    with pytest.raises(ConfigError, match="class=6 is out of range"):
        run(
            [
                "predict",
                "generate",
                f"weights={out / 'best.pt'}",
                "class=6",
                f"out={tmp_path / 'p2'}",
            ]
        )
    with pytest.raises(ConfigError, match="n=0 must be >= 1"):
        run(["predict", "generate", f"weights={out / 'best.pt'}", "n=0"])
    with pytest.raises(ConfigError, match="class=-2 is out of range"):  # -1 = every class
        run(["predict", "generate", f"weights={out / 'best.pt'}", "class=-2",
             f"out={tmp_path / 'p3'}"])  # fmt: skip
    for bad in ("p2", "p3"):  # refused before sampling: no grid, no half-written images
        assert not (tmp_path / bad / "grid.png").exists()
        assert not (tmp_path / bad / "images").exists()
    # an RGB checkpoint is not fed grey digits (the reverse of the grey-checkpoint test below)
    rng = np.random.default_rng(1)
    write_idx(tmp_path / "grey", rng.integers(0, 255, (40, 28, 28), dtype=np.uint8),
              rng.integers(0, 6, 40).astype(np.uint8))  # fmt: skip
    with pytest.raises(DataError, match=r"grey \(1 channel\) images, but the checkpoint was "
                       r"trained on RGB"):  # fmt: skip
        run(["val", "generate", f"weights={out / 'best.pt'}", f"data={tmp_path / 'grey'}",
             f"out={tmp_path / 'v2'}"])  # fmt: skip

    val = run(["val", "generate", f"weights={out / 'best.pt'}", "data=shapes:48",
               "val_fraction=0.2", f"out={tmp_path / 'val'}", "plots=false"])  # fmt: skip
    assert val["val_images"] == 9 and val["moment_dist"] == pytest.approx(
        m["moment_dist"], rel=1e-5
    )


def write_idx(folder, images, labels):
    """A grey MNIST-style IDX pair (the t10k names the shared copy has)."""
    folder.mkdir()
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">BBBBIII", 0, 0, 8, 3, *images.shape) + images.tobytes())
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">BBBBI", 0, 0, 8, 1, len(labels)) + labels.tobytes())


def test_grey_data_checkpoint_refuses_rgb_and_unconditional_refuses_class(tmp_path):
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "idx", rng.integers(0, 255, (40, 28, 28), dtype=np.uint8),
              rng.integers(0, 3, 40).astype(np.uint8))  # fmt: skip
    splits = load_image_splits(str(tmp_path / "idx"), 28, val_fraction=0.2)
    assert splits.channels == 1 and splits.train.shape == (32, 1, 28, 28) and len(splits.val) == 8
    out = tmp_path / "run"
    run(["train", "generate", *TINY, f"data={tmp_path / 'idx'}", "model=mlp_gan", "epochs=1",
         "loss=hinge", "spectral_norm=true", f"out={out}"])  # fmt: skip
    with pytest.raises(
        DataError, match=r"RGB \(3 channels\) images, but the checkpoint was trained on grey"
    ):
        run(
            [
                "val",
                "generate",
                f"weights={out / 'last.pt'}",
                "data=shapes:48",
                f"out={tmp_path / 'v'}",
            ]
        )
    with pytest.raises(ConfigError, match="is unconditional"):
        run(
            [
                "predict",
                "generate",
                f"weights={out / 'last.pt'}",
                "class=1",
                f"out={tmp_path / 'p'}",
            ]
        )
    with pytest.raises(ConfigError, match="loss=wgan needs"):
        run(["train", "generate", "loss=wgan"])


def test_exact_resume_of_both_networks_with_gradient_penalty(tmp_path):
    args = [*TINY, "model=dcgan", "epochs=2", "loss=wgan", "gp_weight=10", "n_critic=2",
            "instance_noise=0.1", "betas=[0.0, 0.9]", "plots=false"]  # fmt: skip
    run(["train", "generate", *args, f"out={tmp_path / 'full'}"])
    part = tmp_path / "part"
    run(["train", "generate", *args, f"out={part}"])
    # rewind to epoch 1: the previous checkpoint is what a kill after epoch 1 leaves
    (part / "last.pt").unlink()
    (part / "last.pt.sha256").unlink(missing_ok=True)
    run(["train", "generate", *args, f"out={part}", "resume=true"])
    a, b = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(part / "last.pt")
    assert a["epoch"] == b["epoch"] == 1
    for key in ("model", "ema"):
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), (key, k)
    for k in a["parts"]["disc"]["model"]:
        assert torch.equal(a["parts"]["disc"]["model"][k], b["parts"]["disc"]["model"][k]), k
    assert rows(tmp_path / "full" / "metrics.csv")[1]["gp"] == rows(part / "metrics.csv")[1]["gp"]


def test_nan_discriminator_loss_stops_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_d_loss = gen_task.d_loss

    def flaky(*a, **k):  # finite during epoch 1 (3 steps of 16), NaN in epoch 2
        calls["n"] += 1
        loss = real_d_loss(*a, **k)
        return loss * float("nan") if calls["n"] > 3 else loss

    monkeypatch.setattr(gen_task, "d_loss", flaky)
    out = tmp_path / "run"
    with pytest.raises(
        TrainingError, match=r"discriminator loss is nan at epoch 2.*last good checkpoint"
    ):
        run(["train", "generate", *TINY, "epochs=2", f"out={out}"])
    # epoch 1's checkpoints, its csv row and its sample grid are all intact, and usable
    assert load_checkpoint(out / "last.pt")["epoch"] == 0 and len(rows(out / "metrics.csv")) == 1
    assert (out / "plots" / "samples_epoch001.png").exists()
    assert not (out / "plots" / "samples_epoch002.png").exists()
    res = run(["predict", "generate", f"weights={out / 'best.pt'}", "n=2",
               f"out={tmp_path / 'p'}"])  # fmt: skip
    assert len(res) == 2


def test_nan_diffusion_loss_stops_with_the_step_and_keeps_epoch_one(tmp_path, monkeypatch):
    """The one-network families (DDPM, VAE) stop through the trainer's non-finite check."""
    from cvcraft.models.generative.ddpm import SmallUNet

    calls = {"n": 0}
    real_forward = SmallUNet.forward

    def flaky(self, *a, **k):  # NaN from the 4th training pass on (epoch 1 has 3 steps)
        out = real_forward(self, *a, **k)
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] > 3:
                return out * float("nan")
        return out

    monkeypatch.setattr(SmallUNet, "forward", flaky)
    out = tmp_path / "run"
    kw = "model_kwargs={width: 8, diffusion_steps: 50, sample_steps: 2}"
    with pytest.raises(
        TrainingError, match=r"loss is nan at epoch 2, step 1.*last good checkpoint"
    ):
        run(["train", "generate", *TINY, "model=ddpm", kw, "epochs=2", "plots=false",
             f"out={out}"])  # fmt: skip
    assert load_checkpoint(out / "last.pt")["epoch"] == 0 and len(rows(out / "metrics.csv")) == 1


def classifier_ckpt(path, classes):
    """A (random-weight) cvcraft classify checkpoint: the FID extractor of the shapes."""
    from cvcraft.engine.checkpoint import save_checkpoint
    from cvcraft.models import create_model
    from cvcraft.transforms.normalize import IMAGENET_STATS

    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=len(classes))
    state = {
        "task": "classify", "epoch": 0, "model": model.state_dict(), "ema": None,
        "config": {"seed": 0}, "model_name": "resnet20", "num_classes": len(classes),
        "in_chans": 3, "classes": list(classes), "imgsz": 32, "model_kwargs": {},
        "normalize": "zscore", "norm_stats": IMAGENET_STATS,
    }  # fmt: skip
    save_checkpoint(path, state)
    return path


def test_domain_fid_kid_and_class_stats_equal_an_independent_recomputation(tmp_path):
    from torchmetrics.image.fid import _compute_fid

    from cvcraft.tasks.generate.extractor import DomainExtractor
    from cvcraft.tasks.generate.task import GenerateTask

    classes = ["circle", "square", "triangle", "star", "cross", "ring"]
    fid_model = classifier_ckpt(tmp_path / "cls.pt", classes)
    out = tmp_path / "run"
    m = run(["train", "generate", *TINY, "imgsz=32", "model=cgan", "epochs=1", "plots=false",
             f"fid_model={fid_model}", "kid_subsets=3", f"out={out}"])  # fmt: skip
    assert m["monitor"] == "fid" and 0 <= m["min_class_share"] <= 1 / 6 + 1e-9
    assert len(m["class_hist"]) == 6 and sum(m["class_hist"]) == pytest.approx(1.0)
    # recompute: the val items' keyed noise -> best.pt's generator -> the classifier's features
    gen, _ = GenerateTask.load_model(out / "best.pt", torch.device("cpu"))
    splits = load_image_splits("shapes:48", 32)
    z = torch.stack([torch.randn(8, generator=torch.Generator().manual_seed(2 * i + 1))
                     for i in range(len(splits.val))])  # fmt: skip
    with torch.no_grad():
        fake = gen(z, splits.val_labels)
    ext = DomainExtractor.load(fid_model, torch.device("cpu"))
    ff, logits = ext(fake)
    fr, _ = ext(splits.val.float() / 127.5 - 1)
    ff, fr = ff.double(), fr.double()
    want = _compute_fid(fr.mean(0), torch.cov(fr.T), ff.mean(0), torch.cov(ff.T))
    assert m["fid"] == pytest.approx(float(want), rel=1e-4)
    acc = float((logits.argmax(1) == splits.val_labels).double().mean())
    assert m["cond_acc"] == pytest.approx(acc)
    with pytest.raises(ConfigError, match="was trained on classes"):
        bad = classifier_ckpt(tmp_path / "bad.pt", ["a", "b"])
        run(["val", "generate", f"weights={out / 'best.pt'}", "data=shapes:48",
             f"fid_model={bad}", f"out={tmp_path / 'v'}"])  # fmt: skip


def test_latent_diffusion_refuses_a_first_stage_of_the_other_channel_count(tmp_path):
    rng = np.random.default_rng(2)
    write_idx(tmp_path / "idx", rng.integers(0, 255, (40, 28, 28), dtype=np.uint8),
              rng.integers(0, 6, 40).astype(np.uint8))  # fmt: skip
    grey_vae = tmp_path / "vae"
    run(["train", "generate", *TINY, f"data={tmp_path / 'idx'}", "model=vae", "noise_dim=16",
         "epochs=1", "plots=false", f"out={grey_vae}"])  # fmt: skip
    with pytest.raises(ConfigError, match=r"has in_chans=1, this run 3"):
        run(["train", "generate", *TINY, "model=ldm", "noise_dim=16", "epochs=1",
             f"first_stage={grey_vae / 'best.pt'}", f"out={tmp_path / 'ldm'}"])  # fmt: skip
    assert not (tmp_path / "ldm" / "last.pt").exists()


def test_vae_trains_with_elbo_and_writes_reconstruction_grids(tmp_path):
    out = tmp_path / "vae"
    m = run(["train", "generate", *TINY, "model=cvae", "epochs=2", "kl_warmup=0.5",
             "lr=0.002", "recon_std=0.5", f"out={out}"])  # fmt: skip
    r = rows(out / "metrics.csv")
    assert {"recon", "kl", "val_neg_elbo", "val_recon", "val_bpd"} <= set(r[0])
    assert 0 < m["val_bpd"] < 30  # the discrete ELBO of an untrained model: finite
    assert float(r[1]["recon"]) < float(r[0]["recon"])  # it learns to reconstruct
    assert m["val_neg_elbo"] >= m["val_recon"] >= 0
    for name in ("reconstructions.png", "interpolation.png", "samples.png"):
        assert (out / "plots" / name).exists(), name
    res = run(["predict", "generate", f"weights={out / 'best.pt'}", "n=2", "class=4",
               f"out={tmp_path / 'p'}"])  # fmt: skip
    assert [x["class"] for x in res] == ["cross", "cross"]
    # val reads the decoder's σ from the checkpoint: the same bits/dim as training's last val
    val = run(["val", "generate", f"weights={out / 'best.pt'}", "data=shapes:48",
               "val_fraction=0.2", "plots=false", f"out={tmp_path / 'v'}"])  # fmt: skip
    assert val["val_bpd"] == pytest.approx(m["val_bpd"], rel=1e-6)


def test_ddpm_trains_and_samples_with_ddim(tmp_path):
    out = tmp_path / "ddpm"
    kw = "model_kwargs={width: 8, diffusion_steps: 100, sample_steps: 5}"
    m = run(["train", "generate", *TINY, "model=cddpm", "epochs=2", "lr=0.001", "bpd_t=3", kw,
             f"out={out}"])  # fmt: skip
    r = rows(out / "metrics.csv")
    assert {"eps_mse", "val_eps_mse", "val_bpd"} <= set(r[0]) and np.isfinite(m["moment_dist"])
    assert 0 < m["val_bpd"] < 100  # an untrained bound is loose, but finite
    assert float(r[1]["eps_mse"]) < 1.5  # ε ~ N(0, I): predicting 0 would score ~1
    res = run(["predict", "generate", f"weights={out / 'best.pt'}", "n=2", "class=1",
               f"out={tmp_path / 'p'}"])  # fmt: skip
    assert [x["class"] for x in res] == ["square", "square"]


# Learning thresholds for the GAN runs (issue 25, class 8): on 160 shapes at 32 px, width 16,
# 30 epochs at lr = d_lr = 1e-3, the pixel-moment distance of the generated images to the
# held-out ones (``moment_dist``) falls far below an untrained generator's. Measured over
# seeds 0-2 (data and run) and at lr=0 (tests/MUTATIONS.md, seventh round):
GAN_RUNS = {  # model: (extra keys, moment_dist floor)
    "dcgan": ([], 0.12),  # 0.051, 0.043, 0.028; lr=0 0.194
    "cgan": ([], 0.14),  # 0.085, 0.066, 0.092; lr=0 0.217
    # SN + hinge start closer (lr=0 0.086): 0.034, 0.046, 0.045
    "biggan_small": (["loss=hinge", "spectral_norm=true"], 0.065),
}


@pytest.mark.parametrize("model", sorted(GAN_RUNS))
def test_gan_learns_the_pixel_moments(tmp_path, model):
    extra, floor = GAN_RUNS[model]
    m = run(["train", "generate", *TINY, "data=shapes:160", "imgsz=32", "plots=false",
             f"model={model}", "model_kwargs={width: 16}", "epochs=30", "lr=0.001",
             "d_lr=0.001", *extra, f"out={tmp_path / 'run'}"])  # fmt: skip
    assert m["moment_dist"] <= floor, m["moment_dist"]
