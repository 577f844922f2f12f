"""Mask R-CNN: torchvision's MaskRCNN with the same (random, BN statistics randomised)
weights is the oracle for proposals, boxes, 28x28 mask probabilities, pasted masks and the
mask loss; paste_masks against torchvision's paste_masks_in_image."""

import pytest
import torch
from torchvision.models.detection import MaskRCNN as TVMaskRCNN
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import maskrcnn_loss, paste_masks_in_image
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.resnet import resnet18 as tv_resnet18

from cvcraft.models import create_model
from cvcraft.models.detection.mask_rcnn import from_torchvision_state_dict
from cvcraft.ops.masks import paste_masks

FPN_CH, REP, MW, C = 32, 64, 24, 3
SIZE = (96, 128)


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    backbone = BackboneWithFPN(
        tv_resnet18(),
        {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
        [64, 128, 256, 512],
        FPN_CH,
    )
    tv = TVMaskRCNN(
        backbone, num_classes=None, rpn_head=RPNHead(FPN_CH, 3),
        box_head=TwoMLPHead(FPN_CH * 49, REP), box_predictor=FastRCNNPredictor(REP, C + 1),
        mask_head=MaskRCNNHeads(FPN_CH, (MW,) * 4, 1),
        mask_predictor=MaskRCNNPredictor(MW, MW, C + 1),
    ).eval()  # fmt: skip
    with torch.no_grad():  # every weight off its init, BN statistics random
        for p in tv.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        for m in tv.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    ours = create_model(
        "maskrcnn_resnet18_fpn", num_classes=C, fpn_channels=FPN_CH, representation=REP,
        mask_layers=(MW,) * 4, mask_dim=MW,
        rpn_pre_nms_top_n=(2000, 1000), rpn_post_nms_top_n=(2000, 1000),
        normalize_input=False,  # fed what tv.backbone is fed: inputs already normalized
    ).eval()  # fmt: skip
    missing, unexpected = ours.load_state_dict(
        from_torchvision_state_dict(tv.state_dict()), strict=False
    )
    assert unexpected == [] and all(k.endswith("num_batches_tracked") for k in missing)
    return tv, ours


def test_resnet50_fpn_keys_match_torchvision():
    import torchvision

    tv = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    ours = create_model("maskrcnn_resnet50_fpn", num_classes=90)
    sd = from_torchvision_state_dict(tv.state_dict())
    own = ours.state_dict()
    assert set(own) == set(sd)
    assert all(own[k].shape == v.shape for k, v in sd.items())


def test_proposals_boxes_and_masks_match_torchvision(pair):
    tv, ours = pair
    torch.manual_seed(1)
    x = torch.rand(2, 3, *SIZE)
    with torch.no_grad():
        feats_tv = tv.backbone(x)
        il = ImageList(x, [SIZE] * 2)
        props_tv, _ = tv.rpn(il, feats_tv)
        dets_tv, _ = tv.roi_heads(feats_tv, props_tv, il.image_sizes)
        out = ours(x)
        dets = ours.postprocess(out, conf=0.05, iou=0.5, max_det=100)
    for a, b in zip(props_tv, out["proposals"]):
        torch.testing.assert_close(b, a)
    for ref, got in zip(dets_tv, dets):
        assert len(got["boxes"]) > 0
        torch.testing.assert_close(got["boxes"], ref["boxes"])
        torch.testing.assert_close(got["scores"], ref["scores"])
        assert torch.equal(got["labels"], ref["labels"] - 1)
        torch.testing.assert_close(got["mask_probs"], ref["masks"][:, 0])
        pasted = paste_masks_in_image(ref["masks"], ref["boxes"], SIZE)[:, 0]
        torch.testing.assert_close(got["masks"], pasted, atol=1e-5, rtol=0)
        assert got["masks"].shape == (len(got["boxes"]), *SIZE)


def test_mask_loss_matches_torchvision(pair):
    """Same sampled RoIs (seeded), the positives' targets and BCE equal maskrcnn_loss."""
    tv, ours = pair
    masks = [torch.zeros(2, *SIZE), torch.zeros(1, *SIZE)]
    masks[0][0, 12:70, 10:60] = 1
    masks[0][1, 30:90, 50:120] = 1
    masks[1][0, 20:40, 20:44] = 1
    targets = [
        {"boxes": torch.tensor([[10.0, 12, 60, 70], [50, 30, 120, 90]]),
         "labels": torch.tensor([0, 2]), "masks": masks[0]},
        {"boxes": torch.tensor([[20.0, 20, 44, 40]]), "labels": torch.tensor([1]),
         "masks": masks[1]},
    ]  # fmt: skip
    x = torch.rand(2, 3, *SIZE)
    ours.train()
    ours.backbone.eval()
    try:
        with torch.no_grad():
            out, feats = ours.forward_with_features(x, None)  # eval-mode proposals
            props = out["proposals"]
            torch.manual_seed(6)
            rois, labels, _ = ours.sample_rois(props, targets)
            logits, tgt = ours._mask_train(feats, rois, labels, targets)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, tgt)
            # torchvision: the same RoIs, their matched gt index, the full logits
            pos_rois, matched = [], []
            tv_logits = []
            for r, lab, t in zip(rois, labels.split([len(r) for r in rois]), targets):
                p = r[lab > 0]
                iou = __import__("torchvision").ops.box_iou(t["boxes"], p)
                matched.append(iou.argmax(0))
                pos_rois.append(p)
            tv_logits = ours.mask_head(feats, pos_rois)
            ref = maskrcnn_loss(
                tv_logits, pos_rois, [t["masks"] for t in targets],
                [t["labels"] + 1 for t in targets], matched,
            )  # fmt: skip
    finally:
        ours.eval()
    assert len(tgt) > 0
    torch.testing.assert_close(loss, ref)


def test_paste_masks_matches_torchvision():
    torch.manual_seed(3)
    n = 40
    m = torch.rand(n, 28, 28)
    xy = torch.rand(n, 2) * torch.tensor([120.0, 90.0])
    boxes = torch.cat([xy, xy + torch.rand(n, 2) * torch.tensor([80.0, 60.0]) + 0.3], 1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, 128)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, 96)
    ref = paste_masks_in_image(m[:, None], boxes, SIZE)[:, 0]
    torch.testing.assert_close(paste_masks(m, boxes, SIZE), ref, atol=1e-5, rtol=0)
    assert paste_masks(m[:0], boxes[:0], SIZE).shape == (0, *SIZE)
