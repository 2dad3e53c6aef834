"""One-shot search: DARTS and GDAS over a supernet of any cell space.

``darts`` and ``gdas`` (the registered strategies, :mod:`.darts`, :mod:`.gdas`), their settings
(:mod:`.settings`), the search loop (:mod:`.search`), the supernet (:mod:`.supernet`),
architecture steps (:mod:`.architect`) and the derivation of a genotype from the architecture weights (:mod:`.derive`). This package
imports none of them, so that listing the strategies stays light.
"""
