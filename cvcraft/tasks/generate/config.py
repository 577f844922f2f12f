"""The ``generate`` task's keys: the shared training keys with GAN defaults, plus the
objective, the discriminator's optimizer (TTUR) and the stability tricks, each with why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cvcraft.engine.config import TrainConfig, _opt
from cvcraft.errors import ConfigError


@dataclass
class GenerateConfig(TrainConfig):
    """``cvcraft train generate``: a GAN's generator (primary model, EMA) and discriminator."""

    # the class index to sample in predict: ``class=3`` on the command line (a Python keyword
    # cannot be a field name; ``aliases`` maps it)
    aliases = {"class": "label"}

    data: str = _opt("shapes:2000", "images: 'shapes[:N]', an MNIST IDX folder, image folders")
    model: str = _opt("dcgan", "generative model: dcgan | cgan | mlp_gan (`cvcraft models`)")
    model_kwargs: dict = _opt({}, "extra model options, e.g. {width: 32}")
    imgsz: int = _opt(32, "image size (square); the data is resized to it")
    channels: str = _opt(
        "auto", "1 (grey) or 3 (RGB); auto: grey when every image is", ("auto", "1", "3")
    )
    noise_dim: int = _opt(64, "generator noise size")
    loss: str = _opt(
        "bce",
        "GAN objective: bce (non-saturating), hinge, wgan (needs gp_weight > 0)",
        ("bce", "hinge", "wgan"),
    )
    gp_weight: float = _opt(0.0, "WGAN-GP gradient penalty λ (10 in the paper; 0 = off)")
    spectral_norm: bool = _opt(False, "spectral norm on every D layer (1-Lipschitz D)")
    d_norm: str = _opt(
        "auto", "BN in D: auto = batch unless gp/spectral norm", ("auto", "batch", "none")
    )
    n_critic: int = _opt(1, "D steps per G step (5 for WGAN-GP)")
    d_lr: float = _opt(0.0, "discriminator lr (TTUR: often 2-4x lr); 0 = lr")
    betas: list = _opt([0.5, 0.999], "Adam betas of both networks (DCGAN: 0.5; WGAN-GP: 0, 0.9)")
    label_smooth: float = _opt(0.0, "one-sided label smoothing: real target 1 - s (bce only)")
    cond_drop: float = _opt(
        0.0, "conditional DDPM: drop a label to 'none' with this probability (0.1 enables guidance)"
    )
    guidance: float = _opt(
        1.0,
        "predict/val, conditional DDPM: classifier-free guidance w (1 = off, 0 = ignore labels)",
    )
    sampler: str = _opt("", "predict/val, DDPM: ddim | ddpm (default: the checkpoint's)")
    steps: int = _opt(0, "predict/val, DDPM DDIM sampling steps (0 = the checkpoint's)")
    label_noise: float = _opt(
        0.0, "noisy labels: D's targets drawn in [1 - s, 1] (real) / [0, s] (fake) (bce only)"
    )
    label_flip: float = _opt(
        0.0, "label flipping: swap a sample's real/fake target for D with this probability (bce)"
    )
    info_weight: float = _opt(1.0, "InfoGAN: weight λ of the mutual-information term")
    clip_value: float = _opt(
        0.0, "WGAN weight clipping: every D weight in [-c, c] after each D step (0.01; 0 = off)"
    )
    instance_noise: float = _opt(0.0, "std of Gaussian noise added to D's inputs, annealed to 0")
    beta: float = _opt(1.0, "VAE: weight of the KL term (β-VAE: > 1 disentangles, blurs)")
    recon_std: float = _opt(
        1.0,
        "VAE: σ of the Gaussian decoder N(x̂, σ²) ([-1, 1] units): loss ‖x̂ - x‖²/2σ², bits/dim",
    )
    bpd_t: int = _opt(
        8, "DDPM val bits/dim: stratified timesteps per image for the bound's sum (T-1 = exact)"
    )
    sparsity: float = _opt(1e-2, "sparse_ae: weight of the activation penalty")
    sparsity_kind: str = _opt("kl", "sparse_ae penalty: kl (to rho) | l1", ("kl", "l1"))
    rho: float = _opt(0.05, "sparse_ae: target mean activation of a code unit (kl)")
    noise_std: float = _opt(0.3, "denoising_ae: std of the Gaussian noise on the input ([-1, 1])")
    kl_warmup: float = _opt(
        1.0,
        "VAE: epochs over which β ramps from 0 (the decoder learns before KL pulls q to the prior)",
    )
    first_stage: str = _opt(
        "", "ldm/cldm: a trained `generate` vae or ae run's best.pt whose codes the DDPM learns"
    )
    fid_model: str = _opt(
        "", "a `cvcraft train classify` checkpoint of the same domain: domain-FID/KID, cond_acc"
    )
    kid_subsets: int = _opt(100, "KID: number of random subsets")
    kid_subset_size: int = _opt(1000, "KID: samples per subset (capped by the val set)")
    sample_n: int = _opt(64, "fixed-noise samples drawn into plots/ each epoch")
    n: int = _opt(64, "predict: number of images to generate")
    label: int = _opt(-1, "predict: class to sample (class= works too); -1 = all classes in turn")
    # GAN-friendly defaults of the shared keys
    epochs: int = _opt(10, "number of training epochs")
    batch: int = _opt(64, "batch size")
    optimizer: str = _opt("adam", "optimizer", "cvcraft.engine.optim:OPTIMIZERS")
    lr: float = _opt(2e-4, "generator learning rate")
    weight_decay: float = _opt(0.0, "weight decay")
    schedule: str = _opt("constant", "LR schedule", "cvcraft.engine.schedules:SCHEDULES")
    warmup_epochs: float = _opt(0.0, "linear warmup length in epochs")
    ema: bool = _opt(True, "EMA of the generator (smoother samples; best.pt holds it)")
    ema_decay: float = _opt(0.999, "EMA decay")
    ema_tau: float = _opt(100.0, "EMA warmup: decay ramps as 1 - exp(-updates / tau)")
    val_raw: bool = _opt(False, "also evaluate the raw generator (raw_* columns)")
    workers: int = _opt(0, "data-loading workers (the images are held in memory)")

    def check(self) -> None:
        if self.loss == "wgan" and self.gp_weight <= 0 and self.clip_value <= 0:
            raise ConfigError(
                "loss=wgan needs a Lipschitz constraint: set gp_weight=10 (WGAN-GP) or "
                "clip_value=0.01 (the original WGAN, with optimizer=rmsprop lr=5e-5)"
            )
        if (self.label_noise or self.label_flip) and self.loss != "bce":
            raise ConfigError(
                f"label_noise/label_flip change BCE targets; loss={self.loss} has none "
                "(use loss=bce, or drop them)"
            )
        if not 0.0 < self.rho < 1.0 or self.sparsity < 0 or self.noise_std < 0:
            raise ConfigError(
                f"rho={self.rho} must be in (0, 1), sparsity={self.sparsity} and "
                f"noise_std={self.noise_std} >= 0"
            )
        if not 0.0 <= self.cond_drop < 1.0:
            raise ConfigError(f"cond_drop={self.cond_drop} must be in [0, 1)")
        if self.sampler not in ("", "ddim", "ddpm"):
            raise ConfigError(f"sampler={self.sampler!r} is not one of ddim, ddpm")
        if self.steps < 0 or self.guidance < 0:
            raise ConfigError(f"steps={self.steps} and guidance={self.guidance} must be >= 0")
        for key in ("label_noise", "label_flip"):
            if not 0.0 <= getattr(self, key) < 0.5:
                raise ConfigError(f"{key}={getattr(self, key)} must be in [0, 0.5)")
        if self.recon_std <= 0:
            raise ConfigError(f"recon_std={self.recon_std} must be > 0 (the decoder's σ)")
        for key in ("noise_dim", "n_critic", "sample_n", "n", "kid_subsets", "kid_subset_size",
                    "bpd_t"):  # fmt: skip
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}={getattr(self, key)} must be >= 1")
        for key in ("gp_weight", "d_lr", "instance_noise", "beta", "kl_warmup", "clip_value",
                    "info_weight"):  # fmt: skip
            if getattr(self, key) < 0:
                raise ConfigError(f"{key}={getattr(self, key)} must be >= 0")
        if not 0.0 <= self.label_smooth < 0.5:
            raise ConfigError(f"label_smooth={self.label_smooth} must be in [0, 0.5)")
        if len(self.betas) != 2 or not all(0.0 <= float(b) < 1.0 for b in self.betas):
            raise ConfigError(
                f"betas={self.betas} must be two numbers in [0, 1), e.g. [0.5, 0.999]"
            )

    def disc_norm(self) -> str:
        """D's normalisation: BN breaks the per-sample gradient penalty and fights spectral
        norm's Lipschitz bound, so auto turns it off for those."""
        if self.d_norm != "auto":
            return self.d_norm
        return "none" if self.gp_weight > 0 or self.spectral_norm else "batch"

    def model_options(self) -> dict[str, Any]:
        """What the model constructor takes from these keys (model_kwargs last)."""
        return {
            "img_size": self.imgsz,
            "noise_dim": self.noise_dim,
            "d_norm": self.disc_norm(),
            "spectral_norm": self.spectral_norm,
            **dict(self.model_kwargs or {}),
        }
