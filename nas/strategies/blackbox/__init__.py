"""Black-box search: genotypes sampled define-by-run (:mod:`.sampling`) by Optuna samplers
(random, TPE, regularized evolution in :mod:`.evolution`, NSGA-II), scored by an evaluator,
in this process (:mod:`.optuna_search`) or as Ray Tune trials (:mod:`.ray_tune`), with one
result writer (:mod:`.results`). The registered strategies are in :mod:`.strategy`, their
settings in :mod:`.settings`. This package imports none of them, so listing the strategies stays light.
"""
