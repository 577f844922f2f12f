import os
from pathlib import Path

import cv2
import numpy as np
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


def present_or_skip(path: Path, what: str) -> Path:
    """``path`` if it exists; missing, a failure where the shared data is required (CI) and a
    skip elsewhere, so a renamed or lost file cannot turn CI's check into a skip."""
    if not path.exists():
        if shared_data_required():
            pytest.fail(f"{what} {path} is absent but CI / CVCRAFT_REQUIRE_DATA requires it: "
                        "put the shared data there")  # fmt: skip
        pytest.skip(f"{what} {path} is absent (only on the project machines)")
    return path


@pytest.fixture
def shared_data() -> Path:
    return present_or_skip(SHARED_DATA, "shared data folder")


@pytest.fixture
def require_shared():
    """``require_shared(path)``: a file or folder under the shared data that a test needs
    (:func:`present_or_skip`)."""
    return lambda path: present_or_skip(path, "shared data file")


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


EASY_COLOURS = ((200, 40, 40), (40, 170, 40), (40, 60, 210), (190, 190, 60))


def write_easy_folder(root: Path, per_class: int = 16, size: int = 32, seed: int = 0) -> Path:
    """An ImageFolder any classifier learns in a few steps: class k is noisy colour
    ``EASY_COLOURS[k]`` (per-image brightness shift +-30, per-pixel noise sd 25), so a
    learning threshold far above chance (1/4) tells a broken optimizer, loss or label
    pipeline from a working one in seconds. Returns ``root``."""
    rng = np.random.default_rng(seed)
    for k, colour in enumerate(EASY_COLOURS):
        (root / f"c{k}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shift = rng.uniform(-30, 30)
            img = np.asarray(colour, np.float64) + shift + rng.normal(0, 25, (size, size, 3))
            bgr = np.clip(img, 0, 255).astype(np.uint8)[..., ::-1]
            cv2.imwrite(str(root / f"c{k}" / f"{i}.png"), bgr)
    return root


@pytest.fixture
def easy_folder(tmp_path) -> Path:
    """:func:`write_easy_folder` with 16 images per class (64 images, 4 classes)."""
    return write_easy_folder(tmp_path / "easy")


@pytest.fixture(scope="session")
def easy_folder_session(tmp_path_factory) -> Path:
    """The same folder once per session, for module-scoped fixtures (read it, never write)."""
    return write_easy_folder(tmp_path_factory.mktemp("easy_session") / "easy")


EASY_CHROMA = ((40, -20, -20), (-20, 40, -20), (-20, -20, 40), (30, 30, -60))


def write_easy_chroma_folder(
    root: Path, per_class: int = 32, size: int = 32, seed: int = 0
) -> Path:
    """An ImageFolder for metric learning: class k is grey 128 plus the chroma offset
    ``EASY_CHROMA[k]``, and every image gets a random brightness shift of +-90 (all channels)
    and per-pixel noise sd 20. The shift is larger than the chroma differences, so an
    untrained network's features (close to pixel distances) rank by brightness, while one
    linear direction (brightness out) separates the classes: a few steps of training learn
    it. (The colour folder above is no use for retrieval: random features already retrieve
    its colours.) Returns ``root``."""
    rng = np.random.default_rng(seed)
    for k, offset in enumerate(EASY_CHROMA):
        (root / f"c{k}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = 128.0 + np.asarray(offset, np.float64) + rng.uniform(-90, 90)
            img = img + rng.normal(0, 20, (size, size, 3))
            bgr = np.clip(img, 0, 255).astype(np.uint8)[..., ::-1]
            cv2.imwrite(str(root / f"c{k}" / f"{i}.png"), bgr)
    return root


@pytest.fixture
def easy_chroma_folder(tmp_path) -> Path:
    """:func:`write_easy_chroma_folder` with 32 images per class (128 images, 4 classes)."""
    return write_easy_chroma_folder(tmp_path / "easy_chroma")


def write_easy_segmentation(root: Path, n: int = 24, size: int = 32, seed: int = 0) -> Path:
    """A mask dataset any segmenter learns in a few steps: a noisy grey background (class 0)
    and two axis-aligned rectangles of side 10-18 whose class k+1 is the noisy colour
    ``EASY_COLOURS[k]`` (k in 0..3), so each pixel's colour gives its class. Writes
    ``train/`` (``n`` images) and ``val/`` (``n // 3``) with ``images/`` + ``masks/`` and a
    ``data.yaml`` naming the 5 classes. Returns the YAML's path."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", n), ("val", n // 3)):
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "masks").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            img = np.full((size, size, 3), 128.0) + rng.uniform(-30, 30)
            mask = np.zeros((size, size), np.uint8)
            for k in rng.choice(len(EASY_COLOURS), 2, replace=False):
                w, h = rng.integers(10, 19, 2)
                x, y = rng.integers(0, size - w + 1), rng.integers(0, size - h + 1)
                img[y : y + h, x : x + w] = np.asarray(EASY_COLOURS[k]) + rng.uniform(-30, 30)
                mask[y : y + h, x : x + w] = k + 1
            img = np.clip(img + rng.normal(0, 25, img.shape), 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / split / "images" / f"{i}.png"), img[..., ::-1])
            cv2.imwrite(str(root / split / "masks" / f"{i}.png"), mask)
    names = ", ".join(["background"] + [f"c{k}" for k in range(len(EASY_COLOURS))])
    (root / "data.yaml").write_text(
        "train: {images: train/images, masks: train/masks}\n"
        "val: {images: val/images, masks: val/masks}\n"
        f"classes: [{names}]\n"
    )
    return root / "data.yaml"


@pytest.fixture
def easy_segmentation(tmp_path) -> Path:
    """:func:`write_easy_segmentation` (24 train / 8 val images, 5 classes): its data.yaml."""
    return write_easy_segmentation(tmp_path / "easy_seg")


def write_easy_detection(
    root: Path, n: int = 32, size: int = 64, seed: int = 0, classes: int = 3, polygons: bool = False
) -> Path:
    """A YOLO-format detection set any detector learns in a few steps: one big noisy square
    (side 3/8 to 5/8 of ``size``: 24-40 px at 64) per image on a noisy grey background, its class k
    the colour ``EASY_COLOURS[k]`` (k < ``classes``). Writes ``images/{train,val}`` and
    ``labels/{train,val}`` (``n`` train, ``n // 4`` val images) and ``data.yaml``. With
    ``polygons`` each label is a YOLO-seg line (the class, then the square's four corners), an
    instance segmentation set whose mask is the square. Returns the YAML's path."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", n), ("val", max(1, n // 4))):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            img = np.full((size, size, 3), 128.0) + rng.uniform(-30, 30)
            k = int(rng.integers(classes))
            side = int(rng.integers(3 * size // 8, 5 * size // 8 + 1))
            x, y = rng.integers(0, size - side + 1, 2)
            img[y : y + side, x : x + side] = np.asarray(EASY_COLOURS[k]) + rng.uniform(-30, 30)
            img = np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / "images" / split / f"{i}.png"), img[..., ::-1])
            c = (x + side / 2) / size, (y + side / 2) / size, side / size
            line = f"{k} {c[0]:.6f} {c[1]:.6f} {c[2]:.6f} {c[2]:.6f}\n"
            if polygons:
                x0, y0, x1, y1 = x / size, y / size, (x + side) / size, (y + side) / size
                corners = (x0, y0, x1, y0, x1, y1, x0, y1)
                line = f"{k} " + " ".join(f"{v:.6f}" for v in corners) + "\n"
            (root / "labels" / split / f"{i}.txt").write_text(line)
    names = ", ".join(f"c{k}" for k in range(classes))
    (root / "data.yaml").write_text(
        f"path: {root}\ntrain: images/train\nval: images/val\nnames: [{names}]\n"
    )
    return root / "data.yaml"


@pytest.fixture
def easy_detection(tmp_path) -> Path:
    """:func:`write_easy_detection` (32 train / 8 val images of 64 px, 3 classes): its YAML."""
    return write_easy_detection(tmp_path / "easy_det")


@pytest.fixture
def easy_instance(tmp_path) -> Path:
    """:func:`write_easy_detection` with YOLO-seg polygons (each mask is its square): its YAML."""
    return write_easy_detection(tmp_path / "easy_inst", polygons=True)


@pytest.fixture
def easy_detection_128(tmp_path) -> Path:
    """:func:`write_easy_detection` at 128 px (for stride-128 detectors such as FCOS)."""
    return write_easy_detection(tmp_path / "easy_det_128", size=128)
