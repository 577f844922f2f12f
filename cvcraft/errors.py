"""The project's own exception types.

Every error says *what* is at fault (file, line, key, step) and *what to do*. Catching
``CvcraftError`` catches all of them; the CLI prints the message without a traceback.
"""

from __future__ import annotations


class CvcraftError(Exception):
    """Base class of every error cvcraft raises on purpose."""


class DataError(CvcraftError):
    """A dataset, image or annotation file is missing, unreadable or malformed."""


class ConfigError(CvcraftError):
    """A configuration key or value is invalid (unknown key, wrong type, out of range)."""


class CheckpointError(CvcraftError):
    """A checkpoint is truncated, corrupted, or does not fit the model it is loaded into."""


class TrainingError(CvcraftError):
    """Training cannot continue (NaN/Inf loss, unwritable run folder, ...)."""


class RegistryError(CvcraftError, KeyError):
    """A name was looked up in a registry and is not there."""

    def __str__(self) -> str:  # KeyError would repr() the message; keep it readable
        return str(self.args[0]) if self.args else ""
