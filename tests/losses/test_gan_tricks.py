"""GAN stability tricks (issue 14): noisy and flipped discriminator labels, and WGAN weight
clipping — against by-hand BCE and clamp, with the flip frequency checked."""

import math

import pytest
import torch
import torch.nn.functional as F

from cvcraft.cli import run
from cvcraft.engine.checkpoint import load_checkpoint
from cvcraft.errors import ConfigError
from cvcraft.losses.gan import clip_weights_, d_loss, d_targets


def test_targets_are_noisy_and_flipped_by_hand():
    u = torch.tensor([[0.0, 0.5, 1.0, 0.2], [1.0, 0.5, 0.0, 0.4], [0.3, 0.29, 0.31, 0.9]])
    real, fake = d_targets(4, u, noise=0.2, flip=0.3)
    want_real = torch.tensor([1.0, 0.9, 0.8, 0.96])
    want_fake = torch.tensor([0.2, 0.1, 0.0, 0.08])
    swap = torch.tensor([False, True, False, False])  # u2 < 0.3; u2 == 0.3 would not swap
    torch.testing.assert_close(real, torch.where(swap, want_fake, want_real))
    torch.testing.assert_close(fake, torch.where(swap, want_real, want_fake))
    u[2, 0] = 0.3  # exactly the flip probability: not flipped (strict <)
    assert d_targets(4, u, 0.2, 0.3)[0][0] == pytest.approx(1.0)
    r0, f0 = d_targets(4, torch.rand(3, 4), 0.0, 0.0)
    assert (r0 == 1).all() and (f0 == 0).all()
    with pytest.raises(ConfigError, match=r"needs \(3, 5\) uniform draws"):
        d_targets(5, torch.rand(3, 4))


def test_d_loss_with_targets_equals_bce_by_hand():
    g = torch.Generator().manual_seed(0)
    real_logits, fake_logits = (
        torch.randn(6, 1, 2, 2, generator=g),
        torch.randn(6, 1, 2, 2, generator=g),
    )
    rt, ft = torch.rand(6, generator=g), torch.rand(6, generator=g)
    got = d_loss("bce", real_logits, fake_logits, smooth=0.1, targets=(rt, ft))
    rt4, ft4 = rt.view(6, 1, 1, 1).expand(6, 1, 2, 2), ft.view(6, 1, 1, 1).expand(6, 1, 2, 2)
    want = F.binary_cross_entropy_with_logits(real_logits, rt4 * 0.9)
    want = want + F.binary_cross_entropy_with_logits(fake_logits, ft4)
    torch.testing.assert_close(got, want)
    # no targets: the plain loss (real 1 - smooth, fake 0)
    plain = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, 0.9))
    plain = plain + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    torch.testing.assert_close(d_loss("bce", real_logits, fake_logits, 0.1), plain)
    with pytest.raises(ConfigError, match="loss=hinge has none"):
        d_loss("hinge", real_logits, fake_logits, targets=(rt, ft))


def test_flip_frequency_matches_the_probability():
    n, p = 40_000, 0.25
    real, _ = d_targets(n, torch.rand(3, n, generator=torch.Generator().manual_seed(1)), 0.0, p)
    flipped = (real == 0).float().mean().item()
    assert abs(flipped - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_clip_weights_is_a_clamp():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 1))
    want = [p.detach().clamp(-0.05, 0.05) for p in net.parameters()]
    clip_weights_(net, 0.05)
    for p, w in zip(net.parameters(), want):
        assert torch.equal(p.detach(), w)
    with pytest.raises(ConfigError, match="must be > 0"):
        clip_weights_(net, 0.0)


TINY = ["data=shapes:48", "imgsz=28", "batch=16", "model_kwargs={width: 8}", "noise_dim=8",
        "progress=false", "sample_n=8", "val_fraction=0.2", "plots=false"]  # fmt: skip


def test_wgan_with_weight_clipping_trains_and_keeps_the_critic_clipped(tmp_path):
    out = tmp_path / "w"
    run(["train", "generate", *TINY, "loss=wgan", "clip_value=0.01", "optimizer=rmsprop",
         "lr=5e-5", "n_critic=5", "epochs=1", f"out={out}"])  # fmt: skip
    disc = load_checkpoint(out / "last.pt")["parts"]["disc"]["model"]
    weights = [v for k, v in disc.items() if v.is_floating_point() and "running" not in k]
    assert weights and all(v.abs().max() <= 0.01 + 1e-12 for v in weights)
    assert any(v.abs().max() == pytest.approx(0.01) for v in weights)  # clipping was active


def test_noisy_flipped_labels_train_and_bad_combinations_are_refused(tmp_path):
    run(["train", "generate", *TINY, "label_noise=0.1", "label_flip=0.05", "epochs=1",
         f"out={tmp_path / 'n'}"])  # fmt: skip
    with pytest.raises(ConfigError, match="label_noise/label_flip change BCE targets"):
        run(["train", "generate", "loss=hinge", "label_flip=0.1"])
    with pytest.raises(ConfigError, match=r"label_flip=0.5 must be in \[0, 0.5\)"):
        run(["train", "generate", "label_flip=0.5"])
    with pytest.raises(ConfigError, match="clip_value=0.01"):
        run(["train", "generate", "loss=wgan"])
