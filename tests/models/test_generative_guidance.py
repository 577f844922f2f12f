"""Classifier-free guidance for the conditional DDPM (Ho & Salimans 2022): the guided ε̂ is
ε̂(x, ∅) + w·(ε̂(x, y) - ε̂(x, ∅)) by hand; labels are dropped to ∅ at the configured rate;
predict's sampler/steps/guidance keys reach the model or are refused."""

import math

import pytest
import torch

from cvcraft.cli import run
from cvcraft.errors import ConfigError
from cvcraft.models import create_model


def _model(**kw):
    torch.manual_seed(0)
    return create_model("cddpm", num_classes=3, in_chans=1, img_size=8, width=8,
                        diffusion_steps=20, sample_steps=4, **kw).eval()  # fmt: skip


def test_guided_eps_is_the_cfg_formula_by_hand():
    m = _model()
    x, t, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 5, 10, 19]), torch.tensor([0, 1, 2, 1])
    null = torch.full_like(y, 3)  # the extra embedding row
    assert m.unet.label_emb.num_embeddings == 4 and m.unet.null_label == 3
    with torch.no_grad():
        cond, uncond = m.unet(x, t, y), m.unet(x, t, null)
        for w in (0.0, 1.0, 2.5):
            m.guidance = w
            torch.testing.assert_close(m.eps(x, t, y), uncond + w * (cond - uncond))
        m.guidance = 1.0
        assert torch.equal(m.eps(x, t, y), cond)  # w = 1: the plain conditional pass


def test_sampling_with_guidance_differs_and_is_seeded():
    m = _model()
    z, y = torch.randn(2, 64), torch.tensor([0, 2])
    plain = m(z, y, seed=3)
    m.guidance = 3.0
    guided, again = m(z, y, seed=3), m(z, y, seed=3)
    assert torch.equal(guided, again) and not torch.allclose(plain, guided)


TINY = [
    "data=shapes:48",
    "imgsz=8",
    "batch=16",
    "model_kwargs={width: 8, diffusion_steps: 20, sample_steps: 4}",
    "progress=false",
    "sample_n=4",
    "val_fraction=0.2",
    "plots=false",
]


def test_cond_drop_rate_and_predict_keys(tmp_path, monkeypatch):
    seen = []
    real_unet_forward = type(_model().unet).forward

    def spy(self, x, t, labels=None):
        if torch.is_grad_enabled() and labels is not None:  # training passes only
            seen.append(labels.clone())
        return real_unet_forward(self, x, t, labels)

    monkeypatch.setattr(type(_model().unet), "forward", spy)
    out = tmp_path / "c"
    run(["train", "generate", *TINY, "model=cddpm", "cond_drop=0.3", "epochs=2", f"out={out}"])
    labels = torch.cat(seen)
    k = len(labels)
    dropped = (labels == 6).float().mean().item()  # shapes has 6 classes: 6 is the null row
    assert abs(dropped - 0.3) < 4 * math.sqrt(0.3 * 0.7 / k)
    monkeypatch.undo()
    res = run(["predict", "generate", f"weights={out / 'best.pt'}", "n=2", "class=1",
               "guidance=2", "sampler=ddim", "steps=2", f"out={tmp_path / 'p'}"])  # fmt: skip
    assert len(res) == 2
    with pytest.raises(ConfigError, match=r"sampling steps=50 must be in 1..20"):
        run(["predict", "generate", f"weights={out / 'best.pt'}", "n=1", "steps=50",
             f"out={tmp_path / 'q'}"])  # fmt: skip
    gan = tmp_path / "g"
    run(["train", "generate", "data=shapes:48", "imgsz=28", "batch=16", "model_kwargs={width: 8}",
         "noise_dim=8", "progress=false", "sample_n=4", "val_fraction=0.2", "plots=false",
         "epochs=1", f"out={gan}"])  # fmt: skip
    with pytest.raises(ConfigError, match="only diffusion models"):
        run(["predict", "generate", f"weights={gan / 'best.pt'}", "n=1", "guidance=2",
             f"out={tmp_path / 'r'}"])  # fmt: skip
