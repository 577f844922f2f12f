"""The speedrun parts wired into the classify task: recipes, whitening fit and freeze,
device augmentation in the step, lookahead callback, TTA in evaluation."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from cvcraft.engine.checkpoint import load_checkpoint
from cvcraft.engine.lookahead import Lookahead
from cvcraft.engine.trainer import Trainer
from cvcraft.errors import ConfigError
from cvcraft.nn.whitening import PatchWhitening
from cvcraft.tasks.classify.task import ClassifyTask, build_transforms
from cvcraft.tasks.recipes import list_recipes, load_recipe
from cvcraft.tasks.registry import task_config
from cvcraft.transforms.device_aug import DeviceAugment


def test_recipe_keys_apply_and_user_keys_win(tmp_path):
    assert {"speedrun", "long"} <= set(list_recipes("classify"))
    keys = load_recipe("classify", "speedrun")
    cfg = task_config("classify", {"recipe": "speedrun", "epochs": "3", "lr": "0.5"})
    assert (cfg.epochs, cfg.lr) == (3, 0.5)  # the user's keys win
    for k in ("model", "batch", "momentum", "alt_flip", "device_translate", "lookahead", "tta"):
        assert getattr(cfg, k) == keys[k], k  # the recipe's apply
    assert task_config("classify", {}).model != keys["model"]  # without it: the defaults
    # the user's YAML sits above the recipe; recipe: may be named inside it
    f = tmp_path / "c.yaml"
    f.write_text("recipe: long\nbatch: 256\n")
    cfg = task_config("classify", {"seed": "4"}, yaml_file=f)
    assert (cfg.batch, cfg.seed, cfg.epochs) == (256, 4, load_recipe("classify", "long")["epochs"])
    own = tmp_path / "mine.yaml"
    own.write_text("epochs: 7\ntta: flip\n")
    cfg = task_config("classify", {"recipe": str(own)})
    assert (cfg.epochs, cfg.tta) == (7, "flip")


def test_recipe_errors(tmp_path):
    with pytest.raises(ConfigError, match="recipe='fast'.*speedrun"):
        task_config("classify", {"recipe": "fast"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochz: 3\n")
    with pytest.raises(ConfigError, match="unknown key 'epochz'"):
        task_config("classify", {"recipe": str(bad)})
    with pytest.raises(ConfigError, match="hsv_v=, policy= would be ignored"):
        task_config("classify", {"device_translate": "2", "hsv_v": "0.3", "policy": "randaugment"})
    with pytest.raises(ConfigError, match="lookahead_decay"):
        task_config("classify", {"lookahead_decay": "2"})


def _trainer(tmp_path, **keys):
    values = {
        "data": "shapes:80", "model": "speednet", "imgsz": "32", "batch": "16", "epochs": "2",
        "workers": "0", "progress": "false", "plots": "false", "out": str(tmp_path / "run"),
        "whiten_samples": "1000", **keys,
    }  # fmt: skip
    cfg = task_config("classify", values)
    trainer = Trainer(ClassifyTask(cfg), cfg)
    trainer._setup()
    return trainer


def test_whitening_fit_on_training_images_and_frozen(tmp_path):
    trainer = _trainer(
        tmp_path, model_kwargs="{widths: [8, 8, 8], whiten_epochs: 1}", alt_flip="true",
        device_translate="2", lookahead="2",
    )  # fmt: skip
    task = trainer.task
    layer = trainer.module.whiten
    train = task.train_data
    imgs = np.stack([np.asarray(train.load_image(i)) for i in range(len(train))])
    ref = PatchWhitening(3, 2)
    ref.fit(task.pre(torch.from_numpy(imgs).permute(0, 3, 1, 2)))
    torch.testing.assert_close(layer.weight, ref.weight, rtol=1e-4, atol=1e-4)
    assert isinstance(task.device_aug, DeviceAugment)
    assert any(isinstance(c, Lookahead) for c in trainer.callbacks)
    w0, b0 = layer.weight.detach().clone(), layer.bias.detach().clone()
    trainer.train_one_epoch(0)
    assert torch.equal(layer.weight, w0) and not torch.equal(layer.bias, b0)
    b1 = layer.bias.detach().clone()
    trainer.train_one_epoch(1)  # frozen from epoch 1 on
    assert torch.equal(layer.bias, b1) and not layer.bias.requires_grad


def test_device_augment_in_the_train_step(tmp_path):
    trainer = _trainer(tmp_path, model="resnet20", alt_flip="true", device_translate="2")
    task = trainer.task
    task.on_epoch_start(trainer, 1)
    batch = next(iter(trainer.train_loader))
    g = torch.Generator().manual_seed((0 * 1_000_003 + 1 * 10_007 + 0 * 7 + 2) % (2**63))
    expect = DeviceAugment(True, 2, 0)(batch["images"], batch["index"], 1, g)
    torch.testing.assert_close(task._device_augment(batch), expect, rtol=0, atol=0)
    # the CPU pipeline only resizes: the flip and the crop are the device's
    cpu = repr(build_transforms(task.cfg, True))
    assert "Resize" in cpu and "Flip" not in cpu and "Crop" not in cpu
    assert "Flip" in repr(build_transforms(task_config("classify", {}), True))


@torch.no_grad()
def test_tta_in_eval_forward(tmp_path):
    trainer = _trainer(tmp_path, model="resnet20", tta="flip")
    task, model = trainer.task, trainer.module.eval()
    batch = next(iter(task.val_loader))
    x = task.pre(batch["images"].float())
    ref = 0.5 * model(x) + 0.5 * model(x.flip(-1))
    torch.testing.assert_close(task.eval_forward(model, batch), ref, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_tta_in_predict(ckpt, images, tmp_path):
    from cvcraft.data.io import list_images, read_image
    from cvcraft.tasks.classify.task import predict_classifier
    from cvcraft.transforms.normalize import Preprocess

    cfg = task_config("classify", {"weights": str(ckpt), "source": str(images),
                                   "tta": "flip_translate", "topk": "1"})  # fmt: skip
    got = predict_classifier(cfg, tmp_path / "pred")
    model, state = ClassifyTask.load_model(str(ckpt), torch.device("cpu"))
    pre = Preprocess(state["norm_stats"], state["normalize"], 3)
    files = list_images(str(images))
    x = pre(torch.from_numpy(np.stack([read_image(f) for f in files])).permute(0, 3, 1, 2))

    def flip_avg(z):
        return 0.5 * model(z) + 0.5 * model(z.flip(-1))

    p = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    logits = 0.5 * flip_avg(x) + 0.25 * (flip_avg(p[..., :32, :32]) + flip_avg(p[..., 2:, 2:]))
    probs = logits.softmax(1)
    for r, row in zip(got, probs):
        assert r["score"] == pytest.approx(float(row.max()), rel=1e-4)
        assert r["class"] == state["classes"][int(row.argmax())]


def _train(out, tmp_path, *extra, **env):
    keys = ["data=shapes:64", "model=mlp", "imgsz=8", "batch=16", "epochs=3", "workers=0",
            "progress=false", "plots=false", f"out={out}", "lookahead=5", "seed=3",
            "deterministic=true", *extra]  # fmt: skip
    e = dict(os.environ, OMP_NUM_THREADS="1", **env)
    cmd = [sys.executable, "-m", "cvcraft.cli", "train", "classify", *keys]
    return subprocess.run(cmd, cwd=tmp_path, env=e, capture_output=True, text=True, timeout=600)


def test_lookahead_slow_weights_survive_a_resume(tmp_path):
    # 3 epochs straight vs killed after epoch 2 and resumed: the same weights bit for bit, which
    # needs the slow average from last.pt (a fresh one would restart at the fast weights)
    assert _train("a", tmp_path).returncode == 0
    killed = _train("b", tmp_path, CVCRAFT_FAULT_KILL_AFTER_EPOCH="2")
    assert killed.returncode != 0
    state = load_checkpoint(tmp_path / "b" / "last.pt")
    slow = state["callbacks"]["lookahead"]["slow"]
    assert slow.keys() == {k for k, v in state["model"].items() if v.is_floating_point()}
    assert not all(torch.equal(slow[k], state["model"][k]) for k in slow)  # a real average
    shutil.copytree(tmp_path / "b", tmp_path / "c")
    resumed = _train("b", tmp_path, "resume=true")
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    for k, v in a["model"].items():
        assert torch.equal(b["model"][k], v), k
    # a checkpoint without the slow weights is refused, not resumed from a reset average
    del state["callbacks"]
    torch.save(state, tmp_path / "c" / "last.pt")
    (tmp_path / "c" / "last.pt.sha256").unlink(missing_ok=True)
    (tmp_path / "c" / "last.prev.pt").unlink(missing_ok=True)
    refused = _train("c", tmp_path, "resume=true")
    assert refused.returncode != 0 and "no state for the 'lookahead' callback" in refused.stderr
