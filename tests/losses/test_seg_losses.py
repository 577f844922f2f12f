"""Segmentation losses against segmentation-models-pytorch and hand-computed references."""

import pytest
import torch
import torch.nn.functional as F

from cvcraft.errors import ConfigError
from cvcraft.losses import build_loss
from cvcraft.losses.segmentation import (
    DeepSupervisionLoss,
    build_segmentation_loss,
    dice_loss,
    lovasz_softmax,
)


def _smp_losses():
    """segmentation_models_pytorch is an oracle from the bench extra; only the two parity
    tests need it, the hand-computed ones run everywhere."""
    return pytest.importorskip("segmentation_models_pytorch.losses")


def _data(seed=0, n=2, k=4, h=8, w=9, ignore_frac=0.2):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, h, w, generator=g, dtype=torch.float64)
    target = torch.randint(0, k, (n, h, w), generator=g)
    target[torch.rand(n, h, w, generator=g) < ignore_frac] = 255
    return logits, target


def test_dice_matches_smp_multiclass():
    smp_losses = _smp_losses()
    logits, target = _data()
    # every class present -> smp's mean over all classes equals our mean over present ones
    ref = smp_losses.DiceLoss("multiclass", from_logits=True, ignore_index=255, eps=1e-7)
    ours = dice_loss(logits, target)
    assert torch.allclose(ours, ref(logits, target), atol=1e-10)


def test_dice_hand_computed_and_ignore():
    # 1 image, 2 classes, 2 valid pixels + 1 ignored pixel with a confident wrong prediction
    logits = torch.tensor([[[[0.0, 0.0, 50.0]], [[0.0, 0.0, -50.0]]]], dtype=torch.float64)
    target = torch.tensor([[[0, 1, 255]]])
    # p = 0.5 everywhere valid: class 0 inter 0.5, card 1 + 1 -> dice 0.5; same for class 1
    assert torch.allclose(dice_loss(logits, target), torch.tensor(0.5, dtype=torch.float64))
    # changing the ignored pixel's logits changes nothing
    logits2 = logits.clone()
    logits2[0, :, 0, 2] = torch.tensor([-9.0, 9.0])
    assert torch.equal(dice_loss(logits, target), dice_loss(logits2, target))


def test_lovasz_matches_smp():
    smp_losses = _smp_losses()
    logits, target = _data(1, n=2, k=3, h=6, w=7)
    logits = logits.float()  # smp's Lovasz mixes in float32 internally
    ref = smp_losses.LovaszLoss("multiclass", per_image=False, ignore_index=255, from_logits=True)
    assert torch.allclose(lovasz_softmax(logits, target), ref(logits, target), atol=1e-6)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("present_only", [True, False])
def test_lovasz_matches_smp_on_random_inputs_with_an_absent_class(seed, present_only):
    """Random logits (with exact error ties from repeated logits), a class absent from the
    target, both class reductions: smp's ``classes="present"`` / ``"all"``."""
    _smp_losses()
    from segmentation_models_pytorch.losses.lovasz import _lovasz_softmax

    g = torch.Generator().manual_seed(seed)
    n, k, h, w = 2, 5, 7, 6
    logits = torch.randn(n, k, h, w, generator=g) * (1 + seed)
    logits[:, :, :, :2] = logits[:, :, :1, :2]  # repeated columns: tied errors in the sort
    target = torch.randint(0, k - 1, (n, h, w), generator=g)  # class k-1 absent
    target[torch.rand(n, h, w, generator=g) < 0.15] = 255
    ref = _lovasz_softmax(
        logits.softmax(1), target, classes="present" if present_only else "all", ignore=255
    )
    ours = lovasz_softmax(logits, target, present_only=present_only)
    assert torch.allclose(ours, ref.to(ours), atol=1e-6)


def test_dice_present_only_against_smp_with_an_absent_class():
    """smp zeroes an absent class's loss and still divides by all K classes; restricting smp
    to the present classes (``classes=``) is our ``present_only``; ours over all K counts an
    absent class as loss 1 (no overlap), i.e. smp's value + n_absent / K."""
    smp_losses = _smp_losses()
    logits, target = _data(3, k=5)
    target[target == 2] = 0  # class 2 absent from the target
    kw = dict(mode="multiclass", from_logits=True, ignore_index=255, eps=1e-7)
    present = [0, 1, 3, 4]
    ref_present = smp_losses.DiceLoss(**kw, classes=present)(logits, target)
    ref_all_zeroed = smp_losses.DiceLoss(**kw)(logits, target)
    assert torch.allclose(dice_loss(logits, target), ref_present, atol=1e-10)
    assert torch.allclose(dice_loss(logits, target, present_only=False), ref_all_zeroed + 1 / 5,
                          atol=1e-10)  # fmt: skip
    assert not torch.allclose(ref_present, ref_all_zeroed + 1 / 5, atol=1e-3)  # they differ


def test_lovasz_perfect_prediction_is_zero():
    target = torch.tensor([[[0, 1], [2, 255]]])
    logits = F.one_hot(target.clamp(max=2), 3).movedim(-1, 1).double() * 100
    assert float(lovasz_softmax(logits, target)) < 1e-10


def test_ce_and_focal_honour_ignore_and_weights():
    logits, target = _data(2)
    logits = logits.float()
    w = [1.0, 2.0, 0.5, 3.0]
    crit = build_segmentation_loss("ce", class_weights=w)
    ref = F.cross_entropy(logits, target, weight=torch.tensor(w), ignore_index=255)
    assert torch.allclose(crit(logits, target), ref)
    focal = build_segmentation_loss("focal", focal_gamma=0.0)
    assert torch.allclose(focal(logits, target), F.cross_entropy(logits, target, ignore_index=255))


def test_dice_ce_is_the_sum():
    logits, target = _data(3)
    both = build_segmentation_loss("dice_ce")(logits, target)
    ref = F.cross_entropy(logits, target, ignore_index=255) + dice_loss(logits, target)
    assert torch.allclose(both, ref)


def test_deep_supervision_weights_and_upsampling():
    logits, target = _data(4, h=8, w=8)
    aux = torch.randn(2, 4, 4, 4, dtype=torch.float64)
    crit = DeepSupervisionLoss(build_loss("ce", ignore_index=255), aux_weight=0.4)
    up = F.interpolate(aux, size=(8, 8), mode="bilinear", align_corners=False)
    ref = F.cross_entropy(logits, target, ignore_index=255) + 0.4 * F.cross_entropy(
        up, target, ignore_index=255
    )
    assert torch.allclose(crit((logits, [aux]), target), ref)
    assert torch.allclose(crit(logits, target), F.cross_entropy(logits, target, ignore_index=255))
    with pytest.raises(ConfigError, match="aux_weight has 2 values but the model has 1 aux heads"):
        DeepSupervisionLoss(crit.criterion, [0.1, 0.2])((logits, [aux]), target)


def test_losses_have_gradients_and_registry_names():
    logits, target = _data(5)
    logits.requires_grad_(True)
    for name in ("ce", "focal", "dice", "dice_ce", "lovasz"):
        loss = build_segmentation_loss(name)(logits, target)
        (g,) = torch.autograd.grad(loss, logits)
        # no gradient flows into ignored pixels
        assert float(g.abs().sum(1)[target == 255].max()) == 0.0
        assert float(g.abs().sum()) > 0
    assert type(build_loss("dice")).__name__ == "DiceLoss"
    with pytest.raises(
        ConfigError, match="unknown segmentation loss 'hinge'; choose one of ce, dice"
    ):
        build_segmentation_loss("hinge")
