"""The DDPM model: the sinusoidal embedding by its formula, the two forward modes, and a
sampler loop that equals stepping the schedule by hand."""

import math

import pytest
import torch

from cvcraft.errors import ConfigError
from cvcraft.models import create_model
from cvcraft.models.generative.ddpm import timestep_embedding


def test_timestep_embedding_formula():
    t = torch.tensor([0, 1, 17, 999])
    emb = timestep_embedding(t, 8)
    for row, tv in zip(emb, t.tolist()):
        w = [10000 ** (-i / 4) for i in range(4)]
        want = [math.sin(tv * x) for x in w] + [math.cos(tv * x) for x in w]
        assert torch.allclose(row, torch.tensor(want), atol=1e-4)


def test_forward_modes_and_ddim_loop_by_hand():
    torch.manual_seed(0)
    kw = {"img_size": 12, "width": 8, "diffusion_steps": 20, "sample_steps": 4}
    m = create_model("cddpm", num_classes=3, in_chans=1, **kw).eval()
    y = torch.tensor([0, 2])
    x = torch.randn(2, 1, 12, 12)
    eps = m(x, y, t=torch.tensor([3, 19]))
    assert eps.shape == x.shape
    out = m(x.flatten(1), y)  # sampling: z is x_T flattened
    s, xt = m.schedule, x.clone()
    ts = s.ddim_timesteps(4)
    assert ts == [15, 10, 5, 0]
    raw = xt.clone()
    with torch.no_grad():
        for i, t in enumerate(ts):
            prev = ts[i + 1] if i + 1 < 4 else -1
            e = m.unet(xt, torch.full((2,), t), y)
            xt = s.ddim_step(e, t, prev, xt, clipped_eps=True)  # the default
            raw = s.ddim_step(m.unet(raw, torch.full((2,), t), y), t, prev, raw)
    assert torch.allclose(out, xt.clamp(-1, 1), atol=1e-6)
    # the untrained ε̂ overshoots x̂_0 out of [-1, 1]: the raw-ε̂ update is another path
    assert not torch.allclose(out, raw.clamp(-1, 1), atol=1e-3)
    m.clipped_eps = False
    assert torch.allclose(m(x.flatten(1), y), raw.clamp(-1, 1), atol=1e-6)


def test_bad_options():
    with pytest.raises(ConfigError, match="multiple of 4"):
        create_model("ddpm", img_size=30)
    with pytest.raises(ConfigError, match="sampler='euler'"):
        create_model("ddpm", sampler="euler")
    with pytest.raises(ConfigError, match="steps=2000 must be in"):
        create_model("ddpm", sample_steps=2000)
