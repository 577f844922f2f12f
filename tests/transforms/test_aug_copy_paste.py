"""CopyPaste: pasted pixels/masks, occluded boxes recomputed, fully occluded objects dropped
(hand-built rectangles, so every expected box is known)."""

import numpy as np
import pytest

from cvcraft.errors import DataError
from cvcraft.ops.masks import masks_to_boxes
from cvcraft.structures import Sample
from cvcraft.transforms.copy_paste import CopyPaste
from cvcraft.transforms.multi_sample import run_multi_sample

H, W = 60, 80


def _sample(rects, labels, value, sem_offset=1):
    masks = np.zeros((len(rects), H, W), bool)
    sem = np.zeros((H, W), np.uint8)
    for m, (x1, y1, x2, y2), lab in zip(masks, rects, labels):
        m[y1:y2, x1:x2] = True
        sem[y1:y2, x1:x2] = lab + sem_offset
    return Sample(
        np.full((H, W, 3), value, np.uint8),
        boxes=np.array(rects, np.float32),
        box_labels=labels,
        masks=masks,
        semantic_mask=sem,
    )


def test_paste_occlude_and_drop():
    dst = _sample([(10, 10, 30, 30), (40, 40, 50, 50), (60, 5, 70, 15)], [0, 1, 2], 10)
    src = _sample([(20, 5, 35, 35), (38, 38, 52, 52)], [3, 4], 200)
    out = CopyPaste(object_prob=1.0, flip=0.0)([dst, src], np.random.default_rng(0))
    # A lost columns 20..34 -> box (10, 10, 20, 30); B is fully covered -> dropped;
    # C untouched keeps its box; the two pasted objects keep theirs
    np.testing.assert_array_equal(
        out.boxes,
        np.array(
            [[10, 10, 20, 30], [60, 5, 70, 15], [20, 5, 35, 35], [38, 38, 52, 52]], np.float32
        ),
    )
    np.testing.assert_array_equal(out.box_labels, [0, 2, 3, 4])
    np.testing.assert_array_equal(masks_to_boxes(out.masks), out.boxes)
    union = src.masks.any(0)
    np.testing.assert_array_equal(out.image[..., 0], np.where(union, 200, 10))
    np.testing.assert_array_equal(
        out.semantic_mask, np.where(union, src.semantic_mask, dst.semantic_mask)
    )
    assert out.meta["copy_paste"] == [0, 1]
    assert not (out.masks[0] & union).any()  # pasted pixels removed from the occluded mask


def test_flip_and_subset():
    dst = _sample([(0, 0, 5, 5)], [0], 10)
    src = _sample([(10, 20, 30, 40), (50, 0, 60, 10)], [1, 2], 99)
    t = CopyPaste(object_prob=0.5, flip=1.0)
    rng = np.random.default_rng(8)
    params = t.make_params([dst, src], np.random.default_rng(8))
    out = t([dst, src], rng)
    chosen = params["chosen"]
    assert len(chosen) == 1  # seed 8 picks one of the two
    assert out.meta["copy_paste"] == chosen
    flipped = src.boxes[chosen].copy()
    flipped[:, [0, 2]] = W - src.boxes[chosen][:, [2, 0]]  # x' = W - x
    np.testing.assert_array_equal(out.boxes[1:], flipped)
    np.testing.assert_array_equal(out.box_labels[1:], src.box_labels[chosen])


def test_resized_source_and_pasted_overlap():
    dst = _sample([], np.zeros(0, np.int64), 0)
    big = Sample(
        np.full((2 * H, 2 * W, 3), 50, np.uint8),
        boxes=[[0, 0, 40, 40], [20, 20, 60, 60]],
        box_labels=[1, 2],
        masks=np.stack([np.pad(np.ones((40, 40), bool), ((0, 80), (0, 120))),
                        np.pad(np.ones((40, 40), bool), ((20, 60), (20, 100)))]),
    )  # fmt: skip
    out = CopyPaste(object_prob=1.0, flip=0.0)([dst, big], np.random.default_rng(0))
    # half size; the second pasted object covers the first's corner (later on top)
    np.testing.assert_array_equal(out.boxes, [[0, 0, 20, 20], [10, 10, 30, 30]])
    assert out.masks[0].sum() == 20 * 20 - 10 * 10


def test_no_objects_chosen_returns_destination():
    dst = _sample([(10, 10, 30, 30)], [0], 10)
    src = _sample([(20, 5, 35, 35)], [3], 200)
    out = CopyPaste(object_prob=0.0)([dst, src], np.random.default_rng(0))
    np.testing.assert_array_equal(out.image, dst.image)
    np.testing.assert_array_equal(out.boxes, dst.boxes)


def test_needs_masks_and_runs_with_partners():
    dst = _sample([(10, 10, 30, 30)], [0], 10)
    bad = dst.replace(masks=None)
    with pytest.raises(DataError, match="instance masks"):
        CopyPaste(object_prob=1.0)([bad, dst], np.random.default_rng(0))
    items = [_sample([(5 * i, 5, 5 * i + 10, 20)], [i], 20 * i) for i in range(5)]
    a = run_multi_sample(CopyPaste(), items.__getitem__, 2, 5, np.random.default_rng([0, 0, 2]))
    b = run_multi_sample(CopyPaste(), items.__getitem__, 2, 5, np.random.default_rng([0, 0, 2]))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.boxes, masks_to_boxes(a.masks))
