import pytest
import yaml

from cvcraft.engine.config import parse_overrides, save_config
from cvcraft.errors import ConfigError
from cvcraft.tasks import task_config, task_help
from cvcraft.tasks.classify.config import ClassifyConfig


def test_overrides_are_typed():
    cfg = task_config(
        "classify", parse_overrides(["lr=1e-3", "epochs=3", "amp=true", "freeze=[conv1]"])
    )
    assert isinstance(cfg, ClassifyConfig)
    assert cfg.lr == 1e-3 and cfg.epochs == 3 and cfg.amp is True and cfg.freeze == ["conv1"]


def test_yaml_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("task: classify\nepochs: 7\nlr: 0.2\n")
    cfg = task_config("classify", {"lr": "0.3"}, yaml_file=f)
    assert cfg.epochs == 7 and cfg.lr == 0.3
    save_config(cfg, tmp_path / "out.yaml", "classify")
    assert yaml.safe_load((tmp_path / "out.yaml").read_text())["lr"] == 0.3


def test_unknown_key_did_you_mean():
    with pytest.raises(ConfigError, match='Did you mean "epochs"'):
        task_config("classify", {"epoch": "3"})


@pytest.mark.parametrize(
    "kv, msg",
    [
        ({"epochs": "0"}, "epochs=0 must be > 0"),
        ({"epochs": "2.5"}, "integer"),
        ({"amp": "maybe"}, "true or false"),
        ({"optimizer": "adamm"}, 'Did you mean "adam"'),
        ({"fraction": "1.5"}, "fraction"),
        ({"hflip": "2"}, "hflip"),
    ],
)
def test_bad_values(kv, msg):
    with pytest.raises(ConfigError, match=msg):
        task_config("classify", kv)


def test_bad_yaml_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        task_config("classify", {}, yaml_file=f)
    with pytest.raises(ConfigError, match="cannot read"):
        task_config("classify", {}, yaml_file=tmp_path / "missing.yaml")


def test_help_lists_every_key():
    text = task_help("classify")
    for key in (
        "data",
        "model",
        "epochs",
        "batch",
        "imgsz",
        "lr",
        "optimizer",
        "schedule",
        "out",
        "seed",
    ):
        assert f"  {key} " in text
    with pytest.raises(ConfigError, match="not key=value"):
        parse_overrides(["epochs"])
