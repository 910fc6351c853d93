"""Run real logagent processes against the stack, as an operator's systemd would.

Shared by the agent, transfer, chaos and logctl tests: each agent gets its own INI, data dir,
etcd prefix and host IP (override), and is driven through signals (SIGTERM, kill -9).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


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


class AgentProcess:
    """One logagent subprocess with its own INI and data dir under `home`."""

    def __init__(self, home: Path, ini_text: str) -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.ini = self.home / "logagent.ini"
        self.ini.write_text(ini_text)
        self.log = self.home / "logagent.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> AgentProcess:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(VENV_BIN / "logagent"), "--config", str(self.ini)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait: the clean shutdown path (flush, save registry, delete status)."""
        if not self.alive():
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill9(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait(10)

    def rss_mb(self) -> float:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the process has used so far."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def wait_for(cond: Callable[[], object], timeout: float, what: str, interval: float = 0.2) -> object:
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


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
