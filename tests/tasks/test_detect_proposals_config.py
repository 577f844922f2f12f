"""Fast R-CNN's proposal sources through the detect task: a JSON proposal file is refused at
config time (its boxes are in stored-image pixels, the task feeds letterboxed, augmented
views), the built-in selective search is accepted."""

import pytest

from cvcraft.errors import ConfigError
from cvcraft.tasks.registry import task_config


def test_json_proposal_file_is_refused_before_training():
    values = {"model": "fastrcnn_resnet18_fpn", "model_kwargs": {"proposals": "props.json"}}
    with pytest.raises(ConfigError, match=r"proposals=props\.json.*Python API.*selective_search"):
        task_config("detect", values)


def test_selective_search_proposals_are_accepted():
    values = {"model": "fastrcnn_resnet18_fpn", "model_kwargs": {"proposals": "selective_search"}}
    cfg = task_config("detect", values)
    assert cfg.model_kwargs["proposals"] == "selective_search"
