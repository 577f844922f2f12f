"""Latent diffusion (issue 14): a DDPM on a frozen autoencoder's codes — the latent scale by
hand, the first stage untouched by training, sampling decoded by the first stage."""

import pytest
import torch

from cvcraft.cli import run
from cvcraft.engine.checkpoint import load_checkpoint
from cvcraft.errors import ConfigError
from cvcraft.models import create_model

TINY = ["data=shapes:48", "imgsz=28", "batch=16", "progress=false", "sample_n=4",
        "val_fraction=0.2", "plots=false", "epochs=1"]  # fmt: skip


def test_latent_maps_and_decoding():
    torch.manual_seed(0)
    m = create_model("ldm", num_classes=3, in_chans=1, img_size=28, width=8,
                     vae={"noise_dim": 16, "width": 8}, diffusion_steps=10,
                     sample_steps=2).eval()  # fmt: skip
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    m.latent_scale.fill_(2.0)
    lat = m.encode(x)
    mu, _ = m.first_stage.encoder(x)
    torch.testing.assert_close(lat, (mu * 2.0).view(2, 1, 4, 4))
    torch.testing.assert_close(m.decode(lat), m.first_stage.decoder(mu))
    img = m(torch.randn(2, 16), seed=1)
    assert img.shape == (2, 1, 28, 28) and not m.ddpm.clip  # latents are not clipped
    with pytest.raises(ConfigError, match="square latent with a side divisible by 4"):
        create_model("ldm", num_classes=3, in_chans=1, img_size=28, vae={"noise_dim": 12})


def test_ldm_trains_on_a_frozen_first_stage(tmp_path):
    vae_run = tmp_path / "vae"
    run(["train", "generate", *TINY, "model=vae", "noise_dim=16", "model_kwargs={width: 8}",
         f"out={vae_run}"])  # fmt: skip
    with pytest.raises(ConfigError, match="pass first_stage=RUN/best.pt"):
        run(["train", "generate", *TINY, "model=ldm", f"out={tmp_path / 'x'}"])
    out = tmp_path / "ldm"
    run(["train", "generate", *TINY, "model=ldm", f"first_stage={vae_run / 'best.pt'}",
         "model_kwargs={width: 8, diffusion_steps: 20, sample_steps: 2}",
         f"out={out}"])  # fmt: skip
    from cvcraft.engine.trainer import weights_of

    first = weights_of(load_checkpoint(vae_run / "best.pt"))  # the weights users load (EMA)
    saved = load_checkpoint(out / "last.pt")
    ldm = saved["model"]
    assert saved["ema"] is None or all(
        torch.equal(saved["ema"][k], ldm[k]) for k in ldm if k.startswith("first_stage.")
    )
    for k, v in first.items():  # the autoencoder is copied in and never trained
        assert torch.equal(ldm[f"first_stage.{k}"], v), k
    # the latent scale is 1 / std of the training codes (not the default 1)
    assert ldm["latent_scale"].item() != 1.0
    res = run(["predict", "generate", f"weights={out / 'best.pt'}", "n=2", "steps=2",
               f"out={tmp_path / 'p'}"])  # fmt: skip
    assert len(res) == 2
