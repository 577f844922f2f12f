"""Reusable network layers and helpers (floor 2: imports only errors/registry/structures)."""

from cvcraft.nn.init import init_weights

__all__ = ["init_weights"]
