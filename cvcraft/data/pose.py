"""Human-pose data: images with people, each a box and K keypoints (x, y, v), read from and
written to COCO keypoints JSON and YOLO-pose labels, or generated (stick figures).

``load_pose(data)`` accepts:

- ``"shapes"`` / ``"shapes:N"``: N generated stick-figure images (the embedded default), N // 5
  more held out;
- a COCO person-keypoints JSON (``images``, ``annotations`` with ``keypoints``, ``bbox``,
  ``area``, ``num_keypoints``; ``categories[0].keypoints`` names them), images next to it
  (in ``images/`` or the folder of the JSON);
- a YOLO-pose folder with ``images/`` and ``labels/`` (``cls cx cy w h x1 y1 v1 ...``, all
  normalized; a ``kpt_shape`` of (K, 2) lines without visibility is read as v = 2).

Keypoints: float32 (N, K, 3) in continuous pixel coordinates (pixel i spans [i, i + 1)),
v = 0 unlabelled, 1 labelled but hidden, 2 visible; boxes float32 (N, 4) xyxy. A keypoint
count that differs from the skeleton's is a ``DataError`` naming the file (and line).
Top-down models see one person at a time: ``PersonCrops`` turns the images into crops around
each labelled person's box (``crop_matrix``), keeping the map back to the image; bottom-up
models see whole images with everyone in them (``WholeImages``, letterboxed squares).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cvcraft.data.io import IMAGE_EXTENSIONS, read_image, write_image
from cvcraft.data.skeleton import COCO_KEYPOINTS, COCO_SKELETON, flip_index
from cvcraft.data.stick_figures import make_stick_figures, make_stick_scenes
from cvcraft.errors import ConfigError, DataError
from cvcraft.structures import Sample

ACCEPTED = "'shapes[:N]' (stick figures); a COCO keypoints JSON; a YOLO-pose folder"


@dataclass
class Person:
    """One annotated person: keypoints (K, 3), box xyxy (4,), area, crowd flag, id."""

    keypoints: np.ndarray
    box: np.ndarray
    area: float
    iscrowd: bool = False
    ann_id: int = 0


class PoseData:
    """Images with their people: ``len``, ``sample(i)`` (boxes + keypoints), ``subset``.

    ``load(i)`` gives image i (uint8 HWC RGB); ``people[i]`` its ``Person`` list.
    ``keypoint_names`` name the K keypoints (the flip index and skeleton follow from them).
    """

    classes = ["person"]

    def __init__(
        self,
        load: Callable[[int], np.ndarray],
        people: list[list[Person]],
        image_ids: Sequence[int],
        names: Sequence[str],
        keypoint_names: Sequence[str] = COCO_KEYPOINTS,
        skeleton: Sequence[tuple[int, int]] = COCO_SKELETON,
    ) -> None:
        self.load, self.people = load, people
        self.image_ids = [int(i) for i in image_ids]
        self.names = list(names)
        self.keypoint_names = tuple(keypoint_names)
        self.skeleton = tuple(tuple(s) for s in skeleton)

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    @property
    def flip_index(self) -> list[int]:
        return flip_index(self.keypoint_names)

    def __len__(self) -> int:
        return len(self.people)

    def describe(self, i: int) -> str:
        return self.names[i]

    def sample(self, i: int) -> Sample:
        ps = self.people[i]
        k = self.num_keypoints
        kps = np.stack([p.keypoints for p in ps]) if ps else np.zeros((0, k, 3), np.float32)
        boxes = np.stack([p.box for p in ps]) if ps else np.zeros((0, 4), np.float32)
        meta = {"path": self.names[i], "image_id": self.image_ids[i], "index": i}
        return Sample(self.load(i), boxes=boxes, keypoints=kps.astype(np.float32), meta=meta)

    def subset(self, indices: Sequence[int] | np.ndarray) -> PoseData:
        idx = [int(i) for i in indices]
        return PoseData(lambda j: self.load(idx[j]), [self.people[i] for i in idx],
                        [self.image_ids[i] for i in idx], [self.names[i] for i in idx],
                        self.keypoint_names, self.skeleton)  # fmt: skip


# ----------------------------------------------------------------------------- generated
def shapes_pose(n: int, size: int = 64, seed: int = 0, people: int = 1) -> PoseData:
    """``n`` stick-figure images of ``size`` px: one figure each (``people=1``), else
    1..``people`` smaller figures per image (see ``stick_figures``)."""
    if people < 1:
        raise DataError(f"people={people}: a stick-figure image needs at least one figure")
    if people == 1:
        images, kps, boxes = make_stick_figures(n, size, seed)
        scenes = list(zip(images, kps, boxes))
    else:
        scenes = make_stick_scenes(n, size, seed, people)
    all_people, ann = [], 0
    for _, k, b in scenes:
        ps = []
        for kp, box in zip(k, b):
            ann += 1
            ps.append(Person(kp, box, float((box[2] - box[0]) * (box[3] - box[1])), False, ann))
        all_people.append(ps)
    images = [sc[0] for sc in scenes]
    return PoseData(lambda i: images[i], all_people, range(1, n + 1),
                    [f"shapes[{i}]" for i in range(n)])  # fmt: skip


# ----------------------------------------------------------------------------- COCO
def _check_count(kp: list, k: int, where: str) -> np.ndarray:
    arr = np.asarray(kp, np.float32)
    if arr.size != 3 * k:
        raise DataError(
            f"{where} has {arr.size / 3:g} keypoints where the skeleton has {k}; each person "
            f"needs [x, y, v] x {k}"
        )
    return arr.reshape(k, 3)


def read_coco_keypoints(path: str | Path, images: str | Path | None = None) -> PoseData:
    """A COCO person-keypoints JSON (coordinates taken as they are, like COCO boxes)."""
    path = Path(path)
    try:
        gt = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read COCO keypoints JSON ({e})") from None
    cats = gt.get("categories") or [{}]
    names = tuple(cats[0].get("keypoints") or COCO_KEYPOINTS)
    k = len(names)
    skeleton = [(a - 1, b - 1) for a, b in cats[0].get("skeleton", [])] or COCO_SKELETON
    bad = [[a + 1, b + 1] for a, b in skeleton if not (0 <= a < k and 0 <= b < k)]
    if bad:
        raise DataError(
            f"{path}: categories[0].skeleton limb {bad[0]} names a keypoint outside 1..{k} "
            f"(the category lists {k} keypoints; skeleton indices are 1-based)"
        )
    root = Path(images) if images else (path.parent / "images")
    if not root.is_dir():
        root = path.parent
    imgs = sorted(gt.get("images", []), key=lambda im: im["id"])
    pos = {im["id"]: i for i, im in enumerate(imgs)}
    people: list[list[Person]] = [[] for _ in imgs]
    for a in gt.get("annotations", []):
        if a.get("image_id") not in pos:
            raise DataError(
                f"{path}: annotation {a.get('id')} names unknown image {a.get('image_id')}"
            )
        kp = _check_count(a.get("keypoints", []), k, f"{path}: annotation {a.get('id')}")
        x, y, w, h = a["bbox"]
        people[pos[a["image_id"]]].append(Person(
            kp, np.array([x, y, x + w, y + h], np.float32), float(a.get("area", w * h)),
            bool(a.get("iscrowd", 0)), int(a.get("id", 0))))  # fmt: skip
    files = [str(root / im["file_name"]) for im in imgs]
    return PoseData(lambda i: read_image(files[i]), people, [im["id"] for im in imgs], files,
                    names, skeleton)  # fmt: skip


def coco_keypoints_dict(data: PoseData) -> dict[str, Any]:
    """``data`` as a COCO person-keypoints dict (what ``write_coco_keypoints`` stores and the
    keypoint evaluator reads); unlabelled points are 0, 0, 0."""
    images, anns = [], []
    for i, (img_id, ps) in enumerate(zip(data.image_ids, data.people)):
        images.append({"id": img_id, "file_name": Path(data.names[i]).name})
        for p in ps:
            kp = p.keypoints.astype(np.float64).copy()
            lab = kp[:, 2] > 0
            kp[~lab] = 0
            x1, y1, x2, y2 = (float(v) for v in p.box)
            anns.append({"id": p.ann_id or len(anns) + 1, "image_id": img_id, "category_id": 1,
                         "keypoints": kp.ravel().tolist(), "num_keypoints": int(lab.sum()),
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": p.area,
                         "iscrowd": int(p.iscrowd)})  # fmt: skip
    cats = [{"id": 1, "name": "person", "keypoints": list(data.keypoint_names),
             "skeleton": [[a + 1, b + 1] for a, b in data.skeleton]}]  # fmt: skip
    return {"images": images, "annotations": anns, "categories": cats}


def write_coco_keypoints(data: PoseData, path: str | Path) -> None:
    """Write the annotations of ``data`` as a COCO keypoints JSON."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(coco_keypoints_dict(data)))


# ----------------------------------------------------------------------------- YOLO-pose
def read_yolo_pose(folder: str | Path, keypoint_names: Sequence[str] = COCO_KEYPOINTS) -> PoseData:
    """``folder/images/*`` with ``folder/labels/<stem>.txt``: per line ``cls cx cy w h`` then
    K (x, y, v) or K (x, y) triples/pairs, normalized to the image size."""
    folder = Path(folder)
    k = len(keypoint_names)
    files = sorted(
        p for p in (folder / "images").rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not files:
        raise DataError(f"{folder}/images: no images; YOLO-pose data needs images/ and labels/")
    people: list[list[Person]] = []
    for f in files:
        lab = folder / "labels" / f.relative_to(folder / "images").with_suffix(".txt")
        h, w = read_image(f).shape[:2]
        ps: list[Person] = []
        lines = lab.read_text().splitlines() if lab.exists() else []
        for n, line in enumerate(lines, 1):
            vals = line.split()
            if not vals:
                continue
            nums = np.asarray(vals[1:], np.float64)
            per = (len(nums) - 4) / k
            if per not in (2, 3):
                raise DataError(
                    f"{lab}:{n}: {len(nums) - 4} keypoint values where the skeleton has {k} "
                    f"keypoints ({2 * k} or {3 * k} values after the box)"
                )
            cx, cy, bw, bh = nums[:4] * [w, h, w, h]
            kp = nums[4:].reshape(k, int(per))
            xy = kp[:, :2] * [w, h]
            v = kp[:, 2] if per == 3 else np.where((kp[:, :2] > 0).any(1), 2.0, 0.0)
            kps = np.concatenate([xy, v[:, None]], 1).astype(np.float32)
            box = np.array([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], np.float32)
            ps.append(Person(kps, box, float(bw * bh), False, 0))
        people.append(ps)
    names = [str(f) for f in files]
    ids = range(1, len(files) + 1)
    return PoseData(lambda i: read_image(names[i]), people, ids, names, keypoint_names)


def write_yolo_pose(data: PoseData, folder: str | Path) -> None:
    """Write ``folder/images/<n>.png`` and ``folder/labels/<n>.txt`` (class 0, normalized
    box, K (x, y, v) triples; unlabelled points as 0 0 0)."""
    folder = Path(folder)
    for i in range(len(data)):
        s = data.sample(i)
        stem = Path(data.names[i]).stem if Path(data.names[i]).suffix else f"{i:06d}"
        stem = re.sub(r"[^\w.-]", "_", stem)
        write_image(folder / "images" / f"{stem}.png", s.image)
        h, w = s.image.shape[:2]
        lines = []
        for box, kp in zip(s.boxes, s.keypoints):
            x1, y1, x2, y2 = box
            vals = [(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h]
            k = np.where(kp[:, 2:] > 0, kp / [w, h, 1], 0).ravel()
            lines.append("0 " + " ".join(f"{v:.6f}" for v in (*vals, *k)))
        (folder / "labels").mkdir(parents=True, exist_ok=True)
        (folder / "labels" / f"{stem}.txt").write_text("\n".join(lines) + "\n" if lines else "")


# ----------------------------------------------------------------------------- top-down crops
def crop_matrix(box: np.ndarray, size: int, padding: float = 1.25) -> np.ndarray:
    """The 2x3 continuous-coordinate map u = a (x - c) + size / 2 that puts the box centre c
    in the middle of a ``size`` square and its longer side (times ``padding``) across it."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1, 1.0) * padding
    a = size / side
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return np.array([[a, 0, size / 2 - a * cx], [0, a, size / 2 - a * cy]])


def warp_people(sample: Sample, m: np.ndarray, size: int, people: Sequence[int]) -> Sample:
    """The ``size`` square seen through the continuous-coordinate map ``m`` (2x3), with the
    keypoints (P, K, 3) of ``people`` mapped into it (points leaving it get v = 0);
    ``meta["crop"]`` is ``m``."""
    # OpenCV indexes pixel centres at integers: x_idx = x - 0.5 on both sides of the map
    m_idx = m.copy()
    m_idx[:, 2] += 0.5 * m[:, :2].sum(1) - 0.5
    img = cv2.warpAffine(sample.image, m_idx, (size, size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))  # fmt: skip
    kp = sample.keypoints[list(people)].astype(np.float64)  # (P, K, 3)
    kp[..., :2] = kp[..., :2] @ m[:, :2].T + m[:, 2]
    inside = (kp[..., :2] >= 0).all(-1) & (kp[..., :2] <= size).all(-1)
    kp[..., 2] = np.where(inside, kp[..., 2], 0)
    return Sample(img, keypoints=kp.astype(np.float32), meta={**sample.meta, "crop": m})


def crop_person(sample: Sample, person: int, size: int, padding: float = 1.25) -> Sample:
    """A ``size`` square around person ``person``'s box, with only that person's keypoints
    (1, K, 3) (points leaving the crop get v = 0); ``meta["crop"]`` is the 2x3 map."""
    out = warp_people(sample, crop_matrix(sample.boxes[person], size, padding), size, [person])
    out.meta["person"] = person
    return out


class PersonCrops:
    """One item per labelled, non-crowd person of ``data``: ``crop_person`` around its box."""

    classes = ["person"]

    def __init__(self, data: PoseData, size: int, padding: float = 1.25) -> None:
        self.data, self.size, self.padding = data, int(size), float(padding)
        self.items = [(i, j) for i, ps in enumerate(data.people) for j, p in enumerate(ps)
                      if not p.iscrowd and (p.keypoints[:, 2] > 0).any()]  # fmt: skip

    def __len__(self) -> int:
        return len(self.items)

    def sample(self, i: int) -> Sample:
        img, person = self.items[i]
        return crop_person(self.data.sample(img), person, self.size, self.padding)

    def subset(self, indices: Sequence[int] | np.ndarray) -> PersonCrops:
        out = PersonCrops.__new__(PersonCrops)
        out.data, out.size, out.padding = self.data, self.size, self.padding
        out.items = [self.items[int(i)] for i in indices]
        return out


class WholeImages:
    """Bottom-up items: every image of ``data`` letterboxed into a ``size`` square (its
    longer side across it, centred) with all its labelled, non-crowd people."""

    classes = ["person"]

    def __init__(self, data: PoseData, size: int) -> None:
        self.data, self.size = data, int(size)

    def __len__(self) -> int:
        return len(self.data)

    def sample(self, i: int) -> Sample:
        s = self.data.sample(i)
        h, w = s.image.shape[:2]
        keep = [j for j, p in enumerate(self.data.people[i])
                if not p.iscrowd and (p.keypoints[:, 2] > 0).any()]  # fmt: skip
        return warp_people(s, crop_matrix(np.array([0, 0, w, h]), self.size, 1.0), self.size,
                           keep)  # fmt: skip

    def subset(self, indices: Sequence[int] | np.ndarray) -> WholeImages:
        return WholeImages(self.data.subset(indices), self.size)


# ----------------------------------------------------------------------------- splits
@dataclass
class PoseSplits:
    train: PoseData
    val: PoseData
    classes: list[str]
    source: str = ""


def load_pose(
    data: str, val_fraction: float = 0.1, seed: int = 0, size: int = 64, people: int = 1
) -> PoseSplits:
    """The pose data ``data`` names (see the module doc), split into train and held-out val;
    ``people`` > 1 makes stick-figure images with up to that many figures."""
    m = re.fullmatch(r"shapes(?::(\d+))?", str(data))
    if m:
        n = int(m.group(1) or 1000)
        return PoseSplits(shapes_pose(n, size, seed, people),
                          shapes_pose(max(1, n // 5), size, seed + 1, people), ["person"],
                          "shapes")  # fmt: skip
    if people != 1:
        raise ConfigError(f"people={people} shapes generated stick figures; {data} has its own")
    p = Path(data)
    if p.suffix.lower() == ".json" and p.is_file():
        full = read_coco_keypoints(p)
    elif p.is_dir() and (p / "labels").is_dir() and (p / "images").is_dir():
        full = read_yolo_pose(p)
    else:
        raise DataError(f"data={data}: not pose data; use {ACCEPTED}")
    n = len(full)
    if n < 2:
        raise DataError(f"{data}: {n} image(s) cannot be split into train and val; add images")
    order = np.random.default_rng([seed, 3]).permutation(n)
    k = min(n - 1, max(1, round(n * val_fraction)))
    return PoseSplits(full.subset(np.sort(order[k:])), full.subset(np.sort(order[:k])),
                      ["person"], str(data))  # fmt: skip
