"""Run real logagent processes against the stack, as an operator's systemd would.

Shared by the agent, transfer, chaos and logctl tests: each agent gets its own INI, data dir,
etcd prefix and host IP (override), and is driven through signals (SIGTERM, kill -9).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from integration.harness import VENV_BIN, Daemon, daemon

__all__ = ["VENV_BIN", "LineWriter", "agent_ini", "agent_process", "messages_by_id", "wait_for"]


def agent_ini(*, etcd: list[str], kafka: str, data_dir: Path, prefix: str, host_ip: str | None,
              extra_agent: dict[str, str] | None = None, extra_kafka: dict[str, str] | None = None) -> str:
    agent = {"data_dir": str(data_dir), "metrics_address": "", "log_level": "INFO",
             "scan_interval_s": "0.5", "status_interval_s": "1"}
    if host_ip:
        agent["host_ip"] = host_ip
    agent |= extra_agent or {}
    kafka_sec = {"bootstrap_servers": kafka} | (extra_kafka or {})
    parts = [
        "[etcd]", f"endpoints = {','.join(etcd)}", f"prefix = {prefix}", "",
        "[kafka]", *(f"{k} = {v}" for k, v in kafka_sec.items()), "",
        "[agent]", *(f"{k} = {v}" for k, v in agent.items()), "",
    ]
    return "\n".join(parts)


def agent_process(home: Path, ini_text: str, wrap: list[str] | None = None) -> Daemon:
    """A logagent subprocess with its INI and data dir under ``home`` (the shared harness); run
    under ``wrap`` when given (the journal tests: nsenter into journald's namespace)."""
    return daemon("logagent", home, ini_text, name=f"agent-{Path(home).name}", wrap=wrap)


def stop_showing_logs(made: list[Daemon]) -> None:
    """The end of an agent-factory fixture: stop the agents still running, print each one's log
    tail (pytest shows it for a failed test)."""
    for a in made:
        if a.alive():
            a.stop(timeout=30)
        print(f"----- {a.home.name} log (tail)\n" + "\n".join(a.log_text().splitlines()[-40:]))


def wait_for(cond: Callable[[], object], timeout: float, what: str, interval: float = 0.2,
             error: type[Exception] = AssertionError) -> object:
    """Poll ``cond`` until it returns something true (returned), or raise ``error`` naming ``what``.

    The one wait of the tests, the chaos harness and the scale run: a state, never a sleep.
    """
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise error(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def made_after(status: dict, began: datetime) -> bool:
    """Was this agent status made after ``began`` (a whole second, UTC)?

    Waits that compare a status with a file take only a status made after they began: an older one
    may describe the file before its last truncate, at the very size it has regrown to (the same
    writer at the same rate between two rotations), and look caught up while the agent is not.
    ``updated_at`` has whole seconds: one stamped in a later second than ``began`` was made after it.
    """
    made = status.get("updated_at")
    return bool(made) and datetime.fromisoformat(made) > began


class LineWriter:
    """Appends numbered lines to a file; each line is unique so counts are exact."""

    def __init__(self, path: Path, tag: str) -> None:
        self.path = Path(path)
        self.tag = tag
        self.n = 0

    def write(self, count: int, size: int = 0) -> list[str]:
        lines = []
        pad = "x" * max(0, size)
        with open(self.path, "a") as f:
            for _ in range(count):
                line = f"{self.tag} line {self.n:08d} {pad}"
                lines.append(line)
                f.write(line + "\n")
                self.n += 1
        return lines

    def expected(self) -> set[str]:
        return {f"{self.tag} line {i:08d} " for i in range(self.n)}


def messages_by_id(records: list[dict]) -> dict[str, list[str]]:
    """event.id -> messages seen with it (a list so duplicates show)."""
    out: dict[str, list[str]] = {}
    for r in records:
        out.setdefault(r["event"]["id"], []).append(r["message"])
    return out


def dump(obj: object) -> str:
    return json.dumps(obj, indent=1)[:3000]
