import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError, RegistryError
from cvcraft.nn.norm import LayerNorm2d, convert_sync_batchnorm, get_norm


def test_layernorm2d_equals_permuted_layer_norm():
    torch.manual_seed(0)
    ln = LayerNorm2d(6)
    with torch.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    x = torch.randn(2, 6, 5, 4) * 3 + 1
    ref = F.layer_norm(x.permute(0, 2, 3, 1), (6,), ln.weight, ln.bias, 1e-6).permute(0, 3, 1, 2)
    torch.testing.assert_close(ln(x), ref)
    # per-pixel mean 0 / var 1 across channels with identity affine
    y = LayerNorm2d(6)(x)
    torch.testing.assert_close(y.mean(1), torch.zeros(2, 5, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(1, unbiased=False), torch.ones(2, 5, 4), atol=1e-4, rtol=0)


def test_get_norm_builds_each_kind_with_the_right_statistics():
    torch.manual_seed(0)
    x = torch.randn(4, 8, 5, 5) * 2 + 3
    bn = get_norm("batchnorm", 8).train()
    assert isinstance(bn, nn.BatchNorm2d)
    mu, var = x.mean((0, 2, 3), keepdim=True), x.var((0, 2, 3), unbiased=False, keepdim=True)
    torch.testing.assert_close(bn(x), (x - mu) / torch.sqrt(var + 1e-5))

    inorm = get_norm("instancenorm", 8)
    mu, var = x.mean((2, 3), keepdim=True), x.var((2, 3), unbiased=False, keepdim=True)
    torch.testing.assert_close(inorm(x), (x - mu) / torch.sqrt(var + 1e-5))

    gn = get_norm("groupnorm", 8, num_groups=2)
    g = x.view(4, 2, -1)
    mu, var = g.mean(-1, keepdim=True), g.var(-1, unbiased=False, keepdim=True)
    ref = (g - mu) / torch.sqrt(var + 1e-5)
    torch.testing.assert_close(gn(x), ref.view_as(x))

    ln = get_norm("layernorm", 5)
    assert isinstance(ln, nn.LayerNorm) and ln.normalized_shape == (5,)
    assert isinstance(get_norm("layernorm2d", 8), LayerNorm2d)
    assert isinstance(get_norm(None, 8), nn.Identity)


def test_groupnorm_default_groups_and_bad_groups():
    assert get_norm("groupnorm", 64).num_groups == 32
    assert get_norm("groupnorm", 24).num_groups == 8  # largest divisor of 24 that is <= 32
    with pytest.raises(ConfigError, match="must divide"):
        get_norm("groupnorm", 10, num_groups=4)


def test_unknown_norm_suggests_name():
    with pytest.raises(RegistryError, match='Did you mean "groupnorm"'):
        get_norm("groupnrm", 8)


def test_convert_sync_batchnorm_keeps_parameters():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)))
    with torch.no_grad():
        model[1].weight.fill_(2.0)
        model[1].running_mean.fill_(0.5)
    out = convert_sync_batchnorm(model)
    bns = [m for m in out.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(bns) == 2 and all(type(m) is nn.SyncBatchNorm for m in bns)
    assert torch.all(out[1].weight == 2.0) and torch.all(out[1].running_mean == 0.5)
