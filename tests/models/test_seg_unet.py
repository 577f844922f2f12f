import pytest
import torch

from cvcraft.errors import ConfigError
from cvcraft.models import create_model, model_info
from cvcraft.models.weights import rename_keys


def _paper_unet_params(base: int, depth: int, in_chans: int, classes: int, bn: bool) -> int:
    """Hand count: DoubleConv = two 3x3 convs (+BN gamma/beta, no conv bias under BN);
    up-conv = 2x2 transposed conv halving channels (+bias); head = 1x1 conv (+bias)."""

    def conv3(i: int, o: int) -> int:
        return i * o * 9 + (2 * o if bn else o)

    def double(i: int, o: int) -> int:
        return conv3(i, o) + conv3(o, o)

    w = [base * 2**i for i in range(depth + 1)]
    n = double(in_chans, w[0]) + sum(double(a, b) for a, b in zip(w, w[1:]))
    for i in range(depth, 0, -1):  # decoder: up-conv w[i] -> w[i]/2, concat w[i-1], double
        n += w[i] * (w[i] // 2) * 4 + w[i] // 2 + double(w[i] // 2 + w[i - 1], w[i - 1])
    return n + w[0] * classes + classes


@pytest.mark.parametrize("norm", ["batchnorm", None])
def test_paper_unet_param_count_matches_hand_count(norm):
    m = create_model("unet", num_classes=2, in_chans=1, norm=norm)
    assert model_info(m)["params"] == _paper_unet_params(64, 4, 1, 2, norm is not None)
    # The paper's network (no BN): 31.03M parameters.
    if norm is None:
        assert round(model_info(m)["params"] / 1e6, 2) == 31.03


def test_resnet_encoder_unet_equals_smp_unet_after_weight_copy(randomize_bn):
    smp = pytest.importorskip("segmentation_models_pytorch")
    torch.manual_seed(0)
    ref = randomize_bn(smp.Unet("resnet18", encoder_weights=None, classes=3)).eval()
    ours = create_model("unet", num_classes=3, encoder="resnet18", head_kernel=3).eval()
    # smp's names -> ours by name (not by position), through the library's rename_keys.
    rules = [
        (r"^encoder\.", "backbone."),
        (r"^decoder\.blocks\.(\d+)\.conv1\.0\.", r"ups.\1.conv.0.conv."),
        (r"^decoder\.blocks\.(\d+)\.conv1\.1\.", r"ups.\1.conv.0.bn."),
        (r"^decoder\.blocks\.(\d+)\.conv2\.0\.", r"ups.\1.conv.1.conv."),
        (r"^decoder\.blocks\.(\d+)\.conv2\.1\.", r"ups.\1.conv.1.bn."),
        (r"^segmentation_head\.0\.", "head."),
    ]
    ours.load_state_dict(rename_keys(ref.state_dict(), rules), strict=True)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5)


@pytest.mark.parametrize("bilinear", [False, True])
@pytest.mark.parametrize("size", [(64, 64), (50, 70)])
def test_small_unet_any_size(bilinear, size):
    m = create_model("unet", num_classes=4, base=4, depth=3, bilinear=bilinear).eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, *size)).shape == (1, 4, *size)


def test_unet_bilinear_has_no_transposed_convs_and_bad_args_raise():
    m = create_model("unet", base=4, bilinear=True)
    assert not any(isinstance(x, torch.nn.ConvTranspose2d) for x in m.modules())
    with pytest.raises(ConfigError, match="UNet needs depth >= 1 and base >= 2, got 0"):
        create_model("unet", depth=0)
    with pytest.raises(ConfigError, match=r"UNet decoder_channels needs 5 entries, got \(8, 8\)"):
        create_model("unet", encoder="resnet18", decoder_channels=(8, 8))
