"""Search strategies behind one interface (:class:`Strategy`), one-shot in :mod:`.oneshot`,
black-box in :mod:`.blackbox`; :func:`register_strategy` adds one, :func:`get_strategy` finds it.

>>> from nas.strategies import get_strategy
>>> sorted(n for n in registered_strategies())  # doctest: +SKIP
['darts', 'evolution', 'gdas', 'nsga2', 'random', 'tpe']
>>> get_strategy("tpe").search("nb201", get_strategy("tpe").Settings(trials=20),  # doctest: +SKIP
...                            evaluator=evaluator_from_config({"name": "nb201"}))

Importing this package loads no torch, Optuna or Ray: the built-in strategies' search loops
are imported when a search runs.
"""
from nas.strategies.base import (
           SearchData,
           SearchResult,
           Strategy,
           get_strategy,
           register_strategy,
           registered_strategies,
)
from nas.strategies.blackbox.strategy import NSGA2, TPE, Evolution, RandomSearch
from nas.strategies.oneshot.darts import Darts
from nas.strategies.oneshot.gdas import Gdas

__all__ = ["NSGA2", "TPE", "Darts", "Evolution", "Gdas", "RandomSearch", "SearchData", "SearchResult", "Strategy",
           "get_strategy", "register_strategy", "registered_strategies"]
