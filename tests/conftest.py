import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

# Two cores on CI: one intra-op thread per test keeps parallel helpers and data workers sane.
torch.set_num_threads(int(os.environ.get("CVCRAFT_TEST_THREADS", "1")))

# Hypothesis draws the same examples every run (a failure reproduces) and has no per-example
# deadline unless a test sets one (a shared 2-core machine makes timings noisy).
settings.register_profile("cvcraft", derandomize=True, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "cvcraft"))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _restore_torch_determinism():
    """A Trainer with deterministic=true switches torch's global flag on; later tests in the
    same process must not inherit it."""
    was = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(was)


def shared_data_required() -> bool:
    """In CI the shared data exists, so a missing folder is a failure there, not a skip
    (``CI`` is set by CI services; ``CVCRAFT_REQUIRE_DATA=1`` forces it anywhere)."""
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes") for k in
               ("CI", "CVCRAFT_REQUIRE_DATA"))  # fmt: skip


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        if shared_data_required():
            pytest.fail(f"shared data folder {SHARED_DATA} is absent but CI / "
                        "CVCRAFT_REQUIRE_DATA requires it: put the data there")  # fmt: skip
        pytest.skip(f"shared data folder {SHARED_DATA} is absent (only on the project machines)")
    return SHARED_DATA


def randomize_norms_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random normalisation statistics and affine parameters, in place: BatchNorm (and
    torchvision's FrozenBatchNorm2d) running mean/var, weight and bias; LayerNorm/GroupNorm
    (and any ``*Norm*`` module with a 1-D weight) weight and bias.

    At initialisation eval-mode BN is the identity up to eps and LayerNorm's affine is 1/0,
    so a parity test on a fresh model cannot see a skipped, swapped or mis-mapped norm (a
    BN/ReLU swap in a ResNet stem passes). Call it on the *reference* before copying its
    weights into ours, so both sides share the random values.
    """
    g = torch.Generator().manual_seed(seed)

    def fill(t: torch.Tensor, lo: float, hi: float) -> None:
        t.copy_(torch.rand(t.shape, generator=g, dtype=torch.float64) * (hi - lo) + lo)

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm | FrozenBatchNorm2d):
                if m.running_mean is not None:
                    fill(m.running_mean, -0.2, 0.2)
                    fill(m.running_var, 0.5, 1.5)
            is_norm = isinstance(
                m, nn.modules.batchnorm._NormBase | nn.LayerNorm | nn.GroupNorm | FrozenBatchNorm2d
            ) or ("Norm" in type(m).__name__ and "Normali" not in type(m).__name__)
            w, b = getattr(m, "weight", None), getattr(m, "bias", None)
            if is_norm and isinstance(w, torch.Tensor) and w.ndim == 1:
                fill(w, 0.6, 1.4)
                if isinstance(b, torch.Tensor):
                    fill(b, -0.2, 0.2)
    return model


@pytest.fixture(scope="session")
def randomize_bn():
    """``randomize_bn(model, seed=0)``: :func:`randomize_norms_` for any test (BatchNorm stats
    and affine, LayerNorm/GroupNorm affine), in place; returns the model."""
    return randomize_norms_
