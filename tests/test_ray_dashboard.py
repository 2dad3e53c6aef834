"""Watching a Ray Tune search as a user does: ``nas search --backend ray --keep-ray`` in its own
process, then its Ray job, actors, logs and metrics through the dashboard's HTTP API, the job's
page in a real headless Chromium, and the search's TensorBoard runs in one too.

The search scores NAS-Bench-201 cells with the table evaluator (seconds per trial), so the
module needs ../shared/data/nas-bench-201. Its Ray is the only one this module starts; it stays
up (``--keep-ray``) until the module ends the command with Ctrl-C.
"""
from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray.tune")

from tests.browser import (
    Browser,
    artifact_dir,
    assert_visible,
    free_port,
    require_browser,
    tensorboard_server,
)

REPO = Path(__file__).resolve().parent.parent
TABLES = REPO.parent / "shared" / "data" / "nas-bench-201"
NAME = "nb201-watch"  # the run folder's name: the Ray job's name
TRIALS = 4


class Search:
    """The ``nas search`` process and what it printed so far."""

    def __init__(self, process: subprocess.Popen, out: Path, url: str, token: str) -> None:
        self.process = process
        self.out = out
        self.url = url
        self.token = token
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, needle: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while needle not in self.text:
            if self.process.poll() is not None:
                time.sleep(0.5)  # the reader catches up with the last lines
                pytest.fail(f"nas search ended (exit {self.process.returncode}) before printing {needle!r}:\n"
                            f"{self.text[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"nas search did not print {needle!r} within {timeout_s:g} s:\n{self.text[-3000:]}")
            time.sleep(0.2)

    def get(self, path: str) -> Any:
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read().decode(errors="replace")
        try:
            return json.loads(body)
        except json.JSONDecodeError:
            return body


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory):
    if not (TABLES / "nb201_12epoch_val_test.csv").is_file():
        pytest.skip(f"NAS-Bench-201 tables not present at {TABLES} (see ../shared/data/README.md)")
    tmp = tmp_path_factory.mktemp("watch")
    token_path = tmp / "token"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
    env.update({"RAY_AUTH_TOKEN_PATH": str(token_path), "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"})
    command = [sys.executable, "-m", "nas", "search", "--backend", "ray", "--strategy", "evolution",
               "--space", "nb201", "--evaluator", "nb201", "--nb201-root", str(TABLES), "--trials", str(TRIALS),
               "--population", "4", "--sample-size", "2", "--max-concurrent", "2", "--keep-ray",
               "--dashboard-port", str(port), "--out", str(tmp / NAME)]
    process = subprocess.Popen(command, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    watch = Search(process, tmp / NAME, f"http://127.0.0.1:{port}", "")
    try:
        watch.wait_for("Ray stays up", timeout_s=300)
        watch.token = token_path.read_text().strip()
        yield watch
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # Ctrl-C: Ray stops with the command
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _trials(search: Search) -> list[dict[str, str]]:
    with open(search.out / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_the_search_is_a_named_ray_job_whose_logs_hold_a_line_per_trial_event(search: Search) -> None:
    assert f"Ray job {NAME}: {search.url}/#/jobs/{NAME}" in search.text, search.text[:3000]
    jobs = {job.get("submission_id"): job for job in search.get("/api/jobs/")}
    job = jobs[NAME]
    assert job["status"] == "SUCCEEDED" and "nas.strategies.blackbox.ray_driver" in job["entrypoint"]
    logs = search.get(f"/api/jobs/{NAME}/logs")["logs"]
    rows = _trials(search)
    assert len(rows) == TRIALS and all(row["status"] == "complete" for row in rows)
    for row in rows:  # each trial's start and end, with its number, genotype and metric
        number, cell = int(row["trial"]), row["genotype"]
        assert f"trial {number:4d} started  | {cell}" in logs
        assert re.search(rf"trial {number:4d} complete \| val_acc {float(row['val_acc']):.4g} \| {re.escape(cell)}",
                         logs), f"no end line of trial {number} in the job's logs"
    assert f"{TRIALS} trials: {TRIALS} complete" in logs
    # what the command printed is the job's output, followed by how to open the dashboard and stop Ray
    assert "trial    0 started" in search.text and f"{TRIALS} trials: {TRIALS} complete" in search.text
    assert f"Ray dashboard: {search.url}" in search.lines[-8:] and "stop it with Ctrl-C" in search.lines[-1]


def test_each_trial_runs_in_its_own_actor_whose_log_holds_its_own_lines(search: Search) -> None:
    job_id = {j.get("submission_id"): j for j in search.get("/api/jobs/")}[NAME]["job_id"]
    actors = [a for a in search.get("/api/v0/actors?detail=1&limit=1000")["data"]["result"]["result"]
              if a.get("job_id") == job_id and a.get("repr_name") == "nas_trial"]
    assert len(actors) == TRIALS, "an actor per trial"
    seen = set()
    for actor in actors:
        text = search.get(f"/api/v0/logs/file?actor_id={actor['actor_id']}&suffix=out&lines=1000")
        numbers = {int(n) for n in re.findall(r"trial +(\d+) (?:started|finished)", str(text))}
        assert len(numbers) == 1, f"actor {actor['actor_id']} logged trials {numbers}: {str(text)[:500]}"
        seen |= numbers
    assert seen == set(range(TRIALS))


def _scrape(needle: str, timeout_s: float = 90) -> str:
    """The Prometheus text of a metrics target of the local Ray that mentions ``needle``."""
    discovery = Path(os.environ.get("RAY_TMPDIR", tempfile.gettempdir())) / "ray" / "prom_metrics_service_discovery.json"
    deadline = time.monotonic() + timeout_s
    while True:
        targets = [t for group in json.loads(discovery.read_text()) for t in group["targets"]] \
            if discovery.is_file() else []
        for target in targets:
            try:
                with urllib.request.urlopen(f"http://{target}/metrics", timeout=10) as response:  # no token
                    text = response.read().decode(errors="replace")
            except (OSError, urllib.error.URLError):
                continue
            if needle in text:
                return text
        if time.monotonic() > deadline:
            pytest.fail(f"no metrics target of {targets} exports {needle} within {timeout_s:g} s")
        time.sleep(2)


def test_the_search_progress_is_exported_as_ray_metrics(search: Search) -> None:
    text = _scrape("ray_nas_search_trials")
    values = {m.group(1): float(m.group(2)) for m in re.finditer(
        rf'ray_nas_search_trials{{[^}}]*run="{NAME}"[^}}]*state="(\w+)"[^}}]*}} ([0-9.e+-]+)', text)}
    assert values.get("complete") == TRIALS and values.get("error") == 0 and values.get("running") == 0
    best = max(float(row["val_acc"]) for row in _trials(search))
    found = re.search(rf'ray_nas_search_best{{[^}}]*objective="val_acc"[^}}]*run="{NAME}"[^}}]*}} ([0-9.e+-]+)|'
                      rf'ray_nas_search_best{{[^}}]*run="{NAME}"[^}}]*objective="val_acc"[^}}]*}} ([0-9.e+-]+)', text)
    assert found and float(found.group(1) or found.group(2)) == pytest.approx(best)


def test_the_job_page_shows_the_job_and_its_trials_in_a_browser(search: Search) -> None:
    require_browser()
    row = max(_trials(search), key=lambda r: float(r["val_acc"]))
    cookie = [{"name": "ray-authentication-token", "value": search.token, "url": search.url}]
    shot = artifact_dir() / "ray-dashboard-job.png"
    expect = [NAME, row["genotype"], "val_acc"]
    with Browser() as browser:
        text = browser.page_text(f"{search.url}/#/jobs/{NAME}", expect=expect, cookies=cookie, screenshot=shot,
                                 timeout_s=90)
    assert_visible(text, expect, screenshot=shot)


def test_tensorboard_shows_a_run_per_trial_of_the_search_in_a_browser(search: Search, tmp_path: Path) -> None:
    require_browser()
    runs = ["search"] + [f"trial-{n:04d}" for n in range(TRIALS)]
    assert sorted(p.name for p in (search.out / "tensorboard").iterdir()) == runs
    cell = _trials(search)[0]["genotype"]
    with tensorboard_server(search.out / "tensorboard", runs, log=tmp_path / "tensorboard.log") as url, \
            Browser() as browser:
        for name, route, expect in [("ray-search-tensorboard-scalars.png", "/#scalars", [*runs, "best/val_acc"]),
                                    ("ray-search-tensorboard-text.png", "/#text", ["genotype", cell])]:
            shot = artifact_dir() / name
            text = browser.page_text(url + route, expect=expect, screenshot=shot, timeout_s=60)
            assert_visible(text, expect, screenshot=shot)
