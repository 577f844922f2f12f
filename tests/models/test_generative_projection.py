"""The projection discriminator (Miyato & Koyama 2018) of `cgan_proj`: logit = w·φ(x) + b +
⟨e_y, φ(x)⟩, checked by hand with randomised BatchNorm statistics, and trained end to end."""

import pytest
import torch

from cvcraft.cli import run
from cvcraft.errors import ConfigError
from cvcraft.models import create_model
from cvcraft.models.generative.gan import DCGANDiscriminator


def test_projection_logit_equals_the_formula_by_hand():
    torch.manual_seed(0)
    gan = create_model("cgan_proj", num_classes=5, in_chans=1, img_size=28, width=8, noise_dim=8)
    d = gan.discriminator
    for m in d.modules():  # non-default statistics, so eval-mode BN is really exercised
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    d.eval()
    assert d.embed is None and d.features[0].in_channels == 1  # no label plane on the input
    x, y = torch.randn(6, 1, 28, 28), torch.tensor([0, 1, 2, 3, 4, 0])
    h = d.features(x).flatten(1)
    want = h @ d.head.weight[0] + d.head.bias[0] + (d.proj.weight[y] * h).sum(1)
    torch.testing.assert_close(d(x, y), want)
    # the class enters only through the projection: two labels differ by <e_a - e_b, φ(x)>
    a, b = torch.full((6,), 1), torch.full((6,), 3)
    diff = d(x, a) - d(x, b)
    torch.testing.assert_close(diff, ((d.proj.weight[1] - d.proj.weight[3]) * h).sum(1))


def test_projection_needs_classes_and_trains(tmp_path):
    with pytest.raises(ConfigError, match="projection discriminator needs classes"):
        DCGANDiscriminator(1, 28, 8, 0, projection=True)
    m = run(["train", "generate", "model=cgan_proj", "data=shapes:48", "imgsz=28", "batch=16",
             "model_kwargs={width: 8}", "noise_dim=8", "progress=false", "sample_n=8",
             "val_fraction=0.2", "plots=false", "loss=hinge", "spectral_norm=true",
             "epochs=1", f"out={tmp_path / 'p'}"])  # fmt: skip
    import csv

    with open(tmp_path / "p" / "metrics.csv") as fh:
        row = list(csv.DictReader(fh))[-1]
    assert float(row["d_loss"]) == pytest.approx(float(row["d_loss"]))  # finite, not nan
    assert abs(float(row["d_loss"])) < 1e3 and m["best_epoch"] == 1
