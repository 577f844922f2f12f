"""GAN model pairs: shapes at the sizes the task uses, conditioning that changes the output,
spectral norm on the discriminator, and clear errors for unusable sizes."""

import pytest
import torch
from torch.nn.utils import parametrize

from cvcraft.errors import ConfigError
from cvcraft.models import create_model, model_default_cfg
from cvcraft.models.generative.gan import upsample_steps
from cvcraft.tasks import model_task


@pytest.mark.parametrize("name", ["dcgan", "cgan", "mlp_gan"])
@pytest.mark.parametrize("size,chans", [(28, 1), (32, 3)])
def test_shapes_and_range(name, size, chans):
    torch.manual_seed(0)
    gan = create_model(name, num_classes=6, in_chans=chans, img_size=size, width=16).eval()
    z, y = torch.randn(5, 64), torch.arange(5)
    x = gan(z, y)
    assert x.shape == (5, chans, size, size) and x.abs().max() <= 1.0
    assert gan.discriminator(x, y).shape == (5,)
    assert gan.generator.default_input_size == (chans, size, size)
    assert model_task(name) == "generate"
    assert model_default_cfg(name)["optimizer"] == "adam"


def test_conditioning_changes_samples():
    torch.manual_seed(0)
    gan = create_model("cgan", num_classes=4, img_size=28, width=16).eval()
    z = torch.randn(1, 64).repeat(4, 1)
    x = gan(z, torch.arange(4))
    assert not torch.allclose(x[0], x[1])  # same noise, another class -> another image
    d = gan.discriminator
    assert not torch.allclose(d(x[:1], torch.tensor([0])), d(x[:1], torch.tensor([1])))


def test_upsample_steps():
    assert [upsample_steps(s) for s in (28, 32, 48, 64, 12)] == [2, 3, 4, 4, 2]
    with pytest.raises(ConfigError, match="imgsz=30"):
        upsample_steps(30)


def test_spectral_norm_option_and_bad_norm():
    gan = create_model("dcgan", img_size=28, width=8, spectral_norm=True, d_norm="none")
    convs = [m for m in gan.discriminator.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(parametrize.is_parametrized(m, "weight") for m in convs)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in gan.discriminator.modules())
    with pytest.raises(ConfigError, match="d_norm='layer'"):
        create_model("dcgan", d_norm="layer")
