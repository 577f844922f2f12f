import torch
import torchvision

from cvcraft.models import create_model, model_info
from cvcraft.models.classification.efficientnet import MBConv


def test_torchvision_parity_and_stochastic_depth_rates(randomize_bn):
    torch.manual_seed(0)
    ref = torchvision.models.efficientnet_b0(weights=None)
    randomize_bn(ref)
    ref.eval()
    ours = create_model("efficientnet_b0").eval()
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert model_info(ours)["params"] == sum(p.numel() for p in ref.parameters()) == 5_288_548
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = ours(x), ref(x)
    assert (a - b).abs().max().item() <= 1e-5 and a.abs().max() > 0
    ours_p = [m.stochastic_depth.p for m in ours.modules() if isinstance(m, MBConv)]
    ref_p = [m.stochastic_depth.p for m in ref.modules() if hasattr(m, "stochastic_depth")]
    assert ours_p == ref_p and len(ours_p) == 16 and ours_p[-1] == 0.2 * 15 / 16


def test_shapes_grads_in_chans_and_classifier():
    torch.manual_seed(0)
    m = create_model("efficientnet_b0", num_classes=5, in_chans=1, drop_path_rate=0.0)
    assert m.features[0][0].weight.shape == (32, 1, 3, 3)
    for size in (32, 64):
        assert m.eval()(torch.randn(2, 1, size, size)).shape == (2, 5)
    assert m.forward_features(torch.randn(1, 1, 64, 64)).shape == (1, 1280, 2, 2)
    m.train()
    m(torch.randn(2, 1, 32, 32)).logsumexp(1).sum().backward()
    grads = [p.grad for p in m.parameters()]
    assert all(g is not None for g in grads) and all(g.abs().sum() > 0 for g in grads)
    m.reset_classifier(0)
    assert m.eval()(torch.randn(1, 1, 32, 32)).shape == (1, 1280)


def test_stochastic_depth_drops_whole_residual_branches_in_training_only():
    torch.manual_seed(0)
    blk = MBConv(16, 16, 3, 1, 6, drop_path=0.5)
    x = torch.randn(64, 16, 4, 4)
    blk.eval()
    with torch.no_grad():
        torch.testing.assert_close(blk(x), x + blk.block(x))
        blk.train()
        branch = blk.block(x)  # BN in train mode: the same batch stats in both calls
        kept = blk(x) - x  # each sample: 0 (dropped) or branch / (1 - p)
    dropped = kept.flatten(1).abs().amax(1) == 0
    assert 0 < dropped.sum() < 64
    torch.testing.assert_close(kept[~dropped], branch[~dropped] * 2)
