"""Mutation check for tests/MUTATIONS.md: apply one deliberate one-line bug at a time to the
library, run the tests that guard that module, restore the file, and print a Markdown table.

    OMP_NUM_THREADS=1 python tests/mutation_run.py [--root DIR] [name-substring ...]

``--root`` runs against another checkout (e.g. an exported older commit, to see what the
suite caught before; test files it lacks are left out). The library file is restored after
every mutant (also on Ctrl-C), and nothing is committed. Each mutant names the exact source
text it replaces, so a refactor that removes that text shows as ERROR, not as a pass.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]  # replaced by --root


class Mutant(NamedTuple):
    name: str
    path: str  # library file, relative to the repository root
    old: str  # exact source text (must occur once)
    new: str
    tests: tuple[str, ...]  # pytest node ids / files that should kill it


COCO_TESTS = ("tests/metrics/test_metrics_coco.py", "tests/metrics/test_coco_boundaries.py")
NMS_TESTS = ("tests/ops/test_ops_nms.py",)
ASSIGN_TESTS = ("tests/ops/test_ops_assigners.py",)

MUTANTS = [
    Mutant(
        "coco: IoU >= t becomes > t",
        "cvcraft/metrics/coco.py",
        "cand = avail[live] & (iou[:, None, None, :] >= thr4)",
        "cand = avail[live] & (iou[:, None, None, :] > thr4)",
        COCO_TESTS,
    ),
    Mutant(
        "coco: gt area range lower bound exclusive",
        "cvcraft/metrics/coco.py",
        "(gt_area[:, None] < lo) | (gt_area[:, None] > hi)",
        "(gt_area[:, None] <= lo) | (gt_area[:, None] > hi)",
        COCO_TESTS,
    ),
    Mutant(
        "coco: detection area range upper bound exclusive",
        "cvcraft/metrics/coco.py",
        "((darea[:, None] < lo) | (darea[:, None] > hi))",
        "((darea[:, None] < lo) | (darea[:, None] >= hi))",
        COCO_TESTS,
    ),
    Mutant(
        "coco: IoU tie between gts goes to the earlier gt",
        "cvcraft/metrics/coco.py",
        'order = np.argsort(iou, axis=-1, kind="stable")  # (L, Gp)',
        'order = np.argsort(-iou, axis=-1, kind="stable")[:, ::-1]  # (L, Gp)',
        COCO_TESTS,
    ),
    Mutant(
        "coco: crowd IoU over the union instead of the detection area",
        "cvcraft/metrics/coco.py",
        "union = np.where(gt_crowd, area_d, (area_d + gt[..., 2] * gt[..., 3]) - inter)",
        "union = (area_d + gt[..., 2] * gt[..., 3]) - inter",
        COCO_TESTS,
    ),
    Mutant(
        "nms: candidates sorted unstably (score ties by a different order)",
        "cvcraft/ops/nms.py",
        "order = torch.sort(scores[cand], descending=True, stable=True).indices",
        "order = torch.sort(scores[cand], stable=True).indices.flip(0)",
        NMS_TESTS,
    ),
    Mutant(
        "nms: score_threshold exclusive",
        "cvcraft/ops/nms.py",
        "cand = torch.nonzero(scores >= score_threshold).squeeze(1)",
        "cand = torch.nonzero(scores > score_threshold).squeeze(1)",
        NMS_TESTS,
    ),
    Mutant(
        "nms: Fast NMS suppresses at IoU == t",
        "cvcraft/ops/nms.py",
        "return torch.nonzero(_max_iou_from_above(boxes, labels) <= thr).squeeze(1)",
        "return torch.nonzero(_max_iou_from_above(boxes, labels) < thr).squeeze(1)",
        NMS_TESTS,
    ),
    Mutant(
        "nms: linear Soft-NMS decays only above t",
        "cvcraft/ops/nms.py",
        "decay = torch.where(iou >= thr, 1 - iou, torch.ones_like(iou))",
        "decay = torch.where(iou > thr, 1 - iou, torch.ones_like(iou))",
        NMS_TESTS,
    ),
    Mutant(
        "nms: weighted NMS cluster includes IoU == t",
        "cvcraft/ops/nms.py",
        "member = (iou > thr) & (keep[:, None] < pos[None, :])",
        "member = (iou >= thr) & (keep[:, None] < pos[None, :])",
        NMS_TESTS,
    ),
    Mutant(
        "assign: IoU == pos_thr is ignored, not positive",
        "cvcraft/ops/assigners.py",
        "gt_index[best_iou < pos_thr] = IGNORE",
        "gt_index[best_iou <= pos_thr] = IGNORE",
        ASSIGN_TESTS,
    ),
    Mutant(
        "assign: IoU == neg_thr is negative, not ignored",
        "cvcraft/ops/assigners.py",
        "gt_index[best_iou < neg_thr] = NEGATIVE",
        "gt_index[best_iou <= neg_thr] = NEGATIVE",
        ASSIGN_TESTS,
    ),
    Mutant(
        "assign: low-quality rescue requires IoU > min_pos_iou",
        "cvcraft/ops/assigners.py",
        "keep = (iou == per_gt[:, None]) & (per_gt >= min_pos_iou)[:, None]  # (M, N)",
        "keep = (iou == per_gt[:, None]) & (per_gt > min_pos_iou)[:, None]  # (M, N)",
        ASSIGN_TESTS,
    ),
]


def run(m: Mutant, root: Path) -> tuple[str, float, str]:
    """(killed|SURVIVED|ERROR, seconds, last pytest line) for one mutant."""
    tests = [t for t in m.tests if (root / t.split("::")[0]).exists()]
    if not tests:
        return "no tests", 0.0, ""
    path = root / m.path
    src = path.read_text()
    if src.count(m.old) != 1:
        return "ERROR", 0.0, f"source text found {src.count(m.old)} times (refactored?)"
    try:
        path.write_text(src.replace(m.old, m.new))
        t0 = time.perf_counter()
        p = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
            cwd=root,
            capture_output=True,
            text=True,
        )
        dt = time.perf_counter() - t0
    finally:
        path.write_text(src)
    last = (p.stdout.strip().splitlines() or [""])[-1]
    if p.returncode == 1:
        return "killed", dt, last
    return ("SURVIVED" if p.returncode == 0 else "ERROR"), dt, last


def main(argv: list[str]) -> int:
    root = ROOT
    if argv[:1] == ["--root"]:
        root, argv = Path(argv[1]).resolve(), argv[2:]
    chosen = [m for m in MUTANTS if not argv or any(a in m.name for a in argv)]
    print("| mutant | file | tests | result | pytest |")
    print("|---|---|---|---|---|")
    survived = 0
    for m in chosen:
        result, dt, last = run(m, root)
        survived += result != "killed"
        tests = ", ".join(Path(t.split("::")[0]).name for t in m.tests)
        print(f"| {m.name} | {m.path} | {tests} | **{result}** ({dt:.0f}s) | {last} |", flush=True)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
