"""A Ray Tune search as a Ray job: what the dashboard's Jobs page shows of it.

``nas search --backend ray`` makes the run folder, then submits the search's driver through
Ray's Job Submission API as the job ``<run folder name>`` (``<name>-2``, ... where that Ray
ran a job of the name already). The
job runs ``python -m nas.strategies.blackbox.ray_driver RUN``, which reads everything from the run
folder (:mod:`nas.strategies.blackbox.ray_driver`). Its output, a line per trial
event, is what the dashboard shows under the job's logs; this process prints the same lines as
they come, and Ctrl-C here stops the job (the search can then be resumed).

With ``keep_ray`` a Ray started by the search stays up after it until Ctrl-C
(:func:`hold_ray`), so that the dashboard can still be opened.
"""
from __future__ import annotations

import os
import shlex
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from nas.errors import EchoedError, NasError
from nas.run import Run
from nas.strategies.blackbox.ray_cluster import RayConnection

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
AGENT_PORT = 52365  # the dashboard agent's HTTP port of a Ray that ray.init starts (not configurable there)
PORT_WAIT_S = 15
POLL_S = 0.5


def why_not_a_job(evaluator: Any, config: dict[str, Any], address: str | None) -> str | None:
    """Why the search cannot run as a Ray job (``None``: it can), asked before Ray starts.

    The job rebuilds the evaluator from the run's config, so it must be a registered one; and
    a Ray started here takes jobs through its node's dashboard agent, whose port (52365, fixed
    by Ray for a Ray started in a process) another Ray on this machine may hold already.
    """
    import ray

    from nas.evaluators import EVALUATORS

    name = config["evaluator"].get("name")
    if name not in EVALUATORS or not isinstance(evaluator, EVALUATORS[name][0]) \
            or type(evaluator).__module__ == "__main__":
        return (f"the evaluator {type(evaluator).__name__} is not a registered one that a Ray job could rebuild "
                "from the run's config")
    if address or os.environ.get("RAY_ADDRESS") or ray.is_initialized():
        return None
    deadline = time.monotonic() + PORT_WAIT_S  # a Ray that has just stopped lets the port go in a moment
    while not _port_free(AGENT_PORT):
        if time.monotonic() > deadline:
            return (f"port {AGENT_PORT}, which the Ray started here takes jobs through, is held by another Ray on "
                    "this machine")
        time.sleep(0.5)
    return None


def _port_free(port: int) -> bool:
    """Whether a server can listen on ``port`` (as Ray's agent does, with SO_REUSEADDR)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", port))
        except OSError:
            return False
    return True


def job_client(connection: RayConnection) -> Any:
    """A Job Submission API client of the dashboard of ``connection``, with its token."""
    from ray.job_submission import JobSubmissionClient

    if not connection.dashboard_url:
        raise NasError("this Ray cluster runs no dashboard, which Ray jobs are submitted through; start Ray with "
                       "the dashboard (ray[default])")
    headers = {"Authorization": f"Bearer {connection.token}"} if connection.token else None
    return JobSubmissionClient(connection.dashboard_url, headers=headers)


def job_name(client: Any, run: Run) -> str:
    """The run folder's name, or ``<name>-2``, ``-3``, ... when a job of that name exists already
    (a resumed search, or another run folder of the same name on this cluster)."""
    taken = {job.submission_id for job in client.list_jobs() if job.submission_id}
    name, index = run.path.name, 1
    while name in taken:
        index += 1
        name = f"{run.path.name}-{index}"
    return name


def entrypoint(run: Run) -> str:
    """The job's command: this interpreter and working folder when the cluster's head node (where
    the job runs) is this machine, else the nodes' ``python`` (run folders on shared storage)."""
    here = _head_is_here()
    python = sys.executable if here else "python"
    command = f"{shlex.quote(python)} -m nas.strategies.blackbox.ray_driver {shlex.quote(str(run.path.resolve()))}"
    return f"cd {shlex.quote(str(Path.cwd()))} && {command}" if here else command


def _head_is_here() -> bool:
    import ray

    here = ray.util.get_node_ip_address()
    return any(node.get("Alive") and "node:__internal_head__" in node.get("Resources", {})
               and node.get("NodeManagerAddress") == here for node in ray.nodes())


def run_as_job(run: Run, connection: RayConnection, *, resumed: bool) -> str:
    """Submit the search of ``run`` as a Ray job, print its output until it ends, and return the
    job's name; a job that fails ends in :class:`EchoedError` (its own output said why)."""
    client = job_client(connection)
    name = job_name(client, run)
    submit(client, entrypoint=entrypoint(run), submission_id=name,
           metadata={"run": str(run.path.resolve()), "kind": "nas search", "resumed": str(bool(resumed)).lower()})
    where = f"{connection.dashboard_url}/#/jobs/{name}" if connection.dashboard_url else name
    print(f"Ray job {name}: {where} (its logs hold what follows)", flush=True)
    printed = [0]  # how much of the job's output is on the screen
    try:
        status = follow(client, name, printed)
    except KeyboardInterrupt:
        print(f"stopping Ray job {name} ...", flush=True)
        client.stop_job(name)
        follow(client, name, printed)
        raise
    if status != "SUCCEEDED":
        info = client.get_job_info(name)
        code = getattr(info, "driver_exit_code", None)
        if code == 2:  # the job printed its one-line error
            raise EchoedError(f"Ray job {name} ended with exit code 2")
        message = (info.message or "no message").strip().splitlines()[0].rstrip(",:")
        raise NasError(f"Ray job {name} {status.lower()}: {message} (its output above, and on the dashboard, says "
                       f"more); resume it with nas search --resume {run.path}")
    return name


class NoJobAgent(RuntimeError):
    """No node of the cluster takes jobs (its dashboard agent did not start)."""


def submit(client: Any, *, timeout_s: float = 30, **job: Any) -> None:
    """``client.submit_job(**job)``, waiting for the job agent of a Ray that has just started;
    :class:`NoJobAgent` when none comes up in ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.submit_job(**job)
            return
        except RuntimeError as exc:  # the dashboard answers 500 until a node's job agent is up
            if "No available agent" not in str(exc):
                raise NasError(f"Ray did not take the search's job: {str(exc).splitlines()[0][:300]}") from None
            if time.monotonic() > deadline:
                raise NoJobAgent(f"no node of this Ray takes jobs (its dashboard agent did not start; port "
                                 f"{AGENT_PORT} held by another Ray on the machine?)") from None
        time.sleep(1)


def follow(client: Any, name: str, printed: list[int]) -> str:
    """Print the job's output as it grows, from ``printed[0]`` characters on (kept up to date),
    until the job ends; returns its final status."""
    while True:
        status = str(client.get_job_status(name).value)
        logs = client.get_job_logs(name)
        if len(logs) > printed[0]:
            sys.stdout.write(logs[printed[0]:])
            sys.stdout.flush()
            printed[0] = len(logs)
        if status in TERMINAL:
            return status
        time.sleep(POLL_S)


def hold_ray(connection: RayConnection, *, progress: bool = True) -> None:
    """Keep the Ray this process started (and its dashboard) up until Ctrl-C or SIGTERM."""
    if progress:
        print(connection.instructions(), flush=True)
        print(f"Ray stays up for its dashboard (--keep-ray); stop it with Ctrl-C here, or kill {os.getpid()} "
              "(it ends with this process)", flush=True)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # also where the shell started the command with SIGINT ignored (in the background)
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        if progress:
            print("stopping Ray", flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
