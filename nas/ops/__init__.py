"""Candidate operations, looked up by name: ``create_op("sep_conv_3x3", 16, 16, stride=2)``."""
from nas.ops import blocks, conv  # noqa: F401  (registers the ops)
from nas.ops.registry import OpSpec, create_op, get_op, has_op, list_ops, register

__all__ = ["OpSpec", "create_op", "get_op", "has_op", "list_ops", "register"]
