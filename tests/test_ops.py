from __future__ import annotations

import pytest
import torch

from nas.errors import NasError
from nas.ops import create_op, list_ops
from nas.space import load_space

ALL_OPS = list_ops()


@pytest.mark.parametrize("name", ALL_OPS)
@pytest.mark.parametrize("stride", [1, 2])
def test_op_shape_and_gradient(name, stride):
    torch.manual_seed(0)
    op = create_op(name, 8, 12, stride)
    x = torch.randn(2, 8, 9, 9, requires_grad=True)
    y = op(x)
    assert y.shape == (2, 12, (9 + stride - 1) // stride, (9 + stride - 1) // stride)
    if name == "none":
        assert not y.any()
        return
    y.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0, "gradient must reach the input"
    for p in op.parameters():
        assert p.grad is not None, f"{name}: a parameter received no gradient"


@pytest.mark.parametrize("name", ["skip_connect", "max_pool_3x3", "avg_pool_3x3"])
def test_parameter_free_ops_at_equal_shape(name):
    op = create_op(name, 8, 8, 1)
    assert sum(p.numel() for p in op.parameters()) == 0


def test_identity_is_identity():
    x = torch.randn(1, 4, 5, 5)
    assert torch.equal(create_op("skip_connect", 4, 4, 1)(x), x)


def test_inverted_residual_uses_residual_only_when_shapes_match():
    assert create_op("inverted_residual_k3_e6", 8, 8, 1).use_residual
    assert not create_op("inverted_residual_k3_e6", 8, 8, 2).use_residual
    assert not create_op("inverted_residual_k3_e6", 8, 16, 1).use_residual


def test_every_shipped_space_uses_registered_ops():
    for name in ("darts", "lecture", "nb201", "mobile"):
        for op in load_space(name).ops:
            assert op in ALL_OPS


def test_lecture_space_covers_the_classic_blocks():
    ops = set(load_space("lecture").ops)
    for needed in ("conv_3x3", "grouped_conv_3x3_g4", "sep_conv_3x3", "dil_conv_3x3", "conv_1x1",
                   "max_pool_3x3", "skip_connect", "inception", "res_basic", "res_bottleneck",
                   "inverted_residual_k3_e6", "squeeze_excite"):
        assert needed in ops


def test_unknown_op_and_bad_stride():
    with pytest.raises(NasError, match="unknown op 'conv_9x9'.*nas ops"):
        create_op("conv_9x9", 4, 4, 1)
    with pytest.raises(NasError, match="stride must be 1 or 2"):
        create_op("conv_3x3", 4, 4, 3)
