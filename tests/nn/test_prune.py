"""Pruning: magnitude masks against torch.nn.utils.prune; L1 channel pruning against an
independently built narrow network (params, MACs) and against the masked original
(identical outputs)."""

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as tprune

from cvcraft.errors import ConfigError
from cvcraft.models import create_model
from cvcraft.models.profile import count_macs
from cvcraft.nn.prune import (
    channel_chains,
    l1_channel_plan,
    magnitude_masks,
    prune_l1_channels,
    prune_magnitude,
    shrink_to_widths,
    sparsity,
)


def _randomize_bn(model):
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = torch.rand(m.num_features, generator=g) + 0.5
            m.bias.data = torch.randn(m.num_features, generator=g) * 0.1
            m.running_mean = torch.randn(m.num_features, generator=g) * 0.1
            m.running_var = torch.rand(m.num_features, generator=g) + 0.5
    return model


@pytest.fixture
def resnet():
    torch.manual_seed(0)
    return _randomize_bn(create_model("resnet20", num_classes=10)).eval()


# -- unstructured -------------------------------------------------------------------------
@pytest.mark.parametrize("amount", [0.3, 0.5, 0.9])
def test_global_magnitude_masks_match_torch_prune(resnet, amount):
    ours = magnitude_masks(resnet, amount, "global")
    ref = copy.deepcopy(resnet)
    params = [(m, "weight") for m in ref.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    tprune.global_unstructured(params, pruning_method=tprune.L1Unstructured, amount=amount)
    names = [n for n, m in ref.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for name in names:
        assert torch.equal(ours[name], ref.get_submodule(name).weight_mask.bool()), name


def test_layer_magnitude_masks_match_torch_prune(resnet):
    ours = magnitude_masks(resnet, 0.4, "layer")
    for name, m in resnet.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            ref = copy.deepcopy(m)
            tprune.l1_unstructured(ref, "weight", amount=0.4)
            assert torch.equal(ours[name], ref.weight_mask.bool()), name


def test_prune_magnitude_zeroes_weights(resnet):
    n = sum(m.weight.numel() for m in resnet.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    masks = prune_magnitude(resnet, 0.5)
    assert sparsity(resnet) == round(0.5 * n) / n
    for name, mask in masks.items():
        assert bool((resnet.get_submodule(name).weight[~mask] == 0).all())


# -- structured ---------------------------------------------------------------------------
def _chain_net(widths):
    c1, c2 = widths
    return nn.Sequential(
        nn.Conv2d(3, c1, 3, padding=1, bias=True), nn.BatchNorm2d(c1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2), nn.SiLU(),
        nn.Conv2d(c2, 5, 1),
    )  # fmt: skip


def test_plain_chain_shrinks_like_a_narrow_network():
    torch.manual_seed(0)
    model = _randomize_bn(_chain_net((16, 32))).eval()
    chains = channel_chains(model)
    assert [(c.conv, c.norms, c.consumer) for c in chains] == [("0", ["1"], "4"), ("4", ["5"], "7")]
    widths = prune_l1_channels(model, 0.5)
    assert widths == {"0": 8, "4": 16}
    narrow = _chain_net((8, 16))  # the network one would build at half width
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in narrow.parameters())
    assert count_macs(model, (3, 16, 16)) == count_macs(narrow, (3, 16, 16))


def _masked_copy(model, plan):
    """The original with the removed channels silenced: filter, bias, BN gamma and beta 0."""
    masked = copy.deepcopy(model)
    chains = {c.conv: c for c in channel_chains(masked)}
    with torch.no_grad():
        for name, keep in plan.items():
            conv = masked.get_submodule(name)
            drop = torch.ones(conv.out_channels, dtype=torch.bool)
            drop[keep] = False
            conv.weight[drop] = 0
            if conv.bias is not None:
                conv.bias[drop] = 0
            for bn in chains[name].norms:
                masked.get_submodule(bn).weight[drop] = 0
                masked.get_submodule(bn).bias[drop] = 0
    return masked


@pytest.mark.parametrize("name", ["resnet20", "resnet50_cifar", "chain"])
def test_pruned_equals_masked_original(name):
    torch.manual_seed(0)
    model = _chain_net((16, 32)) if name == "chain" else create_model(name, num_classes=10)
    model = _randomize_bn(model).eval()
    x = torch.randn(2, 3, 32, 32)
    plan = l1_channel_plan(model, 0.5)
    with torch.no_grad():  # every kept filter has a larger L1 norm than every removed one
        for conv, keep in plan.items():
            l1 = model.get_submodule(conv).weight.abs().flatten(1).sum(1)
            removed = torch.ones_like(l1, dtype=torch.bool)
            removed[keep] = False
            assert float(l1[keep].min()) >= float(l1[removed].max()), conv
    masked = _masked_copy(model, plan)
    prune_l1_channels(model, 0.5)
    with torch.no_grad():
        torch.testing.assert_close(model(x), masked(x), atol=1e-4, rtol=1e-4)


def test_resnet_block_counts_drop_by_expected_amount(resnet):
    before_p = sum(p.numel() for p in resnet.parameters())
    before = count_macs(resnet, (3, 32, 32))
    # by hand: each BasicBlock's inner width w -> w/2 removes half of conv1's filters and
    # half of conv2's input channels (9 w^2/2 weights each) plus w/2 BN gammas and betas
    expected_params, expected_conv_macs = 0, 0
    for stage, (w, side) in enumerate([(16, 32), (32, 16), (64, 8)]):
        for b in range(3):
            cin = w if (stage == 0 or b > 0) else w // 2
            removed = w // 2
            expected_params += removed * cin * 9 + removed * w * 9 + 2 * removed
            expected_conv_macs += (removed * cin * 9 + removed * w * 9) * side * side
    widths = prune_l1_channels(resnet, 0.5)
    assert len(widths) == 9 and all(v in (8, 16, 32) for v in widths.values())
    after = count_macs(resnet, (3, 32, 32))
    assert before_p - sum(p.numel() for p in resnet.parameters()) == expected_params
    assert before["conv"] - after["conv"] == expected_conv_macs


def test_bottleneck_inner_channels_and_reload():
    torch.manual_seed(0)
    model = _randomize_bn(create_model("resnet50_cifar", num_classes=10)).eval()
    widths = prune_l1_channels(model, 0.25)
    blk = model.layer1[0]
    assert (blk.conv1.out_channels, blk.conv2.in_channels, blk.conv2.out_channels) == (48, 48, 48)
    assert blk.conv3.in_channels == 48 and blk.conv3.out_channels == 256  # block output kept
    fresh = shrink_to_widths(create_model("resnet50_cifar", num_classes=10), widths)
    fresh.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(x), model(x))


def test_bad_inputs(resnet):
    with pytest.raises(ConfigError, match=r"amount=1.0 must be in \[0, 1\)"):
        prune_l1_channels(resnet, 1.0)
    with pytest.raises(ConfigError, match=r"amount=-0.1"):
        magnitude_masks(resnet, -0.1)
    with pytest.raises(ConfigError, match="scope='all'"):
        magnitude_masks(resnet, 0.1, scope="all")
    with pytest.raises(ConfigError, match="cannot be traced.*method=magnitude"):
        prune_l1_channels(create_model("lenet5"), 0.5)
    with pytest.raises(ConfigError, match="no conv -> conv channel chain"):
        prune_l1_channels(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()), 0.5)
