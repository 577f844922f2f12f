"""Shared pieces of the model tools: argument parsing."""

import pytest

from cvcraft.errors import ConfigError
from cvcraft.tasks.model_tools import parse_number


def test_parse_number():
    assert parse_number("8/255", "eps") == 8 / 255 and parse_number("0.5", "x") == 0.5
    with pytest.raises(ConfigError, match="eps='abc' is not a number"):
        parse_number("abc", "eps")
