"""The ``generate`` task: train a GAN (generator + discriminator, two optimizers), sample
from it, and score samples against held-out real images.

The generator is the primary model (``trainer.model``: EMA, best.pt, what ``predict``
loads); the discriminator is the ``"disc"`` part with its own learning rate (TTUR) and no
EMA. Each batch is one D step; every ``n_critic``-th batch is also a G step. Every random
draw of a step (noise, the penalty's ε, instance noise) comes from a generator keyed by
(seed, global step), drawn for the global batch and sliced by rank, so a resume replays
the same numbers and R DDP processes draw what one process would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from cvcraft.data.loader import build_loader
from cvcraft.engine import distributed
from cvcraft.engine.device import select_device
from cvcraft.engine.optim import unwrap_model
from cvcraft.engine.trainer import ModelPart
from cvcraft.errors import ConfigError, TrainingError
from cvcraft.losses.autoencoder import sparsity_penalty
from cvcraft.losses.gan import (
    clip_weights_,
    d_loss,
    d_targets,
    g_loss,
    gradient_penalty,
    info_loss,
)
from cvcraft.metrics.generative import ConditionalAccuracy, FIDEvaluator, KIDEvaluator
from cvcraft.metrics.image import ssim as image_ssim
from cvcraft.models import create_model
from cvcraft.models.generative.ddpm import ddpm_bits_per_dim
from cvcraft.models.generative.vae import kl_to_standard_normal, vae_bits_per_dim
from cvcraft.tasks.base import BaseTask
from cvcraft.tasks.generate.config import GenerateConfig
from cvcraft.tasks.generate.data import (
    ImageSplits,
    InMemoryImages,
    load_image_splits,
    to_uint8,
    to_unit_range,
)
from cvcraft.tasks.generate.extractor import (
    DomainExtractor,
    InceptionExtractor,
    is_inception_file,
)
from cvcraft.viz.augment_grid import make_grid
from cvcraft.viz.plots import plot_curves


def class_labels(n: int, num_classes: int, label: int = -1) -> torch.Tensor:
    """``n`` labels: all ``label``, or 0, 1, ..., C-1, 0, 1, ... (one class per grid column)."""
    if label >= 0:
        return torch.full((n,), label, dtype=torch.int64)
    return torch.arange(n, dtype=torch.int64) % max(num_classes, 1)


def sample_images(
    gen: nn.Module, z: torch.Tensor, labels: torch.Tensor | None, batch: int = 256
) -> torch.Tensor:
    """The generator's images for noise ``z`` (N, D) in eval mode, in chunks: (N, C, H, W)."""
    was = gen.training
    gen.eval()
    try:
        with torch.no_grad():
            out = [
                gen(z[i : i + batch], None if labels is None else labels[i : i + batch])
                for i in range(0, len(z), batch)
            ]
    finally:
        gen.train(was)
    return torch.cat(out)


def image_grid(images: torch.Tensor, cols: int) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> one RGB uint8 grid, small images enlarged to >= 56 px."""
    arr = to_uint8(images).permute(0, 2, 3, 1).cpu().numpy()
    if arr.shape[3] == 1:
        arr = np.repeat(arr, 3, axis=3)
    scale = max(1, 56 // arr.shape[1])
    cells = [np.kron(a, np.ones((scale, scale, 1), np.uint8)) for a in arr]
    return make_grid(cells, cols, pad=2)


def write_png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = rgb[..., ::-1] if rgb.ndim == 3 and rgb.shape[2] == 3 else rgb
    if not cv2.imwrite(str(path), np.ascontiguousarray(bgr)):
        raise TrainingError(f"could not write {path}")


def reconstruction_quality(
    recon: torch.Tensor, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image PSNR (dB) and SSIM of reconstructions against the images, both in [-1, 1]
    (data range 2): (N,), (N,). SSIM is ``metrics.image.ssim`` (Gaussian 11 px window, or
    the largest odd size the image allows)."""
    err = (recon.clamp(-1, 1) - x).pow(2).flatten(1).mean(1)
    psnr = 10 * torch.log10(4.0 / err.clamp_min(1e-12))
    a = recon.clamp(-1, 1).permute(0, 2, 3, 1).double().cpu().numpy()
    b = x.permute(0, 2, 3, 1).double().cpu().numpy()
    win = min(11, (min(x.shape[-2:]) - 1) | 1)
    ssim = [image_ssim(bi, ai, data_range=2.0, win_size=win) for ai, bi in zip(a, b)]
    return psnr, torch.tensor(ssim, dtype=torch.float64, device=x.device)


def vae_terms(
    recon: torch.Tensor,
    x: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    recon_std: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image reconstruction ‖x̂ - x‖² / 2σ² (a Gaussian decoder N(x̂, σ²)'s -log p(x|z)
    up to a constant) and KL(q(z|x) ‖ N(0, I)): (N,), (N,)."""
    sq = (recon.float() - x).pow(2).flatten(1).sum(1)
    return sq / (2 * recon_std**2), kl_to_standard_normal(mu, logvar)


class MeanOf:
    """The mean of one per-item output (``key``) over the val set, reported as ``name``."""

    def __init__(self, key: str, name: str) -> None:
        self.key, self.name = key, name

    def reset(self) -> None:
        self.sum, self.n = 0.0, 0

    def update(self, batch: Any, outputs: dict[str, torch.Tensor]) -> None:
        self.sum += float(outputs[self.key].double().sum())
        self.n += int(outputs[self.key].numel())

    def state_dict(self) -> dict[str, Any]:
        return {"sum": self.sum, "n": self.n}

    def merge(self, state: dict[str, Any]) -> None:
        self.sum += state["sum"]
        self.n += state["n"]

    def compute(self) -> dict[str, Any]:
        return {self.name: self.sum / max(self.n, 1)}


class PixelMoments:
    """Mean over pixels of (μ_fake - μ_real)² + (σ_fake - σ_real)², per-pixel moments over
    the val set: a cheap, feature-free distance of the generated distribution from the real
    one (0 when the first two moments agree). Sums merge by addition across ranks."""

    def reset(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.n = 0

    def update(self, batch: Any, outputs: dict[str, torch.Tensor]) -> None:
        fake, real = (outputs[k].double().flatten(1) for k in ("fake", "real"))
        for key, x in (("f", fake), ("f2", fake**2), ("r", real), ("r2", real**2)):
            self.sums[key] = self.sums.get(key, 0) + x.sum(0).cpu()
        self.n += fake.shape[0]

    def state_dict(self) -> dict[str, Any]:
        return {"sums": self.sums, "n": self.n}

    def merge(self, state: dict[str, Any]) -> None:
        for k, v in state["sums"].items():
            self.sums[k] = self.sums.get(k, 0) + v
        self.n += state["n"]

    def compute(self) -> dict[str, Any]:
        if self.n == 0:
            return {"moment_dist": float("nan"), "val_images": 0}
        mf, mr = self.sums["f"] / self.n, self.sums["r"] / self.n
        sf = (self.sums["f2"] / self.n - mf**2).clamp_min(0).sqrt()
        sr = (self.sums["r2"] / self.n - mr**2).clamp_min(0).sqrt()
        dist = ((mf - mr) ** 2 + (sf - sr) ** 2).mean()
        return {"moment_dist": float(dist), "val_images": self.n}


class GenerateTask(BaseTask):
    name = "generate"
    cfg: GenerateConfig

    def __init__(self, cfg: GenerateConfig) -> None:
        super().__init__(cfg)
        self.channels = 3
        self.conditional = False
        self.noise_dim = cfg.noise_dim
        self.need_channels: int | None = None
        self.family = "gan"
        self.latent = False  # latent diffusion (a DDPM on an autoencoder's codes)
        self.ae_kind = "vae"  # which autoencoder, for the vae family
        self.extractor: DomainExtractor | InceptionExtractor | None = None
        if cfg.fid_model:
            self.monitor = "fid"  # a real feature distance: pick best.pt by it

    # ------------------------------------------------------------------ building
    def load_splits(self) -> ImageSplits:
        cfg = self.cfg
        return load_image_splits(
            cfg.data, cfg.imgsz, channels=cfg.channels, seed=cfg.seed,
            val_fraction=cfg.val_fraction, need_channels=self.need_channels,
        )  # fmt: skip

    def build_val_loader(self, splits: ImageSplits) -> Any:
        val = InMemoryImages(splits.val, splits.val_labels)
        return build_loader(val, 256, shuffle=False, seed=self.cfg.seed, collate_fn=val.collate)

    def build_model(self) -> nn.Module:
        cfg = self.cfg
        if cfg.model in ("ldm", "cldm") and "vae" not in (cfg.model_kwargs or {}):
            first = self.first_stage()  # its architecture goes into model_kwargs (checkpoints)
            cfg.model_kwargs = {**dict(cfg.model_kwargs or {}), "vae": first[1]}
        return create_model(
            cfg.model, num_classes=len(self.classes), in_chans=self.channels, **cfg.model_options()
        )

    def first_stage(self) -> tuple[nn.Module, dict[str, Any]]:
        """The ``first_stage`` autoencoder of latent diffusion and its constructor options,
        checked against the data (channels, size, classes); read once per task."""
        if getattr(self, "_first_stage", None) is None:
            self._first_stage = self._read_first_stage()
        return self._first_stage

    def _read_first_stage(self) -> tuple[nn.Module, dict[str, Any]]:
        cfg = self.cfg
        if not cfg.first_stage:
            raise ConfigError(
                f"model={cfg.model} learns a trained autoencoder's codes: pass "
                "first_stage=RUN/best.pt of a `cvcraft train generate model=vae` (or ae) run"
            )
        vae, state = GenerateTask.load_model(cfg.first_stage, torch.device("cpu"))
        if state.get("family") != "vae":
            raise ConfigError(f"first_stage={cfg.first_stage} is a {state.get('family')} run, "
                              "not an autoencoder (model=vae, cvae, ae, ...)")  # fmt: skip
        for key, have in (("in_chans", self.channels), ("imgsz", cfg.imgsz)):
            if int(state[key]) != int(have):
                raise ConfigError(
                    f"first_stage={cfg.first_stage} has {key}={state[key]}, this run {have}; "
                    "train the autoencoder on the same images"
                )
        if list(state["classes"]) != list(self.classes):
            raise ConfigError(f"first_stage={cfg.first_stage} was trained on other classes")
        mk = dict(state.get("model_kwargs") or {})
        options = {"noise_dim": int(state["noise_dim"]), "width": int(mk.get("width", 32)),
                   "conditional": bool(state.get("conditional", False)),
                   "kind": str(state.get("ae_kind", "vae"))}  # fmt: skip
        return vae, options

    def attach_first_stage(self, model: nn.Module, images: torch.Tensor) -> None:
        """Copy the trained autoencoder into a fresh latent DDPM and set its latent scale to
        1 / the std of the codes of (up to 512 of) the training images."""
        vae, _ = self.first_stage()
        model.first_stage.load_state_dict(vae.state_dict())
        model.first_stage.eval()
        x = to_unit_range(images[:512].to(torch.float32))
        codes = model.encode(x)  # scale 1 for now
        model.latent_scale.fill_(1.0 / float(codes.std().clamp_min(1e-6)))

    def setup(self, trainer: Any) -> None:
        cfg = self.cfg
        self.device = trainer.device
        if cfg.accumulate != 1:
            raise ConfigError("accumulate must be 1 for generate (each batch is a D step)")
        splits = self.load_splits()
        self.classes, self.channels = splits.classes, splits.channels
        resume = self.check_resume(trainer)
        train, labels = splits.train, splits.train_labels
        if cfg.fraction < 1.0:
            k = max(cfg.batch, int(len(train) * cfg.fraction))
            idx = torch.from_numpy(
                np.sort(np.random.default_rng([cfg.seed, 7]).permutation(len(train))[:k])
            )
            train, labels = train[idx], labels[idx]
        if len(train) < cfg.batch:
            raise ConfigError(
                f"batch={cfg.batch} is larger than the {len(train)} training images of {cfg.data}"
            )
        train_set = InMemoryImages(train, labels)
        trainer.train_loader = build_loader(
            train_set, cfg.batch, shuffle=True, workers=cfg.workers, seed=cfg.seed,
            drop_last=True, collate_fn=train_set.collate,
        )  # fmt: skip
        self.val_loader = self.build_val_loader(splits)
        torch.manual_seed(cfg.seed)
        gan = self.build_model()
        if hasattr(gan, "first_stage") and resume is None:
            self.attach_first_stage(gan, train)  # a resume reloads it from the checkpoint
        self.family = getattr(gan, "family", "")
        self.latent = hasattr(gan, "encode")
        self.ae_kind = str(getattr(gan, "kind", "vae"))
        if self.family not in ("gan", "vae", "ddpm"):
            raise ConfigError(f"model={cfg.model} is not a generative model (GAN, VAE, DDPM)")
        self.conditional = bool(gan.conditional)
        self.noise_dim = int(gan.noise_dim)  # a DDPM's "noise" is x_T: C·H·W values
        betas = tuple(float(b) for b in cfg.betas)
        self.total_steps = len(trainer.train_loader) * cfg.epochs
        self.epoch_sums: dict[str, float] = {}
        if self.family in ("vae", "ddpm"):  # one model, primary; its forward(z) samples
            trainer.model = gan.to(self.device)
            trainer.primary_optimizer = {"betas": betas}
            self.val_pairs = splits.val[:8], splits.val_labels[:8]
            return
        trainer.model = gan.generator.to(self.device)
        trainer.primary_optimizer = {"betas": betas}
        trainer.extra_parts["disc"] = ModelPart(
            gan.discriminator.to(self.device),
            optimizer={"lr": cfg.d_lr or cfg.lr, "betas": betas},
            ema=False,
        )

    def checkpoint_meta(self) -> dict[str, Any]:
        return {
            "model_name": self.cfg.model,
            "num_classes": len(self.classes),
            "classes": self.classes,
            "imgsz": self.cfg.imgsz,
            "in_chans": self.channels,
            "conditional": self.conditional,
            "family": self.family,
            "ae_kind": self.ae_kind,
            "noise_dim": self.noise_dim,
            "model_kwargs": self.cfg.model_options(),
            "recon_std": self.cfg.recon_std,
        }

    @classmethod
    def model_from_checkpoint(cls, state: dict[str, Any]) -> nn.Module:
        gan = create_model(
            state["model_name"], num_classes=int(state["num_classes"]),
            in_chans=int(state["in_chans"]), **dict(state.get("model_kwargs") or {}),
        )  # fmt: skip
        return gan.generator if getattr(gan, "family", "") == "gan" else gan

    def apply_checkpoint(self, state: dict[str, Any]) -> None:
        self.cfg.imgsz = int(state["imgsz"])
        self.need_channels = int(state["in_chans"])
        self.channels = self.need_channels
        self.conditional = bool(state.get("conditional", False))
        self.family = str(state.get("family", "gan"))
        self.latent = any(k.startswith("first_stage.") for k in state.get("model", {}))
        self.ae_kind = str(state.get("ae_kind", "vae"))
        self.noise_dim = int(state.get("noise_dim", self.cfg.noise_dim))
        self.cfg.recon_std = float(state.get("recon_std", 1.0))  # the decoder it was trained as

    # ------------------------------------------------------------------ training
    def draw(
        self, ctx: Any, shape: tuple[int, ...], salt: int, uniform: bool = False
    ) -> torch.Tensor:
        """This rank's rows of a global-batch draw (normal, or U(0, 1) with ``uniform``)
        keyed by (seed, global step, salt): rows r, r + R, ..., the global-batch positions of
        the items ``EpochSampler`` gives rank r, so each draw meets the image one process
        would pair it with (ε and t with x_0, the penalty's ε with real/fake pairs)."""
        world, r = distributed.world_size(), distributed.rank()
        g = torch.Generator().manual_seed((self.cfg.seed * 1_000_003 + ctx.global_step) * 16 + salt)
        n = shape[0]
        full = (n * world, *shape[1:])
        x = torch.rand(full, generator=g) if uniform else torch.randn(full, generator=g)
        return x[r::world].to(self.device)

    def vae_step(self, batch: dict[str, torch.Tensor], ctx: Any) -> tuple[float, int]:
        """One VAE step: -ELBO with β ramped over ``kl_warmup`` epochs; ε keyed like G's z."""
        cfg = self.cfg
        x = to_unit_range(batch["images"].to(self.device))
        n = x.shape[0]
        labels = batch["labels"].to(self.device) if self.conditional else None
        eps = self.draw(ctx, (n, cfg.noise_dim), 5)
        warm = cfg.kl_warmup * len(ctx.train_loader)
        beta = cfg.beta * (min(1.0, (ctx.global_step + 1) / warm) if warm > 0 else 1.0)
        kind = unwrap_model(ctx.model).kind
        x_in = x
        if kind == "denoise":  # corrupt the input only; the target stays the clean image
            x_in = x + cfg.noise_std * self.draw(ctx, tuple(x.shape), 9)
        with ctx.autocast():
            recon_x, mu, logvar = ctx.model(x_in, labels, eps=eps)
            recon, kl = vae_terms(recon_x, x, mu, logvar, cfg.recon_std)
            if kind == "vae":
                loss = (recon + beta * kl).mean()
            else:
                loss = recon.mean()
                if kind == "sparse":
                    penalty = sparsity_penalty(mu.float(), cfg.sparsity_kind, cfg.rho)
                    loss = loss + cfg.sparsity * penalty
                    self._add("sparsity", float(penalty.detach()), n)
        value = ctx.backward(loss)
        ctx.step()
        self._add("recon", float(recon.detach().mean()), n)
        if kind == "vae":
            self._add("kl", float(kl.detach().mean()), n)
        return value, n

    def ddpm_step(self, batch: dict[str, torch.Tensor], ctx: Any) -> tuple[float, int]:
        """One DDPM step: ‖ε - ε̂(√ᾱ_t x_0 + √(1-ᾱ_t) ε, t)‖² with t ~ U{0..T-1}, keyed draws."""
        x0 = to_unit_range(batch["images"].to(self.device))
        n = x0.shape[0]
        labels = batch["labels"].to(self.device) if self.conditional else None
        schedule = unwrap_model(ctx.model).schedule
        if hasattr(unwrap_model(ctx.model), "encode"):  # latent diffusion: learn the codes
            x0 = unwrap_model(ctx.model).encode(x0, labels)
        if labels is not None and self.cfg.cond_drop > 0:  # learn ε̂(x, ∅) too, for guidance
            drop = self.draw(ctx, (n,), 8, uniform=True) < self.cfg.cond_drop
            labels = torch.where(drop, unwrap_model(ctx.model).unet.null_label, labels)
        t = (
            (self.draw(ctx, (n,), 6, uniform=True) * schedule.steps)
            .long()
            .clamp_max(schedule.steps - 1)
        )
        noise = self.draw(ctx, tuple(x0.shape), 7)
        with ctx.autocast():
            pred = ctx.model(schedule.q_sample(x0, t, noise), labels, t=t)
            loss = (pred.float() - noise).pow(2).mean()
        value = ctx.backward(loss)
        ctx.step()
        self._add("eps_mse", value, n)
        return value, n

    def train_step(self, batch: dict[str, torch.Tensor], ctx: Any) -> tuple[float, int]:
        if self.family == "vae":
            return self.vae_step(batch, ctx)
        if self.family == "ddpm":
            return self.ddpm_step(batch, ctx)
        cfg = self.cfg
        real = to_unit_range(batch["images"].to(self.device))
        n = real.shape[0]
        labels = batch["labels"].to(self.device) if self.conditional else None
        gen, disc = ctx.model, ctx.part("disc").model
        info = hasattr(unwrap_model(disc), "q_head")  # InfoGAN: D's Q head reads the codes
        # ---- discriminator step: real -> "real", detached fake -> "fake"
        z_d = self.draw(ctx, (n, self.noise_dim), 0)
        with torch.no_grad():
            fake = gen(z_d, labels)
        x_real, x_fake = real, fake
        if cfg.instance_noise:  # blurs the two distributions early, annealed to 0
            sigma = cfg.instance_noise * max(0.0, 1.0 - ctx.global_step / self.total_steps)
            x_real = real + sigma * self.draw(ctx, tuple(real.shape), 3)
            x_fake = fake + sigma * self.draw(ctx, tuple(real.shape), 4)
        targets = None
        if cfg.label_noise or cfg.label_flip:  # noisy / flipped targets keep D unsure
            u = self.draw(ctx, (n, 3), 5, uniform=True).T
            targets = d_targets(n, u, cfg.label_noise, cfg.label_flip)
        with ctx.autocast():
            if info:  # Q learns the codes of the detached fakes with D
                fake_logits, q_cat, q_cont = disc(x_fake, labels, with_q=True)
                mi = info_loss(q_cat, q_cont, *unwrap_model(gen).codes(z_d))
            else:
                fake_logits = disc(x_fake, labels)
            dl = d_loss(cfg.loss, disc(x_real, labels), fake_logits, cfg.label_smooth, targets)
            if info:
                dl = dl + cfg.info_weight * mi
            gp = None
            if cfg.gp_weight:
                bare = unwrap_model(disc)
                gp = gradient_penalty(
                    lambda x: bare(x, labels), real, fake, self.draw(ctx, (n,), 2, uniform=True)
                )
                dl = dl + cfg.gp_weight * gp
        d_value = float(dl.detach())
        if not np.isfinite(d_value):
            last = ctx.out / "last.pt"
            kept = f"; the last good checkpoint is {last}" if last.exists() else ""
            raise TrainingError(
                f"the discriminator loss is {d_value} at epoch {ctx.epoch + 1}, global step "
                f"{ctx.global_step + 1}{kept}. Lower d_lr/lr, add gp_weight or "
                "spectral_norm=true, or check the data."
            )
        ctx.backward(dl)
        ctx.step("disc")
        if cfg.clip_value:  # the original WGAN's Lipschitz constraint
            clip_weights_(unwrap_model(disc), cfg.clip_value)
        self._add("d_loss", d_value, n)
        if gp is not None:
            self._add("gp", float(gp.detach()), n)
        # ---- generator step (every n_critic-th batch): make D call its samples real
        if (ctx.global_step + 1) % cfg.n_critic == 0:
            z_g = self.draw(ctx, (n, self.noise_dim), 1)
            with ctx.autocast():
                if info:  # G keeps its codes readable: the MI term joins its loss
                    logits, q_cat, q_cont = disc(gen(z_g, labels), labels, with_q=True)
                    mi = info_loss(q_cat, q_cont, *unwrap_model(gen).codes(z_g))
                    gl = g_loss(cfg.loss, logits) + cfg.info_weight * mi
                    self._add("info", float(mi.detach()), n)
                else:
                    gl = g_loss(cfg.loss, disc(gen(z_g, labels), labels))
            self._add("g_loss", ctx.backward(gl), n)
            ctx.step("model")
            ctx.part("disc").opt.zero_grad(set_to_none=True)  # D's grads from the G step
        return d_value, n

    def _add(self, key: str, value: float, n: int) -> None:
        s = self.epoch_sums
        s[key] = s.get(key, 0.0) + value * n
        s[key + "#n"] = s.get(key + "#n", 0.0) + n

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        self.epoch_sums = {}

    def on_epoch_end(self, trainer: Any, epoch: int, row: dict[str, Any]) -> None:
        """G and D loss columns (means over the epoch, all ranks) and the fixed-noise grid."""
        for key in ("d_loss", "g_loss", "gp", "info", "recon", "kl", "sparsity", "eps_mse"):
            total = self.epoch_sums.get(key, 0.0)
            count = self.epoch_sums.get(key + "#n", 0.0)
            if trainer.distributed:
                total, count = distributed.all_reduce_sum(total), distributed.all_reduce_sum(count)
            if count:
                row[key] = total / count
        if self.cfg.plots and distributed.is_main_process():
            self.write_samples(
                trainer.eval_model, trainer.out / "plots" / f"samples_epoch{epoch + 1:03d}.png"
            )

    def fixed_noise(self, n: int, noise_dim: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The grid's noise (the same every epoch, from ``seed``) and its labels."""
        z = torch.randn(
            n, noise_dim, generator=torch.Generator().manual_seed(self.cfg.seed * 31 + 5)
        )
        labels = class_labels(n, len(self.classes)) if self.conditional else None
        return z, labels

    def write_samples(self, gen: nn.Module, path: Path) -> None:
        """A grid of ``sample_n`` samples; conditional models: one class per column."""
        n = self.cfg.sample_n
        cols = len(self.classes) if self.conditional else int(np.ceil(np.sqrt(n)))
        z, labels = self.fixed_noise(n, self.noise_dim)
        images = sample_images(
            gen, z.to(self.device), None if labels is None else labels.to(self.device)
        )
        write_png(path, image_grid(images, cols))

    def finish(self, trainer: Any, model: nn.Module, metrics: dict[str, Any]) -> None:
        if self.cfg.plots:
            plot_curves(trainer.history, trainer.out / "plots")
            self.write_samples(model, trainer.out / "plots" / "samples.png")
            if self.family == "vae":
                self.write_vae_grids(model, trainer.out / "plots")

    def write_vae_grids(self, vae: nn.Module, out: Path) -> None:
        """``reconstructions.png`` (val images over their reconstructions from μ) and
        ``interpolation.png`` (decoded points on the line between two images' μ)."""
        images, labels = self.val_pairs
        x = to_unit_range(images.to(self.device))
        y = labels.to(self.device) if self.conditional else None
        was = vae.training
        vae.eval()
        with torch.no_grad():
            mu, _ = vae.encoder(x, y)
            recon = vae(mu, y)
            t = torch.linspace(0, 1, 8, device=self.device)[:, None]
            starts = list(range(0, min(len(mu) - 1, 6), 2))  # pairs (0, 1), (2, 3), (4, 5)
            rows = [(1 - t) * mu[i] + t * mu[i + 1] for i in starts]
            path_y = None if y is None else torch.cat([y[i].repeat(8) for i in starts])
            interp = vae(torch.cat(rows), path_y) if rows else recon[:0]
        vae.train(was)
        write_png(out / "reconstructions.png", image_grid(torch.cat([x, recon]), len(x)))
        if len(interp):
            write_png(out / "interpolation.png", image_grid(interp, 8))

    # ------------------------------------------------------------------ evaluation
    def get_extractor(self) -> DomainExtractor | InceptionExtractor | None:
        """The ``fid_model`` classifier (loaded once), checked against the data's classes."""
        if self.cfg.fid_model and self.extractor is None:
            if is_inception_file(self.cfg.fid_model):  # classic Inception FID/KID
                self.extractor = InceptionExtractor.load(self.cfg.fid_model, self.device)
                return self.extractor
            ext = DomainExtractor.load(self.cfg.fid_model, self.device)
            if ext.classes != self.classes:
                raise ConfigError(
                    f"fid_model={self.cfg.fid_model} was trained on classes {ext.classes[:10]}, "
                    f"the data has {self.classes[:10]}; use a classifier of the same domain"
                )
            self.extractor = ext
        return self.extractor

    def eval_forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> Any:
        """One sample per val item, its noise keyed by the item's index (any sharding of
        the val set draws the same samples), conditioned on the item's label; with
        ``fid_model`` also both sets' features and the samples' logits. A DDPM samples with
        the config's ``sampler``/``steps``/``guidance`` when they are set."""
        set_sampling(model, self.cfg)
        z = torch.stack([
            torch.randn(self.noise_dim, generator=torch.Generator().manual_seed(int(i) * 2 + 1))
            for i in batch["index"]
        ]).to(self.device)  # fmt: skip
        labels = batch["labels"].to(self.device) if self.conditional else None
        out = {
            "fake": model(z, labels).float(),
            "real": to_unit_range(batch["images"].to(self.device)),
        }
        if self.family == "vae":  # the val images' -ELBO (β = 1), ε keyed by index too
            eps = torch.stack([
                torch.randn(self.noise_dim, generator=torch.Generator().manual_seed(int(i) * 2 + 2))
                for i in batch["index"]
            ]).to(self.device)  # fmt: skip
            recon_x, mu, logvar = model(out["real"], labels, eps=eps)
            recon, kl = vae_terms(recon_x, out["real"], mu, logvar, self.cfg.recon_std)
            out["neg_elbo"], out["recon"] = recon + kl, recon
            if self.ae_kind == "vae":  # the discrete ELBO of the 8-bit pixels
                out["bpd"] = vae_bits_per_dim(
                    out["real"], recon_x.float(), mu, logvar, self.cfg.recon_std
                )
            out["psnr"], out["ssim"] = reconstruction_quality(recon_x.float(), out["real"])
        if self.family == "ddpm":  # the val images' noise-prediction error, t and ε by index
            gens = [torch.Generator().manual_seed(int(i) * 2 + 2) for i in batch["index"]]
            steps = model.schedule.steps
            t = torch.tensor([int(torch.randint(steps, (1,), generator=g)) for g in gens])
            x0 = model.encode(out["real"], labels) if hasattr(model, "encode") else out["real"]
            noise = torch.stack([torch.randn(x0.shape[1:], generator=g) for g in gens])
            t, noise = t.to(self.device), noise.to(self.device)
            pred = model(model.schedule.q_sample(x0, t, noise), labels, t=t)
            out["eps_mse"] = (pred.float() - noise).pow(2).flatten(1).mean(1)
            if not self.latent:  # pixel space: the bound in bits/dim
                out["bpd"] = ddpm_bits_per_dim(model, out["real"], labels, gens, self.cfg.bpd_t)
        ext = self.get_extractor()
        if ext is not None:
            out["fake_feats"], out["fake_logits"] = ext(out["fake"])
            out["real_feats"], _ = ext(out["real"])
            if labels is not None:
                out["fake_labels"] = labels
        return out

    def build_evaluators(self) -> dict[str, Any]:
        evaluators: dict[str, Any] = {"moments": PixelMoments()}
        if self.family == "vae":
            if self.ae_kind == "vae":
                evaluators["elbo"] = MeanOf("neg_elbo", "val_neg_elbo")
                evaluators["bpd"] = MeanOf("bpd", "val_bpd")
            evaluators["recon"] = MeanOf("recon", "val_recon")
            evaluators["psnr"] = MeanOf("psnr", "val_psnr")
            evaluators["ssim"] = MeanOf("ssim", "val_ssim")
        if self.family == "ddpm":
            evaluators["eps"] = MeanOf("eps_mse", "val_eps_mse")
            if not self.latent:  # a latent model's bound would be in code space
                evaluators["bpd"] = MeanOf("bpd", "val_bpd")
        if self.get_extractor() is not None:
            cfg = self.cfg
            evaluators["fid"] = FIDEvaluator()
            evaluators["kid"] = KIDEvaluator(cfg.kid_subsets, cfg.kid_subset_size, cfg.seed)
            if not isinstance(self.get_extractor(), InceptionExtractor):  # same classes
                evaluators["classes"] = ConditionalAccuracy(len(self.classes))
        return evaluators

    # ------------------------------------------------------------------ predict
    @classmethod
    def predict(cls, cfg: GenerateConfig, out: Path) -> list[dict[str, Any]]:
        """``cvcraft predict generate weights=... n=64 class=3``: ``grid.png`` and one PNG per
        sample in ``images/``."""
        if cfg.n < 1:
            raise ConfigError(f"n={cfg.n} must be >= 1")
        device = select_device(cfg.device)
        gen, state = cls.load_model(cfg.weights, device)
        classes = list(state["classes"])
        conditional = bool(state.get("conditional", False))
        set_sampling(gen, cfg)
        if cfg.label >= 0 and not conditional:
            raise ConfigError(
                f"class={cfg.label}: {state['model_name']} in {cfg.weights} is unconditional; "
                "train a conditional model (model=cgan) to sample a class"
            )
        if cfg.label >= len(classes) or cfg.label < -1:
            raise ConfigError(
                f"class={cfg.label} is out of range: {cfg.weights} has {len(classes)} classes "
                f"(0..{len(classes) - 1}: {', '.join(classes[:10])})"
            )
        z = torch.randn(
            cfg.n, int(state["noise_dim"]), generator=torch.Generator().manual_seed(cfg.seed)
        )
        labels = class_labels(cfg.n, len(classes), cfg.label) if conditional else None
        images = sample_images(gen, z.to(device), None if labels is None else labels.to(device))
        cols = len(classes) if conditional and cfg.label < 0 else int(np.ceil(np.sqrt(cfg.n)))
        write_png(out / "grid.png", image_grid(images, min(cols, cfg.n)))
        arr = to_uint8(images).permute(0, 2, 3, 1).cpu().numpy()
        results = []
        for i, img in enumerate(arr):
            path = out / "images" / f"{i:05d}.png"
            write_png(path, img[..., 0] if img.shape[2] == 1 else img)
            cls_name = classes[int(labels[i])] if labels is not None else "-"
            results.append({"path": str(path), "summary": f"class {cls_name}", "class": cls_name})
        return results


def set_sampling(model: nn.Module, cfg: GenerateConfig) -> None:
    """Apply predict/val's ``sampler=``, ``steps=`` and ``guidance=`` to a DDPM (a key a
    model family does not have is an error, not ignored)."""
    changed = {k: getattr(cfg, k) for k in ("sampler", "steps") if getattr(cfg, k)}
    if cfg.guidance != 1.0:
        changed["guidance"] = cfg.guidance
    if not changed:
        return
    if getattr(model, "family", "") != "ddpm":
        raise ConfigError(
            f"{', '.join(f'{k}=' for k in changed)}: only diffusion models (ddpm, cddpm) have "
            "a sampler, steps or guidance"
        )
    if "guidance" in changed and not model.conditional:
        raise ConfigError("guidance= needs a class-conditional DDPM (model=cddpm)")
    if cfg.sampler:
        model.sampler = cfg.sampler
    if cfg.steps:
        model.schedule.ddim_timesteps(cfg.steps)  # in 1..T, or a clear error
        model.sample_steps = cfg.steps
    model.guidance = cfg.guidance
