"""Pages a user opens, checked in a real headless Chromium (skipped, saying why, without one).

Screenshots land in ``artifact_dir()`` (``$NAS_TEST_ARTIFACTS`` or test-artifacts/).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.browser import (
    Browser,
    artifact_dir,
    assert_visible,
    free_port,
    require_browser,
)

# Two NAS-Bench-201 cells, as the trials' genotypes (their short form is the arch string).
GENOTYPES = [
    "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|skip_connect~2|",
    "|avg_pool_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|nor_conv_1x1~0|nor_conv_3x3~1|none~2|",
]
RUNS = ["trial-0000", "trial-0001", "search"]


def write_board(run: Path) -> Path:
    """RUN/tensorboard as a search lays it out: trial-NNNN per trial (val_acc per epoch, the
    genotype as text), and search (the best val_acc so far per finished trial)."""
    from torch.utils.tensorboard import SummaryWriter

    root = run / "tensorboard"
    search = SummaryWriter(str(root / "search"))
    best = 0.0
    for number, arch in enumerate(GENOTYPES):
        writer = SummaryWriter(str(root / f"trial-{number:04d}"))
        writer.add_text("genotype", arch, 1)
        for epoch in (1, 2, 3):
            acc = 0.5 + 0.1 * epoch + 0.01 * number
            writer.add_scalar("val_acc", acc, epoch)
            writer.add_scalar("train_loss", 1 / epoch, epoch)
        writer.close()
        best = max(best, acc)
        search.add_scalar("best/val_acc", best, number + 1)
    search.close()
    return root


@pytest.fixture
def tensorboard(tmp_path):
    """A TensorBoard server on a free port over a search's logs; its URL. Always stopped."""
    require_browser()
    logdir = write_board(tmp_path / "RUN")
    port = free_port()
    exe = Path(sys.executable).parent / "tensorboard"
    log = (tmp_path / "tensorboard.log").open("wb")
    proc = subprocess.Popen(
        [str(exe), "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"tensorboard exited with {proc.returncode}: "
                            f"{(tmp_path / 'tensorboard.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/data/runs", timeout=5) as response:
                    if set(RUNS) <= set(json.load(response)):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"tensorboard did not list the runs {RUNS} within 60 s")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


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
