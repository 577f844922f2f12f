"""Selective search (our implementation): similarities by hand, a merge order known in
advance, the hierarchy's invariants, and proposal recall on synthetic scenes."""

import numpy as np
import pytest

from cvcraft.classic import selective_search as ss
from cvcraft.classic.felzenszwalb import felzenszwalb
from cvcraft.classic.selective_search import (
    COMBOS,
    box_union,
    colour_space,
    fill_similarity,
    hierarchical_grouping,
    histogram_intersection,
    region_features,
    region_similarity,
    selective_search,
    size_similarity,
)
from cvcraft.data.detection_dataset import make_shapes_detection
from cvcraft.errors import ConfigError, DataError


def _iou(boxes: np.ndarray, gt: np.ndarray) -> np.ndarray:
    lt = np.maximum(boxes[:, None, :2], gt[None, :, :2])
    rb = np.minimum(boxes[:, None, 2:], gt[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_b, area_g = (boxes[:, 2:] - boxes[:, :2]).prod(1), (gt[:, 2:] - gt[:, :2]).prod(1)
    return inter / (area_b[:, None] + area_g[None] - inter)


def _best_iou(scenes) -> np.ndarray:
    """For every ground-truth box, the best IoU of a proposal (fast mode, 2000 boxes)."""
    return np.concatenate([_iou(selective_search(im, "fast"), gt).max(0) for im, gt in scenes])


# ------------------------------------------------------------------------ similarities
def test_similarities_by_hand():
    assert histogram_intersection(np.array([0.5, 0.5, 0]), np.array([0.25, 0.25, 0.5])) == 0.5
    assert histogram_intersection(np.array([1.0, 0]), np.array([0, 1.0])) == 0
    assert size_similarity(10, 30, 100) == pytest.approx(0.6)
    # boxes 2x2 at x 0-2 and 3-5: union 5x2 = 10 pixels, 8 of them the regions' own
    bi, bj = np.array([0, 0, 2, 2]), np.array([3, 0, 5, 2])
    assert box_union(bi, bj).tolist() == [0, 0, 5, 2]
    assert fill_similarity(bi, bj, 4, 4, 50) == pytest.approx(1 - 2 / 50)
    # a region touching the other's box fills it completely: 1
    assert fill_similarity(np.array([0, 0, 2, 2]), np.array([2, 0, 4, 2]), 4, 4, 50) == 1


def test_region_similarity_sums_the_chosen_measures():
    labels = np.repeat(np.arange(3), 4)[None].repeat(3, 0)  # three 3x4 blocks in a row
    img = np.zeros((3, 12, 3))
    img[:, 4:8] = 0.5
    img[:, 8:, 0] = 0.5
    r = region_features(labels, img)
    assert r.size.tolist() == [12, 12, 12] and r.image_size == 36
    assert r.box.tolist() == [[0, 0, 4, 3], [4, 0, 8, 3], [8, 0, 12, 3]]
    np.testing.assert_allclose(r.colour.sum(1), 1)
    # block 0 is (0, 0, 0), block 2 (0.5, 0, 0): the two channels at 0 share their bins
    c = histogram_intersection(r.colour[0], r.colour[2])
    assert c == pytest.approx(2 / 3)
    t = histogram_intersection(r.texture[0], r.texture[2])
    size, fill = 1 - 24 / 36, 1 - (36 - 24) / 36  # box 0-2 holds block 1 too
    got = region_similarity(r, 0, np.array([2]), COMBOS["CTSF"])
    assert got[0] == pytest.approx(c + t + size + fill)
    got = region_similarity(r, 0, np.array([2]), COMBOS["TSF"])
    assert got[0] == pytest.approx(t + size + fill)
    assert region_similarity(r, 0, np.array([1, 2]), ("size",)).tolist() == [size, size]


# ------------------------------------------------------------------------ grouping
def _three_blocks() -> np.ndarray:
    """Dark red | lighter red | green, 30x30 each: the reds differ only in brightness."""
    img = np.zeros((30, 90, 3), np.uint8)
    img[:, :30] = (150, 20, 20)
    img[:, 30:60] = (230, 31, 31)
    img[:, 60:] = (20, 200, 40)
    return img


def test_the_two_similar_blocks_merge_first():
    img = colour_space(_three_blocks(), "hsv")
    labels = felzenszwalb(img, 50, 0.8, 50)
    assert labels.max() == 2 and labels[0, ::30].tolist() == [0, 1, 2]
    for combo in ("CTSF", "TSF"):
        h = hierarchical_grouping(labels, region_features(labels, img), COMBOS[combo])
        if combo == "CTSF":  # colour similarity decides: the two reds first
            assert h.merges == [(0, 1), (2, 3)]
        # either way the last region is the whole image
        assert h.boxes.tolist()[-1] == [0, 0, 90, 30] and h.sizes[-1] == 30 * 90
    h = hierarchical_grouping(labels, region_features(labels, img), COMBOS["CTSF"])
    assert h.boxes.tolist() == [[0, 0, 30, 30], [30, 0, 60, 30], [60, 0, 90, 30],
                                [0, 0, 60, 30], [0, 0, 90, 30]]  # fmt: skip
    # the merged histogram (size-weighted mean) is the histogram of the union
    merged = np.where(labels == 1, 0, labels)
    merged[merged == 2] = 1
    ref = region_features(merged, img)
    np.testing.assert_allclose(h.regions.colour[3], ref.colour[0])
    np.testing.assert_allclose(h.regions.texture[3], ref.texture[0])


def test_hierarchy_invariants_on_a_shapes_image():
    im = make_shapes_detection(1, imgsz=96, split="val").sample(0).image
    img = colour_space(im, "lab")
    labels = felzenszwalb(img, 50, 0.8, 50)
    regions = region_features(labels, img)
    n = len(regions)
    assert n > 3
    h = hierarchical_grouping(labels, regions, COMBOS["CTSF"])
    assert len(h.boxes) == 2 * n - 1 and len(h.merges) == n - 1
    touching = {tuple(p) for p in ss.neighbour_pairs(labels).tolist()}
    used = set()
    for m, (i, j) in enumerate(h.merges):
        t = n + m
        assert i < t and j < t and not ({i, j} & used)  # each region merges once
        used |= {i, j}
        assert h.boxes[t].tolist() == box_union(h.boxes[i], h.boxes[j]).tolist()
        assert h.sizes[t] == h.sizes[i] + h.sizes[j]
        if i < n and j < n:
            assert (min(i, j), max(i, j)) in touching  # only neighbours merge
    assert h.sizes[-1] == 96 * 96 and h.boxes[-1].tolist() == [0, 0, 96, 96]
    # the initial boxes are the segments' extents
    ys, xs = np.nonzero(labels == 0)
    assert h.boxes[0].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


# ------------------------------------------------------------------------ the search
def test_search_output_ranking_and_seed():
    img = _three_blocks()
    boxes = selective_search(img)
    assert boxes.dtype == np.float32 and boxes.shape[1] == 4
    assert len(np.unique(boxes, axis=0)) == len(boxes)  # duplicates removed
    assert [0, 0, 90, 30] in boxes.tolist() and [0, 0, 60, 30] in boxes.tolist()
    assert (boxes[:, 2:] > boxes[:, :2]).all() and boxes[:, 2].max() <= 90
    np.testing.assert_array_equal(selective_search(img, seed=3), selective_search(img, seed=3))
    gen = selective_search(img, seed=np.random.default_rng(3))
    np.testing.assert_array_equal(gen, selective_search(img, seed=3))
    im = make_shapes_detection(1, imgsz=64, split="val").sample(0).image
    a, b = selective_search(im, seed=0), selective_search(im, seed=1)
    assert {tuple(r) for r in a.tolist()} == {tuple(r) for r in b.tolist()}
    assert not np.array_equal(a, b)  # only the order is random
    assert len(selective_search(im, max_boxes=5)) == 5
    np.testing.assert_array_equal(selective_search(im, max_boxes=5), a[:5])
    # "quality" pools more strategies: a superset of fast's regions is not guaranteed, but
    # it proposes at least as many distinct boxes here and still the whole image
    q = selective_search(im, "quality")
    assert len(q) >= len(a) and [0, 0, 64, 64] in q.tolist()


def test_flat_and_tiny_images_give_the_whole_image():
    """One segment: no merge, the only proposal is the image (1x1 included)."""
    assert selective_search(np.full((8, 8, 3), 90, np.uint8)).tolist() == [[0, 0, 8, 8]]
    assert selective_search(np.zeros((1, 1, 3), np.uint8)).tolist() == [[0, 0, 1, 1]]


def test_recall_on_shapes_scenes():
    """12 val shapes scenes (128 px, 22 objects): measured recall 1.0 at IoU 0.5 and
    0.955 at IoU 0.7 (2000 boxes, ~100 per image). Flat shapes are mostly found by the
    segmentation alone, so a broken similarity (negated, or constant) still passes here --
    measured by hand: the same 1.0 and 0.955 either way. test_recall_needs_the_similarity is the
    check that fails then."""
    d = make_shapes_detection(12, imgsz=128, split="val")
    best = _best_iou([(s.image, s.boxes) for s in map(d.sample, range(12))])
    assert (best >= 0.5).mean() >= 0.95
    assert (best >= 0.7).mean() >= 0.85


def _parts_scene(i: int) -> tuple[np.ndarray, np.ndarray]:
    """Three objects made of four quadrants that differ only in brightness (so the
    segmentation splits them) on a background of 16 px patches of random colours."""
    g = np.random.default_rng([7, i])
    img = np.repeat(np.repeat(g.integers(0, 256, (8, 8, 3)), 16, 0), 16, 1).astype(float)
    boxes: list[list[int]] = []
    while len(boxes) < 3:
        w, h = g.integers(24, 48, 2).tolist()
        x, y = int(g.integers(0, 128 - w)), int(g.integers(0, 128 - h))
        if any(x < c[2] and c[0] < x + w and y < c[3] and c[1] < y + h for c in boxes):
            continue
        base = g.integers(60, 200, 3)
        mx, my = x + w // 2, y + h // 2
        for q, (x0, x1, y0, y1) in enumerate(
            [(x, mx, y, my), (mx, x + w, y, my), (x, mx, my, y + h), (mx, x + w, my, y + h)]
        ):
            img[y0:y1, x0:x1] = base + (q - 1.5) * 30
        boxes.append([x, y, x + w, y + h])
    img = np.clip(img + g.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    return img, np.array(boxes, float)


@pytest.mark.slow
def test_recall_needs_the_similarity(monkeypatch):
    """(slow: ~17 s, 20 searches) Objects the segmentation splits are only proposed whole
    if similar parts merge first: measured recall at IoU 0.7 on these 10 scenes (30 objects)
    0.967 with the real similarity, 0.600 when it is negated (the most dissimilar
    neighbours merge first) and 0.767 when it is constant (ties: lowest numbers first)."""
    scenes = [_parts_scene(i) for i in range(10)]
    assert (_best_iou(scenes) >= 0.7).mean() >= 0.9
    real = ss.region_similarity
    monkeypatch.setattr(ss, "region_similarity", lambda r, i, o, m: -real(r, i, o, m))
    assert (_best_iou(scenes) >= 0.7).mean() < 0.9


def test_selective_search_errors():
    assert ss.available()
    with pytest.raises(DataError, match="channels"):
        selective_search(np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match="dtype"):
        selective_search(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ConfigError, match="mode"):
        selective_search(np.zeros((8, 8, 3), np.uint8), "best")
    with pytest.raises(ConfigError, match="max_boxes"):
        selective_search(np.zeros((8, 8, 3), np.uint8), max_boxes=0)
