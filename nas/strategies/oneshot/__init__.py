"""One-shot search: DARTS over a supernet of any cell space (see :mod:`.darts`)."""
from __future__ import annotations

from nas.strategies.oneshot.architect import Architect
from nas.strategies.oneshot.derive import derive_genotype, short_genotype
from nas.strategies.oneshot.search import COLLAPSE_REMEDIES, DartsConfig, DartsResult, search_darts
from nas.strategies.oneshot.supernet import MixedOp, SearchCell, Supernet

__all__ = ["COLLAPSE_REMEDIES", "Architect", "DartsConfig", "DartsResult", "MixedOp", "SearchCell", "Supernet",
           "derive_genotype", "search_darts", "short_genotype"]
