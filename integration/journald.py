"""A real systemd-journald for tests, on a machine whose PID 1 is not systemd (needs root).

journald does not need systemd as PID 1: started by hand it listens on /run/systemd/journal/
(``socket``, ``stdout``, ``dev-log``) and writes /run/log/journal/<machine-id>/. So that it
touches nothing of the host, it runs in a private **mount** namespace (``unshare -m``) where
those directories, and /var/log/journal, are fresh tmpfs mounts and /etc/systemd/journald.conf is
bind-mounted from the test's own file (volatile storage, no /dev/kmsg, no rate limit, no
forwarding). The network is shared, so an agent started in the same namespace (``wrap``: nsenter)
reaches the test stack on loopback while it reads this journal through ``journalctl``.

Entries are written with the real clients: ``logger`` (to ``dev-log``: the host has no /dev/log)
and ``systemd-cat``. A *unit* is a real cgroup: the writer is moved into
``<cgroup2>/system.slice/<unit>`` first, and journald records ``_SYSTEMD_UNIT`` from it as it
does under systemd (so ``journalctl -u`` finds it) -- reliably only while the writer still lives when journald reads
its message: :meth:`Journald.cat` keeps it alive a moment after its last line; ``logger``'s
datagram may be read after the short-lived sender is gone, and then has no _SYSTEMD_UNIT (as
under systemd). The namespace is held by a ``sleep``
process, so journald can be stopped and started again in it.

Found out here (Debian 12, systemd 252): ``journalctl --rotate`` and ``--vacuum-size=1`` work
from inside the namespace (they talk to this journald through its varlink socket, and vacuum its
directories); ``journalctl --after-cursor=C`` with C vacuumed away exits 0 and silently starts
after the first entry still there (it skips one entry whatever it is).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

JOURNALD = "/lib/systemd/systemd-journald"

CONF = """[Journal]
Storage=volatile
ReadKMsg=no
RateLimitBurst=0
RateLimitIntervalSec=0
ForwardToSyslog=no
ForwardToWall=no
ForwardToConsole=no
ForwardToKMsg=no
"""

_SETUP = """set -e
mkdir -p /run/systemd/journal /run/log/journal /var/log/journal
mount -t tmpfs -o mode=0755 logferry-test /run/systemd/journal
mount -t tmpfs -o mode=2755 logferry-test /run/log/journal
mount -t tmpfs -o mode=2755 logferry-test /var/log/journal
mount --bind "$1" /etc/systemd/journald.conf
echo ready
exec sleep infinity
"""


def unavailable() -> str | None:
    """Why a journald cannot be run here (None: it can)."""
    if os.geteuid() != 0:
        return "needs root (mount namespace, tmpfs mounts, cgroups)"
    for tool in (JOURNALD, shutil.which("unshare"), shutil.which("nsenter"), shutil.which("journalctl"),
                 shutil.which("logger"), shutil.which("systemd-cat")):
        if not tool or not os.path.exists(tool):
            return f"needs systemd-journald, journalctl, logger, systemd-cat, unshare and nsenter ({tool} missing)"
    if not os.path.exists("/etc/systemd/journald.conf"):
        return "needs /etc/systemd/journald.conf to bind-mount a test configuration over"
    return None


def _cgroup2_root() -> Path | None:
    for root in (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")):
        if (root / "cgroup.procs").exists() and (root / "cgroup.controllers").exists():
            return root
    return None


class Journald:
    """One journald in its own mount namespace; ``run`` and ``wrap`` put commands in that namespace."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.conf = self.home / "journald.conf"
        self.conf.write_text(CONF)
        self.holder: subprocess.Popen[bytes] | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.cgroups: list[Path] = []

    # --- life ---------------------------------------------------------------------------------

    def start(self) -> Journald:
        self.holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", _SETUP,
                                        "sh", str(self.conf)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.holder.stdout is not None
        line = self.holder.stdout.readline()
        if line.strip() != b"ready":
            err = self.holder.stderr.read().decode(errors="replace") if self.holder.stderr else ""
            raise RuntimeError(f"cannot make the journald namespace: {line!r} {err}")
        self.start_journald()
        return self

    def start_journald(self) -> None:
        with open(self.home / "journald.log", "ab") as log:
            self.proc = subprocess.Popen([*self.wrap, JOURNALD], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        sock = self.path("/run/systemd/journal/socket")
        deadline = time.monotonic() + 20
        while not (sock.exists() and self.path("/run/systemd/journal/dev-log").exists()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"journald did not start: {(self.home / 'journald.log').read_text()[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.kill_inside()
        for p in (self.proc, self.holder):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        for cg in reversed(self.cgroups):
            with contextlib.suppress(OSError):
                cg.rmdir()

    def kill_inside(self) -> None:
        """End what is left in the namespace besides journald and the holder (a killed agent's journalctl)."""
        if self.holder is None or self.holder.poll() is not None:
            return
        ns = os.readlink(f"/proc/{self.holder.pid}/ns/mnt")
        keep = {self.holder.pid, self.proc.pid if self.proc else 0}
        for pid in (int(d) for d in os.listdir("/proc") if d.isdigit()):
            try:
                if pid not in keep and os.readlink(f"/proc/{pid}/ns/mnt") == ns:
                    os.kill(pid, 9)
            except OSError:
                pass

    # --- the namespace ------------------------------------------------------------------------

    @property
    def wrap(self) -> list[str]:
        """The prefix that runs a command in the namespace (for ``integration.harness.daemon``)."""
        assert self.holder is not None
        return ["nsenter", f"--target={self.holder.pid}", "--mount", "--"]

    def path(self, inside: str) -> Path:
        """A path as the namespace sees it, reachable from outside."""
        assert self.holder is not None
        return Path(f"/proc/{self.holder.pid}/root{inside}")

    def run(self, *cmd: str, unit: str | None = None, input: bytes | None = None,
            check: bool = True) -> subprocess.CompletedProcess[bytes]:
        """``cmd`` in the namespace; with ``unit``, inside that unit's cgroup (``_SYSTEMD_UNIT``)."""
        argv = [*self.wrap, *cmd]
        if unit is not None:
            cg = self.cgroup(unit)
            argv = ["sh", "-c", f'echo $$ > "{cg}/cgroup.procs" && exec "$@"', "sh", *argv]
        r = subprocess.run(argv, input=input, capture_output=True, timeout=60)
        if check and r.returncode != 0:
            raise RuntimeError(f"{cmd} failed ({r.returncode}): {r.stderr.decode(errors='replace')}")
        return r

    def cgroup(self, unit: str) -> Path:
        root = _cgroup2_root()
        if root is None:
            raise RuntimeError("no writable cgroup2 hierarchy to put a unit's writer in")
        cg = root / "system.slice" / unit
        if not cg.exists():
            created = [d for d in (cg.parent, cg) if not d.exists()]
            cg.mkdir(parents=True, exist_ok=True)
            self.cgroups += created
        return cg

    # --- writing and reading ------------------------------------------------------------------

    def logger(self, ident: str, messages: list[str], priority: str = "user.info", unit: str | None = None) -> None:
        """Each message one entry, through syslog (``logger`` to dev-log), as ``ident``."""
        body = ("\n".join(messages) + "\n").encode()
        self.run("logger", "--socket-errors=on", "-u", "/run/systemd/journal/dev-log", "-t", ident,
                 "-p", priority, unit=unit, input=body)

    def cat(self, ident: str, messages: list[str], priority: str = "info", unit: str | None = None) -> None:
        """Each message one entry, through the stdout stream (``systemd-cat``), as ``ident``."""
        body = ("\n".join(messages) + "\n").encode()
        # the writer lives on a moment after its last line, so that journald finds its cgroup (the unit)
        self.run("systemd-cat", "-t", ident, "-p", priority, "sh", "-c", "cat; sleep 0.3", unit=unit, input=body)

    def entries(self, *match: str) -> list[dict]:
        """The journal's own entries that match, as ``journalctl -o json`` gives them."""
        import json

        return [json.loads(line) for line in self.journalctl("--output=json", "--all", *match).splitlines()]

    def journalctl(self, *args: str) -> str:
        return self.run("journalctl", "--no-pager", *args).stdout.decode(errors="replace")

    def count(self, *match: str) -> int:
        """How many entries the journal holds that match (journalctl's own count)."""
        out = self.journalctl("--output=cat", "--all", *match)
        return len(out.splitlines())

    def rotate(self) -> None:
        self.journalctl("--rotate")

    def vacuum_all_archived(self) -> None:
        """Delete every archived journal file (``--rotate`` first: the active file becomes one)."""
        self.journalctl("--rotate")
        self.journalctl("--vacuum-size=1")
