"""Processes the stack started, recorded so that we stop exactly those and nothing else.

A PID alone is not an identity: after a crash or a reboot the number can belong to
someone else's process. We record the kernel's start time of the process next to the
PID (field 22 of /proc/PID/stat) and treat a PID as ours only while both still match.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


def proc_start_time(pid: int) -> int | None:
    """Return the start time (clock ticks since boot) of `pid`, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = stat[stat.rindex(")") + 2 :].split()
    if rest[0] == "Z":  # a zombie is as good as dead for us
        return None
    return int(rest[19])


@dataclass
class ProcRecord:
    """One started process: enough to find it again, and to start it again the same way."""

    name: str
    argv: list[str]
    log: str
    cwd: str
    env: dict[str, str] = field(default_factory=dict)
    pid: int = 0
    start_time: int = 0

    def alive(self) -> bool:
        return self.pid > 0 and proc_start_time(self.pid) == self.start_time

    def to_json(self) -> dict:
        return asdict(self)


def spawn(rec: ProcRecord) -> ProcRecord:
    """Start `rec.argv` detached (own session), output appended to its log file."""
    Path(rec.log).parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(rec.env)
    with open(rec.log, "ab") as log:
        log.write(f"\n===== start {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(rec.argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            rec.argv,
            cwd=rec.cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    rec.pid = proc.pid
    # The start time is readable as soon as fork returned.
    rec.start_time = proc_start_time(proc.pid) or 0
    # Popen objects reap their child only when polled; we never wait on it here, so
    # detach it from Python's bookkeeping to avoid a ResourceWarning.
    proc.returncode = 0
    return rec


def stop(rec: ProcRecord, *, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> bool:
    """Send `sig` to the process if it is still ours; escalate to SIGKILL after `timeout_s`.

    Returns True if a process was signalled. Children we started in our own session die with
    the group (we signal the whole process group the session leader created).
    """
    if not rec.alive():
        return False
    try:
        os.killpg(rec.pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        os.kill(rec.pid, sig)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap(rec.pid)
        if not rec.alive():
            return True
        time.sleep(0.05)
    if sig != signal.SIGKILL:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(rec.pid, signal.SIGKILL)
        for _ in range(100):
            _reap(rec.pid)
            if not rec.alive():
                break
            time.sleep(0.05)
    return True


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def tail(path: str | Path, lines: int = 25) -> str:
    """The last lines of a log file, for error messages that should say what went wrong."""
    try:
        data = Path(path).read_bytes()[-16384:]
    except FileNotFoundError:
        return f"(no log file at {path})"
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def free_ports(count: int) -> list[int]:
    """Reserve `count` distinct free loopback ports (held open together so they differ)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
