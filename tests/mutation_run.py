"""Mutation check for tests/MUTATIONS.md: apply one deliberate one-line bug at a time to the
library, run the tests that guard that module, restore the file, and print a Markdown table.

    OMP_NUM_THREADS=1 python tests/mutation_run.py [--root DIR] [name-substring ...]
    OMP_NUM_THREADS=1 python tests/mutation_run.py smoke4      # round 4 only (4th-round tests)
    OMP_NUM_THREADS=1 python tests/mutation_run.py smoke5      # round 5 only (5th-round tests)

``--root`` runs against another checkout (e.g. an exported older commit, to see what the
suite caught before; test files it lacks are left out). The library file is restored after
every mutant (also on Ctrl-C), and nothing is committed. Each mutant names the exact source
text it replaces, so a refactor that removes that text shows as ERROR, not as a pass.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]  # replaced by --root


class Mutant(NamedTuple):
    name: str
    path: str  # library file, relative to the repository root
    old: str  # exact source text (must occur once)
    new: str
    tests: tuple[str, ...]  # pytest node ids / files that should kill it
    slow: bool = False  # the tests are marked slow: run them with -m "slow or not slow"


COCO_TESTS = ("tests/metrics/test_metrics_coco.py", "tests/metrics/test_coco_boundaries.py")
NMS_TESTS = ("tests/ops/test_ops_nms.py",)
ASSIGN_TESTS = ("tests/ops/test_ops_assigners.py",)
KPT_TESTS = ("tests/metrics/test_keypoint_eval.py",)
VOC_TESTS = ("tests/metrics/test_metrics_voc.py",)
POLICY_TESTS = (
    "tests/transforms/test_aug_policies.py",
    "tests/transforms/test_transform_base.py",
    "tests/transforms/test_aug_frequencies.py",
)

MUTANTS = [
    Mutant(
        "coco: IoU >= t becomes > t",
        "cvcraft/metrics/coco.py",
        "cand = avail[live] & (iou[:, None, None, :] >= thr4)",
        "cand = avail[live] & (iou[:, None, None, :] > thr4)",
        COCO_TESTS,
    ),
    Mutant(
        "coco: gt area range lower bound exclusive",
        "cvcraft/metrics/coco.py",
        "(gt_area[:, None] < lo) | (gt_area[:, None] > hi)",
        "(gt_area[:, None] <= lo) | (gt_area[:, None] > hi)",
        COCO_TESTS,
    ),
    Mutant(
        "coco: detection area range upper bound exclusive",
        "cvcraft/metrics/coco.py",
        "((darea[:, None] < lo) | (darea[:, None] > hi))",
        "((darea[:, None] < lo) | (darea[:, None] >= hi))",
        COCO_TESTS,
    ),
    Mutant(
        "coco: IoU tie between gts goes to the earlier gt",
        "cvcraft/metrics/coco.py",
        'order = np.argsort(iou, axis=-1, kind="stable")  # (L, Gp)',
        'order = np.argsort(-iou, axis=-1, kind="stable")[:, ::-1]  # (L, Gp)',
        COCO_TESTS,
    ),
    Mutant(
        "coco: crowd IoU over the union instead of the detection area",
        "cvcraft/metrics/coco.py",
        "union = np.where(gt_crowd, area_d, (area_d + gt[..., 2] * gt[..., 3]) - inter)",
        "union = (area_d + gt[..., 2] * gt[..., 3]) - inter",
        COCO_TESTS,
    ),
    Mutant(
        "coco: score ties within an image take the LAST detection first (maxDets cut)",
        "cvcraft/metrics/coco.py",
        "dorder = np.lexsort((-det_score, dkey))  # stable: ties keep input order",
        "dorder = np.lexsort((-np.arange(len(det_score)), -det_score, dkey))",
        COCO_TESTS,
    ),
    Mutant(
        "nms: candidates sorted unstably (score ties by a different order)",
        "cvcraft/ops/nms.py",
        "order = torch.sort(scores[cand], descending=True, stable=True).indices",
        "order = torch.sort(scores[cand], stable=True).indices.flip(0)",
        NMS_TESTS,
    ),
    Mutant(
        "nms: score_threshold exclusive",
        "cvcraft/ops/nms.py",
        "cand = torch.nonzero(scores >= score_threshold).squeeze(1)",
        "cand = torch.nonzero(scores > score_threshold).squeeze(1)",
        NMS_TESTS,
    ),
    Mutant(
        "nms: Fast NMS suppresses at IoU == t",
        "cvcraft/ops/nms.py",
        "return torch.nonzero(_max_iou_from_above(boxes, labels) <= thr).squeeze(1)",
        "return torch.nonzero(_max_iou_from_above(boxes, labels) < thr).squeeze(1)",
        NMS_TESTS,
    ),
    Mutant(
        "nms: linear Soft-NMS decays only above t",
        "cvcraft/ops/nms.py",
        "decay = torch.where(iou >= thr, 1 - iou, torch.ones_like(iou))",
        "decay = torch.where(iou > thr, 1 - iou, torch.ones_like(iou))",
        NMS_TESTS,
    ),
    Mutant(
        "nms: weighted NMS cluster includes IoU == t",
        "cvcraft/ops/nms.py",
        "member = (iou > thr) & (keep[:, None] < pos[None, :])",
        "member = (iou >= thr) & (keep[:, None] < pos[None, :])",
        NMS_TESTS,
    ),
    Mutant(
        "assign: IoU == pos_thr is ignored, not positive",
        "cvcraft/ops/assigners.py",
        "gt_index[best_iou < pos_thr] = IGNORE",
        "gt_index[best_iou <= pos_thr] = IGNORE",
        ASSIGN_TESTS,
    ),
    Mutant(
        "assign: IoU == neg_thr is negative, not ignored",
        "cvcraft/ops/assigners.py",
        "gt_index[best_iou < neg_thr] = NEGATIVE",
        "gt_index[best_iou <= neg_thr] = NEGATIVE",
        ASSIGN_TESTS,
    ),
    Mutant(
        "assign: low-quality rescue requires IoU > min_pos_iou",
        "cvcraft/ops/assigners.py",
        "keep = (iou == per_gt[:, None]) & (per_gt >= min_pos_iou)[:, None]  # (M, N)",
        "keep = (iou == per_gt[:, None]) & (per_gt > min_pos_iou)[:, None]  # (M, N)",
        ASSIGN_TESTS,
    ),
    Mutant(
        "resnet: stem ReLU before BN",
        "cvcraft/models/classification/resnet.py",
        'stem = [(n, getattr(self, n)) for n in ("conv1", "bn1", "relu", "maxpool")]',
        'stem = [(n, getattr(self, n)) for n in ("conv1", "relu", "bn1", "maxpool")]',
        ("tests/models/test_resnet.py",),
    ),
    Mutant(
        "fuse: conv-BN folding drops BN eps",
        "cvcraft/nn/fuse.py",
        "scale = gamma * torch.rsqrt(var + bn.eps)  # (C_out,)",
        "scale = gamma * torch.rsqrt(var)  # (C_out,)",
        ("tests/nn/test_nn_fuse.py",),
    ),
    Mutant(
        "seg metrics: a class absent from target and prediction counts as IoU 0",
        "cvcraft/metrics/segmentation.py",
        "return float(np.nanmean(x)) if np.isfinite(x).any() else 0.0",
        "return float(np.nan_to_num(x).mean()) if np.isfinite(x).any() else 0.0",
        ("tests/metrics/test_seg_metrics.py",),
    ),
    Mutant(
        "dice: present_only averages over all classes",
        "cvcraft/losses/segmentation.py",
        "w = w * (onehot.sum(dims) > 0)",
        "w = w * (onehot.sum(dims) >= 0)",
        ("tests/losses/test_seg_losses.py",),
    ),
    Mutant(
        "lovasz: present_only averages over all classes",
        "cvcraft/losses/segmentation.py",
        "present = total > 0",
        "present = total >= 0",
        ("tests/losses/test_seg_losses.py",),
    ),
    Mutant(
        "transform: p is the skip probability",
        "cvcraft/transforms/base.py",
        "if self.p < 1.0 and rng.random() >= self.p:",
        "if self.p < 1.0 and rng.random() < self.p:",
        POLICY_TESTS,
    ),
    Mutant(
        "multi-sample (Mosaic, MixUp): p is the skip probability",
        "cvcraft/transforms/multi_sample.py",
        "if self.p < 1.0 and rng.random() >= self.p:",
        "if self.p < 1.0 and rng.random() < self.p:",
        POLICY_TESTS + ("tests/transforms/test_aug_mosaic.py",),
    ),
    Mutant(
        "AutoAugment: step runs with probability 1 - p",
        "cvcraft/transforms/policies.py",
        "if rng.random() <= prob:",
        "if rng.random() >= prob:",
        POLICY_TESTS,
    ),
    Mutant(
        "policies: magnitude sign negative 1/4 of the time, not 1/2",
        "cvcraft/transforms/policies.py",
        "if space[name][1] and rng.random() < 0.5:",
        "if space[name][1] and rng.random() < 0.25:",
        POLICY_TESTS,
    ),
    Mutant(
        "RandAugment: random magnitude never reaches the top bin",
        "cvcraft/transforms/policies.py",
        "level = int(rng.integers(self.magnitude + 1)) if self.random_magnitude else None",
        "level = int(rng.integers(self.magnitude)) if self.random_magnitude else None",
        POLICY_TESTS,
    ),
    Mutant(
        "TrivialAugment: last bin never drawn",
        "cvcraft/transforms/policies.py",
        "level = int(rng.integers(self.num_bins))",
        "level = int(rng.integers(self.num_bins - 1))",
        POLICY_TESTS,
    ),
    Mutant(
        "MixupCutmix: CutMix with probability 1 - switch_prob",
        "cvcraft/transforms/mix.py",
        "self.mixup_alpha == 0 or rng.random() < self.switch_prob",
        "self.mixup_alpha == 0 or rng.random() >= self.switch_prob",
        ("tests/transforms/test_aug_mix.py", "tests/transforms/test_aug_frequencies.py"),
    ),
    Mutant(
        "CopyPaste: flip with probability 1 - flip",
        "cvcraft/transforms/copy_paste.py",
        '"flip": bool(rng.random() < self.flip)',
        '"flip": bool(rng.random() >= self.flip)',
        ("tests/transforms/test_aug_copy_paste.py", "tests/transforms/test_aug_frequencies.py"),
    ),
    Mutant(
        "top-k accuracy: ties with the true class never count against it",
        "cvcraft/metrics/classification.py",
        "return (scores > s_true).sum(1) + ((scores == s_true) & lower_index).sum(1)",
        "return (scores > s_true).sum(1)",
        ("tests/metrics/test_classification_metrics.py",),
    ),
    Mutant(
        "top-k accuracy: rank <= k",
        "cvcraft/metrics/classification.py",
        "self.topk_hits += (rank[None, :] < caps[:, None]).sum(1)",
        "self.topk_hits += (rank[None, :] <= caps[:, None]).sum(1)",
        ("tests/metrics/test_classification_metrics.py",),
    ),
    Mutant(
        "GIoU: penalty over the union instead of the enclosing box",
        "cvcraft/ops/boxes.py",
        "return t.iou - (enclose - t.union) / enclose",
        "return t.iou - (enclose - t.union) / t.union.clamp(min=eps)",
        ("tests/ops/test_ops_boxes.py",),
    ),
    Mutant(
        "IoU: eps added to the union instead of clamping it",
        "cvcraft/ops/boxes.py",
        "iou = inter / union.clamp(min=eps)",
        "iou = inter / (union + eps)",
        ("tests/ops/test_ops_boxes.py", "tests/ops/test_ops_nms.py", *ASSIGN_TESTS),
    ),
    Mutant(
        "PSNR: L / MSE instead of L^2 / MSE",
        "cvcraft/metrics/image.py",
        'return float("inf") if m == 0 else float(10 * np.log10(L * L / m))',
        'return float("inf") if m == 0 else float(10 * np.log10(L / m))',
        ("tests/metrics/test_image_metrics.py",),
    ),
    # second round: keypoint OKS AP, VOC AP, ATSS / SimOTA boundaries
    Mutant(
        "keypoints: OKS >= t becomes > t (keypoint tests only)",
        "cvcraft/metrics/coco.py",
        "cand = avail[live] & (iou[:, None, None, :] >= thr4)",
        "cand = avail[live] & (iou[:, None, None, :] > thr4)",
        KPT_TESTS,
    ),
    Mutant(
        "keypoints: gt area range lower bound exclusive (keypoint tests only)",
        "cvcraft/metrics/coco.py",
        "(gt_area[:, None] < lo) | (gt_area[:, None] > hi)",
        "(gt_area[:, None] <= lo) | (gt_area[:, None] > hi)",
        KPT_TESTS,
    ),
    Mutant(
        "keypoints: detection area range upper bound exclusive (keypoint tests only)",
        "cvcraft/metrics/coco.py",
        "((darea[:, None] < lo) | (darea[:, None] > hi))",
        "((darea[:, None] < lo) | (darea[:, None] >= hi))",
        KPT_TESTS,
    ),
    Mutant(
        "keypoints: detection extent one unit wider and taller",
        "cvcraft/metrics/keypoints.py",
        "return np.stack([x0, y0, x.max(-1) - x0, y.max(-1) - y0], -1)",
        "return np.stack([x0, y0, x.max(-1) - x0 + 1, y.max(-1) - y0 + 1], -1)",
        KPT_TESTS,
    ),
    Mutant(
        "keypoints: a gt with num_keypoints == 0 is not ignored",
        "cvcraft/metrics/keypoints.py",
        '[int(a.get("num_keypoints", 1)) == 0 for a in anns]',
        '[int(a.get("num_keypoints", 1)) < 0 for a in anns]',
        KPT_TESTS,
    ),
    Mutant(
        "voc: IoU >= 0.5 becomes > 0.5",
        "cvcraft/metrics/voc.py",
        "hit = ov[np.arange(d), best] >= iou_threshold",
        "hit = ov[np.arange(d), best] > iou_threshold",
        VOC_TESTS,
    ),
    Mutant(
        "voc: difficult gts counted as positives",
        "cvcraft/metrics/voc.py",
        "counted = gl if diff is None else gl[~diff]",
        "counted = gl",
        VOC_TESTS,
    ),
    Mutant(
        "voc: a hit on a difficult gt is a FP, not ignored",
        "cvcraft/metrics/voc.py",
        "fp = ~hit | (takes & ~tp)",
        "fp = ~hit | (hit & ~tp)",
        VOC_TESTS,
    ),
    Mutant(
        "voc: best gt is the last on IoU ties",
        "cvcraft/metrics/voc.py",
        "best = np.argmax(ov, axis=1)  # first on ties, as the devkit",
        "best = ov.shape[1] - 1 - np.argmax(ov[:, ::-1], axis=1)",
        VOC_TESTS,
    ),
    Mutant(
        "assigners: a centre on a box edge counts as inside",
        "cvcraft/ops/assigners.py",
        "return torch.cat([lt, rb], -1).amin(-1) > 0",
        "return torch.cat([lt, rb], -1).amin(-1) >= 0",
        ASSIGN_TESTS,
    ),
    Mutant(
        "atss: IoU == mean + std is not positive",
        "cvcraft/ops/assigners.py",
        "is_pos = (cand_iou >= thr[None])",
        "is_pos = (cand_iou > thr[None])",
        ASSIGN_TESTS,
    ),
    Mutant(
        "atss: biased std in the threshold",
        "cvcraft/ops/assigners.py",
        "thr = cand_iou.mean(0) + cand_iou.std(0)",
        "thr = cand_iou.mean(0) + cand_iou.std(0, unbiased=False)",
        ASSIGN_TESTS,
    ),
    Mutant(
        "simota: a prior exactly center_radius strides away is in the centre region",
        "cvcraft/ops/assigners.py",
        "in_ctr = (off < radius[..., None]).all(-1)",
        "in_ctr = (off <= radius[..., None]).all(-1)",
        ASSIGN_TESTS,
    ),
    Mutant(
        "simota: dynamic k rounds instead of flooring",
        "cvcraft/ops/assigners.py",
        "dynamic_k = v_iou.topk(k_iou, dim=0).values.sum(0).int().clamp(min=1)",
        "dynamic_k = v_iou.topk(k_iou, dim=0).values.sum(0).round().int().clamp(min=1)",
        ASSIGN_TESTS,
    ),
    Mutant(
        "fusion evaluator: fused image passed as a source to Q^AB/F",
        "cvcraft/metrics/fusion.py",
        '"qabf": qabf(a, b, f),',
        '"qabf": qabf(a, f, b),',
        ("tests/metrics/test_fusion_evaluator.py",),
    ),
    # learning thresholds in smoke tests (issue 25, class 8)
    Mutant(
        "trainer: gradient ascent (loss sign flipped in backward)",
        "cvcraft/engine/trainer.py",
        "self.scaler.scale(loss / self.cfg.accumulate).backward()",
        "self.scaler.scale(-loss / self.cfg.accumulate).backward()",
        ("tests/cli/test_classify_e2e.py::test_skip_bad_counts_and_trains",),
    ),
    Mutant(
        "trainer: the optimizer never steps",
        "cvcraft/engine/trainer.py",
        "        self.scaler.step(part.opt)\n",
        "        pass\n",
        ("tests/cli/test_classify_e2e.py::test_skip_bad_counts_and_trains",),
    ),
]

# smoke tests that now assert learning on the easy colour folder (issue 25, class 8, round 3):
# each test alone must fail with the optimizer never stepping and with labels misaligned
SMOKE_LEARNING = (
    "tests/engine/test_zoo_trains.py::test_model_trains_from_config[mlp]",
    "tests/engine/test_zoo_trains.py::test_model_trains_from_config[vit_tiny_patch4_32]",
    "tests/engine/test_zoo_trains.py::test_model_trains_from_config[swin_nano_patch2_window4_32]",
    "tests/engine/test_trainer.py::test_amp_and_regularizers_run[sgd]",
    "tests/engine/test_trainer.py::test_amp_and_regularizers_run[adamw]",
    "tests/engine/test_trainer.py::test_amp_and_regularizers_run[rmsprop]",
    "tests/engine/test_trainer.py::test_ema_is_evaluated_alongside_raw",
    "tests/engine/test_classify_mixing.py::test_end_to_end_mixing_sampler_weights",
    "tests/tasks/test_fixmatch.py::test_fixmatch_trains_end_to_end",
)
_ROLL_CLASSIFY = (
    "cvcraft/tasks/classify/task.py",
    'y = batch["labels"].to(self.device, non_blocking=True)',
    'y = batch["labels"].roll(1).to(self.device, non_blocking=True)',
)
# FixMatch takes its labels in semi.py (the task's ``y`` is not used on that path)
_ROLL_FIXMATCH = (
    "cvcraft/tasks/classify/semi.py",
    'y = batch["labels"].to(logits.device, non_blocking=True)\n    loss_u, mask = fix',
    'y = batch["labels"].roll(1).to(logits.device, non_blocking=True)\n    loss_u, mask = fix',
)


def smoke_mutants(
    tag: str, rounds: tuple, what: str = "targets rolled by one within the batch"
) -> list[Mutant]:
    """The two mutants of each (test, slow?, change) entry: the optimizer never steps, and
    ``change`` (by default the targets rolled by one within the batch: ``what`` names it),
    each run against that test alone."""
    out = []
    for test, slow, roll in rounds:
        short = test.split("::")[1]
        out += [
            Mutant(
                f"{tag} {short}: the optimizer never steps",
                "cvcraft/engine/trainer.py",
                "        self.scaler.step(part.opt)\n",
                "        pass\n",
                (test,),
                slow,
            ),
            Mutant(f"{tag} {short}: {what}", *roll, (test,), slow),
        ]
    return out


SMOKE_ROUND3 = tuple(  # (test, slow?, the roll mutant's (file, old, new))
    (test, False, _ROLL_FIXMATCH if "fixmatch" in test else _ROLL_CLASSIFY)
    for test in SMOKE_LEARNING
)
MUTANTS += smoke_mutants("smoke", SMOKE_ROUND3, "labels rolled by one within the batch")


# round 4 (issue 25, class 8): the other tasks' smoke tests on easy data. Each test alone
# must fail with the optimizer never stepping and with the targets misaligned, rolled by
# one where that task's train_loss reads them.
_ROLL_SEGMENT = (
    "cvcraft/tasks/segment/task.py",
    'y = batch["masks"].to(self.device, non_blocking=True)',
    'y = batch["masks"].roll(1, 0).to(self.device, non_blocking=True)',
)
_ROLL_DETECT = (  # each image gets the next image's boxes and labels
    "cvcraft/tasks/detect/task.py",
    "targets = batch_targets(batch, self.device)",
    "targets = batch_targets(batch, self.device)\n        targets = targets[1:] + targets[:1]",
)
_ROLL_RECOGNIZE = (  # the concatenated label sequence shifted by one character
    "cvcraft/tasks/recognize/task.py",
    'loss = ctc_loss(log_probs, batch["targets"].to(self.device), frames, tl,',
    'loss = ctc_loss(log_probs, batch["targets"].roll(1).to(self.device), frames, tl,',
)
SMOKE_ROUND4 = (  # (test, slow?, the roll mutant's (file, old, new))
    ("tests/cli/test_classify_e2e.py::test_run_folder_contents", False, _ROLL_CLASSIFY),
    (
        "tests/engine/test_segment_task.py::"
        "test_trainer_learns_easy_masks_and_the_loss_takes_aux_outputs",
        False,
        _ROLL_SEGMENT,
    ),
    ("tests/cli/test_segment_e2e.py::test_train_val_predict_segment", False, _ROLL_SEGMENT),
    (
        "tests/models/test_det_fcos.py::test_learns_easy_squares_through_the_detect_task",
        False,
        _ROLL_DETECT,
    ),
    ("tests/cli/test_detect_e2e.py::test_yolo_learns_easy_squares", True, _ROLL_DETECT),
    (
        "tests/engine/test_zoo_trains.py::test_batchnorm_cnn_learns[mobilenet_v2]",
        True,
        _ROLL_CLASSIFY,
    ),
)


MUTANTS += smoke_mutants("smoke4", SMOKE_ROUND4)


_ROLL_EMBED = (  # each image gets the next image's identity
    "cvcraft/tasks/embed/task.py",
    'ids = batch["labels"].to(self.device)',
    'ids = batch["labels"].roll(1, 0).to(self.device)',
)
_ROLL_FUSE = (  # each fused image is scored against the next pair's sources
    "cvcraft/tasks/fuse/task.py",
    "loss, _ = self.criterion(model(x), x[:, :1], x[:, 1:])",
    "loss, _ = self.criterion(model(x), x[:, :1].roll(1, 0), x[:, 1:].roll(1, 0))",
)
_ROLL_GENERATE = (  # each reconstruction is scored against the next image
    "cvcraft/tasks/generate/task.py",
    "recon, kl = vae_terms(recon_x, x, mu, logvar, cfg.recon_std)",
    "recon, kl = vae_terms(recon_x, x.roll(1, 0), mu, logvar, cfg.recon_std)",
)
SMOKE_ROUND5 = (  # (test, slow?, the roll mutant's (file, old, new))
    ("tests/tasks/test_embed_task.py::test_learns_to_retrieve_easy_chroma", False, _ROLL_EMBED),
    # instance uses the detect task's train_loss: boxes, labels and masks move together
    ("tests/cli/test_instance_e2e.py::test_yolo_seg_learns_easy_squares", True, _ROLL_DETECT),
    ("tests/cli/test_fuse_e2e.py::test_fuse_learns_synthetic_pairs", False, _ROLL_FUSE),
    (
        "tests/models/test_generative_autoencoders.py::test_autoencoder_learns_to_reconstruct",
        False,
        _ROLL_GENERATE,
    ),
)
MUTANTS += smoke_mutants("smoke5", SMOKE_ROUND5)


# round 7 (issue 25, class 8): distillation, adversarial training, DenseFuse's auto-encoder
# and the GANs learn on easy data; bottom-up pose and YOLOv6/v7 through their slow tests.
_ROLL_KD = (  # each image distils from the teacher's logits of the next image
    "cvcraft/tasks/classify/task.py",
    't_logits = self.teacher(batch["images"].to(self.device, non_blocking=True)).float()',
    't_logits = self.teacher(batch["images"].to(self.device, non_blocking=True)).float()'
    ".roll(1, 0)",
)
_ROLL_FUSE_AE = (  # each source image reconstructs the next one
    "cvcraft/tasks/fuse/task.py",
    "loss, _ = self.rec_criterion(model(singles), singles)",
    "loss, _ = self.rec_criterion(model(singles), singles.roll(1, 0))",
)
_ROLL_POSE_BU = (  # each image's maps are drawn from the next image's people
    "cvcraft/tasks/pose/task.py",
    'loss = stage_loss(out, batch["keypoints"].to(self.device), self.skeleton,',
    'loss = stage_loss(out, batch["keypoints"].roll(1, 0).to(self.device), self.skeleton,',
)
_KD_ADV = "tests/engine/test_classify_kd_adv.py::"
SMOKE_ROUND7 = (  # (test, slow?, the roll mutant's (file, old, new))
    (_KD_ADV + "test_pure_distillation_learns_the_teachers_classes", False, _ROLL_KD),
    *(
        (
            _KD_ADV + f"test_adversarial_training_learns_the_easy_folder[{adv}]",
            False,
            _ROLL_CLASSIFY,
        )
        for adv in ("fgsm", "pgd", "trades")
    ),
    (
        "tests/cli/test_fuse_autoencoder_e2e.py::test_auto_encoder_learns_to_reconstruct",
        False,
        _ROLL_FUSE_AE,
    ),
    (
        "tests/cli/test_pose_openpose_learns.py::"
        "test_openpose_small_learns_multi_person_stick_figures",
        True,
        _ROLL_POSE_BU,
    ),
    *(
        (
            f"tests/models/test_det_yolo67_shapes.py::test_detector_learns_shapes[{m}]",
            True,
            _ROLL_DETECT,
        )
        for m in ("yolov6_p", "yolov7_n")
    ),
)
MUTANTS += smoke_mutants("smoke7", SMOKE_ROUND7)
_SWAP_GAN = (  # D learns to call the fakes real and the real images fake
    "cvcraft/tasks/generate/task.py",
    "dl = d_loss(cfg.loss, disc(x_real, labels), fake_logits, cfg.label_smooth, targets)",
    "dl = d_loss(cfg.loss, fake_logits, disc(x_real, labels), cfg.label_smooth, targets)",
)
MUTANTS += smoke_mutants(
    "smoke7",
    tuple(
        (
            f"tests/tasks/test_generate_task.py::test_gan_learns_the_pixel_moments[{m}]",
            False,
            _SWAP_GAN,
        )
        for m in ("biggan_small", "cgan", "dcgan")
    ),
    "the discriminator's real and fake sides swapped",
)
_ROLL_POSE_JOINTS = (  # top-down: each heatmap channel trained on the next joint's position
    "cvcraft/tasks/pose/task.py",
    '        kp = batch["keypoints"].to(self.device)\n        target, weight = gaussian_heatmaps',
    '        kp = batch["keypoints"].roll(1, 1).to(self.device)\n'
    "        target, weight = gaussian_heatmaps",
)
MUTANTS += smoke_mutants(
    "smoke7",
    (
        (
            "tests/cli/test_pose_e2e.py::test_simplebaseline_learns_stick_figures",
            True,
            _ROLL_POSE_JOINTS,
        ),
    ),
    "the joints' order rolled by one in the targets",
)
# SSD's learning check is an overfit loop outside the trainer (tests/models/det_overfit.py):
# its mutants sit in the model's loss
_SSD_OVERFIT = ("tests/models/test_det_ssd_shapes.py::test_ssd300_overfits_shapes",)
MUTANTS += [
    Mutant(
        "smoke7 test_ssd300_overfits_shapes: matched anchors get the class index without the "
        "background offset",
        "cvcraft/models/detection/ssd.py",
        "cls_t[i, prior] = labels[gt_idx] + 1  # 0 = background",
        "cls_t[i, prior] = labels[gt_idx]  # 0 = background",
        _SSD_OVERFIT,
        True,
    ),
    Mutant(
        "smoke7 test_ssd300_overfits_shapes: the box regression term dropped",
        "cvcraft/models/detection/ssd.py",
        'parts = {"cls": (ce[pos].sum() + ce[neg].sum()) / n_pos, "box": box_l / n_pos}',
        'parts = {"cls": (ce[pos].sum() + ce[neg].sum()) / n_pos, "box": 0 * box_l / n_pos}',
        _SSD_OVERFIT,
        True,
    ),
]


def run(m: Mutant, root: Path) -> tuple[str, float, str]:
    """(killed|SURVIVED|ERROR, seconds, last pytest line) for one mutant."""
    tests = [t for t in m.tests if (root / t.split("::")[0]).exists()]
    if not tests:
        return "no tests", 0.0, ""
    path = root / m.path
    src = path.read_text()
    if src.count(m.old) != 1:
        return "ERROR", 0.0, f"source text found {src.count(m.old)} times (refactored?)"
    try:
        path.write_text(src.replace(m.old, m.new))
        t0 = time.perf_counter()
        p = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
            + (["-m", "slow or not slow"] if m.slow else []),
            cwd=root,
            capture_output=True,
            text=True,
        )
        dt = time.perf_counter() - t0
    finally:
        path.write_text(src)
    last = (p.stdout.strip().splitlines() or [""])[-1]
    if p.returncode == 1:
        return "killed", dt, last
    return ("SURVIVED" if p.returncode == 0 else "ERROR"), dt, last


def main(argv: list[str]) -> int:
    root = ROOT
    if argv[:1] == ["--root"]:
        root, argv = Path(argv[1]).resolve(), argv[2:]
    chosen = [m for m in MUTANTS if not argv or any(a in m.name for a in argv)]
    print("| mutant | file | tests | result | pytest |")
    print("|---|---|---|---|---|")
    survived = 0
    for m in chosen:
        result, dt, last = run(m, root)
        survived += result != "killed"
        tests = ", ".join(Path(t.split("::")[0]).name for t in m.tests)
        print(f"| {m.name} | {m.path} | {tests} | **{result}** ({dt:.0f}s) | {last} |", flush=True)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
