"""Multi-scale backbone features: cvcraft's ``features_only`` next to torchvision and timm.

For each backbone, the median eval/no_grad time of one forward returning every tap of
``feature_info`` (the maps a neck such as FPN consumes), for

- ours: ``create_model(name, features_only=True)`` (``forward_intermediates``, stops after the
  deepest tap);
- torchvision: ``create_feature_extractor`` (torch.fx) on the torchvision twin with the same
  weights and the same return nodes;
- timm (when installed): ``timm.create_model(timm_name, features_only=True)``.

Outputs of ours and torchvision are checked equal before timing. Reps alternate the peers so
background load hits all alike. ratio = ours / peer (< 1 is faster).

    python benchmarks/features.py
    python benchmarks/features.py --models resnet50 --batch 4 --size 320 --reps 7
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision
from torchvision.models.feature_extraction import create_feature_extractor

from cvcraft.models import create_model, model_default_cfg
from cvcraft.models.registry import tv_converter
from cvcraft.models.weights import load_weights

TIMM = {"resnet50": "resnet50", "mobilenet_v2": "mobilenetv2_100",
        "efficientnet_b0": "efficientnet_b0", "densenet121": "densenet121"}  # fmt: skip


def _time(fn, x: torch.Tensor) -> float:
    t = time.perf_counter()
    fn(x)
    return time.perf_counter() - t


@torch.no_grad()
def bench(name: str, batch: int, size: int, reps: int) -> dict[str, float]:
    torch.manual_seed(0)
    tv = torchvision.models.get_model(model_default_cfg(name)["tv_twin"], weights=None).eval()
    full = create_model(name)
    load_weights(full, tv.state_dict(), tv_converter=tv_converter(name))
    nodes = [f["module"] for f in full.feature_info]
    ours = create_model(name, features_only=True, weights=tv.state_dict()).eval()
    theirs = create_feature_extractor(tv, return_nodes={n: n for n in nodes}).eval()
    peers = {"ours": ours, "torchvision": lambda x: list(theirs(x).values())}
    try:
        import timm  # noqa: PLC0415  (optional peer)

        peers["timm"] = timm.create_model(TIMM[name], features_only=True, pretrained=False).eval()
    except (ImportError, KeyError):
        pass
    x = torch.randn(batch, 3, size, size)
    for a, b in zip(ours(x), peers["torchvision"](x)):  # same maps, or the timing means nothing
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    times: dict[str, list[float]] = {k: [] for k in peers}
    for fn in peers.values():  # warm-up
        fn(x)
    for _ in range(reps):
        for k, fn in peers.items():
            times[k].append(_time(fn, x))
    return {k: statistics.median(v) * 1000 for k, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(TIMM))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"batch {a.batch}, {a.size}x{a.size}, {a.threads} thread(s), median of {a.reps} (ms)")
    head = ["ours", "torchvision", "timm", "ours/tv", "ours/timm"]
    print(f"{'model':18s} " + " ".join(f"{h:>11s}" for h in head))
    for name in a.models:
        r = bench(name, a.batch, a.size, a.reps)
        timm_ms = r.get("timm", float("nan"))
        cells = [r["ours"], r["torchvision"], timm_ms, r["ours"] / r["torchvision"],
                 r["ours"] / timm_ms]  # fmt: skip
        print(f"{name:18s} " + " ".join(f"{c:11.2f}" for c in cells))


if __name__ == "__main__":
    main()
