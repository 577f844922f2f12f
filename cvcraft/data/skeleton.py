"""The COCO person skeleton: 17 keypoint names, the limbs drawn between them and the
left/right flip index (a horizontal flip moves the left wrist's point to where the right
wrist is drawn, so keypoint k's new label is FLIP_INDEX[k])."""

from __future__ import annotations

COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
# limbs as (from, to) keypoint indices, 0-based (COCO's file lists them 1-based)
COCO_SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip


def flip_index(names: tuple[str, ...] | list[str]) -> list[int]:
    """For each keypoint the index of its mirror image: ``left_x`` <-> ``right_x``, others
    map to themselves."""
    pos = {n: i for i, n in enumerate(names)}
    out = []
    for n in names:
        if n.startswith("left_"):
            out.append(pos.get("right_" + n[5:], pos[n]))
        elif n.startswith("right_"):
            out.append(pos.get("left_" + n[6:], pos[n]))
        else:
            out.append(pos[n])
    return out


COCO_FLIP_INDEX = tuple(flip_index(COCO_KEYPOINTS))
