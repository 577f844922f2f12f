import pytest
import torch
import torch.nn.functional as F

from cvcraft.models import create_model, model_info
from cvcraft.models.classification.vgg import VGG
from cvcraft.models.segmentation.fcn import bilinear_kernel, bilinear_upsampler

TINY_VGG = [4, "M", 4, "M", 8, "M", 8, "M", 8, "M"]


@pytest.mark.parametrize("scale", [2, 8, 32])
def test_upsampler_starts_as_bilinear_interpolation(scale):
    up = bilinear_upsampler(3, scale)
    x = torch.randn(1, 3, 6, 5)
    with torch.no_grad():
        ours = up(x)
    ref = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
    assert ours.shape == ref.shape
    inner = (..., slice(scale, -scale), slice(scale, -scale))  # borders: zero vs edge padding
    assert torch.allclose(ours[inner], ref[inner], atol=1e-5)


def test_bilinear_kernel_hand_values():
    k = bilinear_kernel(2, 4)  # f = 2, centre 1.5: taps 1/4, 3/4, 3/4, 1/4
    w = torch.tensor([0.25, 0.75, 0.75, 0.25])
    assert torch.allclose(k[0, 0], w[:, None] * w[None, :]) and not k[0, 1].any()


@pytest.mark.parametrize("name,extra", [("fcn32s", 0), ("fcn16s", 1), ("fcn8s", 2)])
def test_fcn_vgg16_param_count_by_hand(name, extra):
    K = 21
    vgg16_convs = 14_714_688  # the 13 conv layers of VGG-16
    n = vgg16_convs + (512 * 49 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * K + K)
    ups = {0: [32], 1: [2, 16], 2: [2, 2, 8]}[extra]  # transposed convs K->K, k = 2s, no bias
    n += sum(K * K * (2 * s) ** 2 for s in ups)
    n += [0, 512 * K + K, 512 * K + K + 256 * K + K][extra]  # score_pool4, score_pool3
    with torch.device("meta"):  # shapes only: skip allocating and initialising 134M weights
        m = create_model(name, num_classes=K)
    assert model_info(m)["params"] == n


def test_load_vgg_convolutionalises_fc6_fc7():
    torch.manual_seed(0)
    vgg = VGG(TINY_VGG, num_classes=10).eval()
    fcn = create_model("fcn32s", num_classes=3, cfg=TINY_VGG).eval()
    fcn.load_vgg(vgg)
    x = torch.randn(2, 3, 224, 224)  # pool5 is 7x7: the 7x7 fc6 conv sees it whole at (3, 3)
    with torch.no_grad():
        pool5 = fcn.features(x)
        dense = F.relu(fcn.fc7(F.relu(fcn.fc6(pool5))))[..., 3, 3]  # (2, 4096)
        ref = vgg.classifier[:5](vgg.forward_features(x).flatten(1))  # fc6-relu-drop-fc7-relu
    assert torch.allclose(dense, ref, atol=1e-4)


def test_fcn_scores_start_at_zero_and_skips_add_detail():
    m8 = create_model("fcn8s", num_classes=3, cfg=TINY_VGG, fc_width=16).eval()
    with torch.no_grad():
        assert not m8(torch.randn(1, 3, 64, 64)).any()  # zero-initialised scoring layers
        m8.score_pool3.weight.normal_()
        y = m8(torch.randn(1, 3, 70, 45))
    assert y.shape == (1, 3, 70, 45) and y.abs().sum() > 0


def test_fcn_resnet50_equals_torchvision_through_the_registered_converter(randomize_bn):
    """torchvision's weights (BN statistics randomised) loaded as users load them:
    ``create_model(weights=state_dict)`` renames through the registered converter."""
    from torchvision.models.segmentation import fcn_resnet50

    from cvcraft.models.registry import tv_converter
    from cvcraft.models.segmentation.fcn import from_torchvision_state_dict

    torch.manual_seed(0)
    ref = fcn_resnet50(weights=None, weights_backbone=None, num_classes=4, aux_loss=True)
    ref = randomize_bn(ref).eval()
    ours = create_model("fcn_resnet50", num_classes=4, aux=True, weights=ref.state_dict()).eval()
    assert tv_converter("fcn_resnet50") is from_torchvision_state_dict
    assert set(from_torchvision_state_dict(ref.state_dict())) == set(ours.state_dict())
    x = torch.randn(1, 3, 56, 72)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x)["out"], atol=1e-5)
