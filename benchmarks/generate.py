"""Generation speed, ours next to the peer in the same run (one thread each):

1. DDIM 50-step sampling, images/s: ``DDPM.sample`` (our schedule and loop) against
   diffusers' ``DDIMScheduler`` loop (``set_timesteps`` + ``step``) driving the same U-Net
   on the same x_T. The outputs must agree (max |diff| is printed).
2. A GAN training step (D step + G step, DCGAN/cGAN at 28 px, batch 64): the ``generate``
   task's ``train_step`` through the Trainer's step context, against a bare PyTorch loop
   with the same networks, losses and Adam settings.

Each measurement is the best of ``--repeats`` timed runs (robust to a busy machine);
``ratio`` = ours / peer throughput (> 1: ours is faster).

    OMP_NUM_THREADS=1 python benchmarks/generate.py             # ~1-2 minutes
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
import torch.nn.functional as F

from cvcraft.models import create_model


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_ddim(batch: int, repeats: int) -> None:
    import diffusers

    torch.manual_seed(0)
    model = create_model("cddpm", num_classes=10, in_chans=1, img_size=28, width=32,
                         sample_steps=50).eval()  # fmt: skip
    x_t = torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    y = torch.arange(batch) % 10
    ref = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear")

    def ours() -> torch.Tensor:
        return model(x_t.flatten(1), y)

    @torch.no_grad()
    def peer() -> torch.Tensor:
        ref.set_timesteps(50)
        x = x_t.clone()
        for t in ref.timesteps:
            eps = model.unet(x, torch.full((batch,), int(t)), y)
            x = ref.step(eps, t, x, eta=0.0).prev_sample
        return x.clamp(-1, 1)

    diff = float((ours() - peer()).abs().max())
    t_ours, t_peer = best_time(ours, repeats), best_time(peer, repeats)
    print(
        f"ddim50 sampling (batch {batch}): ours {batch / t_ours:.1f} img/s, diffusers loop "
        f"{batch / t_peer:.1f} img/s, ratio {t_peer / t_ours:.3f}, max|diff| {diff:.2e}"
    )


def bench_gan_step(batch: int, steps: int, repeats: int) -> None:
    from cvcraft.engine.trainer import Trainer
    from cvcraft.tasks.generate.task import GenerateTask
    from cvcraft.tasks.registry import task_config

    cfg = task_config("generate", {"data": "shapes:128", "imgsz": 28, "model": "cgan",
                                   "batch": batch, "progress": False, "plots": False,
                                   "ema": False, "model_kwargs": {"width": 32}})  # fmt: skip
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(GenerateTask(cfg), cfg, out)
        trainer._setup()
        task = trainer.task
        batches = [next(iter(trainer.train_loader)) for _ in range(1)] * steps
        gen, disc = trainer.model, trainer.extra_parts["disc"].model

        def ours() -> None:
            for b in batches:
                task.train_step(b, trainer)
                trainer.global_step += 1

        g2 = create_model("cgan", num_classes=6, in_chans=3, img_size=28, width=32)
        bg, bd = g2.generator, g2.discriminator
        bg.load_state_dict(gen.state_dict())
        bd.load_state_dict(disc.state_dict())
        og = torch.optim.Adam(bg.parameters(), 2e-4, betas=(0.5, 0.999))
        od = torch.optim.Adam(bd.parameters(), 2e-4, betas=(0.5, 0.999))

        def peer() -> None:
            for b in batches:
                real = b["images"].float() / 127.5 - 1
                y = b["labels"]
                z = torch.randn(len(real), 64)
                with torch.no_grad():
                    fake = bg(z, y)
                ones, zeros = torch.ones(len(real)), torch.zeros(len(real))
                d = F.binary_cross_entropy_with_logits(bd(real, y), ones)
                d = d + F.binary_cross_entropy_with_logits(bd(fake, y), zeros)
                od.zero_grad(set_to_none=True)
                d.backward()
                od.step()
                g = F.softplus(-bd(bg(torch.randn(len(real), 64), y), y)).mean()
                og.zero_grad(set_to_none=True)
                g.backward()
                og.step()

        ours(), peer()  # warm-up
        t_ours, t_peer = best_time(ours, repeats), best_time(peer, repeats)
    n = batch * steps
    print(f"GAN train step (cGAN 28 px, batch {batch}): ours {n / t_ours:.1f} img/s, bare "
          f"PyTorch {n / t_peer:.1f} img/s, ratio {t_peer / t_ours:.3f}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    bench_ddim(args.batch, args.repeats)
    bench_gan_step(64, args.steps, args.repeats)


if __name__ == "__main__":
    main()
