"""The small BigGAN-style model (issue 14): conditional BatchNorm by hand with randomised
running statistics, the class steering every block, and hinge + spectral-norm training."""

import csv
import math

import pytest
import torch
import torch.nn.functional as F

from cvcraft.cli import run
from cvcraft.errors import ConfigError
from cvcraft.models import create_model
from cvcraft.models.generative.biggan import ConditionalBatchNorm2d


def test_conditional_batchnorm_by_hand():
    torch.manual_seed(0)
    cbn = ConditionalBatchNorm2d(6, 5)
    cbn.bn.running_mean.uniform_(-1, 1)
    cbn.bn.running_var.uniform_(0.5, 2)
    cbn.eval()
    x, e = torch.randn(3, 6, 4, 4), torch.randn(3, 5)
    norm = (x - cbn.bn.running_mean[None, :, None, None]) / torch.sqrt(
        cbn.bn.running_var[None, :, None, None] + cbn.bn.eps
    )
    gain = 1 + e @ cbn.gain.weight.T
    bias = e @ cbn.bias.weight.T
    torch.testing.assert_close(cbn(x, e), norm * gain[:, :, None, None] + bias[:, :, None, None])
    cbn.train()  # training: the batch's own statistics
    got = cbn(x, e)
    want = F.batch_norm(x, None, None, training=True) * gain[:, :, None, None]
    torch.testing.assert_close(got, want + bias[:, :, None, None], atol=1e-5, rtol=1e-5)


def test_biggan_generator_is_class_conditional_with_a_projection_d():
    torch.manual_seed(0)
    gan = create_model("biggan_small", num_classes=4, in_chans=1, img_size=32, width=8,
                       noise_dim=16).eval()  # fmt: skip
    z = torch.randn(2, 16)
    a, b = gan(z, torch.tensor([0, 0])), gan(z, torch.tensor([2, 2]))
    assert a.shape == (2, 1, 32, 32) and not torch.allclose(a, b)
    assert a.abs().max() <= 1
    d = gan.discriminator
    assert d.proj is not None and d.embed is None
    assert hasattr(d.head, "parametrizations")  # spectral norm on by default
    with pytest.raises(ConfigError, match="needs labels"):
        gan(z)
    with pytest.raises(ConfigError, match="class-conditional"):
        create_model("biggan_small", num_classes=0, in_chans=1, img_size=32)


def test_biggan_trains_with_hinge_and_spectral_norm(tmp_path):
    out = tmp_path / "b"
    run(["train", "generate", "model=biggan_small", "data=shapes:48", "imgsz=32", "batch=16",
         "model_kwargs={width: 8}", "noise_dim=8", "progress=false", "sample_n=6",
         "val_fraction=0.2", "plots=false", "loss=hinge", "spectral_norm=true", "epochs=1",
         f"out={out}"])  # fmt: skip
    with open(out / "metrics.csv") as fh:
        row = list(csv.DictReader(fh))[-1]
    assert math.isfinite(float(row["d_loss"])) and math.isfinite(float(row["g_loss"]))
    res = run(["predict", "generate", f"weights={out / 'best.pt'}", "n=2", "class=3",
               f"out={tmp_path / 'p'}"])  # fmt: skip
    from cvcraft.engine.checkpoint import load_checkpoint

    name = load_checkpoint(out / "best.pt")["classes"][3]
    assert [r["class"] for r in res] == [name, name]
