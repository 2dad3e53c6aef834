from __future__ import annotations

import os
from pathlib import Path

# Subprocesses started by tests (the nas command, workers) inherit this.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

# One intra-op thread: small test tensors gain nothing from more, and on a busy machine two
# OpenMP threads per process slow every op down by an order of magnitude.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _runs_in_tmp(tmp_path, monkeypatch):
    """Runs created without --out land in a temporary folder, never in the checkout."""
    import nas.run

    monkeypatch.setattr(nas.run, "DEFAULT_ROOT", tmp_path / "runs")


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test when that data is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not present at {path} (see ../shared/data/README.md)")
    return path
