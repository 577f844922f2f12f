"""Model cost and CPU latency: cvcraft's architectures next to torchvision's, in one run.

(For models torchvision lacks -- SE/SK/pre-activation ResNets -- timm's twin is the peer,
shown in the "tv" column; Darknet-19 has no peer.)

For each model: parameters, GMACs (our meta-device counter, cvcraft.models.profile) and the
median eval/no_grad forward time at each batch size, for our implementation and
torchvision's implementation of the same architecture, with the same weights (loaded via
the state_dict mapping), the same input and the same thread count. Reps alternate ours and
theirs so background load hits both alike. ratio = ours / torchvision (< 1 is faster).

    python benchmarks/models.py                       # quick default subset
    python benchmarks/models.py --models resnet18 swin_tiny_patch4_window7_224 --reps 5
    python benchmarks/models.py --batch-sizes 1 --size 160
    python benchmarks/models.py --models backbones --threads 1 --size 224 --batch-sizes 1 8
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision

from cvcraft.models import create_model, list_models
from cvcraft.models.classification import preact_resnet, swin, vit
from cvcraft.models.profile import count_macs

# ours -> (torchvision constructor, state_dict mapping from torchvision's keys to ours)
PEERS = {
    "resnet18": ("resnet18", None),
    "resnet34": ("resnet34", None),
    "resnet50": ("resnet50", None),
    "resnet101": ("resnet101", None),
    "resnet152": ("resnet152", None),
    "resnext50_32x4d": ("resnext50_32x4d", None),
    "wide_resnet50_2": ("wide_resnet50_2", None),
    "mobilenet_v2": ("mobilenet_v2", None),
    "mobilenet_v3_small": ("mobilenet_v3_small", None),
    "mobilenet_v3_large": ("mobilenet_v3_large", None),
    "efficientnet_b0": ("efficientnet_b0", None),
    **{f"efficientnet_b{i}": (f"efficientnet_b{i}", None) for i in range(1, 8)},
    "convnext_tiny": ("convnext_tiny", None),
    "convnext_small": ("convnext_small", None),
    "shufflenet_v2_x0_5": ("shufflenet_v2_x0_5", None),
    "shufflenet_v2_x1_0": ("shufflenet_v2_x1_0", None),
    "inception_v3": ("inception_v3", None),
    "densenet121": ("densenet121", None),
    "densenet169": ("densenet169", None),
    "vgg11": ("vgg11", None),
    "vgg11_bn": ("vgg11_bn", None),
    "vgg13": ("vgg13", None),
    "vgg13_bn": ("vgg13_bn", None),
    "vgg16": ("vgg16", None),
    "vgg16_bn": ("vgg16_bn", None),
    "vgg19": ("vgg19", None),
    "vgg19_bn": ("vgg19_bn", None),
    "alexnet": ("alexnet", None),
    "googlenet": ("googlenet", None),
    "vit_base_patch16_224": ("vit_b_16", vit.from_torchvision_state_dict),
    "swin_tiny_patch4_window7_224": ("swin_t", swin.from_torchvision_state_dict),
    "swin_small_patch4_window7_224": ("swin_s", swin.from_torchvision_state_dict),
}
# ours -> (timm constructor, state_dict mapping from timm's keys to ours), for the models
# torchvision does not have; timm's twin runs in the "tv" column.
TIMM_PEERS = {
    "seresnet50": ("seresnet50", None),
    "skresnet18": ("skresnet18", None),
    "preact_resnet18": ("resnetv2_18", preact_resnet.from_timm_state_dict),
    "preact_resnet34": ("resnetv2_34", preact_resnet.from_timm_state_dict),
}
# The backbones of issue 20 (run with --models $(python -c ...) or the list in BENCHMARKS.md).
BACKBONES = ["mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b1", "efficientnet_b3",
             "convnext_tiny", "shufflenet_v2_x1_0", "inception_v3", "seresnet50", "skresnet18",
             "preact_resnet18", "darknet19"]  # fmt: skip
# ViT-B at batch 32 alone costs ~560 GMACs per forward, so it is opt-in (--models).
DEFAULT = ["resnet18", "resnet50", "mobilenet_v2", "swin_tiny_patch4_window7_224"]


@torch.no_grad()
def time_pair(ours, theirs, x: torch.Tensor, reps: int, warmup: int) -> tuple[float, float]:
    """Median ms per forward of each model, reps interleaved."""
    for _ in range(warmup):
        ours(x)
        if theirs is not None:
            theirs(x)
    t_ours, t_theirs = [], []
    for _ in range(reps):
        for model, times in ((ours, t_ours), (theirs, t_theirs)):
            if model is None:
                continue
            t0 = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(t_ours), statistics.median(t_theirs) if t_theirs else float("nan")


def build_pair(name: str):
    """Our model and torchvision's with identical weights (torchvision's init, copied)."""
    torch.manual_seed(0)
    ours = create_model(name).eval()
    theirs = None
    if name in PEERS:
        tv_name, mapping = PEERS[name]
        theirs = getattr(torchvision.models, tv_name)(weights=None).eval()
        sd = theirs.state_dict()
        try:
            ours.load_state_dict(mapping(sd) if mapping else sd, strict=True)
        except RuntimeError:  # same architecture, different layout: time with own weights
            print(f"  note: {name}: torchvision weights do not load; timing with own init")
    elif name in TIMM_PEERS:
        import timm  # optional peer (the bench extra)

        timm_name, mapping = TIMM_PEERS[name]
        theirs = timm.create_model(timm_name, pretrained=False).eval()
        sd = theirs.state_dict()
        ours.load_state_dict(mapping(sd) if mapping else sd, strict=True)
    return ours, theirs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", nargs="+", default=DEFAULT, help="names, or 'backbones'")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32])
    ap.add_argument("--size", type=int, default=None, help="input side (default: model's own)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    if args.models == ["backbones"]:
        args.models = BACKBONES
    torch.set_num_threads(args.threads)
    known = set(list_models())
    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, {args.threads} "
        f"threads, median of {args.reps} reps (after {args.warmup} warm-up)"
    )
    header = f"{'model':32s} {'input':>9s} {'params':>8s} {'GMACs':>7s}"
    for b in args.batch_sizes:
        header += f" {'b' + str(b) + ' ours':>11s} {'b' + str(b) + ' tv':>11s} {'ratio':>6s}"
    print(header)
    for name in args.models:
        if name not in known:
            print(f"{name:32s} not registered in cvcraft (yet); skipped")
            continue
        ours, theirs = build_pair(name)
        c, h, w = ours.default_input_size
        if args.size:
            h = w = args.size
        macs = count_macs(ours, (c, h, w))["total"]
        params = sum(p.numel() for p in ours.parameters())
        row = f"{name:32s} {f'{h}x{w}':>9s} {params / 1e6:7.2f}M {macs / 1e9:7.3f}"
        for b in args.batch_sizes:
            x = torch.randn(b, c, h, w)
            t_o, t_t = time_pair(ours, theirs, x, args.reps, args.warmup)
            row += f" {t_o:9.1f}ms {t_t:9.1f}ms {t_o / t_t:6.2f}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
