"""R-CNN (Girshick et al. 2014), small and for teaching: every step of the original pipeline,
each a short function, on CPU-sized images (the shapes). Not a registered model: it is
trained with ``RCNN.fit`` and run with ``RCNN.detect`` (docs/rcnn.md walks through it).

1. Proposals: selective search (``cvcraft.classic.selective_search``, fast mode), ~2000 in
   the paper, class-independent.
2. Warp: each proposal, dilated so the warped crop has ``context`` pixels of surrounding
   image (the paper: 16 of 227), is resized anisotropically to ``size`` x ``size``
   (``warp_regions``: one bilinear RoIAlign for every box; outside the image is the mean).
3. CNN features: a small CNN fine-tuned as a (C + 1)-way classifier on warped proposals
   (IoU >= 0.5 with a gt: its class; else background; batches of 25 % positives) -- the
   paper's "domain-specific fine-tuning" of an ImageNet network; here from scratch, there is
   no pretraining. Its penultimate layer (the paper's fc7) is the feature.
4. Per-class linear SVMs (scikit-learn ``LinearSVC``): positives are the gt boxes of the
   class, negatives proposals with IoU < 0.3 with every gt of that class (the paper's rule;
   its hard-negative mining is replaced by using all such negatives, which fit in memory
   here).
5. Class-specific box regression (ridge, ``sklearn.linear_model.Ridge``) from the features
   of proposals with IoU >= 0.6 to their gt: targets ``t = ((gx - px) / pw, (gy - py) / ph,
   log(gw / pw), log(gh / ph))`` (``box_regression_targets``).
6. Detection: SVM scores for every proposal and class, the class's regression applied,
   greedy NMS at IoU 0.3 per class.

Why it was replaced: steps 1-3 run the CNN once per proposal (Fast R-CNN shares one feature
map), and steps 3-5 are trained separately (Fast R-CNN trains classifier and regressor with
the network, end to end).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cvcraft.errors import ConfigError, DataError
from cvcraft.ops.boxes import box_iou, clip_boxes
from cvcraft.ops.coders import DeltaCoder
from cvcraft.ops.nms import batched_nms
from cvcraft.ops.roi import roi_align

__all__ = ["RCNN", "RegionCNN", "box_regression_targets", "warp_regions"]

_COORDS = DeltaCoder((1.0, 1.0, 1.0, 1.0), clamp=float("inf"))  # the paper's unweighted t


def box_regression_targets(proposals: torch.Tensor, gts: torch.Tensor) -> torch.Tensor:
    """R-CNN's regression targets of proposals P towards gts G (eqs. 6-9 of the paper):
    ``((gx - px) / pw, (gy - py) / ph, log(gw / pw), log(gh / ph))``, centres and sizes of
    xyxy boxes. (N, 4), (N, 4) -> (N, 4)."""
    return _COORDS.encode(gts, proposals)


def warp_regions(
    images: torch.Tensor, boxes: Sequence[torch.Tensor], size: int = 32, context: int = 2
) -> torch.Tensor:
    """Warped crops of every box: images (B, 3, H, W) float, mean already subtracted (so the
    zero fill outside the image is the mean), boxes [(N_i, 4)] -> (sum N, 3, size, size).

    Each box is dilated by ``size / (size - 2 context)`` about its centre first, so the crop
    shows ``context`` pixels of its surroundings at the output size (the paper's padding)."""
    if size <= 2 * context:
        raise ConfigError(f"warp_regions: size={size} must exceed 2 * context={2 * context}")
    grow = size / (size - 2 * context)
    rois = []
    for i, b in enumerate(boxes):
        c, half = (b[:, :2] + b[:, 2:]) / 2, (b[:, 2:] - b[:, :2]) / 2 * grow
        idx = torch.full((len(b), 1), float(i), dtype=images.dtype, device=images.device)
        rois.append(torch.cat([idx, c - half, c + half], 1).to(images))
    return roi_align(images, torch.cat(rois), (size, size), 1.0, sampling_ratio=2, aligned=True)


class RegionCNN(nn.Module):
    """The feature network: three conv-BN-ReLU-maxpool blocks (16, 32, 64) on a 32 x 32 warp,
    a ``feature_dim`` fc layer (the paper's fc7) and a (C + 1)-way classifier for
    fine-tuning. ``features`` (N, 3, 32, 32) -> (N, feature_dim)."""

    def __init__(self, num_classes: int, feature_dim: int = 128, size: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = 3
        for width in (16, 32, 64):
            layers += [nn.Conv2d(ch, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]  # fmt: skip
            ch = width
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear(ch * (size // 8) ** 2, feature_dim)
        self.classifier = nn.Linear(feature_dim, num_classes + 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(self.convs(x).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@dataclass
class RCNN:
    """The pipeline's settings and, after ``fit``, its fitted parts (module docstring).

    ``images`` everywhere are uint8 HWC RGB numpy arrays; boxes xyxy pixels; labels 0..C-1.
    """

    num_classes: int
    size: int = 32
    context: int = 2
    max_proposals: int = 500
    finetune_epochs: int = 8
    svm_c: float = 0.01
    ridge_alpha: float = 10.0
    seed: int = 0
    proposal_fn: object = None  # images -> boxes; default selective search (fast)
    cnn: RegionCNN | None = field(default=None, repr=False)
    svms: list = field(default_factory=list, repr=False)
    regressors: list = field(default_factory=list, repr=False)
    mean: np.ndarray | None = field(default=None, repr=False)

    # ---------------------------------------------------------------- steps 1-3
    def proposals(self, image: np.ndarray) -> torch.Tensor:
        """Step 1: class-independent proposals (R, 4) of one image."""
        if self.proposal_fn is not None:
            return torch.as_tensor(self.proposal_fn(image), dtype=torch.float32).reshape(-1, 4)
        from cvcraft.classic.selective_search import selective_search

        b = torch.from_numpy(selective_search(image, "fast", self.max_proposals))
        return b[((b[:, 2:] - b[:, :2]) >= 2).all(1)]  # slivers warp to noise

    def _tensor(self, image: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255
        return x - torch.as_tensor(self.mean, dtype=torch.float32)[:, None, None]

    def warp(self, image: np.ndarray, boxes: torch.Tensor) -> torch.Tensor:
        """Step 2: (R, 3, size, size) mean-subtracted warps of one image's boxes."""
        return warp_regions(self._tensor(image)[None], [boxes], self.size, self.context)

    @torch.no_grad()
    def features(self, image: np.ndarray, boxes: torch.Tensor) -> np.ndarray:
        """Step 3: CNN features (R, D) of the warped boxes."""
        if len(boxes) == 0:
            return np.zeros((0, self.cnn.fc.out_features), np.float32)
        self.cnn.eval()
        return self.cnn.features(self.warp(image, boxes)).numpy()

    # ---------------------------------------------------------------- training
    def fit(self, images: Sequence[np.ndarray], targets: Sequence[dict]) -> RCNN:
        """Fine-tune the CNN, then fit the SVMs and the box regressors (steps 3-5).
        ``targets``: per image ``{"boxes": (M, 4), "labels": (M,)}`` (numpy or torch)."""
        from sklearn.linear_model import Ridge
        from sklearn.svm import LinearSVC

        if len(images) == 0 or len(images) != len(targets):
            raise DataError(f"RCNN.fit: {len(images)} images for {len(targets)} targets")
        torch.manual_seed(self.seed)
        self.mean = np.mean([im.reshape(-1, 3).mean(0) / 255 for im in images], 0)
        props = [self.proposals(im) for im in images]
        gts = [torch.as_tensor(t["boxes"], dtype=torch.float32).reshape(-1, 4) for t in targets]
        labs = [torch.as_tensor(t["labels"], dtype=torch.int64).reshape(-1) for t in targets]
        self._finetune(images, props, gts, labs)

        feats_p = [self.features(im, p) for im, p in zip(images, props)]
        feats_g = [self.features(im, g) for im, g in zip(images, gts)]
        self.svms, self.regressors = [], []
        for c in range(self.num_classes):
            pos_x, neg_x, reg_x, reg_y = [], [], [], []
            for p, g, lab, fp, fg in zip(props, gts, labs, feats_p, feats_g):
                gc = g[lab == c]
                pos_x.append(fg[(lab == c).numpy()])
                iou = box_iou(p, gc) if len(gc) else torch.zeros(len(p), 0)
                best = iou.max(1) if len(gc) else None
                neg = (best.values < 0.3) if best is not None else torch.ones(len(p), dtype=bool)
                neg_x.append(fp[neg.numpy()])
                if best is not None:
                    near = best.values >= 0.6
                    reg_x.append(fp[near.numpy()])
                    reg_y.append(box_regression_targets(p[near], gc[best.indices[near]]).numpy())
            pos, negs = np.concatenate(pos_x), np.concatenate(neg_x)
            if len(pos) == 0:
                raise DataError(f"RCNN.fit: class {c} has no ground-truth box to learn from")
            x = np.concatenate([pos, negs])
            y = np.r_[np.ones(len(pos)), np.zeros(len(negs))]
            svm = LinearSVC(C=self.svm_c, class_weight="balanced", random_state=self.seed)
            self.svms.append(svm.fit(x, y))
            rx = np.concatenate(reg_x) if reg_x else np.zeros((0, x.shape[1]))
            ry = np.concatenate(reg_y) if reg_y else np.zeros((0, 4))
            self.regressors.append(Ridge(alpha=self.ridge_alpha).fit(rx, ry) if len(rx) else None)
        return self

    def _finetune(self, images, props, gts, labs) -> None:
        """Step 3's fine-tuning: warped proposals + gts, label = gt class + 1 at IoU >= 0.5."""
        crops, ys = [], []
        for im, p, g, lab in zip(images, props, gts, labs):
            boxes = torch.cat([p, g])
            y = torch.zeros(len(boxes), dtype=torch.int64)
            if len(g):
                best = box_iou(boxes, g).max(1)
                y = torch.where(best.values >= 0.5, lab[best.indices] + 1, y)
            crops.append(self.warp(im, boxes))
            ys.append(y)
        x, y = torch.cat(crops), torch.cat(ys)
        pos, neg = torch.nonzero(y > 0).squeeze(1), torch.nonzero(y == 0).squeeze(1)
        self.cnn = RegionCNN(self.num_classes, size=self.size)
        opt = torch.optim.Adam(self.cnn.parameters(), lr=2e-3)
        g = torch.Generator().manual_seed(self.seed)
        self.cnn.train()
        steps = max(1, len(pos) // 32)  # an epoch: every positive seen once
        for _ in range(self.finetune_epochs):
            for _ in range(steps):  # the paper's minibatch: 32 positives, 96 background
                bi = torch.cat([pos[torch.randint(len(pos), (32,), generator=g)],
                                neg[torch.randint(len(neg), (96,), generator=g)]])  # fmt: skip
                loss = F.cross_entropy(self.cnn(x[bi]), y[bi])
                opt.zero_grad()
                loss.backward()
                opt.step()

    # ---------------------------------------------------------------- step 6
    def detect(
        self, image: np.ndarray, score_thr: float = -1.0, nms_iou: float = 0.3, max_det: int = 100
    ) -> dict[str, torch.Tensor]:
        """Boxes (K, 4), SVM scores (K,) and labels (K,) of one image, best first."""
        if self.cnn is None:
            raise ConfigError("RCNN.detect before fit: call fit(images, targets) first")
        p = self.proposals(image)
        f = self.features(image, p)
        boxes, scores, labels = [], [], []
        for c, (svm, reg) in enumerate(zip(self.svms, self.regressors)):
            s = torch.from_numpy(svm.decision_function(f)).float() if len(f) else torch.zeros(0)
            b = p if reg is None or len(f) == 0 else _COORDS.decode(
                torch.from_numpy(reg.predict(f)).float(), p
            )  # fmt: skip
            keep = s > score_thr
            boxes.append(b[keep])
            scores.append(s[keep])
            labels.append(torch.full((int(keep.sum()),), c, dtype=torch.int64))
        b, s, lab = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
        b = clip_boxes(b, *image.shape[:2])
        res = batched_nms(b, s, lab, nms_iou, max_det=max_det)
        return {"boxes": res.boxes, "scores": res.scores, "labels": lab[res.keep]}
