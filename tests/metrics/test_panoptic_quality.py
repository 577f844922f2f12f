"""PanopticEvaluator vs a loop port of panopticapi's ``pq_compute`` formula written here
(the oracle) on synthetic panoptic maps: VOID, crowds, merged/split/shifted/relabelled
segments; plus hand-made exact cases and bad input."""

import numpy as np
import pytest

from cvcraft.errors import DataError
from cvcraft.metrics.panoptic import OFFSET, PanopticEvaluator, rgb_to_id

CATS = [{"id": c, "isthing": 1, "name": f"t{c}"} for c in (1, 2, 3, 5)] + [
    {"id": c, "isthing": 0, "name": f"s{c}"} for c in (100, 101, 102)
]


# ------------------------------------------------------------------ reference (loops)


def _ref_image(stat, gt, gt_segs, pred, pred_segs):
    """One image, the way panopticapi's pq_compute_single_core counts it."""
    gsegs = {s["id"]: dict(s) for s in gt_segs}
    psegs = {s["id"]: dict(s) for s in pred_segs}
    for label, cnt in zip(*np.unique(pred, return_counts=True)):
        if int(label) in psegs:
            psegs[int(label)]["area"] = int(cnt)
    table = {}
    for label, cnt in zip(*np.unique(gt.astype(np.int64) * OFFSET + pred, return_counts=True)):
        table[(int(label) // OFFSET, int(label) % OFFSET)] = int(cnt)
    gm, pm = set(), set()
    for (gl, pl), inter in table.items():
        if gl not in gsegs or pl not in psegs:
            continue
        if gsegs[gl].get("iscrowd", 0) == 1:
            continue
        if gsegs[gl]["category_id"] != psegs[pl]["category_id"]:
            continue
        union = psegs[pl]["area"] + gsegs[gl]["area"] - inter - table.get((0, pl), 0)
        iou = inter / union
        if iou > 0.5:
            st = stat[gsegs[gl]["category_id"]]
            st["tp"] += 1
            st["iou"] += iou
            gm.add(gl)
            pm.add(pl)
    crowd = {}
    for gl, info in gsegs.items():
        if gl in gm:
            continue
        if info.get("iscrowd", 0) == 1:
            crowd[info["category_id"]] = gl
            continue
        stat[info["category_id"]]["fn"] += 1
    for pl, info in psegs.items():
        if pl in pm:
            continue
        inter = table.get((0, pl), 0)
        if info["category_id"] in crowd:
            inter += table.get((crowd[info["category_id"]], pl), 0)
        if inter / info["area"] > 0.5:
            continue
        stat[info["category_id"]]["fp"] += 1


def _ref_average(stat, isthing):
    pq = sq = rq = 0.0
    n = 0
    for c in CATS:
        if isthing is not None and (c["isthing"] == 1) != isthing:
            continue
        s = stat[c["id"]]
        if s["tp"] + s["fp"] + s["fn"] == 0:
            continue
        n += 1
        pq += s["iou"] / (s["tp"] + 0.5 * s["fp"] + 0.5 * s["fn"])
        sq += s["iou"] / s["tp"] if s["tp"] != 0 else 0
        rq += s["tp"] / (s["tp"] + 0.5 * s["fp"] + 0.5 * s["fn"])
    return {"pq": pq / n, "sq": sq / n, "rq": rq / n, "n": n} if n else None


# ------------------------------------------------------------------ synthetic maps


def _synthetic(rng, h=48, w=64):
    """A gt map (stuff bands, thing rectangles on top, VOID, crowds) and a perturbed
    prediction (shifted, merged, split, relabelled, dropped and extra segments)."""
    gt = np.zeros((h, w), np.int64)
    segs, next_id = [], 1
    cuts = np.sort(rng.choice(np.arange(4, h - 4), 2, replace=False))
    for lo, hi in zip([0, *cuts], [*cuts, h]):
        gt[lo:hi] = next_id
        segs.append({"id": next_id, "category_id": int(rng.choice([100, 101, 102]))})
        next_id += 1
    for _ in range(int(rng.integers(2, 7))):
        y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
        gt[y : y + rng.integers(3, 20), x : x + rng.integers(3, 24)] = next_id
        segs.append({"id": next_id, "category_id": int(rng.choice([1, 2, 3, 5])),
                     "iscrowd": int(rng.random() < 0.2)})  # fmt: skip
        next_id += 1
    gt[rng.random((h, w)) < 0.05] = 0  # VOID speckle
    gt[: rng.integers(0, 5)] = 0  # and a VOID border
    present = set(np.unique(gt).tolist())
    segs = [s for s in segs if s["id"] in present]
    for s in segs:
        s["area"] = int((gt == s["id"]).sum())
    # Prediction: relabel ids (some merged), shift, paint extra segments, add VOID.
    ids = [s["id"] for s in segs]
    new = {i: int(v) for i, v in zip(ids, rng.permutation(len(ids)) + 200)}
    if len(ids) > 3 and rng.random() < 0.5:
        new[ids[-1]] = new[ids[-2]]  # two gt segments predicted as one
    lut = np.zeros(gt.max() + 1, np.int64)
    for i, v in new.items():
        lut[i] = v
    pred = lut[gt]
    dy, dx = rng.integers(-3, 4, 2)
    pred = np.roll(pred, (int(dy), int(dx)), axis=(0, 1))
    for k in range(int(rng.integers(0, 4))):
        y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
        pred[y : y + rng.integers(3, 25), x : x + rng.integers(3, 30)] = 500 + k
    if rng.random() < 0.5 and len(ids) > 1:  # split a segment in two halves
        sid = new[ids[0]]
        ys, xs = np.nonzero(pred == sid)
        if len(ys):
            pred[(pred == sid) & (np.arange(w)[None, :] > np.median(xs))] = 600
    pred[rng.random((h, w)) < 0.03] = 0
    cat_of = {new[s["id"]]: s["category_id"] for s in segs}
    psegs = []
    for pid in np.unique(pred):
        if pid == 0:
            continue
        cat = cat_of.get(int(pid), int(rng.choice([c["id"] for c in CATS])))
        if rng.random() < 0.1:
            cat = int(rng.choice([c["id"] for c in CATS]))  # wrong class
        psegs.append({"id": int(pid), "category_id": cat})
    return gt, segs, pred, psegs


@pytest.mark.parametrize("seed", range(3))
def test_pq_equals_reference_port(seed):
    rng = np.random.default_rng(seed)
    ev = PanopticEvaluator(CATS)
    stat = {c["id"]: {"tp": 0, "fp": 0, "fn": 0, "iou": 0.0} for c in CATS}
    for _ in range(25):
        gt, gsegs, pred, psegs = _synthetic(rng)
        ev.update(gt, gsegs, pred, psegs)
        _ref_image(stat, gt, gsegs, pred, psegs)
    out = ev.compute()
    for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
        ref = _ref_average(stat, isthing)
        assert out[name]["n"] == ref["n"]
        for k in ("pq", "sq", "rq"):
            assert out[name][k] == pytest.approx(ref[k], abs=1e-12), (name, k)
    for pc in out["per_class"]:
        s = stat[pc["category_id"]]
        assert (pc["tp"], pc["fp"], pc["fn"]) == (s["tp"], s["fp"], s["fn"])
    assert sum(s["tp"] for s in stat.values()) > 20  # the maps exercise matches ...
    assert sum(s["fp"] for s in stat.values()) > 10  # ... and errors


def test_exact_cases():
    """gt: thing A (ids 1) of 20 px, a crowd of class 1 (id 2), VOID elsewhere.
    pred 10: A's 20 px + 4 px on VOID -> IoU = 20 / (24 + 20 - 20 - 4) = 1 (VOID not counted).
    pred 11: class 1, 6 px on the crowd + 2 px on VOID -> ignored (8/8 > 0.5 on VOID+crowd).
    pred 12: class 2, 4 px on VOID + 4 px on gt's crowd of class 1 -> a false positive."""
    gt = np.zeros((10, 10), np.int64)
    gt[0:4, 0:5] = 1
    gt[6:10, 0:10] = 2
    pred = np.zeros_like(gt)
    pred[0:4, 0:5] = 10
    pred[4, 0:4] = 10
    pred[8, 0:6] = 11
    pred[5, 0:2] = 11
    pred[9, 6:10] = 12
    pred[4, 6:10] = 12
    gsegs = [{"id": 1, "category_id": 1, "area": 20}, {"id": 2, "category_id": 1, "iscrowd": 1}]
    psegs = [{"id": 10, "category_id": 1}, {"id": 11, "category_id": 1},
             {"id": 12, "category_id": 2}]  # fmt: skip
    ev = PanopticEvaluator(CATS)
    ev.update(gt, gsegs, pred, psegs)
    pc = {c["category_id"]: c for c in ev.compute()["per_class"]}
    assert (pc[1]["tp"], pc[1]["fp"], pc[1]["fn"]) == (1, 0, 0) and pc[1]["sq"] == 1.0
    assert (pc[2]["tp"], pc[2]["fp"], pc[2]["fn"]) == (0, 1, 0) and pc[2]["pq"] == 0.0
    out = ev.compute()
    assert out["All"]["n"] == 2 and out["All"]["pq"] == pytest.approx(0.5)
    assert out["Stuff"]["n"] == 0 and out["Stuff"]["pq"] == 0.0


def test_iou_exactly_half_is_not_a_match():
    gt = np.full((2, 4), 2, np.int64)  # segment 2 (class 2) on the right half
    gt[:, :2] = 1  # segment 1 (class 1): 4 px
    pred = np.full_like(gt, 7)  # 8 px of class 1, no VOID: IoU 4/8 = 0.5, not > 0.5
    ev = PanopticEvaluator(CATS)
    gsegs = [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 2}]
    ev.update(gt, gsegs, pred, [{"id": 7, "category_id": 1}])
    c = ev.compute()["per_class"][0]
    assert (c["tp"], c["fp"], c["fn"]) == (0, 1, 1)


def test_rgb_to_id_and_bad_input():
    rgb = np.array([[[1, 2, 3], [0, 0, 0]]], np.uint8)
    assert rgb_to_id(rgb).tolist() == [[1 + 2 * 256 + 3 * 65536, 0]]
    ev = PanopticEvaluator(CATS)
    gt = np.ones((3, 3), np.int64)
    ok = [{"id": 1, "category_id": 1}]
    with pytest.raises(DataError, match=r"img7: segment id 4 is in the predicted map"):
        ev.update(gt, ok, gt * 4, ok, image="img7")
    with pytest.raises(DataError, match=r"predicted segment id 9 is listed but has no pixel"):
        ev.update(gt, ok, gt, ok + [{"id": 9, "category_id": 1}])
    with pytest.raises(DataError, match="category_id 4"):
        ev.update(gt, [{"id": 1, "category_id": 4}], gt, ok)
    with pytest.raises(DataError, match="one size"):
        ev.update(gt, ok, gt[:2], ok)
    with pytest.raises(DataError, match=r"0 is VOID"):
        ev.update(gt, ok, gt, [{"id": 0, "category_id": 1}])
    with pytest.raises(DataError, match="RGB"):
        rgb_to_id(np.zeros((3, 3), np.uint8))


def _to_png(ids: np.ndarray, path) -> None:
    from PIL import Image

    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
    Image.fromarray(rgb).save(path)


def test_files_and_tool_equal_the_reference(tmp_path, capsys):
    import json

    from cvcraft.metrics.panoptic import run_panoptic_eval

    rng = np.random.default_rng(11)
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    gt_anns, pred_anns = [], []
    stat = {c["id"]: {"tp": 0, "fp": 0, "fn": 0, "iou": 0.0} for c in CATS}
    for i in range(6):
        gt, gsegs, pred, psegs = _synthetic(rng)
        pred = np.where(pred > 0, pred + 70000, 0)  # ids above 2**16 use the blue channel
        psegs = [dict(s, id=s["id"] + 70000) for s in psegs]
        _to_png(gt, tmp_path / "gt" / f"{i}.png")
        _to_png(pred, tmp_path / "pred" / f"{i}.png")
        gt_anns.append({"image_id": i, "file_name": f"{i}.png", "segments_info": gsegs})
        pred_anns.append({"image_id": i, "file_name": f"{i}.png", "segments_info": psegs})
        _ref_image(stat, gt, gsegs, pred, psegs)
    (tmp_path / "gt.json").write_text(json.dumps({"annotations": gt_anns, "categories": CATS}))
    (tmp_path / "pred.json").write_text(json.dumps({"annotations": pred_anns[::-1]}))
    args = {"gt": str(tmp_path / "gt.json"), "gt_dir": str(tmp_path / "gt"),
            "pred": str(tmp_path / "pred.json"), "pred_dir": str(tmp_path / "pred")}  # fmt: skip
    out = run_panoptic_eval(args)
    from cvcraft.cli import main

    main(["eval", "panoptic", *(f"{k}={v}" for k, v in args.items())])
    via_cli = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert via_cli["All"]["pq"] == pytest.approx(out["All"]["pq"], abs=1e-12)
    for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
        ref = _ref_average(stat, isthing)
        assert out[name]["pq"] == pytest.approx(ref["pq"], abs=1e-12)
    (tmp_path / "pred.json").write_text(json.dumps({"annotations": pred_anns[1:]}))
    with pytest.raises(DataError, match=r"pred\.json: no prediction for image_id 0"):
        run_panoptic_eval(args)
    from cvcraft.errors import ConfigError

    with pytest.raises(ConfigError, match=r"needs gt_dir=, pred_dir="):
        run_panoptic_eval({"gt": "a.json", "pred": "b.json"})
