"""A Docker engine to talk to: the one that answers, or Debian's dockerd started here when allowed.

CI machines of this project have the ``docker`` CLI but no daemon running. As root, the suite
installs Debian's ``docker.io`` when ``dockerd`` is missing and starts ``dockerd`` in the
background (its log in ``~/.cache/logferry/docker/dockerd.log``); it is left running for the
next session, as a system service would be. Elsewhere (not root, no apt) the reason is returned,
and the tests skip with it in one line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable

from integration.stack import downloads

Log = Callable[[str], None]


def _ping():
    import docker

    client = docker.from_env(timeout=120)
    client.ping()
    return client


def client_or_reason(log: Log) -> tuple[object | None, str]:
    """(client, "") when an engine answers (started here if need be), else (None, why not)."""
    try:
        import docker  # noqa: F401  (testcontainers depends on it)
    except ImportError:
        return None, "the docker and testcontainers packages are not installed: pip install -e '.[docker]'"
    try:
        return _ping(), ""
    except Exception as e:
        first = f"{type(e).__name__}: {e}"
    if os.environ.get("LOGFERRY_DOCKER_START", "1") == "0":
        return None, f"no Docker engine answers ({first}) and LOGFERRY_DOCKER_START=0"
    if os.geteuid() != 0:
        return None, f"no Docker engine answers ({first}); start one, or run as root to let the suite start dockerd"
    if shutil.which("dockerd") is None:
        log("installing Debian's docker.io (apt-get) to start a Docker engine")
        res = subprocess.run(["apt-get", "install", "-y", "-q", "docker.io"], capture_output=True, text=True,
                             env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        if res.returncode != 0 or shutil.which("dockerd") is None:
            return None, f"no Docker engine, and apt-get install docker.io failed: {res.stderr.strip()[-300:]}"
    logdir = downloads.cache_dir() / "docker"
    logdir.mkdir(parents=True, exist_ok=True)
    log(f"starting dockerd (log: {logdir / 'dockerd.log'})")
    with open(logdir / "dockerd.log", "ab") as out:
        subprocess.Popen(["dockerd"], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            return _ping(), ""
        except Exception as e:
            last = f"{type(e).__name__}: {e}"
        time.sleep(0.5)
    return None, f"dockerd was started but does not answer within 60 s ({last}); see {logdir / 'dockerd.log'}"


def client_or_start(log: Log):
    """The client, or None after printing why there is none (for command-line use)."""
    client, why = client_or_reason(log)
    if client is None:
        log(f"no Docker engine: {why}")
    return client
