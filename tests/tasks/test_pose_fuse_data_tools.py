"""`cvcraft pack` and `cvcraft augment` for pose and fusion data: keypoints and the infrared
partner are stored with each sample (oracles: the source samples themselves, and OpenCV's
grey conversion of the visible image for pair alignment after augmentation)."""

import json
import tarfile

import cv2
import numpy as np
from PIL import Image

from cvcraft.data.fusion import INFRARED, FusionData
from cvcraft.data.io import decode_image
from cvcraft.data.pose import load_pose
from cvcraft.structures import Sample
from cvcraft.tasks.fuse.task import train_preview as fuse_preview
from cvcraft.tasks.pose.task import train_preview as pose_preview
from cvcraft.tasks.tools import run_augment, run_pack


def _members(shard):
    with tarfile.open(shard) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def test_pack_pose_keeps_every_persons_keypoints(tmp_path):
    run_pack({"task": "pose", "data": "shapes:5", "out": str(tmp_path / "p"), "imgsz": "64"})
    meta = json.loads((tmp_path / "p" / "train" / "meta.json").read_text())
    assert meta["task"] == "pose" and meta["count"] == 5
    got = _members(tmp_path / "p" / "train" / "shard-000000.tar")
    train = load_pose("shapes:5", size=64).train
    for i in range(5):
        t = json.loads(got[f"{i:09d}.json"])
        np.testing.assert_allclose(t["keypoints"], train.sample(i).keypoints, atol=1e-4)
        assert np.array_equal(decode_image(got[f"{i:09d}.png"], name="x"), train.sample(i).image)


def test_pack_fuse_stores_the_pair_lossless(tmp_path):
    run_pack({"task": "fuse", "data": "synthetic:4", "out": str(tmp_path / "f"),
              "imgsz": "40", "format": "jpg"})  # fmt: skip
    assert json.loads((tmp_path / "f" / "train" / "meta.json").read_text())["task"] == "fuse"
    got = _members(tmp_path / "f" / "train" / "shard-000000.tar")
    from cvcraft.tasks.fuse.task import data_sources

    train, _ = data_sources("synthetic:4", 40, 0)
    for i in range(4):  # the visible image as asked (jpg), the infrared always png
        ir = decode_image(got[f"{i:09d}.infrared.png"], name="x")[..., 0]
        assert np.array_equal(ir, train.sample(i).extras[INFRARED])


class _GreyPairs(FusionData):
    """Pairs whose infrared is exactly the visible image's OpenCV grey version."""

    def __init__(self, n=3, size=48):
        rng = np.random.default_rng(0)
        self.images = rng.integers(0, 256, (n, size, size + 8, 3), dtype=np.uint8)

    def __len__(self):
        return len(self.images)

    def sample(self, i):
        vis = self.images[i]
        return Sample(
            vis, meta={"index": i}, extras={INFRARED: cv2.cvtColor(vis, cv2.COLOR_RGB2GRAY)}
        )


def test_augmented_pairs_stay_aligned_and_keypoints_move(tmp_path):
    ds = fuse_preview(_GreyPairs(), 32, seed=3)
    for i in range(3):  # random crop + flip applied to both: still the grey of the visible
        s = ds[(0, i)]
        assert s.image.shape[:2] == (32, 32)
        assert np.array_equal(s.extras[INFRARED], cv2.cvtColor(s.image, cv2.COLOR_RGB2GRAY))
    pose = load_pose("shapes:4", size=64).train
    crops = pose_preview(pose, 64, seed=0)
    moved = [crops[(0, i)].keypoints for i in range(4)]
    plain = [pose.sample(i).keypoints for i in range(4)]
    assert all(m.shape == (1, 17, 3) for m in moved)
    assert any(np.abs(m[0, :, :2] - p[0, :, :2]).max() > 1 for m, p in zip(moved, plain))
    for task, data in (("pose", "shapes"), ("fuse", "synthetic")):
        out = run_augment({"task": task, "data": data, "n": "4", "out": str(tmp_path / task)
                           + ".png"})  # fmt: skip
        assert np.asarray(Image.open(out)).ndim == 3
