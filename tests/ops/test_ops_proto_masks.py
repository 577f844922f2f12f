"""Prototype-mask assembly (``ops.proto_masks``) against plain Python loops, boxes on
integer-grid pixel-centre boundaries included."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cvcraft.ops.proto_masks import assemble_masks, box_crop


def _loop_crop(masks: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    out = masks.clone()
    n, h, w = masks.shape
    for i in range(n):
        x1, y1, x2, y2 = (float(v) for v in boxes[i])
        for y in range(h):
            for x in range(w):
                if not (x1 <= x + 0.5 < x2 and y1 <= y + 0.5 < y2):
                    out[i, y, x] = 0.0
    return out


def _loop_logits(coefs: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    nm, h, w = protos.shape
    out = torch.zeros(len(coefs), h, w, dtype=torch.float64)
    for i in range(len(coefs)):
        for y in range(h):
            for x in range(w):
                out[i, y, x] = sum(float(coefs[i, k]) * float(protos[k, y, x]) for k in range(nm))
    return out


def test_box_crop_equals_loop_with_centres_on_the_edges():
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(6, 7, 9, generator=g, dtype=torch.float64)
    # edges at x.5 put pixel centres exactly on them: x1 is inside, x2 is outside
    boxes = torch.tensor(
        [[0.5, 1.5, 3.5, 4.5], [0, 0, 9, 7], [2.5, 2.5, 2.5, 6], [-3, -2, 1.5, 0.5],
         [4.2, 0.7, 8.9, 6.1], [8.5, 6.5, 20, 20]], dtype=torch.float64,
    )  # fmt: skip
    ours = box_crop(masks, boxes)
    assert torch.equal(ours, _loop_crop(masks, boxes))
    assert ours[0, 1, 0] == masks[0, 1, 0] and ours[0, 1, 3] == 0  # x1 = 0.5 in, x2 = 3.5 out
    assert (ours[2] == 0).all()  # zero-width box


def test_assemble_masks_at_prototype_size_equals_loop():
    g = torch.Generator().manual_seed(1)
    coefs = torch.randn(5, 4, generator=g, dtype=torch.float64)
    protos = torch.randn(4, 6, 8, generator=g, dtype=torch.float64)
    boxes = torch.tensor(
        [[0, 0, 8, 6], [1.5, 0.5, 5.5, 4.5], [2.2, 1.1, 7.7, 5.9], [3, 3, 3.5, 3.5], [7, 5, 9, 9]],
        dtype=torch.float64,
    )
    ours = assemble_masks(coefs, protos, boxes, (6, 8))
    ref = _loop_crop(torch.sigmoid(_loop_logits(coefs, protos)), boxes)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)


def test_assemble_masks_upsamples_logits_then_crops():
    g = torch.Generator().manual_seed(2)
    coefs = torch.randn(3, 5, generator=g, dtype=torch.float64)
    protos = torch.randn(5, 4, 4, generator=g, dtype=torch.float64)
    boxes = torch.tensor(
        [[2, 2, 14, 10], [0, 0, 16, 16], [5.5, 3.5, 9.5, 12.5]], dtype=torch.float64
    )
    ours = assemble_masks(coefs, protos, boxes, (16, 16))
    up = F.interpolate(_loop_logits(coefs, protos)[None], size=(16, 16), mode="bilinear")[0]
    ref = _loop_crop(torch.sigmoid(up), boxes)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    # a value by hand: bilinear with align_corners=False at output pixel (0, 0) of a 4x
    # upsampling reads the input at (-0.375, -0.375), clamped to (0, 0)
    logit00 = sum(float(coefs[1, k]) * float(protos[k, 0, 0]) for k in range(5))
    assert math.isclose(float(ours[1, 0, 0]), 1 / (1 + math.exp(-logit00)), rel_tol=1e-12)


def test_assemble_masks_without_detections():
    out = assemble_masks(torch.zeros(0, 3), torch.rand(3, 4, 4), torch.zeros(0, 4), (16, 16))
    assert out.shape == (0, 16, 16)
