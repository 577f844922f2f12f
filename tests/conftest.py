import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

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


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent (only on the project machines)")
    return SHARED_DATA
