"""The DARTS supernet: every edge of a cell is a mixed op over all candidate ops of the space.

A mixed op returns ``sum_o softmax(alpha)_o * o(x)``; there is one ``alpha`` tensor per cell
type, shaped ``[num_edges, num_ops]``, shared by all cells of that type. Node ``i`` of a cell
reads every earlier node (both cell inputs and the previous intermediate nodes), so dense
spaces (NAS-Bench-201) and top-k spaces (DARTS) share one supernet; they differ only in how a
discrete genotype is derived (:mod:`nas.strategies.oneshot.derive`).

Options from later work:

* partial channel connections (PC-DARTS, Xu et al. 2020): only ``1/K`` of the channels pass
  through the ops, the rest bypass them, then the channels are shuffled; edge-normalisation
  weights ``beta`` (softmax over the edges entering a node) steady the edge choice;
* an auxiliary skip connection on every edge, scaled by a decaying ``aux_skip_beta``
  (DARTS-, Chu et al. 2021), against the collapse into skip connections;
* a sampled forward pass (GDAS, Dong & Yang 2019): with a temperature set
  (:attr:`Supernet.tau`), each forward draws one op per edge from the Gumbel-softmax of
  ``alpha`` and runs only that op, scaled by its straight-through hard weight.

How it is computed (same results as the plain mixed sums, checked in float64 by
tests/test_supernet_fused.py): all edges that read one node run together
(:func:`forward_group`), with one ReLU of the node, each parameter-free op (pooling, identity)
once for all of them, and each op made of convolutions, ReLUs and BatchNorms as one grouped
layer per layer for all of them (other blocks edge by edge); the weight of an op ending in a
BatchNorm is that BatchNorm's scale; depthwise convolutions take their input gradient
from a forward convolution (:mod:`nas.strategies.oneshot.kernels`); with ``recompute``, each
group is recomputed in the backward pass instead of keeping its activations.

The macro structure is that of :mod:`nas.builders`: stem, cells, reductions at 1/3 and 2/3 of
the depth (reduction cells, or NAS-Bench-201's residual blocks), global pooling, classifier.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from nas.builders.cells import ResidualReduction
from nas.builders.networks import reduction_layers
from nas.errors import NasError
from nas.ops import create_op
from nas.ops.conv import FactorizedReduce, ReLUConvBN
from nas.space import SearchSpace, load_space
from nas.strategies.oneshot.distributed import batch_norm
from nas.strategies.oneshot.kernels import (
    FastDepthwiseConv2d,
    depthwise_conv,
    depthwise_to_fast,
)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave ``groups`` channel groups, so the channels that skipped an edge's ops take
    part in the next edge's (PC-DARTS). Keeps a channels-last tensor channels-last."""
    n, c, h, w = x.shape
    if _channels_last(x):
        nhwc = x.permute(0, 2, 3, 1).reshape(n, h, w, groups, c // groups).transpose(3, 4)
        return nhwc.reshape(n, h, w, c).permute(0, 3, 1, 2)
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def _batch_norm(x: torch.Tensor, eps: float, scale: torch.Tensor | None = None) -> torch.Tensor:
    """Non-affine BatchNorm on batch statistics (of the global batch in a search on several
    processes), times ``scale`` per channel when given."""
    return batch_norm(x, None, None, scale, None, training=True, momentum=0.0, eps=eps)


def _layout(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if _channels_last(x) else torch.contiguous_format


def _channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


class MixedOp(nn.Module):
    """One supernet edge: the softmax-weighted sum of every candidate op.

    Ops use BatchNorm without affine parameters (the architecture weights do the scaling);
    pooling ops get such a BatchNorm after them, as in DARTS, so their scale matches the
    convolutions'. With ``partial_channels=K`` the ops see the first ``C/K`` channels only.
    Given ``index`` (a sampled forward, GDAS), only op ``index`` runs, scaled by ``weights[index]``.
    """

    def __init__(self, ops: Sequence[str], C: int, stride: int, *, partial_channels: int = 1,
                 aux_skip: bool = False):
        super().__init__()
        self.partial_channels = partial_channels
        self.stride = stride
        C_op = C // partial_channels
        self.ops = nn.ModuleList()
        for name in ops:
            op = create_op(name, C_op, C_op, stride, affine=False)
            if "pool" in name:
                op = nn.Sequential(op, nn.BatchNorm2d(C_op, affine=False))
            self.ops.append(op)
        # `none` adds zero times its weight: computing it is wasted work (its weight still
        # enters the softmax, so its architecture gradient is unchanged).
        self.active = [i for i, name in enumerate(ops) if name != "none"]
        # Each op as (starts with a ReLU of the input, body, ends with a non-affine BatchNorm):
        # the ReLU is taken once for all ops of the edge, and an op's weight is folded into
        # its final BatchNorm as the scale (one pass instead of BatchNorm, product and their
        # stored outputs). A plain list: the modules stay registered under `ops` only.
        self._parts = [_split(op) for op in self.ops]
        self._relu_first = any(self._parts[i][0] for i in self.active)
        # The bypassed channels must shrink with the ops' output on a stride-2 edge.
        self.bypass_pool = nn.MaxPool2d(2, 2, ceil_mode=True) if partial_channels > 1 and stride == 2 else None
        self.aux_skip: nn.Module | None = None
        if aux_skip:
            self.aux_skip = FactorizedReduce(C, C, affine=False) if stride == 2 else nn.Identity()
        depthwise_to_fast(self)
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                # batch statistics only: a supernet always runs in training mode, and an edge
                # recomputed in the backward pass must not update running statistics twice
                m.track_running_stats = False
                m.running_mean = m.running_var = m.num_batches_tracked = None
        self.register_load_state_dict_pre_hook(_drop_running_stats)
        # How a group of edges reading one node runs each op (`forward_group`): "batched" (the
        # edges' layers as one grouped layer), "shared" (parameter-free: computed once for all
        # edges), or "apart" (edge by edge).
        self._kinds = [_kind(body) for _, body, _ in self._parts]

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The channels through the ops and those that bypass them (partial channels)."""
        if self.partial_channels == 1:
            return x, None
        C_op = x.shape[1] // self.partial_channels
        # one copy of the slice in the input's layout, not one per op
        x_ops = x[:, :C_op].contiguous(memory_format=_layout(x))
        return x_ops, x[:, C_op:]

    def finish(self, out: torch.Tensor, x: torch.Tensor, x_bypass: torch.Tensor | None,
               aux_skip_beta: float) -> torch.Tensor:
        """The ops' sum with the bypassed channels shuffled in, plus the auxiliary skip."""
        if x_bypass is not None:
            if self.bypass_pool is not None:
                x_bypass = self.bypass_pool(x_bypass)
            out = channel_shuffle(torch.cat([out, x_bypass], dim=1), self.partial_channels)
        if self.aux_skip is not None and aux_skip_beta > 0:
            out = out + aux_skip_beta * self.aux_skip(x)
        return out

    def forward(self, x: torch.Tensor, weights: torch.Tensor, aux_skip_beta: float = 0.0,
                index: int | None = None) -> torch.Tensor:
        if index is None:
            return forward_group([self], x, [weights], aux_skip_beta)[0]
        # the other ops' weights are exactly zero in value: running them would add nothing
        x_ops, x_bypass = self.split(x)
        out = self._weighted(index, x_ops, F.relu(x_ops) if self._parts[index][0] else None, weights)
        return self.finish(out, x, x_bypass, aux_skip_beta)

    def _weighted(self, i: int, x: torch.Tensor, relu_x: torch.Tensor | None, weights: torch.Tensor) -> torch.Tensor:
        """``weights[i] * ops[i](x)``, from the shared ``relu_x`` where the op starts with a ReLU."""
        relu_first, body, norm = self._parts[i]
        h = body(relu_x if relu_first else x)
        if norm is None:
            return weights[i] * h
        # `repeat`, not `expand` (here and in forward_group): batch_norm's channels-last backward
        # misreads a stride-0 weight
        return _batch_norm(h, norm.eps, weights[i].repeat(h.shape[1]))


def _drop_running_stats(module: nn.Module, state_dict: dict, prefix: str, *_) -> None:
    """Loading a state dict saved before edges dropped their BatchNorm running statistics: those
    entries are unused and left out."""
    for key in [k for k in state_dict if k.startswith(prefix) and k.rsplit(".", 1)[-1] in _RUNNING_STATS]:
        del state_dict[key]


_RUNNING_STATS = ("running_mean", "running_var", "num_batches_tracked")


def _split(op: nn.Module) -> tuple[bool, nn.Module, nn.BatchNorm2d | None]:
    """``op`` as (starts with a ReLU, the modules between, its final non-affine BatchNorm or None)."""
    # only a plain chain comes apart: a Sequential with its own forward (a residual add) stays whole
    chain = isinstance(op, nn.Sequential) and type(op).forward is nn.Sequential.forward
    mods = list(op) if chain else [op]
    relu_first = bool(mods) and isinstance(mods[0], nn.ReLU)
    if relu_first:
        mods = mods[1:]
    norm = None
    if mods and isinstance(mods[-1], nn.BatchNorm2d) and not mods[-1].affine:
        norm = mods.pop()
    body = mods[0] if len(mods) == 1 else nn.Sequential(*mods)
    return relu_first, body, norm


def _kind(body: nn.Module) -> str:
    layers = list(body) if isinstance(body, nn.Sequential) else [body]
    if not any(True for _ in body.parameters()):
        return "shared"
    if all(type(m) in (nn.Conv2d, FastDepthwiseConv2d) and m.bias is None and m.padding_mode == "zeros"
           or isinstance(m, nn.ReLU) or isinstance(m, nn.BatchNorm2d) and not m.affine and not m.track_running_stats
           for m in layers):
        return "batched"
    return "apart"


def _batched_layers(bodies: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """Run the same layers of ``len(bodies)`` edges as one: ``x`` holds the edges' inputs one
    after the other along the channels, and so does the result. A convolution of the edges
    is one grouped convolution of their concatenated kernels (``groups`` times the number of
    edges); ReLU and non-affine BatchNorm act per channel anyway."""
    layers = [list(b) if isinstance(b, nn.Sequential) else [b] for b in bodies]
    for same in zip(*layers):
        m = same[0]
        if isinstance(m, nn.ReLU):
            x = F.relu(x)
        elif isinstance(m, nn.BatchNorm2d):
            x = _batch_norm(x, m.eps)
        else:
            weight = torch.cat([c.weight for c in same]) if len(same) > 1 else m.weight
            groups = m.groups * len(same)
            if isinstance(m, FastDepthwiseConv2d):
                x = depthwise_conv(x, weight, m.stride[0], m.padding[0], m.dilation[0])
            else:
                x = F.conv2d(x, weight, None, m.stride, m.padding, m.dilation, groups)
    return x


def forward_group(edges: Sequence[MixedOp], x: torch.Tensor, weights: Sequence[torch.Tensor],
                  aux_skip_beta: float) -> list[torch.Tensor]:
    """The outputs of ``edges``, which all read ``x`` (same ops, channels and stride), with
    op weights ``weights[e]``: what ``edge(x, weights[e], aux_skip_beta)`` gives for each, in
    fewer and larger kernels. The ReLU of ``x`` and the parameter-free ops (pooling, identity
    and their BatchNorm) are computed once for all edges; each op with weights runs for all
    edges at once (:func:`_batched_layers`), its final BatchNorm scaled per edge and op."""
    first = edges[0]
    n = len(edges)
    x_ops, x_bypass = first.split(x)
    relu_x = F.relu(x_ops) if first._relu_first else None
    repeated: dict[bool, torch.Tensor] = {}  # the input once per edge along the channels, by relu_first
    batched = None
    outs: list[torch.Tensor | None] = [None] * n
    for i in first.active:
        relu_first, body, norm = first._parts[i]
        source = relu_x if relu_first else x_ops
        kind = first._kinds[i] if n > 1 else "apart"
        if kind == "batched":
            if relu_first not in repeated:
                repeated[relu_first] = torch.cat([source] * n, dim=1)  # (`repeat` would drop channels-last)
            h = _batched_layers([edge._parts[i][1] for edge in edges], repeated[relu_first])
            if norm is None:
                scale = torch.cat([w[i].expand(h.shape[1] // n) for w in weights]).view(1, -1, 1, 1)
                h = h * scale
            else:
                scale = torch.cat([w[i].repeat(h.shape[1] // n) for w in weights])
                h = _batch_norm(h, norm.eps, scale)
            batched = h if batched is None else batched + h
        elif kind == "shared":  # the same result on every edge: once, then weighted per edge
            h = body(source)
            if norm is not None:
                h = _batch_norm(h, norm.eps)
            for e in range(n):
                term = weights[e][i] * h
                outs[e] = term if outs[e] is None else outs[e] + term
        else:
            for e, edge in enumerate(edges):
                term = edge._weighted(i, x_ops, relu_x, weights[e])
                outs[e] = term if outs[e] is None else outs[e] + term
    if batched is not None:
        width = batched.shape[1] // n
        for e in range(n):
            part = batched[:, e * width:(e + 1) * width]
            outs[e] = part.contiguous(memory_format=_layout(batched)) if outs[e] is None else outs[e] + part
    if not first.active:  # a space of `none` only
        outs = [edge.ops[0](x_ops) for edge in edges]
    return [edge.finish(out, x, x_bypass, aux_skip_beta) for edge, out in zip(edges, outs)]


class SearchCell(nn.Module):
    """A cell whose node ``i`` sums mixed ops over every earlier node (inputs included)."""

    def __init__(self, space: SearchSpace, *, C_pp: int, C_p: int, C: int, reduction: bool, reduction_prev: bool,
                 partial_channels: int = 1, aux_skip: bool = False, recompute: bool = False):
        super().__init__()
        self.recompute = recompute
        self.inputs = space.inputs
        self.reduction = reduction
        self.cell_type = "reduction" if reduction else "normal"
        if space.inputs == 2:
            self.preprocess0 = (FactorizedReduce(C_pp, C, affine=False) if reduction_prev
                                else ReLUConvBN(C_pp, C, 1, 1, affine=False))
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, affine=False) if C_p != C else nn.Identity()
        self.edges = nn.ModuleList()
        self.sources: list[int] = []  # per edge: the node it reads
        self.node_edges: list[range] = []  # per intermediate node: its edge indices
        for node in space.intermediate:
            start = len(self.edges)
            for src in range(node):
                stride = 2 if reduction and src < space.inputs else 1
                self.edges.append(MixedOp(space.ops, C, stride, partial_channels=partial_channels, aux_skip=aux_skip))
                self.sources.append(src)
            self.node_edges.append(range(start, len(self.edges)))
        self.targets = [node for node, edges in enumerate(self.node_edges) for _ in edges]  # per edge
        self.readers = [[e for e, src in enumerate(self.sources) if src == node]  # per node: edges reading it
                        for node in range(space.inputs + len(self.node_edges))]
        self.concat = space.default_concat()
        self.out_channels = C * len(self.concat)

    def _group(self, group: list[int], state: torch.Tensor, weights: torch.Tensor, *, aux_skip_beta: float,
               indices: Sequence[int] | None) -> list[torch.Tensor]:
        """The outputs of the edges ``group``, which read ``state``; with sampled ``indices``, edge by edge."""
        if indices is None:
            return forward_group([self.edges[e] for e in group], state, [weights[e] for e in group], aux_skip_beta)
        return [self.edges[e](state, weights[e], aux_skip_beta, indices[e]) for e in group]

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor, edge_weights: torch.Tensor | None,
                aux_skip_beta: float, indices: Sequence[int] | None = None) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)] if self.inputs == 2 else [self.preprocess1(s1)]
        recompute = self.recompute and torch.is_grad_enabled()
        sums: list[torch.Tensor | None] = [None] * len(self.node_edges)
        # Node by node, all edges that read a finished node at once (their targets' sums grow
        # in the order of their sources, as node by node); a sampled forward edge by edge.
        for src in range(self.inputs + len(self.node_edges)):
            if src >= self.inputs:  # an intermediate node: all its edges are in
                states.append(sums[src - self.inputs])
            group = self.readers[src]
            if not group:
                continue
            run = partial(self._group, group, aux_skip_beta=aux_skip_beta, indices=indices)
            outs = checkpoint(run, states[src], weights, use_reentrant=False) if recompute else run(states[src], weights)
            for e, h in zip(group, outs):
                if edge_weights is not None:
                    h = edge_weights[e] * h
                node = self.targets[e]
                sums[node] = h if sums[node] is None else sums[node] + h
        if len(self.concat) == 1:
            return states[self.concat[0]]
        return torch.cat([states[i] for i in self.concat], dim=1)


def edges_per_cell(space: SearchSpace) -> int:
    """Number of supernet edges in one cell: node ``i`` reads all ``i`` earlier nodes."""
    return sum(space.intermediate)


class Supernet(nn.Module):
    """The one-shot network of a cell space; see the module docstring.

    >>> net = Supernet("darts", C=4, layers=3)
    >>> net(torch.randn(2, 3, 16, 16)).shape
    torch.Size([2, 10])
    >>> {k: tuple(a.shape) for k, a in net.alphas.items()}
    {'normal': (14, 8), 'reduction': (14, 8)}
    """

    def __init__(self, space: SearchSpace | str, *, C: int, layers: int, num_classes: int = 10,
                 in_channels: int = 3, partial_channels: int = 1, edge_normalisation: bool = False,
                 aux_skip: bool = False, recompute: bool = False):
        super().__init__()
        space = load_space(space)
        if space.kind != "cell":
            raise NasError(f"DARTS searches cell spaces; {space.name!r} is a {space.kind} space "
                           "(use a black-box strategy such as --strategy evolution for it)")
        if layers < 3:
            raise NasError(f"the supernet needs at least 3 layers (two of them are reductions), got {layers}")
        if partial_channels < 1 or C % partial_channels:
            raise NasError(f"partial channels K={partial_channels} must be a positive divisor of the initial "
                           f"channels C={C}; pick K in {[k for k in range(1, C + 1) if C % k == 0]}")
        self.space = space
        self.partial_channels = partial_channels
        self.aux_skip_beta = 1.0 if aux_skip else 0.0
        net = space.network
        residual = net.get("reduction") == "residual"
        C_stem = int(net.get("stem_multiplier", 3)) * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_stem, 3, padding=1, bias=False), nn.BatchNorm2d(C_stem))
        reductions = reduction_layers(layers)
        self.cells = nn.ModuleList()
        C_pp, C_p, C_curr, reduction_prev = C_stem, C_stem, C, False
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                C_curr *= 2
            if reduction and residual:
                cell: nn.Module = ResidualReduction(C_p, C_curr)
            else:
                cell = SearchCell(space, C_pp=C_pp, C_p=C_p, C=C_curr, reduction=reduction,
                                  reduction_prev=reduction_prev, partial_channels=partial_channels, aux_skip=aux_skip,
                                  recompute=recompute)
            self.cells.append(cell)
            C_pp, C_p, reduction_prev = C_p, cell.out_channels, reduction
        self.head = nn.Sequential(nn.BatchNorm2d(C_p), nn.ReLU()) if net.get("head") == "bn_relu" else nn.Identity()
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)

        num_edges = edges_per_cell(space)
        self.cell_types = space.cell_types
        # Small random values: every op starts (almost) equally likely, ties broken by the seed.
        self.alphas = nn.ParameterDict({t: nn.Parameter(1e-3 * torch.randn(num_edges, len(space.ops)))
                                        for t in self.cell_types})
        self.betas = (nn.ParameterDict({t: nn.Parameter(1e-3 * torch.randn(num_edges)) for t in self.cell_types})
                      if edge_normalisation else None)
        self.node_edges = next(c for c in self.cells if isinstance(c, SearchCell)).node_edges
        # GDAS: with a temperature, every forward pass samples one op per edge (`sample_weights`)
        self.tau: float | None = None
        self.generator: torch.Generator | None = None

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture parameters: ``alphas`` (and edge-normalisation ``betas``)."""
        params = list(self.alphas.values())
        if self.betas is not None:
            params += list(self.betas.values())
        return params

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        """Every network weight, i.e. everything but :meth:`arch_parameters`."""
        arch = {id(p) for p in self.arch_parameters()}
        return (p for p in self.parameters() if id(p) not in arch)

    def op_weights(self) -> dict[str, torch.Tensor]:
        """Softmax of ``alphas`` over the ops of each edge, per cell type."""
        return {t: F.softmax(a, dim=-1) for t, a in self.alphas.items()}

    def edge_weights(self) -> dict[str, torch.Tensor] | None:
        """Edge-normalisation weights: softmax of ``betas`` over the edges entering each node."""
        if self.betas is None:
            return None
        return {t: torch.cat([F.softmax(b[edges.start:edges.stop], dim=-1) for edges in self.node_edges])
                for t, b in self.betas.items()}

    def sample_weights(self, tau: float, generator: torch.Generator | None = None
                       ) -> tuple[dict[str, torch.Tensor], dict[str, list[int]]]:
        """GDAS' hard straight-through Gumbel-softmax sample, per cell type: the weights
        ``h - soft.detach() + soft`` (one-hot ``h`` in value, the gradient of the soft sample
        ``softmax((alpha + g) / tau)``) and the sampled op of each edge.

        The Gumbel noise ``g`` is drawn on the CPU from ``generator``, so a seed gives the same
        samples on every device.

        >>> net = Supernet("nb201", C=4, layers=3)
        >>> weights, indices = net.sample_weights(1.0, torch.Generator().manual_seed(0))
        >>> torch.count_nonzero(weights["normal"], dim=-1).tolist(), len(indices["normal"])
        ([1, 1, 1, 1, 1, 1], 6)
        """
        weights, indices = {}, {}
        for t, a in self.alphas.items():
            # -log(E), E ~ Exp(1), is Gumbel(0, 1); E = 0 would give an infinite logit
            noise = -torch.empty(a.shape).exponential_(generator=generator).clamp_min(1e-20).log()
            soft = F.softmax((a + noise.to(a.device, a.dtype)) / tau, dim=-1)
            index = soft.argmax(-1)
            hard = F.one_hot(index, a.shape[-1]).to(soft.dtype)
            weights[t] = hard - soft.detach() + soft
            indices[t] = index.tolist()
        return weights, indices

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        # Once per forward, not per cell or edge: all cells of a type share these weights.
        if self.tau is not None:
            weights, indices = self.sample_weights(self.tau, self.generator)
        else:
            weights, indices = self.op_weights(), None
        edge_weights = self.edge_weights()
        for cell in self.cells:
            if isinstance(cell, SearchCell):
                ew = edge_weights[cell.cell_type] if edge_weights is not None else None
                s0, s1 = s1, cell(s0, s1, weights[cell.cell_type], ew, self.aux_skip_beta,
                                  None if indices is None else indices[cell.cell_type])
            else:
                s0, s1 = s1, cell(s0, s1)
        return self.classifier(self.global_pool(self.head(s1)).flatten(1))
