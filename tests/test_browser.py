"""Pages a user opens, checked in a real headless Chromium (skipped, saying why, without one).

Screenshots land in ``artifact_dir()`` (``$NAS_TEST_ARTIFACTS`` or test-artifacts/).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import (
    Browser,
    artifact_dir,
    assert_visible,
    require_browser,
    tensorboard_server,
)

# Two NAS-Bench-201 cells, as the trials' genotypes (their short form is the arch string).
GENOTYPES = [
    "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|skip_connect~2|",
    "|avg_pool_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|nor_conv_1x1~0|nor_conv_3x3~1|none~2|",
]
RUNS = ["trial-0000", "trial-0001", "search"]


def write_board(run: Path) -> Path:
    """RUN/tensorboard as a search writes it: two trials of three epochs through TrialBoard."""
    from nas.genotype import from_nb201_string
    from nas.strategies.blackbox.board import TrialBoard

    board = TrialBoard(run, ["val_acc"], ["maximize"])
    try:
        for number, arch in enumerate(GENOTYPES):
            genotype = from_nb201_string(arch)
            board.start(number, genotype)
            for epoch in (1, 2, 3):
                acc = 0.5 + 0.1 * epoch + 0.01 * number
                board.epoch(number, epoch, {"epoch": epoch, "val_acc": acc, "train_loss": 1 / epoch})
            board.end(number, "complete", {"val_acc": acc}, genotype)
    finally:
        board.close()
    return run / "tensorboard"


@pytest.fixture
def tensorboard(tmp_path):
    """A TensorBoard server on a free port over a search's logs; its URL. Always stopped."""
    require_browser()
    with tensorboard_server(write_board(tmp_path / "RUN"), RUNS, log=tmp_path / "tensorboard.log") as url:
        yield url


# The val_acc tag at the start of a line (a card or category title), not only inside best/val_acc.
VAL_ACC = "\nval_acc"


def test_tensorboard_in_browser(tensorboard):
    """The trial runs, their val_acc curves and each trial's genotype text are on the pages."""
    shots = artifact_dir()
    pages = [
        ("tensorboard-scalars.png", "/#scalars",
         ["trial-0000", "trial-0001", "search", VAL_ACC, "best/val_acc"]),
        ("tensorboard-timeseries.png", "/?darkMode=false#timeseries",
         ["trial-0000", "trial-0001", "search", VAL_ACC]),
        ("tensorboard-text.png", "/#text", ["genotype", *GENOTYPES]),
    ]
    with Browser() as browser:  # one browser: TensorBoard's app starts once for the three pages
        for name, route, expect in pages:
            shot = shots / name
            text = browser.page_text(tensorboard + route, expect=expect, screenshot=shot, timeout_s=40)
            assert_visible(text, expect, screenshot=shot)
