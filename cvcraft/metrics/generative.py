"""Scores of a generative model from the features of an extractor network: FID, KID, and —
with a classifier — conditional accuracy and the per-class histogram of samples.

- FID (Heusel et al. 2017): the Fréchet distance of Gaussians fitted to real and generated
  features, ‖μr - μg‖² + Tr(Σr + Σg - 2 (Σr^½ Σg Σr^½)^½). With a classifier trained on the
  same domain as extractor (no Inception weights here) it is "domain-FID": comparable
  between models scored by the same extractor, not with published Inception FIDs.
- KID (Bińkowski et al. 2018): the unbiased MMD² with the kernel k(x, y) = (xᵀy / d + 1)³,
  averaged over random subsets; unbiased, so usable with few samples.
- Conditional accuracy: an independent classifier's top-1 on samples drawn for a class;
  the class histogram of what it sees shows mode collapse (a class with ~0 share).

Each is an evaluator (``reset / update(batch, outputs) / state_dict / merge / compute``)
whose ``update`` receives ``outputs`` as a dict with ``fake_feats`` / ``real_feats`` (N, D)
and, for the classifier ones, ``fake_logits`` (N, K) and ``fake_labels`` (N,).
"""

from __future__ import annotations

from typing import Any

import torch

from cvcraft.errors import ConfigError


def frechet_distance(
    mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor
) -> float:
    """‖μ1 - μ2‖² + Tr Σ1 + Tr Σ2 - 2 Tr (Σ1^½ Σ2 Σ1^½)^½ in float64 (symmetric square roots
    by eigendecomposition; tiny negative eigenvalues from round-off are clamped to 0)."""
    mu1, mu2, s1, s2 = (t.double() for t in (mu1, mu2, sigma1, sigma2))
    lam, vec = torch.linalg.eigh(s1)
    s1_half = (vec * lam.clamp_min(0).sqrt()) @ vec.T
    cross = torch.linalg.eigvalsh(s1_half @ s2 @ s1_half).clamp_min(0).sqrt().sum()
    return float((mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2 * cross)


def poly_mmd2(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD² of two feature sets (m, D), (n, D) with k(x, y) = (xᵀy / D + 1)³:
    mean off-diagonal k(r, r') + mean off-diagonal k(f, f') - 2 mean k(r, f)."""
    d = real.shape[1]
    k_rr = (real @ real.T / d + 1) ** 3
    k_ff = (fake @ fake.T / d + 1) ** 3
    k_rf = (real @ fake.T / d + 1) ** 3
    m, n = len(real), len(fake)
    rr = (k_rr.sum() - k_rr.diagonal().sum()) / (m * (m - 1))
    ff = (k_ff.sum() - k_ff.diagonal().sum()) / (n * (n - 1))
    return rr + ff - 2 * k_rf.mean()


def kernel_inception_distance(
    real: torch.Tensor,
    fake: torch.Tensor,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID mean and std over ``subsets`` random subsets of ``min(subset_size, m, n)`` rows
    of each set (drawn without replacement from a generator seeded with ``seed``)."""
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ConfigError(
            f"KID needs >= 2 real and generated samples, got {len(real)}, {len(fake)}"
        )
    g = torch.Generator().manual_seed(seed)
    real, fake = real.double(), fake.double()
    vals = torch.stack([
        poly_mmd2(real[torch.randperm(len(real), generator=g)[:size]],
                  fake[torch.randperm(len(fake), generator=g)[:size]])
        for _ in range(subsets)
    ])  # fmt: skip
    return float(vals.mean()), float(vals.std(unbiased=False)) if subsets > 1 else 0.0


class GaussianStats:
    """Running n, Σx, Σxxᵀ of a feature set (float64); merged by addition."""

    def __init__(self) -> None:
        self.n = 0
        self.s1: torch.Tensor | None = None
        self.s2: torch.Tensor | None = None

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().double().cpu().flatten(1)
        s1, s2 = x.sum(0), x.T @ x
        self.s1 = s1 if self.s1 is None else self.s1 + s1
        self.s2 = s2 if self.s2 is None else self.s2 + s2
        self.n += len(x)

    def merge(self, other: dict[str, Any]) -> None:
        if other["n"]:
            self.add_sums(other["n"], other["s1"], other["s2"])

    def add_sums(self, n: int, s1: torch.Tensor, s2: torch.Tensor) -> None:
        self.s1 = s1 if self.s1 is None else self.s1 + s1
        self.s2 = s2 if self.s2 is None else self.s2 + s2
        self.n += n

    def state(self) -> dict[str, Any]:
        return {"n": self.n, "s1": self.s1, "s2": self.s2}

    def mean_cov(self) -> tuple[torch.Tensor, torch.Tensor]:
        """μ and the unbiased covariance (Σxxᵀ - n μμᵀ) / (n - 1)."""
        if self.n < 2 or self.s1 is None or self.s2 is None:
            raise ConfigError(f"FID needs >= 2 samples per set, got {self.n}")
        mu = self.s1 / self.n
        return mu, (self.s2 - self.n * torch.outer(mu, mu)) / (self.n - 1)


class FIDEvaluator:
    """Fréchet distance between real and generated features (``fid``; lower is better)."""

    def reset(self) -> None:
        self.real, self.fake = GaussianStats(), GaussianStats()

    def update(self, batch: Any, outputs: dict[str, torch.Tensor]) -> None:
        self.real.add(outputs["real_feats"])
        self.fake.add(outputs["fake_feats"])

    def state_dict(self) -> dict[str, Any]:
        return {"real": self.real.state(), "fake": self.fake.state()}

    def merge(self, state: dict[str, Any]) -> None:
        self.real.merge(state["real"])
        self.fake.merge(state["fake"])

    def compute(self) -> dict[str, Any]:
        mr, sr = self.real.mean_cov()
        mf, sf = self.fake.mean_cov()
        return {"fid": frechet_distance(mr, sr, mf, sf)}


class KIDEvaluator:
    """Kernel inception distance (``kid`` mean and ``kid_std``) over random subsets."""

    def __init__(self, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> None:
        self.subsets, self.subset_size, self.seed = subsets, subset_size, seed

    def reset(self) -> None:
        self.real: list[torch.Tensor] = []
        self.fake: list[torch.Tensor] = []

    def update(self, batch: Any, outputs: dict[str, torch.Tensor]) -> None:
        self.real.append(outputs["real_feats"].detach().float().cpu().flatten(1))
        self.fake.append(outputs["fake_feats"].detach().float().cpu().flatten(1))

    def state_dict(self) -> dict[str, Any]:
        return {"real": self.real, "fake": self.fake}

    def merge(self, state: dict[str, Any]) -> None:
        self.real += state["real"]
        self.fake += state["fake"]

    def compute(self) -> dict[str, Any]:
        mean, std = kernel_inception_distance(
            torch.cat(self.real), torch.cat(self.fake), self.subsets, self.subset_size, self.seed
        )
        return {"kid": mean, "kid_std": std}


class ConditionalAccuracy:
    """Top-1 of an independent classifier on samples drawn for a class (``cond_acc``), and
    the share of samples it assigns to each class (``class_hist``, ``min_class_share``)."""

    def __init__(self, num_classes: int) -> None:
        if num_classes < 1:
            raise ConfigError(f"num_classes={num_classes} must be >= 1")
        self.num_classes = num_classes

    def reset(self) -> None:
        self.correct = 0
        self.labelled = 0
        self.n = 0
        self.hist = torch.zeros(self.num_classes, dtype=torch.int64)

    def update(self, batch: Any, outputs: dict[str, torch.Tensor]) -> None:
        logits = outputs["fake_logits"]
        if logits.shape[1] != self.num_classes:
            raise ConfigError(
                f"the classifier gives {logits.shape[1]} classes, the generator {self.num_classes}"
            )
        pred = logits.argmax(1).cpu()
        labels = outputs.get("fake_labels")
        if labels is not None:
            self.correct += int((pred == labels.cpu()).sum())
            self.labelled += len(pred)
        self.hist += torch.bincount(pred, minlength=self.num_classes)
        self.n += len(pred)

    def state_dict(self) -> dict[str, Any]:
        return {"correct": self.correct, "labelled": self.labelled, "n": self.n, "hist": self.hist}

    def merge(self, state: dict[str, Any]) -> None:
        self.correct += state["correct"]
        self.labelled += state["labelled"]
        self.n += state["n"]
        self.hist += state["hist"]

    def compute(self) -> dict[str, Any]:
        share = (self.hist.double() / max(self.n, 1)).tolist()
        out: dict[str, Any] = {"class_hist": share, "min_class_share": min(share)}
        if self.labelled:  # conditional samples: did each land in the class it was drawn for
            out["cond_acc"] = self.correct / self.labelled
        return out
