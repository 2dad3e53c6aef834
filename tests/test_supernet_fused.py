"""The fast supernet computes what the plain one does.

The supernet runs all edges that read one node together (one ReLU, parameter-free ops once,
each op with weights as one grouped layer for all of them), folds each op's weight into its
final BatchNorm, runs depthwise convolutions through their own backward, slices partial
channels once, uses channels-last tensors and recomputes edges in the backward pass. The reference here
is the plain per-op mixed sum ``sum_o w_o * op_o(x)`` over the very same op modules, with
``nn.Conv2d``'s own backward, contiguous tensors and nothing recomputed: in float64, loss and
every gradient (weights, architecture weights, edge-normalisation weights) must agree within
1e-5, for every shipped cell space, at stride 1 and 2, with and without partial channels.
"""
from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nas.space import load_space
from nas.strategies.oneshot import supernet
from nas.strategies.oneshot.architect import Architect
from nas.strategies.oneshot.kernels import FastDepthwiseConv2d, depthwise_to_fast
from nas.strategies.oneshot.supernet import MixedOp, SearchCell, Supernet

TOLERANCE = 1e-5


def plain_mixed_forward(self: MixedOp, x, weights, aux_skip_beta=0.0, index=None):
    """The plain mixed op: every op (``none`` included) computed on its own, times its weight."""
    C_op = x.shape[1] // self.partial_channels
    x_ops = x[:, :C_op] if self.partial_channels > 1 else x
    chosen = range(len(self.ops)) if index is None else [index]
    out = sum(weights[i] * self.ops[i](x_ops) for i in chosen)
    if self.partial_channels > 1:
        bypass = x[:, C_op:]
        if self.bypass_pool is not None:
            bypass = self.bypass_pool(bypass)
        out = torch.cat([out, bypass], dim=1)
        n, c, h, w = out.shape
        k = self.partial_channels
        out = torch.stack([out[:, g * (c // k):(g + 1) * (c // k)] for g in range(k)], dim=2).reshape(n, c, h, w)
    if self.aux_skip is not None and aux_skip_beta > 0:
        out = out + aux_skip_beta * self.aux_skip(x)
    return out


@contextmanager
def plain(net: nn.Module, monkeypatch):
    """Run ``net`` as the plain supernet while inside."""
    fast = [m for m in net.modules() if isinstance(m, FastDepthwiseConv2d)]
    cells = [m for m in net.modules() if isinstance(m, SearchCell)]
    recompute = [c.recompute for c in cells]
    with monkeypatch.context() as patch:
        patch.setattr(MixedOp, "forward", plain_mixed_forward)
        patch.setattr(supernet, "forward_group",  # edge by edge, each a plain mixed sum
                      lambda edges, x, weights, beta: [edge(x, w, beta) for edge, w in zip(edges, weights)])
        for m in fast:
            m.__class__ = nn.Conv2d
        for c in cells:
            c.recompute = False
        try:
            yield
        finally:
            depthwise_to_fast(net)
            for c, flag in zip(cells, recompute):
                c.recompute = flag


def loss_and_grads(net: Supernet, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    params = [p for p in net.parameters() if p.requires_grad]
    loss = F.cross_entropy(net(x), y)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return loss.detach(), [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def assert_close(fast, ref, what):
    for i, (a, b) in enumerate(zip(fast, ref)):
        err = float((a - b).abs().max())
        assert err <= TOLERANCE, f"{what} {i}: max difference {err:.2e}"


def build(space: str, *, K: int, recompute: bool = True, aux_skip: bool = False, seed: int = 0) -> Supernet:
    torch.manual_seed(seed)
    net = Supernet(space, C=4, layers=3, partial_channels=K, edge_normalisation=K > 1, aux_skip=aux_skip,
                   recompute=recompute).double()
    with torch.no_grad():  # away from uniform, so every op's weight matters
        for p in net.arch_parameters():
            p.normal_(0, 1)
    return net


def inputs(size: int = 8, n: int = 4):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, size, size, generator=g, dtype=torch.float64), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("K", [1, 2])
@pytest.mark.parametrize("space", ["darts", "lecture", "nb201"])
def test_fast_supernet_matches_the_plain_mixed_sum(space, K, monkeypatch):
    net = build(space, K=K, aux_skip=space == "darts")
    net.aux_skip_beta = 0.5 if space == "darts" else 0.0
    x, y = inputs()
    with plain(net, monkeypatch):
        ref_loss, ref_grads = loss_and_grads(net, x, y)
    net.to(memory_format=torch.channels_last)
    loss, grads = loss_and_grads(net, x.contiguous(memory_format=torch.channels_last), y)
    assert abs(float(loss - ref_loss)) <= TOLERANCE
    assert any(float(g.abs().max()) > 0 for g in grads[-len(net.arch_parameters()):])
    assert_close(grads, ref_grads, "gradient")


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("K", [1, 2])
@pytest.mark.parametrize("space", ["darts", "lecture", "nb201"])
def test_every_mixed_op_matches_at_both_strides(space, K, stride, monkeypatch):
    """Each space's mixed op alone, stride 1 and 2 (NAS-Bench-201's supernet has no stride-2
    edges: its reductions are residual blocks)."""
    torch.manual_seed(0)
    op = MixedOp(load_space(space).ops, 8, stride, partial_channels=K, aux_skip=True).double()
    alpha = torch.randn(len(op.ops), dtype=torch.float64, requires_grad=True)
    x = torch.randn(3, 8, 9, 9, dtype=torch.float64, requires_grad=True)
    params = [x, alpha, *op.parameters()]

    def run():
        out = op(x, F.softmax(alpha, -1), 0.3)
        return torch.autograd.grad((out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum(),
                                   params, allow_unused=True)

    with plain(op, monkeypatch):
        ref = run()
    got = run()
    assert_close([g for g in got if g is not None], [g for g in ref if g is not None], "gradient")
    assert [g is None for g in got] == [g is None for g in ref]


def test_first_order_architecture_step_gives_the_plain_gradient(monkeypatch):
    """The architecture step runs with frozen weights and recomputed edges: same gradient."""
    net = build("darts", K=1)
    x, y = inputs()
    with plain(net, monkeypatch):
        arch = net.arch_parameters()
        expected = torch.autograd.grad(F.cross_entropy(net(x), y), arch)
    architect = Architect(net, order=1)
    w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.1)
    architect.optimizer.step = lambda: None  # keep the gradient to compare
    architect.step(x, y, x, y, w_lr=0.1, w_optimizer=w_opt)
    assert_close([a.grad for a in net.arch_parameters()], expected, "architecture gradient")
    assert all(p.grad is None for p in net.weight_parameters())


def test_gdas_sample_matches_the_plain_sampled_op(monkeypatch):
    net = build("darts", K=1)
    x, y = inputs()
    net.tau = 1.0
    net.generator = torch.Generator().manual_seed(3)
    with plain(net, monkeypatch):
        ref_loss, ref_grads = loss_and_grads(net, x, y)
    net.generator = torch.Generator().manual_seed(3)
    loss, grads = loss_and_grads(net, x, y)
    assert abs(float(loss - ref_loss)) <= TOLERANCE
    assert_close(grads, ref_grads, "gradient")


def test_recomputation_keeps_less_for_the_backward_pass():
    """Recomputed edges keep (far) fewer tensors alive between forward and backward."""
    x, y = inputs(size=16, n=8)

    def saved_bytes(recompute: bool) -> int:
        net = build("darts", K=1, recompute=recompute).float()
        total = 0

        def pack(t):
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            F.cross_entropy(net(x.float()), y).backward()
        return total

    assert saved_bytes(True) * 3 < saved_bytes(False)


def test_depthwise_backward_matches_conv2d():
    torch.manual_seed(0)
    for kernel, dilation in [(3, 1), (5, 1), (3, 2), (5, 2)]:
        for stride in (1, 2):
            for size in (7, 8):
                conv = nn.Conv2d(4, 4, kernel, stride, dilation * (kernel - 1) // 2, dilation=dilation, groups=4,
                                 bias=False).double()
                x = torch.randn(2, 4, size, size, dtype=torch.float64, requires_grad=True)
                y = conv(x)
                g = torch.randn_like(y)
                ref = torch.autograd.grad(y, (x, conv.weight), g)
                depthwise_to_fast(conv)
                assert isinstance(conv, FastDepthwiseConv2d)
                got = torch.autograd.grad(conv(x), (x, conv.weight), g)
                assert_close(got, ref, f"k{kernel} d{dilation} s{stride} {size}px")
