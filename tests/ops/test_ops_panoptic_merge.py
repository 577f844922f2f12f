"""merge_panoptic vs a pixel-loop reference of Panoptic FPN's overlap rules written here."""

import numpy as np
import pytest

from cvcraft.ops.panoptic import merge_panoptic


def _reference(semantic, masks, scores, labels, stuff, score_t, overlap_t, area_t):
    h, w = semantic.shape
    pan = [[0] * w for _ in range(h)]
    segs = []
    for i in sorted(range(len(scores)), key=lambda k: -scores[k]):  # stable
        if scores[i] < score_t:
            continue
        area = taken = 0
        for y in range(h):
            for x in range(w):
                if masks[i][y][x]:
                    area += 1
                    taken += pan[y][x] > 0
        if area == 0 or taken / area > overlap_t:
            continue
        sid, n = len(segs) + 1, 0
        for y in range(h):
            for x in range(w):
                if masks[i][y][x] and pan[y][x] == 0:
                    pan[y][x] = sid
                    n += 1
        segs.append((sid, int(labels[i]), n))
    for c in sorted(stuff):
        free = [
            (y, x) for y in range(h) for x in range(w) if pan[y][x] == 0 and semantic[y][x] == c
        ]
        if len(free) < area_t:
            continue
        sid = len(segs) + 1
        for y, x in free:
            pan[y][x] = sid
        segs.append((sid, c, len(free)))
    return np.array(pan), segs


@pytest.mark.parametrize("seed", range(6))
def test_merge_equals_reference(seed):
    rng = np.random.default_rng(seed)
    h, w = 14, 17
    semantic = rng.integers(0, 4, (h, w))  # classes 0..3, 3 is a thing class here
    semantic[rng.random((h, w)) < 0.1] = 255
    n = int(rng.integers(0, 7))
    masks = np.zeros((n, h, w), bool)
    for i in range(n):
        y, x = rng.integers(0, h - 2), rng.integers(0, w - 2)
        masks[i, y : y + rng.integers(1, 9), x : x + rng.integers(1, 9)] = True
    if n > 2:
        masks[2] = masks[1]  # a duplicate: dropped by the overlap rule
    scores = np.round(rng.random(n), 1)  # ties keep input order
    labels = np.full(n, 3)
    kw = dict(score_thresh=0.3, overlap_thresh=0.5, stuff_area_thresh=6)
    pan, segs = merge_panoptic(semantic, masks, scores, labels, stuff_classes=[0, 1, 2], **kw)
    ref_pan, ref_segs = _reference(semantic, masks, scores, labels, [0, 1, 2], 0.3, 0.5, 6)
    assert np.array_equal(pan, ref_pan)
    assert [(s["id"], s["category_id"], s["area"]) for s in segs] == ref_segs
    # the default stuff classes: every semantic class except ignore and the instance labels
    if n:
        pan2, _ = merge_panoptic(semantic, masks, scores, labels, **kw)
        assert np.array_equal(pan2, pan)


def test_bad_input():
    with pytest.raises(ValueError, match=r"masks must be \(N, 4, 4\)"):
        merge_panoptic(np.zeros((4, 4), int), np.zeros((1, 4, 5), bool), [1.0], [1])
    with pytest.raises(ValueError, match="1 masks, 2 scores"):
        merge_panoptic(np.zeros((4, 4), int), np.zeros((1, 4, 4), bool), [1.0, 0.5], [1])
