import torch
import torch.nn.functional as F
from torchvision.ops import SqueezeExcitation

from cvcraft.nn.attention import CBAM, SqueezeExcite


def test_squeeze_excite_formula():
    torch.manual_seed(0)
    se = SqueezeExcite(8, 2)
    x = torch.randn(2, 8, 5, 5)
    s = x.mean((2, 3))  # (B, C)
    h = torch.relu(s @ se.fc1.weight[:, :, 0, 0].T + se.fc1.bias)
    g = torch.sigmoid(h @ se.fc2.weight[:, :, 0, 0].T + se.fc2.bias)
    torch.testing.assert_close(se(x), x * g[:, :, None, None])
    assert SqueezeExcite(64).fc1.out_channels == 4  # SENet ratio 1/16


def test_squeeze_excite_loads_torchvision_weights():
    torch.manual_seed(0)
    tv = SqueezeExcitation(16, 4)
    ours = SqueezeExcite(16, 4)
    ours.load_state_dict(tv.state_dict(), strict=True)
    x = torch.randn(3, 16, 6, 6)
    torch.testing.assert_close(ours(x), tv(x))
    tv_h = SqueezeExcitation(16, 4, torch.nn.ReLU, torch.nn.Hardsigmoid)
    ours_h = SqueezeExcite(16, 4, gate="hardsigmoid")
    ours_h.load_state_dict(tv_h.state_dict())
    torch.testing.assert_close(ours_h(x), tv_h(x))


def test_cbam_formula():
    torch.manual_seed(0)
    m = CBAM(16, reduction=4, spatial_kernel=7)
    x = torch.randn(2, 16, 9, 9)
    w1, b1 = m.fc1.weight[:, :, 0, 0], m.fc1.bias
    w2, b2 = m.fc2.weight[:, :, 0, 0], m.fc2.bias

    def mlp(v):  # (B, C) -> (B, C), the shared MLP
        return torch.relu(v @ w1.T + b1) @ w2.T + b2

    mc = torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.amax((2, 3))))  # (B, C)
    x1 = x * mc[:, :, None, None]
    desc = torch.stack([x1.mean(1), x1.amax(1)], 1)  # (B, 2, H, W)
    ms = torch.sigmoid(F.conv2d(desc, m.spatial.weight, m.spatial.bias, padding=3))  # (B, 1, H, W)
    torch.testing.assert_close(m(x), x1 * ms)
    assert m.fc1.out_channels == 4 and m.spatial.weight.shape == (1, 2, 7, 7)
