"""The one process harness: logferry's daemons as child processes to start, stop, kill -9 and measure.

Used by the integration tests, the benchmarks and the chaos runs alike (issue 16: there were four
copies). A :class:`Daemon` keeps its own INI, data dir and log (appended across restarts), knows
whether an exit was ours (kill, stop) or not (a crash: the chaos harness reports it), and
samples its memory: ``peak_rss_kb`` is the largest VmHWM (the kernel's own high-water mark of
resident memory) over all its incarnations; :meth:`Daemon.cpu_s` its CPU time so far.
:func:`daemon` makes one from a program name and its INI text.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def proc_mem_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in KiB; (0, 0) when it is gone."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return rss, hwm


@dataclass
class Exit:
    at: float
    code: int | None
    expected: bool
    log_tail: str = ""


@dataclass
class Daemon:
    name: str  # agent-h0, transfer-t1
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    home: Path | None = None  # its INI and data dir, when made by daemon()
    ini: Path | None = None
    proc: subprocess.Popen | None = None
    starts: int = 0
    kills: int = 0
    peak_rss_kb: int = 0
    last_rss_kb: int = 0
    exits: list[Exit] = field(default_factory=list)
    _expect_exit: bool = False

    def start(self) -> Daemon:
        assert not self.alive(), f"{self.name} is already running"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            out.write(f"\n===== harness: start {time.strftime('%H:%M:%S')}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=dict(os.environ, PYTHONUNBUFFERED="1") | self.env,
            )
        self.starts += 1
        self._expect_exit = False
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        if self.alive():
            self._expect_exit = True
            self.sample()
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
            self.kills += 1
            self.exits.append(Exit(time.monotonic(), self.proc.returncode, True))

    def stop(self, timeout: float = 90) -> int | None:
        """SIGTERM and wait (the clean path); SIGKILL if it does not exit in time."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        self._expect_exit = True
        self.sample()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.exits.append(Exit(time.monotonic(), self.proc.returncode, True))
        return self.proc.returncode

    def check_crash(self) -> Exit | None:
        """If the process ended without us asking, record and return it (once)."""
        if self.proc is None or self._expect_exit or self.proc.poll() is None:
            return None
        self._expect_exit = True
        e = Exit(time.monotonic(), self.proc.returncode, False, self.log_tail(30))
        self.exits.append(e)
        return e

    def sample(self) -> int:
        if not self.alive():
            return 0
        rss, hwm = proc_mem_kb(self.pid)
        self.last_rss_kb = rss
        self.peak_rss_kb = max(self.peak_rss_kb, hwm, rss)
        return rss

    def log_tail(self, lines: int = 40) -> str:
        try:
            data = self.log.read_bytes()[-20000:]
        except FileNotFoundError:
            return ""
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])

    def signal(self, sig: int) -> None:
        """SIGSTOP/SIGCONT (freeze, thaw) and the like; nothing when it is not running."""
        if self.alive():
            os.kill(self.pid, sig)

    def rss_mb(self) -> float:
        return proc_mem_kb(self.pid)[0] / 1024 if self.alive() else 0.0

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the current incarnation has used so far."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def daemon(program: str, home: Path, ini_text: str, *, name: str | None = None, env: dict[str, str] | None = None,
           wrap: list[str] | None = None) -> Daemon:
    """``program`` (logagent, logtransfer, logconsole) with ``ini_text`` as its INI, all under ``home``.

    ``wrap`` goes before the command (``ip netns exec h0``, ``nice``); ``env`` adds to the environment
    (``PYTHONPATH`` of another source tree to measure a patch).
    """
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    ini = home / f"{program}.ini"
    ini.write_text(ini_text)
    return Daemon(name or f"{program}-{home.name}", [*(wrap or []), str(VENV_BIN / program), "--config", str(ini)],
                  home / f"{program}.log", env=dict(env or {}), home=home, ini=ini)
