"""The FixMatch keys' checks (kept apart from ``semi.py`` so reading a config imports no
data or model code)."""

from __future__ import annotations

from typing import Any

from cvcraft.errors import ConfigError

SEMI_METHODS = ("", "fixmatch", "pseudolabel", "meanteacher")


def check_semi(cfg: Any) -> None:
    """The FixMatch keys' ranges, and the options it cannot be combined with."""
    if cfg.semi not in SEMI_METHODS:
        raise ConfigError(
            f"semi={cfg.semi!r} must be fixmatch, pseudolabel, meanteacher or '' (off)"
        )
    if cfg.labels_per_class < 0 or (cfg.labels_per_class and cfg.labeled):
        raise ConfigError(
            f"labels_per_class={cfg.labels_per_class}: a count >= 0, and not together with "
            "labeled= (give one of them)"
        )
    if not cfg.semi:
        if cfg.labeled or cfg.unlabeled or cfg.labels_per_class:
            raise ConfigError("labeled=/unlabeled= are semi-supervised keys; add semi=fixmatch")
        return
    if not 0.0 <= cfg.tau <= 1.0:
        raise ConfigError(f"tau={cfg.tau} must be in [0, 1]")
    if cfg.mu < 1 or cfg.lambda_u < 0:
        raise ConfigError(
            f"need mu >= 1 and lambda_u >= 0, got mu={cfg.mu}, lambda_u={cfg.lambda_u}"
        )
    if cfg.labeled < 0 or (cfg.labeled > 1 and cfg.labeled != int(cfg.labeled)):
        raise ConfigError(
            f"labeled={cfg.labeled}: a count of labelled images (e.g. 4000) or a fraction in (0, 1]"
        )
    if cfg.semi == "meanteacher" and not cfg.ema:
        raise ConfigError(
            "semi=meanteacher's teacher is the EMA of the weights: add ema=true "
            "(ema_decay=0.999 as in the paper)"
        )
    if not cfg.labeled and not cfg.unlabeled and not cfg.labels_per_class:
        raise ConfigError(f"semi={cfg.semi} needs labeled=N|fraction and/or unlabeled=PATH")
    others = {
        "mixup_alpha/cutmix_alpha": cfg.mixup_alpha or cfg.cutmix_alpha,
        "adv": cfg.adv,
        "teacher": cfg.teacher,
        "sampler": cfg.sampler != "random",
        "folds": cfg.folds,
    }
    clash = [k for k, on in others.items() if on]
    if clash:
        raise ConfigError(f"semi={cfg.semi} cannot be combined with {', '.join(clash)}; drop them")
