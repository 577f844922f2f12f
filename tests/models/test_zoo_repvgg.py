import pytest
import torch

from cvcraft.errors import ConfigError
from cvcraft.models import create_model, model_info
from cvcraft.models.classification.repvgg import RepVGG, reparameterize_model
from cvcraft.nn.repvgg import RepVGGBlock, fuse_bn


def test_fuse_bn_matches_batchnorm_after_conv(randomize_bn):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 6, 3, padding=1, bias=False)
    bn = torch.nn.BatchNorm2d(6)
    randomize_bn(bn)
    bn.eval()
    k, b = fuse_bn(conv.weight, bn)
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(torch.conv2d(x, k, b, padding=1), bn(conv(x)))


@pytest.mark.parametrize(
    "c_in,c_out,stride,groups", [(8, 8, 1, 1), (8, 16, 2, 1), (8, 8, 1, 4), (6, 12, 1, 3)]
)
def test_block_reparameterization_is_exact_in_eval(c_in, c_out, stride, groups, randomize_bn):
    torch.manual_seed(0)
    blk = RepVGGBlock(c_in, c_out, stride, groups)
    assert (blk.identity is not None) == (stride == 1 and c_in == c_out)
    randomize_bn(blk)
    blk.eval()
    x = torch.randn(2, c_in, 9, 9)
    with torch.no_grad():
        before = blk(x)
        blk.reparameterize()
        after = blk(x)
    assert blk.conv3x3 is None and blk.identity is None and blk.fused.kernel_size == (3, 3)
    assert [n for n, _ in blk.named_parameters()] == ["fused.weight", "fused.bias"]
    assert (before - after).abs().max().item() <= 1e-4


def test_model_reparameterization_and_paper_param_counts(randomize_bn):
    torch.manual_seed(0)
    m = create_model("repvgg_a0", num_classes=10)
    randomize_bn(m)
    m.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = m(x)
        fused = reparameterize_model(m)
        after = fused(x)
    assert (before - after).abs().max().item() <= 1e-4
    assert not any(isinstance(c, torch.nn.BatchNorm2d) for c in fused.modules())
    assert all(c.kernel_size == (3, 3) for c in fused.modules() if isinstance(c, torch.nn.Conv2d))


# Ding et al. 2021, Table 4 (1000 classes): A0 8.30M, B0 14.33M. The table counts the
# fused network; training-time branches add the 1x1 convs and every BN.
@pytest.mark.parametrize(
    "name,paper_m,train_m", [("repvgg_a0", 8.30, 9.11), ("repvgg_b0", 14.33, 15.82)]
)
def test_param_counts_match_paper(name, paper_m, train_m):
    with torch.device("meta"):
        m = create_model(name)
        train = model_info(m)["params"]
        fused = model_info(reparameterize_model(m))["params"]
    assert fused == pytest.approx(paper_m * 1e6, rel=0.01)
    assert train == pytest.approx(train_m * 1e6, rel=0.001)


def test_shapes_grads_in_chans_and_classifier():
    torch.manual_seed(0)
    m = RepVGG((1, 1, 2, 1), (0.25, 0.5), num_classes=5, in_chans=1)
    assert m.stage0[0].conv3x3.conv.weight.shape == (16, 1, 3, 3)
    for size in (32, 64):
        assert m.eval()(torch.randn(2, 1, size, size)).shape == (2, 5)
    m.train()
    m(torch.randn(2, 1, 64, 64)).logsumexp(1).sum().backward()
    grads = [p.grad for p in m.parameters()]
    assert all(g is not None for g in grads) and all(g.abs().sum() > 0 for g in grads)
    a0 = create_model("repvgg_a0", num_classes=3, in_chans=1).eval()
    assert a0(torch.randn(1, 1, 64, 64)).shape == (1, 3)
    assert a0.forward_features(torch.randn(1, 1, 64, 64)).shape == (1, 1280, 2, 2)
    a0.reset_classifier(0)
    assert a0(torch.randn(1, 1, 32, 32)).shape == (1, 1280)
    with pytest.raises(ConfigError, match="channels 6->8 not divisible by groups=4"):
        RepVGGBlock(6, 8, groups=4)
