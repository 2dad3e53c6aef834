"""The ``gdas`` strategy: gradient-based search with a differentiable architecture sampler
(Dong & Yang, "Searching for a Robust Neural Architecture in Four GPU Hours", CVPR 2019).

Each forward pass samples one op per edge from the Gumbel-softmax of the architecture
weights and runs only that op, scaled by the straight-through hard weight
``h - soft.detach() + soft`` (one in value; its gradient reaches every logit of the edge
through the soft sample). The temperature anneals from ``tau_max`` to ``tau_min`` over the
epochs. Supernet, first-order architecture steps, derivation, run folder, resume and plots are
DARTS' (:func:`nas.strategies.oneshot.search.search_darts` with a :class:`GdasConfig`).

>>> from nas.strategies import get_strategy
>>> result = get_strategy("gdas").search("darts", GdasConfig(epochs=4))  # doctest: +SKIP
"""
from __future__ import annotations

from nas.strategies.base import register_strategy
from nas.strategies.oneshot.darts import Darts
from nas.strategies.oneshot.settings import GdasConfig


@register_strategy
class Gdas(Darts):
    name = "gdas"
    Settings = GdasConfig
    description = ("supernet search that runs one sampled op per edge (GDAS: hard Gumbel-softmax, temperature "
                   "annealed from --tau-max to --tau-min); every other option is DARTS' above, with first-order "
                   "steps only.")
