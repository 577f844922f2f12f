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


def test_line_integral_by_hand():
    """E = mean over the 10 interior samples t = 0.05, 0.15, ..., 0.95 of F(p(t)) . v,
    read at the nearest cell, plus min(0, max_len / |d| - 1); -inf when <= 80 % agree."""
    field = np.zeros((2, 20, 12))
    field[0] = np.arange(12) / 10  # x-component = column / 10
    a, b = np.array([[0.0, 2.0]]), np.array([[9.0, 2.0]])  # along +x, 9 cells
    # samples at x = 0.45, 1.35, ..., 8.55 round to columns 0..9: values 0.0..0.9
    assert limb_scores(field, a, b)[0, 0] == pytest.approx(0.45)
    # the reverse direction reads the same cells with v = -x: all dots <= 0 -> rejected
    assert limb_scores(field, b, a)[0, 0] == -np.inf
    # a map 10 cells tall allows limbs up to 5 cells: 0.45 + (5 / 9 - 1)
    assert limb_scores(field[:, :10], a, b)[0, 0] == pytest.approx(0.45 + 5 / 9 - 1)
    field[0] -= 0.2  # columns 3..9 (7 of 10 samples) above 0.05: fails the 80 % rule
    assert limb_scores(field, a, b)[0, 0] == -np.inf
    field = np.zeros((2, 20, 20))
    field[0], field[1] = 0.6, 0.8  # constant unit field along (3, 4) / 5
    s = limb_scores(field, np.array([[1.0, 1.0]]), np.array([[4.0, 5.0], [5.0, 1.0]]))
    np.testing.assert_allclose(s, [[1.0, 0.6]])  # along the field; along +x: cos = 0.6


def _crossing_scene():
    """Two figures side by side (hips 40 px apart) whose forearms cross in an X: A's left
    forearm and B's right forearm pass through one point M between them."""
    rng = np.random.default_rng(11)
    a = figure_keypoints(rng, 96)
    b = figure_keypoints(rng, 96)
    b += a[11:13].mean(0) + [40, 0] - b[11:13].mean(0)  # hips side by side
    m = (a[5] + b[6]) / 2 + [0, 6]
    a[7], a[9] = m + [-12, -6], m + [12, 6]  # A: left elbow, left wrist
    b[8], b[10] = m + [12, -6], m + [-12, 6]  # B: right elbow, right wrist
    kps = np.stack([np.c_[p, np.full(17, 2.0)] for p in (a, b)])
    kps[..., :2] += [20, 10]
    return kps, (128, 160)


def _cross(p, q, r, s):
    """Whether segments p-q and r-s properly intersect (orientation test)."""

    def orient(a, b, c):
        return np.sign((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))

    return orient(p, q, r) != orient(p, q, s) and orient(r, s, p) != orient(r, s, q)


def _render_and_group(kps, h, w, stride=2):
    hs, ws = h // stride, w // stride
    hm, _ = gaussian_heatmaps(torch.from_numpy(kps).float(), (hs, ws), stride, 1.0)
    heat = hm.max(0).values.numpy()
    fields = paf_targets(kps, COCO_SKELETON, (hs, ws), stride, width=1.0)
    return group_people(heat, fields, COCO_SKELETON, stride)


def _assert_same_people(people, kps, tol):
    assert len(people) == len(kps)
    used = set()
    for p in kps:  # a one-to-one match: each true person's 17 keypoints in one found person
        err = np.abs(people[:, :, :2] - p[None, :, :2]).max((1, 2))
        best = int(np.argmin(err))
        assert err[best] <= tol and (people[best, :, 2] > 0).all() and best not in used
        used.add(best)


def test_grouping_separates_crossing_forearms():
    kps, (h, w) = _crossing_scene()
    assert _cross(kps[0, 7], kps[0, 9], kps[1, 8], kps[1, 10])  # the scene really crosses
    _assert_same_people(_render_and_group(kps, h, w), kps, tol=2)


def test_grouping_recovers_generated_multi_person_scenes():
    """Scenes of the multi-person generator (adjacent figures, touching limbs)."""
    from cvcraft.data.stick_figures import make_stick_scenes

    scenes = [s for s in make_stick_scenes(12, 160, seed=0, people=3) if len(s[1]) >= 2]
    assert len(scenes) >= 5
    for _, kps, _ in scenes:
        kps = kps.astype(np.float64)
        _assert_same_people(_render_and_group(kps, 160, 160), kps, tol=2)
