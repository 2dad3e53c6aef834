"""Connecting to Ray for a search: a local Ray started on demand, or an existing cluster,
with the Ray dashboard behind Ray's token authentication.

Ray (2.60 here) guards its dashboard, its HTTP API and its gRPC ports with a shared token
when ``RAY_AUTH_MODE=token``; a local ``ray.init()`` turns that on by default. Ray reads the
token from ``RAY_AUTH_TOKEN`` (the token itself), else the file named by
``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``. The
dashboard accepts it as an ``Authorization: Bearer <token>`` header (or
``X-Ray-Authorization``), or as the ``ray-authentication-token`` cookie that its login page
sets after ``POST /api/authenticate``; anything else gets 401 (no token) or 403 (wrong token).

>>> conn = connect_ray(num_cpus=2, object_store_memory=200 * 2**20)  # doctest: +SKIP
>>> print(conn.instructions())  # doctest: +SKIP
>>> status, body = conn.get("/api/jobs/")  # doctest: +SKIP
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.errors import NasError

AUTH_MODE_ENV = "RAY_AUTH_MODE"
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
TOKEN_COOKIE = "ray-authentication-token"
DEFAULT_DASHBOARD_PORT = 8265


@dataclass(frozen=True)
class RayConnection:
    """How this process reaches Ray and its dashboard.

    ``token`` is ``None`` when the cluster runs without token authentication; ``started_here``
    says whether this process started the local Ray (and so should shut it down).
    """

    address: str
    dashboard_url: str | None
    token: str | None
    token_source: str | None
    started_here: bool

    def instructions(self) -> str:
        """Lines telling a person how to open the dashboard, token included."""
        if not self.dashboard_url:
            return ("Ray dashboard: not running on this cluster (install ray[default] and start Ray "
                    "with the dashboard to watch the search)")
        lines = [f"Ray dashboard: {self.dashboard_url}"]
        if self.token is None:
            lines.append("  token authentication is OFF for this cluster (RAY_AUTH_MODE=disabled): "
                         "anyone who can reach the port can run code on it")
            return "\n".join(lines)
        lines += [
            f"  token authentication is on; token ({self.token_source}):",
            f"    {self.token}",
            ("  browser: open the URL and paste the token when the dashboard asks for it "
             f"(it is then kept in the {TOKEN_COOKIE} cookie)"),
            f"  API:     curl -H \"Authorization: Bearer $(ray get-auth-token)\" {self.dashboard_url}/api/jobs/",
        ]
        host = self.dashboard_url.split("//", 1)[-1]
        if host.startswith(("127.0.0.1", "localhost")):
            port = host.rsplit(":", 1)[-1]
            lines.append(f"  from another machine: ssh -L {port}:127.0.0.1:{port} <this host>, then open the URL")
        return "\n".join(lines)

    def get(self, path: str, *, authenticated: bool = True, timeout: float = 10.0) -> tuple[int, Any]:
        """GET ``path`` from the dashboard's HTTP API; returns (status, parsed JSON or text).

        ``authenticated=False`` sends no token, which an authenticated dashboard refuses.
        """
        if not self.dashboard_url:
            raise NasError("this Ray cluster runs no dashboard; start Ray with the dashboard (ray[default])")
        headers = {"Authorization": f"Bearer {self.token}"} if authenticated and self.token else {}
        request = urllib.request.Request(self.dashboard_url + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, body = response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read().decode(errors="replace")
        try:
            return status, json.loads(body)
        except json.JSONDecodeError:
            return status, body


def token_file() -> Path:
    """The file Ray reads the token from when ``RAY_AUTH_TOKEN`` is not set."""
    if os.environ.get(TOKEN_PATH_ENV):
        return Path(os.environ[TOKEN_PATH_ENV]).expanduser()
    return Path.home() / ".ray" / "auth_token"


def ensure_token() -> tuple[str, str]:
    """The cluster token and where it came from; creates an owner-only token file if none exists.

    Ray would create ``~/.ray/auth_token`` itself, but with the default umask (often world
    readable) and never at ``RAY_AUTH_TOKEN_PATH``; creating it here keeps it private.
    """
    if os.environ.get(TOKEN_ENV, "").strip():
        return os.environ[TOKEN_ENV].strip(), f"${TOKEN_ENV}"
    path = token_file()
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
    token = path.read_text().strip()
    if not token:
        raise NasError(f"Ray token file {path} is empty; delete it (a new token is generated) or write the "
                       "cluster's token into it")
    return token, str(path)


def _enable_token_auth() -> bool:
    """Turn on Ray's token authentication for this process and the Ray it starts.

    Returns False when the user opted out with ``RAY_AUTH_MODE=disabled``. Ray caches its
    settings when first used, so they are reloaded after the environment changes.
    """
    if os.environ.get(AUTH_MODE_ENV, "token").lower() == "disabled":
        return False
    try:
        from ray._private.authentication.authentication_token_setup import (
            _enable_token_auth as ray_enable,
        )
        from ray._raylet import AuthenticationTokenLoader
    except ImportError:
        raise NasError("the installed Ray has no token authentication (Ray 2.60 has it); upgrade Ray "
                       f"(pip install -U 'ray[tune,default]') or set {AUTH_MODE_ENV}=disabled to run without "
                       "it") from None
    ray_enable()  # sets RAY_AUTH_MODE=token and reloads Ray's cached config
    AuthenticationTokenLoader.instance().reset_cache()
    return True


def _token_auth_active() -> bool:
    try:
        from ray._private.authentication.authentication_utils import (
            is_token_auth_enabled,
        )
    except ImportError:
        return False
    return is_token_auth_enabled()


def connect_ray(address: str | None = None, *, num_cpus: float | None = None, num_gpus: float | None = None,
                object_store_memory: int | None = None, dashboard_host: str = "127.0.0.1",
                dashboard_port: int | None = None, log_to_driver: bool = True) -> RayConnection:
    """Attach to Ray at ``address`` (``"auto"``, ``host:6379`` or ``ray://host:10001``), or start a
    local Ray with its dashboard on ``dashboard_host`` and token authentication on.

    If this process is already connected (``ray.init`` was called), that connection is used.
    Without ``address`` the environment's ``RAY_ADDRESS`` is used if set. ``num_cpus``,
    ``num_gpus``, ``object_store_memory`` and the dashboard settings apply only to a local Ray.
    """
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():
        return _describe(ray.get_runtime_context(), started_here=False)
    if address:
        if any(v is not None for v in (num_cpus, num_gpus, object_store_memory, dashboard_port)):
            raise NasError("--ray-address attaches to a running cluster, whose CPUs, GPUs and dashboard are "
                           "already set; drop those options or leave --ray-address empty for a local Ray")
        try:
            context = ray.init(address=address, log_to_driver=log_to_driver, logging_level=logging.WARNING)
        except ConnectionError as exc:
            raise NasError(f"cannot reach a Ray cluster at {address!r} ({str(exc).splitlines()[0]}); "
                           "check the address (ray status on the head node prints it)") from None
        except Exception as exc:  # Ray raises its own AuthenticationError type for a bad or missing token
            if type(exc).__name__ != "AuthenticationError":
                raise
            raise NasError(f"Ray cluster at {address!r} refused this process's token; export "
                           f"{AUTH_MODE_ENV}=token and the cluster's token ({TOKEN_ENV}=... or the file "
                           f"~/.ray/auth_token / {TOKEN_PATH_ENV})") from None
        return _describe(context, started_here=False)
    if _enable_token_auth():
        ensure_token()
    _share_code_path()
    # address "local": a new Ray of this process's own, even where `ray start` runs one on this machine
    context = ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, object_store_memory=object_store_memory,
                       include_dashboard=True, dashboard_host=dashboard_host,
                       dashboard_port=DEFAULT_DASHBOARD_PORT if dashboard_port is None else dashboard_port,
                       log_to_driver=log_to_driver)
    return _describe(context, started_here=True)


def _share_code_path() -> None:
    """Let the local Ray's workers import ``nas`` from wherever this process imported it.

    Workers inherit the environment of the Ray started here; the project root goes first on
    their ``PYTHONPATH`` (a no-op when ``nas`` is installed, as on cluster nodes).
    """
    root = str(Path(__file__).resolve().parents[3])
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *paths])


def _describe(context: Any, *, started_here: bool) -> RayConnection:
    import ray

    url = getattr(context, "dashboard_url", None) or _dashboard_url_of_running_ray()
    if url and not url.startswith("http"):
        url = "http://" + url
    token = source = None
    if _token_auth_active():
        token, source = ensure_token()
    address = ray.get_runtime_context().gcs_address
    return RayConnection(address=address, dashboard_url=url or None, token=token, token_source=source,
                         started_here=started_here)


def _dashboard_url_of_running_ray() -> str | None:
    """The dashboard address recorded by the Ray this process is connected to."""
    try:
        from ray._private.worker import _global_node
    except ImportError:
        return None
    return getattr(_global_node, "webui_url", None) if _global_node is not None else None
