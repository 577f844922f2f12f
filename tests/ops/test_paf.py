"""Part affinity fields: targets against a loop oracle, and bottom-up grouping that recovers
every person of synthetic multi-person scenes from fields and heatmaps rendered from the known
keypoints (Hungarian matching per limb, then merging without duplicate keypoint types)."""

import numpy as np
import pytest
import torch

from cvcraft.data.skeleton import COCO_SKELETON
from cvcraft.data.stick_figures import figure_keypoints
from cvcraft.errors import DataError
from cvcraft.ops.heatmaps import gaussian_heatmaps
from cvcraft.ops.paf import group_people, limb_scores, paf_targets


def test_fields_match_a_loop_oracle():
    kp = np.array([[[2.0, 3.0, 2], [14.0, 9.0, 2], [0, 0, 0]],
                   [[10.0, 2.0, 2], [10.0, 14.0, 2], [5, 5, 2]]])  # fmt: skip
    limbs = [(0, 1), (1, 2)]
    got = paf_targets(kp, limbs, (8, 9), stride=2, width=1.0)
    assert got.shape == (4, 8, 9)
    for li, (a, b) in enumerate(limbs):
        for y in range(8):
            for x in range(9):
                acc, n = np.zeros(2), 0
                for p in kp:
                    if p[a, 2] == 0 or p[b, 2] == 0:
                        continue
                    pa, pb = p[a, :2] / 2 - 0.5, p[b, :2] / 2 - 0.5
                    v = (pb - pa) / np.linalg.norm(pb - pa)
                    r = np.array([x, y]) - pa
                    along, across = r @ v, abs(r[0] * v[1] - r[1] * v[0])
                    if -1.0 <= along <= np.linalg.norm(pb - pa) + 1.0 and across <= 1.0:
                        acc, n = acc + v, n + 1
                want = acc / max(n, 1)
                np.testing.assert_allclose(got[2 * li : 2 * li + 2, y, x], want, atol=1e-6)
    with pytest.raises(DataError, match=r"\(N, K, 3\)"):
        paf_targets(np.zeros((3, 2)), limbs, (4, 4), 1)


def _scene(seed, people=3, size=96):
    rng = np.random.default_rng(seed)
    kps = []
    for i in range(people):
        xy = figure_keypoints(rng, size) + [i * size, rng.uniform(-8, 0)]
        kps.append(np.concatenate([xy, np.full((17, 1), 2.0)], 1))
    return np.stack(kps), (size, people * size)


@pytest.mark.parametrize("seed", range(3))
def test_grouping_recovers_every_person(seed):
    kps, (h, w) = _scene(seed)
    stride = 2
    hs, ws = h // stride, w // stride
    hm, _ = gaussian_heatmaps(torch.from_numpy(kps).float(), (hs, ws), stride, 1.0)
    heat = hm.max(0).values.numpy()  # (K, h, w): every person's peaks in one map
    fields = paf_targets(kps, COCO_SKELETON, (hs, ws), stride, width=1.0)
    people = group_people(heat, fields, COCO_SKELETON, stride)
    assert len(people) == len(kps)
    for p in kps:  # each true person has one found person with all 17 keypoints near
        err = np.abs(people[:, :, :2] - p[None, :, :2]).max((1, 2))
        best = int(np.argmin(err))
        assert err[best] <= stride and (people[best, :, 2] > 0).all()


def test_limb_scores_prefer_the_true_pair():
    kps, (h, w) = _scene(5, people=2)
    fields = paf_targets(kps, [(5, 7)], (h // 2, w // 2), 2)
    a, b = kps[:, 5, :2] / 2 - 0.5, kps[:, 7, :2] / 2 - 0.5
    s = limb_scores(fields, a, b)
    assert np.isfinite(np.diag(s)).all() and (np.diag(s) > 0.5).all()
    assert not np.isfinite(s[0, 1]) and not np.isfinite(s[1, 0])  # across people: rejected
