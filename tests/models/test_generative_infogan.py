"""InfoGAN (issue 14): the codes drawn from one Gaussian vector have the right distributions
(frequencies checked), the MI term by hand, and training end to end."""

import csv
import math

import pytest
import torch
import torch.nn.functional as F

from cvcraft.cli import run
from cvcraft.errors import ConfigError
from cvcraft.losses.gan import info_loss
from cvcraft.models import create_model


def _gan():
    torch.manual_seed(0)
    return create_model("infogan", num_classes=6, in_chans=1, img_size=28, width=8,
                        noise_dim=8, n_cat=5, n_cont=2)  # fmt: skip


def test_codes_have_the_right_distributions():
    g = _gan().generator
    n = 50_000
    z = torch.randn(n, 8 + 2 + 5, generator=torch.Generator().manual_seed(0))
    cat, cont = g.codes(z)
    freq = torch.bincount(cat, minlength=5).double() / n
    bound = 4 * math.sqrt(0.2 * 0.8 / n)
    assert (freq - 0.2).abs().max() < bound  # each category equally often
    assert cont.min() > -1 and cont.max() < 1
    for q in (0.1, 0.5, 0.9):  # U(-1, 1): P(c < 2q - 1) = q
        frac = (cont < 2 * q - 1).double().mean(0)
        assert (frac - q).abs().max() < 4 * math.sqrt(q * (1 - q) / n)
    assert torch.equal(cat, z[:, 10:].argmax(1))


def test_the_categorical_code_steers_the_generator():
    gan = _gan().eval()
    z = torch.randn(4, 15)
    a = z.clone()
    a[:, 10:] = torch.eye(5)[[0, 0, 0, 0]] * 5  # category 0 for every row
    b = a.clone()
    b[:, 10:] = torch.eye(5)[[3, 3, 3, 3]] * 5  # category 3, the rest of z unchanged
    with torch.no_grad():
        out_a, out_b = gan(a), gan(b)
        assert not torch.allclose(out_a, out_b)
        want = gan.generator.net(torch.cat([a[:, :8], torch.erf(a[:, 8:10] / math.sqrt(2))], 1),
                                 torch.zeros(4, dtype=torch.long))  # fmt: skip
        torch.testing.assert_close(out_a, want)
    logit, q_cat, q_cont = gan.discriminator(out_a, with_q=True)
    assert logit.shape == (4,) and q_cat.shape == (4, 5) and q_cont.shape == (4, 2)
    torch.testing.assert_close(gan.discriminator(out_a), logit)


def test_info_loss_by_hand():
    g = torch.Generator().manual_seed(2)
    q_cat, q_cont = torch.randn(6, 4, generator=g), torch.randn(6, 2, generator=g)
    cat, cont = torch.tensor([0, 1, 2, 3, 0, 1]), torch.rand(6, 2, generator=g) * 2 - 1
    want = F.cross_entropy(q_cat, cat) + 0.5 * 0.5 * ((q_cont - cont) ** 2).sum(1).mean()
    torch.testing.assert_close(info_loss(q_cat, q_cont, cat, cont, cont_weight=0.5), want)
    torch.testing.assert_close(info_loss(q_cat, q_cont[:, :0], cat, cont[:, :0]),
                               F.cross_entropy(q_cat, cat))  # fmt: skip


def test_infogan_trains_and_logs_the_mi_term(tmp_path):
    out = tmp_path / "i"
    run(["train", "generate", "model=infogan", "data=shapes:48", "imgsz=28", "batch=16",
         "model_kwargs={width: 8, n_cat: 6}", "noise_dim=8", "progress=false", "sample_n=6",
         "val_fraction=0.2", "plots=false", "epochs=2", f"out={out}"])  # fmt: skip
    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    info = [float(r["info"]) for r in rows]
    assert all(math.isfinite(v) and v > 0 for v in info)
    res = run(["predict", "generate", f"weights={out / 'best.pt'}", "n=3",
               f"out={tmp_path / 'p'}"])  # fmt: skip
    assert len(res) == 3
    with pytest.raises(ConfigError, match="unconditional"):
        run(["predict", "generate", f"weights={out / 'best.pt'}", "n=1", "class=1",
             f"out={tmp_path / 'q'}"])  # fmt: skip
