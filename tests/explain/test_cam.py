"""CAM family against pytorch-grad-cam (the ``grad-cam`` package) on the same model and layer,
and CAM against the classifier-weighted feature sum computed by hand."""

import numpy as np
import pytest
import torch

from cvcraft.errors import ConfigError
from cvcraft.explain import class_activation_map, default_cam_layer
from cvcraft.models import create_model
from cvcraft.models.classification.vit import VisionTransformer

gc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.image import scale_cam_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from pytorch_grad_cam.utils.svd_on_activations import (  # noqa: E402
    get_2d_projection_with_sign_correction,
)

ORACLES = {
    "gradcam": gc.GradCAM,
    "gradcam++": gc.GradCAMPlusPlus,
    "scorecam": gc.ScoreCAM,
    "eigencam": gc.EigenCAM,
}


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10).eval()
    # BN at init is the identity; random statistics make the maps less trivial
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model


def _inputs(seed=1, b=3, side=32):
    return torch.randn(b, 3, side, side, generator=torch.Generator().manual_seed(seed))


def _oracle(model, layer, method, x, targets):
    cls = ORACLES[method]
    with cls(model=model, target_layers=[model.get_submodule(layer)]) as cam:
        if method == "scorecam":
            cam.batch_size = 64
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "scorecam"])
@pytest.mark.parametrize("layer", ["layer3", "layer2.2.conv2"])
def test_matches_pytorch_grad_cam(resnet, method, layer):
    x = _inputs()
    targets = [3, 0, 7]
    ours = class_activation_map(resnet, x, layer, method, target=targets)
    expected = _oracle(resnet, layer, method, x, targets)
    assert ours.maps.shape == (3, 32, 32)
    np.testing.assert_allclose(ours.maps.numpy(), expected, atol=1e-5)


def test_top_class_is_default_target(resnet):
    x = _inputs(seed=2)
    ours = class_activation_map(resnet, x, "layer3", "gradcam")
    top = resnet(x).argmax(1)
    assert ours.targets.tolist() == top.tolist()
    with gc.GradCAM(model=resnet, target_layers=[resnet.layer3]) as cam:
        expected = cam(input_tensor=x, targets=None)  # the package's own argmax
    np.testing.assert_allclose(ours.maps.numpy(), expected, atol=1e-5)


def test_eigencam_matches_sign_corrected_projection(resnet):
    x = _inputs(seed=3)
    ours = class_activation_map(resnet, x, "layer3", "eigencam")
    with torch.no_grad():
        feats = resnet.layer3(
            resnet.layer2(resnet.layer1(resnet.relu(resnet.bn1(resnet.conv1(x)))))
        )
    proj = get_2d_projection_with_sign_correction(feats.numpy())
    # BaseCAM's post-processing of one layer: relu, scale + resize, relu, scale
    expected = scale_cam_image(np.maximum(scale_cam_image(np.maximum(proj, 0), (32, 32)), 0))
    np.testing.assert_allclose(ours.maps.numpy(), expected, atol=1e-5)
    # where the package's unsigned SVD happens to agree with the sign rule, its EigenCAM
    # class gives the same map
    plain = _oracle(resnet, "layer3", "eigencam", x, [0, 0, 0])
    agree = [np.allclose(plain[i], expected[i], atol=1e-5) for i in range(3)]
    for i in np.flatnonzero(agree):
        np.testing.assert_allclose(ours.maps[i].numpy(), plain[i], atol=1e-5)


def test_cam_is_fc_weighted_feature_sum(resnet):
    x = _inputs(seed=4)
    targets = torch.tensor([1, 5, 9])
    ours = class_activation_map(resnet, x, "layer3", "cam", target=targets)
    with torch.no_grad():
        feats = resnet.forward_features(x).numpy()  # (B, 64, 8, 8)
    w = resnet.fc.weight.detach().numpy()  # (10, 64)
    by_hand = np.stack([
        sum(w[c, k] * feats[b, k] for k in range(feats.shape[1]))
        for b, c in enumerate(targets.tolist())
    ])  # fmt: skip
    np.testing.assert_allclose(ours.raw.numpy(), by_hand, rtol=1e-5, atol=1e-5)
    # GAP + linear: Grad-CAM's weights are the fc weights / hw, so the maps coincide
    grad = class_activation_map(resnet, x, "layer3", "gradcam", target=targets)
    np.testing.assert_allclose(ours.maps.numpy(), grad.maps.numpy(), atol=1e-5)
    np.testing.assert_allclose(ours.raw.numpy() / 64, grad.raw.numpy(), rtol=1e-4, atol=1e-6)


def test_vit_tokens_fold_into_grid():
    torch.manual_seed(0)
    model = VisionTransformer(32, 4, 10, embed_dim=48, depth=2, num_heads=3).eval()
    x = _inputs(seed=5, b=2)

    def to_grid(t):  # the package's documented reshape_transform for ViTs
        return t[:, 1:].reshape(t.shape[0], 8, 8, t.shape[2]).permute(0, 3, 1, 2)

    ours = class_activation_map(model, x, "blocks.1.norm1", "gradcam", target=[2, 4])
    with gc.GradCAM(model, [model.blocks[1].norm1], reshape_transform=to_grid) as cam:
        expected = cam(x, [ClassifierOutputTarget(2), ClassifierOutputTarget(4)])
    np.testing.assert_allclose(ours.maps.numpy(), expected, atol=1e-5)


def test_maps_are_unit_range_and_layer_default(resnet):
    x = _inputs(seed=6, b=2)
    assert default_cam_layer(resnet, x) == "layer3"
    res = class_activation_map(resnet, x, method="gradcam++")
    assert res.layer == "layer3"
    m = res.maps.flatten(1)
    assert torch.allclose(m.max(1).values, torch.ones(2), atol=1e-5)
    assert torch.allclose(m.min(1).values, torch.zeros(2), atol=1e-6)
    assert not resnet.training


def test_bad_inputs(resnet):
    x = _inputs(b=1)
    with pytest.raises(ConfigError, match=r"did you mean .*layer3"):
        class_activation_map(resnet, x, "layer33", "gradcam")
    with pytest.raises(ConfigError, match="choose one of"):
        class_activation_map(resnet, x, "layer3", "gradcamm")
    with pytest.raises(ConfigError, match=r"class=12 must be one index in \[0, 10\)"):
        class_activation_map(resnet, x, "layer3", "gradcam", target=12)
    with pytest.raises(ConfigError, match="layer right before global pooling"):
        class_activation_map(resnet, x, "layer2", "cam")
    with pytest.raises(ConfigError, match=r"\(B, C, H, W\) batch"):
        class_activation_map(resnet, x[0], "layer3", "gradcam")
