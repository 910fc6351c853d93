#!/usr/bin/env python3
"""The rollout lab: real systemd hosts on this machine, provisioned by ``ansible/site.yml``.

``make lab`` (``python lab/lab.py up``):

1. a Debian image (debootstrap, from the mirror in this machine's apt sources), cached under
   ``~/.cache/logferry/lab`` (``$LOGFERRY_CACHE``);
2. a bridge ``lfbr0`` with 10.77.0.1/24, and three hosts booted with ``systemd-nspawn -b``
   (10.77.0.11-13), each on its own overlay of the image and in its own cgroup;
3. the project's real stack (etcd x3, ZooKeeper + Kafka, Elasticsearch) serving on 10.77.0.1,
   secured (``python -m integration.stack up --bind 10.77.0.1 --secure``: etcd TLS + client
   certificates + users, Kafka SASL_SSL/SCRAM, Elasticsearch behind a TLS proxy with credentials),
   plus the lab's own etcd users: one per agent host (its keys only) and one for the console;
   ``LOGFERRY_LAB_SECURE=0`` runs the plain stack instead;
4. ``ansible-playbook site.yml`` over ssh against the hosts: the wheelhouse installed offline,
   logagent on every host, logtransfer and logconsole on lab-host3, collect lists seeded into
   etcd (as root); the CA, client certificates and secrets go in as inventory variables and the
   roles deliver them (files under /etc/logferry/tls, systemd credentials);
5. checks: the units are active, each host's collect list is in etcd under its own IP, lines
   appended on each host reach Elasticsearch with that host's IP exactly once, an agent's etcd
   user cannot read another host's keys, the secrets are in no INI, no journal and no Ansible
   output (only in 0600 credential files handed to the units), and a second playbook run reports
   changed=0. Every phase is timed.

``make lab-down`` (``lab.py down``) powers the hosts off, unmounts the overlays, stops the stack,
deletes the bridge, and checks that no process of the lab is left.

The hosts only reach 10.77.0.1 (no default route, no NAT): the rollout installs from the
wheelhouse copied by Ansible, as an air-gapped site would.

Needs root (bridge, overlays, nspawn) and Debian's debootstrap and systemd-container (installed
with apt-get when missing). See docs/deploying.md.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

try:
    import journal_checks  # lab/journal_checks.py: run as a script, this file's directory is on sys.path
except ModuleNotFoundError:  # imported as lab.lab (integration/docker/images.py takes apt_mirror from here)
    from lab import journal_checks

REPO = Path(__file__).resolve().parent.parent
LAB = Path(os.environ.get("LOGFERRY_LAB_DIR", REPO / ".lab")).absolute()
CACHE = Path(os.environ.get("LOGFERRY_CACHE", Path.home() / ".cache" / "logferry")) / "lab"
VENV_BIN = Path(sys.executable).parent

SUITE = "bookworm"
# What the hosts need: systemd to boot, ssh + python3 for Ansible, the venv module for logferry's
# virtualenv, python3-apt so Ansible's package module can see what is installed (offline).
PACKAGES = ["systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "python3-apt",
            "openssh-server", "iproute2", "procps"]
IMAGE_RECIPE = 2  # bump when customize_image() changes, so a new image is built

BRIDGE = "lfbr0"
GATEWAY = "10.77.0.1"
PREFIXLEN = 24
HOSTS = {"lab-host1": "10.77.0.11", "lab-host2": "10.77.0.12", "lab-host3": "10.77.0.13"}
TRANSFER_HOSTS = ["lab-host3"]
# This host's agent may read every file (logagent_read_any_file: CAP_DAC_READ_SEARCH); the others
# read through the adm group only. It also ships a root-only file, to prove the capability works.
# LOGFERRY_LAB_READ_ANY=0 leaves this out (every host reads through the adm group only).
READ_ANY_HOSTS = [] if os.environ.get("LOGFERRY_LAB_READ_ANY") == "0" else ["lab-host2"]
# The lab's stack is the secured one (TLS and credentials on etcd, Kafka and Elasticsearch; see
# docs/security.md): every host's daemons run with certificates and secrets delivered by the roles.
# LOGFERRY_LAB_SECURE=0 runs the plain stack instead (no TLS, no credentials).
SECURE = os.environ.get("LOGFERRY_LAB_SECURE", "1") != "0"
CGROUP_GROUP = "logferry-lab"
CGROUP_HIERARCHIES = ("systemd", "unified")

TOPIC_APP = "lab-app"
TOPIC_AUDIT = "lab-audit"
LINES_PER_HOST = 5
ES_WAIT_S = 120


def log(msg: str) -> None:
    print(f"[lab] {msg}", flush=True)


class LabError(RuntimeError):
    pass


def run(argv: list[str], *, check: bool = True, capture: bool = False, timeout: float | None = None,
        input_text: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(argv, text=True, capture_output=capture, timeout=timeout, input=input_text, env=env)
    if check and res.returncode != 0:
        detail = f"\n{res.stdout or ''}{res.stderr or ''}" if capture else ""
        raise LabError(f"{shlex.join(argv)} exited {res.returncode}{detail}")
    return res


# --------------------------------------------------------------------------- timing
@dataclass
class Timer:
    phases: list[tuple[str, float]] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)

    @contextlib.contextmanager
    def phase(self, name: str):  # type: ignore[no-untyped-def]
        start = time.monotonic()
        log(f"== {name}")
        try:
            yield
        finally:
            took = time.monotonic() - start
            self.phases.append((name, took))
            log(f"   {name}: {took:.1f}s")

    def summary(self) -> str:
        lines = [f"  {name:<44} {took:7.1f}s" for name, took in self.phases]
        lines.append(f"  {'total':<44} {time.monotonic() - self.t0:7.1f}s")
        return "\n".join(lines)


# --------------------------------------------------------------------------- prerequisites
def need_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (bridge, overlay mounts, systemd-nspawn)")


def ensure_tools() -> None:
    missing = [pkg for tool, pkg in (("debootstrap", "debootstrap"), ("systemd-nspawn", "systemd-container"),
                                     ("nsenter", "util-linux"), ("ssh", "openssh-client"))
               if shutil.which(tool) is None]
    if missing:
        log(f"installing {', '.join(missing)} with apt-get")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env)


def apt_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 .sources or one-line .list files)."""
    if os.environ.get("LOGFERRY_LAB_MIRROR"):
        return os.environ["LOGFERRY_LAB_MIRROR"]
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for f in files:
        if not f.is_file():
            continue
        text = f.read_text(errors="replace")
        if f.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = {}
                for line in stanza.splitlines():
                    if ":" in line and not line.startswith(("#", " ")):
                        k, _, v = line.partition(":")
                        fields[k.strip().lower()] = v.split()
                if "deb" in fields.get("types", []) and SUITE in fields.get("suites", []):
                    for uri in fields.get("uris", []):
                        return uri
        else:
            for line in text.splitlines():
                parts = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
                if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                    return parts[1]
    raise LabError(f"no Debian {SUITE} mirror in /etc/apt/sources*; set LOGFERRY_LAB_MIRROR")


# --------------------------------------------------------------------------- image
def image_dir() -> Path:
    key = hashlib.sha256(json.dumps([SUITE, PACKAGES, IMAGE_RECIPE]).encode()).hexdigest()[:10]
    return CACHE / f"rootfs-{SUITE}-{key}"


def ensure_image() -> Path:
    img = image_dir()
    stamp = img.with_name(img.name + ".ok")
    if stamp.exists() and img.is_dir():
        log(f"image: cached {img}")
        return img
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = img.with_name(img.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(img, ignore_errors=True)
    mirror = apt_mirror()
    log(f"image: debootstrap {SUITE} from {mirror} (about a minute; cached afterwards)")
    with open(CACHE / "debootstrap.log", "w") as out:
        res = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
                              str(tmp), mirror], stdout=out, stderr=subprocess.STDOUT)
    if res.returncode != 0:
        raise LabError(f"debootstrap failed; see {CACHE / 'debootstrap.log'}")
    customize_image(tmp)
    tmp.rename(img)
    stamp.write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
    return img


def customize_image(root: Path) -> None:
    """What every lab host shares: networkd, ssh, nothing that would try to reach the Internet."""
    sysctl = ["systemctl", f"--root={root}"]
    run([*sysctl, "enable", "systemd-networkd.service", "systemd-networkd-wait-online.service", "ssh.service"],
        capture=True)
    # Timers that would try the network (apt) or do nothing useful in a container.
    for unit in ("apt-daily.timer", "apt-daily-upgrade.timer", "fstrim.timer", "e2scrub_all.timer"):
        run([*sysctl, "mask", unit], capture=True, check=False)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # every host gets its own keys
    (root / "etc/machine-id").write_text("")
    (root / "etc/apt/apt.conf.d/99lab-no-recommends").write_text('APT::Install-Recommends "false";\n')
    # Root logs in with the lab's key only.
    (root / "etc/ssh/sshd_config.d").mkdir(exist_ok=True)
    (root / "etc/ssh/sshd_config.d/lab.conf").write_text("PermitRootLogin prohibit-password\nUseDNS no\n")
    run(["chroot", str(root), "apt-get", "clean"], check=False)


# --------------------------------------------------------------------------- network
def ensure_bridge() -> None:
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        log(f"bridge {BRIDGE} exists")
    else:
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        log(f"bridge {BRIDGE} created")
    addrs = run(["ip", "-4", "-o", "addr", "show", "dev", BRIDGE], capture=True).stdout
    if f"{GATEWAY}/{PREFIXLEN}" not in addrs:
        run(["ip", "addr", "add", f"{GATEWAY}/{PREFIXLEN}", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])


def delete_bridge() -> None:
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        run(["ip", "link", "del", BRIDGE])
        log(f"bridge {BRIDGE} deleted")


# --------------------------------------------------------------------------- state
STATE = LAB / "state.json"


def load_state() -> dict:
    if STATE.exists():
        return json.loads(STATE.read_text())
    return {"hosts": {}}


def save_state(state: dict) -> None:
    LAB.mkdir(parents=True, exist_ok=True)
    tmp = STATE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(STATE)


def proc_start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def same_process(pid: int | None, start: int | None) -> bool:
    """True when `pid` still is the process we started (PIDs are reused)."""
    return bool(pid) and start is not None and proc_start_time(pid) == start  # type: ignore[arg-type]


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(d.name))
    return kids


def descendants(pid: int) -> list[int]:
    kids = children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def container_init(wrapper_pid: int) -> int | None:
    """PID (on this machine) of the container's systemd: a descendant that is PID 1 inside."""
    for pid in descendants(wrapper_pid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        m = re.search(r"^NSpid:\s+(.*)$", status, re.M)
        if m and len(m.group(1).split()) > 1 and m.group(1).split()[-1] == "1":
            return pid
    return None


# --------------------------------------------------------------------------- hosts
@dataclass
class Host:
    name: str
    ip: str

    @property
    def dir(self) -> Path:
        return LAB / "hosts" / self.name

    @property
    def root(self) -> Path:
        return self.dir / "root"

    def leader(self, state: dict) -> int | None:
        rec = state["hosts"].get(self.name)
        if not rec or not same_process(rec["wrapper_pid"], rec["wrapper_start"]):
            return None
        return container_init(rec["wrapper_pid"])

    def nsenter(self, state: dict, argv: list[str], *, check: bool = True, capture: bool = True,
                timeout: float = 60, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        pid = self.leader(state)
        if pid is None:
            raise LabError(f"{self.name} is not running")
        return run(["nsenter", "-t", str(pid), "-a", "--", *argv], check=check, capture=capture,
                   timeout=timeout, input_text=input_text)


def ssh_key() -> Path:
    key = LAB / "ssh" / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "logferry-lab", "-f", str(key)])
    return key


def mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


#: the agent unit's drop-in on the lab's nspawn hosts (see prepare_host)
LAB_NSPAWN_DROPIN = ("# written by lab/lab.py: nspawn's boot_id and the unit's own /proc (docs/journal.md)\n"
                     "[Service]\nProtectProc=default\nProcSubset=all\nProtectKernelTunables=no\n"
                     "ProtectControlGroups=no\n")


def prepare_host(img: Path, host: Host, pubkey: str) -> None:
    for d in ("upper", "work", "root"):
        (host.dir / d).mkdir(parents=True, exist_ok=True)
    if not mounted(host.root):
        run(["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={img},upperdir={host.dir / 'upper'},workdir={host.dir / 'work'}", str(host.root)])
    r = host.root
    (r / "etc/hostname").write_text(host.name + "\n")
    (r / "etc/hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{host.name}\n"
                                 + "".join(f"{ip}\t{n}\n" for n, ip in HOSTS.items()))
    (r / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
    (r / "root/.ssh").mkdir(mode=0o700, exist_ok=True)
    (r / "root/.ssh/authorized_keys").write_text(pubkey)
    os.chmod(r / "root/.ssh/authorized_keys", 0o600)
    if not (r / "etc/ssh/ssh_host_ed25519_key").exists():
        run(["ssh-keygen", "-q", "-A", "-f", str(r)])
    # The name sorts before the image's own 80-container-host0.network, so this one applies.
    (r / "etc/systemd/network/10-host0.network").write_text(
        "[Match]\nName=host0\n\n[Network]\n"
        f"Address={host.ip}/{PREFIXLEN}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n")
    # systemd-nspawn fakes /proc/sys/kernel/random/boot_id for the container; the /proc that the
    # agent unit's ProtectProc=/ProtectKernelTunables=/ProtectControlGroups= mount for it shows the
    # machine's, and `journalctl --follow` then prints nothing (docs/journal.md, "Containers").
    # Relaxed for the lab's hosts only; a VM or a real host needs nothing of the kind.
    dropin = r / "etc/systemd/system/logagent.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "lab-nspawn.conf").write_text(LAB_NSPAWN_DROPIN)
    # The logs the lab ships: readable by the adm group (as Debian's /var/log), not by others.
    logdir = r / "var/log/lab"
    logdir.mkdir(exist_ok=True)
    os.chown(logdir, 0, 4)  # adm is gid 4 in Debian's base-passwd
    os.chmod(logdir, 0o2750)
    for name in ("app.log", "audit.log"):
        p = logdir / name
        p.touch()
        os.chown(p, 0, 4)
        os.chmod(p, 0o640)
    private = logdir / "private.log"  # root only: needs logagent_read_any_file
    private.touch()
    os.chown(private, 0, 0)
    os.chmod(private, 0o600)


def boot_host(host: Host, state: dict) -> None:
    rec = state["hosts"].get(host.name)
    if rec and same_process(rec["wrapper_pid"], rec["wrapper_start"]):
        log(f"{host.name}: already running")
        return
    cg_dirs = [f"/sys/fs/cgroup/{h}/{CGROUP_GROUP}/{host.name}" for h in CGROUP_HIERARCHIES
               if Path(f"/sys/fs/cgroup/{h}").is_dir()]
    nspawn = ["systemd-nspawn", "--quiet", "-D", str(host.root), "--boot", "--machine", host.name,
              "--register=no", "--keep-unit", f"--network-bridge={BRIDGE}", "--console=read-only",
              "--resolv-conf=off", "--timezone=off", "--link-journal=no"]
    # Each host starts from its own cgroup (else their systemd instances race over one), and is
    # started again when it exits with 133 (a reboot inside).
    script = "\n".join([
        "set -u",
        *[f"mkdir -p {d} && echo $$ > {d}/cgroup.procs" for d in cg_dirs],
        "while :; do",
        f"  {shlex.join(nspawn)}",
        "  rc=$?",
        '  echo "[lab] systemd-nspawn exited $rc"',
        "  [ $rc -eq 133 ] || exit $rc",
        "done",
    ])
    (host.dir / "boot.sh").write_text(script + "\n")
    with open(host.dir / "console.log", "ab") as console:
        proc = subprocess.Popen(["bash", str(host.dir / "boot.sh")], stdin=subprocess.DEVNULL, stdout=console,
                                stderr=subprocess.STDOUT, start_new_session=True)
    time.sleep(0.05)
    state["hosts"][host.name] = {"wrapper_pid": proc.pid, "wrapper_start": proc_start_time(proc.pid),
                                 "ip": host.ip, "cgroups": cg_dirs}
    save_state(state)


def wait_booted(host: Host, state: dict, timeout_s: float = 90) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if host.leader(state) is not None:
            break
        time.sleep(0.1)
    else:
        raise LabError(f"{host.name}: no container init after {timeout_s:.0f}s; see {host.dir / 'console.log'}")
    # Right after the container's init appears, systemctl may not reach it yet (empty answer).
    st = ""
    while st not in ("running", "degraded", "maintenance", "stopping") and time.monotonic() < deadline:
        left = max(5.0, deadline - time.monotonic())
        res = host.nsenter(state, ["systemctl", "is-system-running", "--wait"], check=False, timeout=left)
        st = res.stdout.strip()
        if st not in ("running", "degraded", "maintenance", "stopping"):
            time.sleep(0.2)
    if st != "running":
        failed = host.nsenter(state, ["systemctl", "--failed", "--no-legend", "--plain"], check=False).stdout
        log(f"{host.name}: system {st}; failed units: {failed.strip() or 'none'}")
    return st


def wait_ssh(host: Host, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host.ip, 22), timeout=1) as s:
            if s.recv(4).startswith(b"SSH"):
                return
        time.sleep(0.2)
    raise LabError(f"{host.name}: ssh on {host.ip}:22 did not answer within {timeout_s:.0f}s")


def stop_host(host: Host, state: dict) -> None:
    rec = state["hosts"].get(host.name)
    if not rec:
        return
    pid, start = rec["wrapper_pid"], rec["wrapper_start"]
    if same_process(pid, start):
        with contextlib.suppress(LabError, subprocess.TimeoutExpired):
            host.nsenter(state, ["systemctl", "poweroff", "--no-block"], check=False, timeout=10)
        deadline = time.monotonic() + 40
        while same_process(pid, start) and time.monotonic() < deadline:
            time.sleep(0.2)
        if same_process(pid, start):
            log(f"{host.name}: did not power off; terminating systemd-nspawn")
            for p in descendants(pid):
                with contextlib.suppress(OSError):
                    if Path(f"/proc/{p}/comm").read_text().strip() == "systemd-nspawn":
                        os.kill(p, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while same_process(pid, start) and time.monotonic() < deadline:
                time.sleep(0.2)
        if same_process(pid, start):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        log(f"{host.name}: powered off")
    # Whatever is still in the host's cgroups is the lab's by construction.
    for d in rec.get("cgroups", []):
        kill_cgroup(Path(d))
    if mounted(host.root):
        res = run(["umount", str(host.root)], check=False, capture=True)
        if res.returncode != 0:
            time.sleep(1)
            run(["umount", str(host.root)])
    if not mounted(host.root):
        shutil.rmtree(host.dir, ignore_errors=True)
    del state["hosts"][host.name]
    save_state(state)


def cgroup_pids(d: Path) -> list[int]:
    pids: list[int] = []
    if not d.is_dir():
        return pids
    for procs in d.rglob("cgroup.procs"):
        with contextlib.suppress(OSError):
            pids += [int(x) for x in procs.read_text().split()]
    return pids


def kill_cgroup(d: Path) -> None:
    for _ in range(50):
        pids = cgroup_pids(d)
        if not pids:
            break
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        time.sleep(0.1)
    if d.is_dir():
        for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                sub.rmdir()
        with contextlib.suppress(OSError):
            d.rmdir()
    with contextlib.suppress(OSError):
        d.parent.rmdir()  # the lab's group, once empty


# --------------------------------------------------------------------------- stack
STACK_DIR = LAB / "stack"


def stack_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "integration.stack", "--workdir", str(STACK_DIR), *args]


def stack_running() -> bool:
    res = subprocess.run(stack_cmd("status"), cwd=REPO, capture_output=True, text=True)
    return res.returncode == 0


def start_stack() -> subprocess.Popen[bytes] | None:
    if (STACK_DIR / "stack.json").exists() and stack_running():
        env = json.loads((STACK_DIR / "stack.env.json").read_text())
        secure = env.get("LOGFERRY_SECURE") == "1"
        if GATEWAY in env["ETCD_ENDPOINTS"] and secure == SECURE:
            log(f"stack: already running on the bridge ({'secured' if secure else 'plain'})")
            return None
        raise LabError(f"a stack in {STACK_DIR} runs on another address or with{'' if secure else 'out'} "
                       "--secure; `make lab-down` first")
    STACK_DIR.mkdir(parents=True, exist_ok=True)
    log(f"stack: starting on {GATEWAY} in the background (log: {LAB / 'stack-up.log'})")
    with open(LAB / "stack-up.log", "wb") as out:
        argv = stack_cmd("up", "--bind", GATEWAY, *(["--secure"] if SECURE else []))
        return subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


def wait_stack(proc: subprocess.Popen[bytes] | None) -> dict[str, str]:
    if proc is not None:
        rc = proc.wait()
        if rc != 0:
            raise LabError(f"the stack did not start (exit {rc}); see {LAB / 'stack-up.log'}:\n"
                           + (LAB / "stack-up.log").read_text()[-3000:])
    return json.loads((STACK_DIR / "stack.env.json").read_text())


def stop_stack() -> None:
    if (STACK_DIR / "stack.json").exists():
        subprocess.run(stack_cmd("down"), cwd=REPO, check=False)


# --------------------------------------------------------------------------- security
LAB_SECRETS = "lab-secrets.json"  # in the stack's security/ directory (0700), file 0600


def etcd_user(name: str) -> str:
    """The etcd user of the agent on lab host `name`: one per host, as docs/security.md says."""
    return f"agent-{name}"


def lab_security(env: dict[str, str]) -> dict:
    """The lab's own etcd users on the secured stack, made here (not by the stack), once per stack.

    The stack makes ``root``, ``transfer`` and an ``agent`` for 127.0.0.1. A lab host's agent
    needs a role naming *its* keys, so each host gets a user ``agent-<host>`` whose role may read
    ``/logferry/agents/<ip>/collect`` and write ``/logferry/agents/<ip>/status``, and nothing else,
    with a client certificate of its own (CN = the user) from the stack's CA. The console gets a
    ``console`` user that may read ``/logferry/`` (its host list), and a certificate too.
    Passwords are random; they and the paths are kept in ``security/lab-secrets.json`` (0600).
    """
    sys.path.insert(0, str(REPO))
    from integration.stack import security

    m = security.Material.load(STACK_DIR)
    f = m.dir / LAB_SECRETS
    if f.exists():
        return json.loads(f.read_text())
    endpoint = env["ETCD_ENDPOINTS"].split(",")[0].split("://")[-1]
    users: dict[str, dict[str, str]] = {}
    grants: dict[str, list[tuple[str, str, bool]]] = {}
    for name, ip in HOSTS.items():
        user = etcd_user(name)
        grants[user] = [("read", f"/logferry/agents/{ip}/collect", False),
                        ("readwrite", f"/logferry/agents/{ip}/status", False)]
    grants["console"] = [("read", "/logferry/", True)]
    for user, perms in grants.items():
        pw = secrets.token_urlsafe(18)
        security.etcdctl(m, endpoint, "user", "add", f"{user}:{pw}", "--interactive=false")
        security.etcdctl(m, endpoint, "role", "add", user)
        for perm, key, prefix in perms:
            security.etcdctl(m, endpoint, "role", "grant-permission", user, perm, key,
                             *(["--prefix=true"] if prefix else []))
        security.etcdctl(m, endpoint, "user", "grant-role", user, user)
        security._make_cert(m.certs, f"etcd-{user}", user, client=True, server=False)
        users[user] = {"password": pw, "cert": m.cert(f"etcd-{user}"), "key": m.key(f"etcd-{user}")}
    sec = {"etcd_users": users, "ca": m.cert("ca"), "passwords": m.passwords, "es_api_key": m.es_api_key,
           "root_cert": m.cert("etcd-root"), "root_key": m.key("etcd-root"),
           "transfer_cert": m.cert("etcd-transfer"), "transfer_key": m.key("etcd-transfer")}
    f.write_text(json.dumps(sec, indent=2))
    f.chmod(0o600)
    log(f"etcd: made users {', '.join(users)} (one role each, least privilege) with client certificates")
    return sec


def all_secrets(sec: dict) -> list[str]:
    """Every password and key of the lab: none may appear in an INI, a journal or Ansible's output."""
    return sorted({*sec["passwords"].values(), sec["es_api_key"],
                   *(u["password"] for u in sec["etcd_users"].values())})


def secure_vars(sec: dict) -> tuple[dict, dict[str, dict]]:
    """Inventory variables of the secured lab: group_vars/all, and each host's own etcd user.

    PEM contents and secrets go in as the roles' variables (a real site keeps them in
    ansible-vault); the roles turn them into files under /etc/logferry/tls and systemd credentials.
    """
    pw = sec["passwords"]
    ca_on_host = "/etc/logferry/tls/ca.pem"

    def pem(path: str) -> str:
        return Path(path).read_text()

    all_vars = {
        "logferry_tls_ca_pem": pem(sec["ca"]),
        "logferry_etcd_ca_file": ca_on_host,
        "logferry_kafka_security_protocol": "SASL_SSL",
        "logferry_kafka_sasl_mechanism": "SCRAM-SHA-512",
        "logferry_kafka_ssl_ca_location": ca_on_host,
        # the seeding (logctl on this machine) writes as etcd's root
        "logferry_seed_etcd_user": "root",
        "logferry_seed_etcd_password": pw["etcd:root"],
        "logferry_seed_etcd_cert_file": sec["root_cert"],
        "logferry_seed_etcd_key_file": sec["root_key"],
        "logferry_seed_etcd_ca_file": sec["ca"],
        "logagent_kafka_sasl_username": "agent",
        "logagent_kafka_sasl_password": pw["kafka:agent"],
        "logtransfer_etcd_user": "transfer",
        "logtransfer_etcd_password": pw["etcd:transfer"],
        "logtransfer_etcd_client_cert_pem": pem(sec["transfer_cert"]),
        "logtransfer_etcd_client_key_pem": pem(sec["transfer_key"]),
        "logtransfer_kafka_sasl_username": "transfer",
        "logtransfer_kafka_sasl_password": pw["kafka:transfer"],
        "logtransfer_es_username": "transfer",
        "logtransfer_es_password": pw["es:transfer"],
        "logtransfer_es_ca_file": ca_on_host,
        "logconsole_etcd_user": "console",
        "logconsole_etcd_password": sec["etcd_users"]["console"]["password"],
        "logconsole_etcd_client_cert_pem": pem(sec["etcd_users"]["console"]["cert"]),
        "logconsole_etcd_client_key_pem": pem(sec["etcd_users"]["console"]["key"]),
        "logconsole_es_api_key": sec["es_api_key"],
        "logconsole_es_ca_file": ca_on_host,
        "logconsole_kafka_sasl_username": "transfer",
        "logconsole_kafka_sasl_password": pw["kafka:transfer"],
    }
    host_vars = {}
    for name in HOSTS:
        u = sec["etcd_users"][etcd_user(name)]
        host_vars[name] = {"logagent_etcd_user": etcd_user(name), "logagent_etcd_password": u["password"],
                           "logagent_etcd_client_cert_pem": pem(u["cert"]),
                           "logagent_etcd_client_key_pem": pem(u["key"])}
    return all_vars, host_vars


# --------------------------------------------------------------------------- ansible
INVENTORY = LAB / "inventory"


def host_inputs(name: str) -> list[dict]:
    inputs: list[dict] = [{"path": "/var/log/lab/app.log", "topic": TOPIC_APP, "fields": {"lab": name}}]
    if name in READ_ANY_HOSTS:
        inputs.append({"path": "/var/log/lab/private.log", "topic": TOPIC_APP})
    if name in TRANSFER_HOSTS:
        inputs.append({"path": "/var/log/lab/audit*.log", "topic": TOPIC_AUDIT, "start_at": "beginning"})
    return inputs


def checked_files(name: str) -> list[str]:
    """The files the end-to-end check appends to on host `name` (all go to TOPIC_APP)."""
    return ["/var/log/lab/app.log"] + (["/var/log/lab/private.log"] if name in READ_ANY_HOSTS else [])


def write_inventory(env: dict[str, str], key: Path, sec: dict | None) -> Path:
    """The lab's inventory: the same groups as inventory/example.ini, the stack's addresses
    (and, on the secured stack, its certificates and secrets: the files are 0600)."""
    INVENTORY.mkdir(parents=True, exist_ok=True)
    INVENTORY.chmod(0o700)
    (INVENTORY / "group_vars").mkdir(parents=True, exist_ok=True)
    (INVENTORY / "host_vars").mkdir(parents=True, exist_ok=True)
    hosts_ini = ["# written by lab/lab.py: the nspawn lab (make lab)", "[logagent]"]
    hosts_ini += [f"{n} ansible_host={ip}" for n, ip in HOSTS.items()]
    hosts_ini += ["", "[logtransfer]", *TRANSFER_HOSTS, "", "[logconsole]", *TRANSFER_HOSTS, "",
                  "# the lab's etcd/Kafka/Elasticsearch are the project's stack on this machine",
                  "[etcd]", "", "[kafka]", "", "[elasticsearch]", "",
                  "[lab:children]", "logagent", "logtransfer", "logconsole", ""]
    (INVENTORY / "hosts.ini").write_text("\n".join(hosts_ini))
    lab_vars = {
        "ansible_user": "root",
        "ansible_python_interpreter": "/usr/bin/python3",
        "ansible_ssh_private_key_file": str(key),
    }
    (INVENTORY / "group_vars" / "lab.yml").write_text(json.dumps(lab_vars, indent=2) + "\n")
    all_vars = {
        "logferry_etcd_endpoints": env["ETCD_ENDPOINTS"].split(","),
        "logferry_kafka_bootstrap_servers": env["KAFKA_BOOTSTRAP_SERVERS"].split(","),
        "logferry_es_hosts": env["ES_URLS"].split(","),
        "logferry_transfer_config": {"topics": [TOPIC_APP, TOPIC_AUDIT, journal_checks.TOPIC],
                                     "index": "logferry-{topic}-{yyyy.MM.dd}",
                                     "flush_interval_s": 1.0},
        "logtransfer_id": "lab-transfer",
    }
    sec_all, sec_hosts = secure_vars(sec) if sec else ({}, {})
    write_private(INVENTORY / "group_vars" / "all.yml", json.dumps(all_vars | sec_all, indent=2) + "\n")
    for name in HOSTS:
        host_vars: dict = {"logagent_inputs": host_inputs(name)} | sec_hosts.get(name, {})
        if name in READ_ANY_HOSTS:
            host_vars["logagent_read_any_file"] = True
        write_private(INVENTORY / "host_vars" / f"{name}.yml", json.dumps(host_vars, indent=2) + "\n")
    return INVENTORY / "hosts.ini"


def write_private(path: Path, text: str) -> None:
    """A file only root reads (the inventory holds the secured stack's secrets)."""
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)


def ansible_env() -> dict[str, str]:
    cp = LAB / "ssh" / "cp"
    cp.mkdir(parents=True, exist_ok=True)
    return dict(
        os.environ,
        PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}",
        ANSIBLE_CONFIG=str(REPO / "ansible" / "ansible.cfg"),
        ANSIBLE_HOST_KEY_CHECKING="False",
        ANSIBLE_SSH_ARGS="-C -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=/dev/null "
                         "-o StrictHostKeyChecking=no -o LogLevel=ERROR",
        ANSIBLE_SSH_CONTROL_PATH_DIR=str(cp),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="False",
    )


RECAP_RE = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def run_playbook(inventory: Path, label: str) -> dict[str, dict[str, int]]:
    logfile = LAB / f"ansible-{label}.log"
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(REPO / "ansible" / "site.yml")]
    if os.environ.get("LOGFERRY_LAB_WHEELHOUSE"):  # try another build of logferry
        argv += ["-e", f"logferry_common_wheelhouse_src={Path(os.environ['LOGFERRY_LAB_WHEELHOUSE']).absolute()}"]
    log(f"{shlex.join(argv)}  (log: {logfile})")
    with open(logfile, "w") as out:
        proc = subprocess.Popen(argv, cwd=REPO / "ansible", env=ansible_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        text = []
        t0 = time.monotonic()
        for line in proc.stdout:
            out.write(f"[{time.monotonic() - t0:6.1f}s] {line}")
            out.flush()
            text.append(line)
            if line.startswith(("TASK", "PLAY", "RUNNING HANDLER")) or re.match(
                    r"^(changed|fatal|failed|unreachable|\S+\s+: ok=)", line) or "ERROR" in line:
                sys.stdout.write("    " + line)
                sys.stdout.flush()
        rc = proc.wait()
    recap = {m.group(1): {"ok": int(m.group(2)), "changed": int(m.group(3)), "unreachable": int(m.group(4)),
                          "failed": int(m.group(5))} for m in RECAP_RE.finditer("".join(text))}
    if rc != 0:
        raise LabError(f"ansible-playbook ({label}) exited {rc}; see {logfile}")
    return recap


def close_ssh_masters() -> None:
    cp = LAB / "ssh" / "cp"
    if not cp.is_dir():
        return
    for sock in cp.iterdir():
        subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "lab"], capture_output=True,
                       timeout=10, check=False)
        with contextlib.suppress(OSError):
            sock.unlink()


# --------------------------------------------------------------------------- checks
def secured(env: dict[str, str]) -> bool:
    return env.get("LOGFERRY_SECURE") == "1"


def logctl_ini(env: dict[str, str]) -> Path:
    """logctl's settings for the secured stack: etcd as root over TLS, ES through the proxy (0600)."""
    f = STACK_DIR / "security" / "lab-logctl.ini"
    if not f.exists():
        write_private(f, "\n".join([
            "[etcd]", f"endpoints = {env['ETCD_ENDPOINTS']}", "user = root", f"password = {env['ETCD_ROOT_PASSWORD']}",
            f"ca_file = {env['TLS_CA_FILE']}", f"cert_file = {env['ETCD_ROOT_CERT']}",
            f"key_file = {env['ETCD_ROOT_KEY']}", "", "[transfer]", f"es_hosts = {env['ES_URL']}",
            f"es_ca_file = {env['TLS_CA_FILE']}", f"es_api_key = {env['ES_API_KEY']}", ""]))
    return f


def logctl(env: dict[str, str], *args: str, check: bool = True,
           input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    where = (["--config", str(logctl_ini(env))] if secured(env)
             else ["--etcd", env["ETCD_ENDPOINTS"], "--es", env["ES_URL"]])
    return run([str(VENV_BIN / "logctl"), *where, *args], capture=True, check=check, timeout=60,
               input_text=input_text)


def es_post(env: dict[str, str], path: str, body: dict) -> dict:
    headers = {"Content-Type": "application/json"}
    ctx = None
    if secured(env):  # through the TLS proxy, with the API key (the console's credential)
        ctx = ssl.create_default_context(cafile=env["TLS_CA_FILE"])
        headers["Authorization"] = f"ApiKey {env['ES_API_KEY']}"
    req = urllib.request.Request(env["ES_URL"] + path, data=json.dumps(body).encode(), method="POST",
                                 headers=headers)
    with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
        return json.loads(resp.read())


def check_units(state: dict) -> list[str]:
    problems = []
    for name, ip in HOSTS.items():
        host = Host(name, ip)
        units = ["logagent"] + (["logtransfer", "logconsole"] if name in TRANSFER_HOSTS else [])
        for unit in units:
            active = host.nsenter(state, ["systemctl", "is-active", unit], check=False).stdout.strip()
            status = host.nsenter(state, ["systemctl", "status", unit, "--no-pager", "--lines=0"],
                                  check=False).stdout
            lines = [ln.strip() for ln in status.splitlines() if ln.strip()]
            log(f"{name}: systemctl status {unit}: {active}")
            for ln in lines[:4]:
                print(f"      {ln}")
            verify = host.nsenter(state, ["systemd-analyze", "verify", f"/etc/systemd/system/{unit}.service"],
                                  check=False)
            if verify.returncode != 0 or (verify.stdout + verify.stderr).strip():
                problems.append(f"{name}: systemd-analyze verify {unit}: {(verify.stdout + verify.stderr).strip()}")
            score = host.nsenter(state, ["systemd-analyze", "security", "--no-pager", unit], check=False).stdout
            m = re.search(r"Overall exposure level for \S+: ([0-9.]+ \w+)", score)
            print(f"      systemd-analyze verify: {'clean' if verify.returncode == 0 else 'FAILED'}; "
                  f"security (live): {m.group(1) if m else '?'}")
            if active != "active":
                problems.append(f"{name}: {unit} is {active}")
                journal = host.nsenter(state, ["journalctl", "-u", unit, "--no-pager", "-n", "20"],
                                       check=False).stdout
                print(journal)
    return problems


def check_collect_lists(env: dict[str, str]) -> list[str]:
    sys.path.insert(0, str(REPO))
    from logferry.schema import dump_collect_list, parse_collect_list

    problems = []
    for name, ip in HOSTS.items():
        res = logctl(env, "--json", "collect", "get", ip, check=False)
        if res.returncode != 0:
            problems.append(f"{name}: no collect list in etcd under {ip}: {res.stderr.strip()}")
            continue
        got = json.loads(res.stdout)
        # site.yml adds the default journal entry to each host's own inputs (logferry_seed_journal)
        want = dump_collect_list(parse_collect_list(json.dumps([*host_inputs(name), journal_checks.default_input()])))
        have = dump_collect_list(parse_collect_list(json.dumps(got["value"])))
        ok = want == have
        log(f"{name}: {got['key']} (revision {got['mod_revision']}): "
            f"{len(got['value'])} input(s), {'as in the inventory' if ok else 'DIFFERS from the inventory'}")
        if not ok:
            problems.append(f"{name}: etcd holds {have}, the inventory says {want}")
    return problems


def check_restart(state: dict) -> list[str]:
    """kill -9 an agent: systemd starts it again (Restart=on-failure, RestartSec=5s)."""
    name = "lab-host1"
    host = Host(name, HOSTS[name])
    # Forget earlier starts, so repeated checks stay below StartLimitBurst.
    host.nsenter(state, ["systemctl", "reset-failed", "logagent"], check=False)
    pid = host.nsenter(state, ["systemctl", "show", "-P", "MainPID", "logagent"]).stdout.strip()
    host.nsenter(state, ["kill", "-9", pid])
    started = time.monotonic()
    while time.monotonic() - started < 30:
        time.sleep(0.5)
        now = host.nsenter(state, ["systemctl", "show", "-P", "MainPID", "logagent"]).stdout.strip()
        active = host.nsenter(state, ["systemctl", "is-active", "logagent"], check=False).stdout.strip()
        if active == "active" and now not in ("0", pid):
            n = host.nsenter(state, ["systemctl", "show", "-P", "NRestarts", "logagent"]).stdout.strip()
            log(f"{name}: kill -9 logagent (pid {pid}): restarted by systemd as pid {now} after "
                f"{time.monotonic() - started:.1f}s (NRestarts={n})")
            return []
    return [f"{name}: logagent not restarted within 30s after kill -9"]


def check_lines_in_es(env: dict[str, str], state: dict) -> list[str]:
    run_id = uuid.uuid4().hex[:10]
    expected = {}
    for name, ip in HOSTS.items():
        for path in checked_files(name):
            lines = "".join(f"lab-check {run_id} {name} {path} line {i}\n" for i in range(1, LINES_PER_HOST + 1))
            Host(name, ip).nsenter(state, ["sh", "-c", f"cat >> {path}"], input_text=lines)
        expected[name] = LINES_PER_HOST * len(checked_files(name))
    log(f"appended {LINES_PER_HOST} lines tagged {run_id} to each checked file: "
        + ", ".join(f"{n}: {' '.join(checked_files(n))}" for n in HOSTS))
    pending = dict(HOSTS)
    counts: dict[str, int] = {}
    started = time.monotonic()
    while pending and time.monotonic() - started < ES_WAIT_S:
        for name, ip in list(pending.items()):
            query = {"query": {"bool": {"filter": [{"match_phrase": {"message": run_id}},
                                                   {"match_phrase": {"host.ip": ip}}]}}}
            try:
                counts[name] = es_post(env, f"/logferry-{TOPIC_APP}-*/_count?ignore_unavailable=true", query)["count"]
            except OSError:
                counts[name] = 0
            if counts[name] >= expected[name]:
                log(f"{name}: {counts[name]} lines in Elasticsearch with host.ip {ip} "
                    f"after {time.monotonic() - started:.1f}s")
                del pending[name]
        if pending:
            time.sleep(1)
    problems = [f"{name}: {counts.get(name, 0)} of {expected[name]} lines in Elasticsearch after {ES_WAIT_S}s"
                for name in pending]
    for name, ip in pending.items():
        journal = Host(name, ip).nsenter(state, ["journalctl", "-u", "logagent", "--no-pager", "-n", "8",
                                                 "-o", "cat"], check=False).stdout
        log(f"{name}: lines missing; the agent's last log lines:\n{textblock(journal)}")
    problems += [f"{name}: {counts[name]} lines in Elasticsearch, {expected[name]} written (duplicates)"
                 for name in HOSTS if counts.get(name, 0) > expected[name]]
    if not problems:
        ip = HOSTS["lab-host1"]
        res = logctl(env, "search", "--host", ip, "-q", run_id, "-n", "3", check=False)
        log(f"logctl search --host {ip} -q {run_id} -n 3:")
        print(textblock(res.stdout or res.stderr))
    return problems


def textblock(text: str) -> str:
    return "\n".join("      " + ln for ln in text.rstrip().splitlines())


def check_console(state: dict) -> list[str]:
    """The console answers on its host (127.0.0.1:8430) and lists every lab host from etcd."""
    name = TRANSFER_HOSTS[0]
    probe = ("import json, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:8430/api/hosts', timeout=10); "
             "print(json.dumps([h['ip'] for h in json.load(r)['hosts'] if h['live']]))")
    deadline = time.monotonic() + 30
    while True:
        res = Host(name, HOSTS[name]).nsenter(state, ["python3", "-c", probe], check=False)
        if res.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    if res.returncode != 0:
        return [f"{name}: the console does not answer on 127.0.0.1:8430: {(res.stdout + res.stderr).strip()[-300:]}"]
    live = set(json.loads(res.stdout))
    log(f"{name}: logconsole answers on 127.0.0.1:8430; /api/hosts lists {len(live)} live agent(s): "
        f"{', '.join(sorted(live))}")
    missing = set(HOSTS.values()) - live
    return [f"{name}: the console does not list the live agents {sorted(missing)}"] if missing else []


def check_secrets(state: dict, sec: dict) -> list[str]:
    """Where the secrets are on each host: systemd credentials only (0600 root, handed to the unit
    by LoadCredential=), never in an INI, never in the journal; client keys 0640 root:logferry."""
    words = "\n".join(all_secrets(sec)) + "\n"
    problems = []
    for name, ip in HOSTS.items():
        host = Host(name, ip)
        before = len(problems)
        units = ["logagent"] + (["logtransfer", "logconsole"] if name in TRANSFER_HOSTS else [])
        # the INIs: no secret, but the *_file names of the credentials
        res = host.nsenter(state, ["sh", "-c", "grep -lF -f - /etc/logferry/*.ini"], input_text=words, check=False)
        if res.stdout.strip():
            problems.append(f"{name}: a secret is in {', '.join(res.stdout.split())}")
        # nor anywhere else on the host: Ansible's leftovers, temporary files, backups
        res = host.nsenter(state, ["sh", "-c", "grep -rlsF -f - --exclude-dir=credentials --exclude-dir=proc "
                                   "/etc /var /tmp /root /home /run /srv"], input_text=words, check=False,
                           timeout=120)
        if res.stdout.strip():
            problems.append(f"{name}: a secret is outside the credentials in {', '.join(res.stdout.split())}")
        refs = host.nsenter(state, ["sh", "-c", "grep -hE '^(password|sasl_password|es_password|api_key|es_api_key)"
                                    "(_file)? =' /etc/logferry/*.ini"], check=False).stdout.split("\n")
        refs = [r.strip() for r in refs if r.strip()]
        if not refs or any("_file = " not in r for r in refs):
            problems.append(f"{name}: the INIs should name credentials (*_file), they say {refs}")
        # the files: credentials 0600 root:root in 0700 directories; keys not world-readable
        ls = host.nsenter(state, ["sh", "-c", "stat -c '%a %U:%G %n' /etc/logferry/credentials "
                                  "/etc/logferry/credentials/* /etc/logferry/credentials/*/* /etc/logferry/tls/*"],
                          check=False).stdout
        files = [ln.split(" ", 2) for ln in ls.splitlines() if ln.strip()]
        creds = [f for f in files if "/credentials/" in f[2] and f[2].count("/") == 5]
        bad = [" ".join(f) for f in files
               if ("/credentials" in f[2] and (f[1] != "root:root" or f[0] not in ("600", "700")))
               or (f[2].endswith("-key.pem") and (f[0] != "640" or f[1] != "root:logferry"))
               or (int(f[0][-1]) & 4 and not f[2].endswith(".pem"))]
        if bad or not creds:
            problems.append(f"{name}: credentials/keys with the wrong owner or mode (or none): {bad or files}")
        # each running unit was handed its credentials by systemd (LoadCredential=): the same names
        # in its $CREDENTIALS_DIRECTORY, 0400 and owned by its user
        handed: list[str] = []
        for unit in units:
            probe = (f"pid=$(systemctl show -P MainPID {unit}); tr '\\0' '\\n' < /proc/$pid/environ | "
                     "sed -n 's/^CREDENTIALS_DIRECTORY=//p'; "
                     f"stat -c '%a %U %n' /run/credentials/{unit}.service/*; ls /etc/logferry/credentials/{unit}")
            out = host.nsenter(state, ["sh", "-c", probe], check=False).stdout.splitlines()
            given = sorted(ln.rsplit("/", 1)[-1] for ln in out if ln.startswith("400 logferry /run/credentials/"))
            stored = sorted(ln for ln in out[1:] if ln and " " not in ln)
            if not out or out[0] != f"/run/credentials/{unit}.service" or not given or given != stored:
                problems.append(f"{name}: {unit} was not handed its credentials by systemd: {out}")
            else:
                handed.append(f"{unit} {len(given)}")
        lines = 0
        # the journal: the units' lines, and everything else logged on the host (Ansible's module
        # invocations included: no_log keeps the secrets out of them)
        for what, argv in ((f"journalctl -u {' -u '.join(units)}", ["journalctl", "--no-pager", "-o", "cat",
                                                                     *[a for u in units for a in ("-u", u)]]),
                           ("the whole journal", ["journalctl", "--no-pager", "-o", "cat"])):
            text = host.nsenter(state, argv, check=False, timeout=120).stdout
            found = [w for w in all_secrets(sec) if w in text]
            if found:
                problems.append(f"{name}: {len(found)} secret(s) in {what}")
            elif what.startswith("journalctl -u"):
                lines = len(text.splitlines())
        if len(problems) > before:
            log(f"{name}: secrets: {'; '.join(problems[before:])}")
            continue
        if name == "lab-host2":  # what an agent's INI says instead (the evidence that security is on)
            ini = host.nsenter(state, ["sh", "-c", "grep -E '^(endpoints|user|password_file|ca_file|cert_file|key_file|"
                                       "bootstrap_servers|security_protocol|sasl_|ssl_)' /etc/logferry/logagent.ini"],
                               check=False).stdout
            log(f"{name}: /etc/logferry/logagent.ini:\n{textblock(ini)}")
        log(f"{name}: secrets: {len(creds)} credential file(s) 0600 root:root "
            f"({', '.join(sorted({f[2].split('/')[4] for f in creds}))}), in each unit's $CREDENTIALS_DIRECTORY "
            f"({', '.join(handed)}, 0400 its user); INIs name them ({len(refs)} *_file keys), "
            f"hold none of the {len(all_secrets(sec))} secrets; {lines} journal lines of {', '.join(units)} "
            f"; the whole journal and the host's other files hold none")
    ansible_logs = [LAB / "ansible-run1.log", LAB / "ansible-run2.log"]
    for f in ansible_logs:
        if f.exists() and any(w in f.read_text() for w in all_secrets(sec)):
            problems.append(f"a secret is in Ansible's output {f}")
    return problems


def check_least_privilege(env: dict[str, str], sec: dict) -> list[str]:
    """An agent's etcd user reads its own collect list and no other host's."""
    sys.path.insert(0, str(REPO))
    from logferry.etcd import EtcdClient, EtcdError

    (a, ip_a), (b, ip_b) = list(HOSTS.items())[:2]
    u = sec["etcd_users"][etcd_user(a)]
    with EtcdClient(env["ETCD_ENDPOINTS"].split(","), user=etcd_user(a), password=u["password"], ca_file=sec["ca"],
                    cert_file=u["cert"], key_file=u["key"], timeout_s=5) as c:
        own, _ = c.get(f"/logferry/agents/{ip_a}/collect")
        try:
            c.get(f"/logferry/agents/{ip_b}/collect")
            other = "read"
        except EtcdError as e:
            other = f"refused ({str(e).splitlines()[0][:80]})"
    log(f"etcd user {etcd_user(a)}: its own collect list {'read' if own else 'MISSING'}; {b}'s: {other}")
    problems = [] if own else [f"{etcd_user(a)} cannot read its own collect list"]
    if other == "read":
        problems.append(f"{etcd_user(a)} may read {b}'s collect list: its role is not least privilege")
    return problems


def check_all(state: dict, env: dict[str, str]) -> list[str]:
    problems = check_units(state)
    problems += check_console(state)
    problems += check_collect_lists(env)
    problems += check_restart(state)
    problems += check_lines_in_es(env, state)
    problems += journal_checks.check_journal(sys.modules[__name__], state, env)
    if secured(env):
        sec = lab_security(env)
        problems += check_least_privilege(env, sec)
        problems += check_secrets(state, sec)
    return problems


# --------------------------------------------------------------------------- commands
def cmd_up(args: argparse.Namespace) -> int:
    need_root()
    timer = Timer()
    LAB.mkdir(parents=True, exist_ok=True)
    wheelhouse = Path(os.environ.get("LOGFERRY_LAB_WHEELHOUSE", REPO / "wheelhouse"))
    if not wheelhouse.is_dir() or not list(wheelhouse.glob("logferry-*.whl")):
        raise LabError(f"no {wheelhouse}/ with a logferry wheel: run `make wheelhouse` (make lab does)")
    state = load_state()
    with timer.phase("tools and image (debootstrap, cached)"):
        ensure_tools()
        img = ensure_image()
    with timer.phase("bridge, stack start, hosts boot"):
        ensure_bridge()
        stack_proc = start_stack()
        key = ssh_key()
        pubkey = key.with_suffix(".pub").read_text()
        hosts = [Host(n, ip) for n, ip in HOSTS.items()]
        for h in hosts:
            if h.leader(state) is None:
                prepare_host(img, h, pubkey)
            boot_host(h, state)
        for h in hosts:
            st = wait_booted(h, state)
            wait_ssh(h)
            log(f"{h.name} ({h.ip}): systemd {st}, ssh up")
    with timer.phase("stack ready (etcd x3, ZooKeeper, Kafka, ES on 10.77.0.1)"):
        env = wait_stack(stack_proc)
        for k in ("ETCD_ENDPOINTS", "KAFKA_BOOTSTRAP_SERVERS", "ES_URL"):
            log(f"{k}={env[k]}")
        sec = lab_security(env) if secured(env) else None
    inventory = write_inventory(env, key, sec)
    with timer.phase("ansible-playbook site.yml (first run)"):
        recap1 = run_playbook(inventory, "run1")
    problems: list[str] = []
    with timer.phase("checks: units, etcd keys, kill -9 restart, lines in ES, secrets"):
        problems += check_all(state, env)
    with timer.phase("ansible-playbook site.yml (second run: idempotence)"):
        recap2 = run_playbook(inventory, "run2")
    for name, r in sorted(recap2.items()):
        log(f"second run {name}: ok={r['ok']} changed={r['changed']} failed={r['failed']}")
        if r["changed"] or r["failed"] or r["unreachable"]:
            problems.append(f"second run: {name} changed={r['changed']} failed={r['failed']} "
                            f"(see {LAB / 'ansible-run2.log'})")
    if set(recap2) != set(HOSTS):
        problems.append(f"second run recap names {sorted(recap2)}, expected {sorted(HOSTS)}")
    print()
    log("first run:  " + ", ".join(f"{n} changed={r['changed']}" for n, r in sorted(recap1.items())))
    log("second run: " + ", ".join(f"{n} changed={r['changed']}" for n, r in sorted(recap2.items())))
    log("timings:\n" + timer.summary())
    if problems:
        log("FAILED:\n" + "\n".join(f"  - {p}" for p in problems))
        return 1
    log("PASSED: logagent active on every host (and restarted after kill -9), collect lists in etcd under "
        "each host's IP, lines in Elasticsearch with each host's IP, the console answering on lab-host3 with every "
        "live agent, second run changed=0"
        + ("; all of it over TLS with credentials, the secrets only in systemd credentials" if SECURE else ""))
    log("the lab stays up: `make lab-status`, `.venv/bin/python lab/lab.py shell lab-host1`, `make lab-down`")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    need_root()
    state = load_state()
    env = json.loads((STACK_DIR / "stack.env.json").read_text())
    problems = check_all(state, env)
    if problems:
        log("FAILED:\n" + "\n".join(f"  - {p}" for p in problems))
        return 1
    log("PASSED")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    state = load_state()
    for name, ip in HOSTS.items():
        h = Host(name, ip)
        pid = h.leader(state) if state["hosts"].get(name) else None
        if pid is None:
            print(f"{name:<10} {ip:<12} down")
            continue
        st = h.nsenter(state, ["systemctl", "is-system-running"], check=False).stdout.strip()
        units = " ".join(f"{u}={h.nsenter(state, ['systemctl', 'is-active', u], check=False).stdout.strip()}"
                         for u in ("logagent", "logtransfer"))
        print(f"{name:<10} {ip:<12} up (init pid {pid}) system={st} {units}")
    if (STACK_DIR / "stack.json").exists():
        subprocess.run(stack_cmd("status"), cwd=REPO, check=False)
    return 0


def cmd_shell(args: argparse.Namespace) -> int:
    need_root()
    state = load_state()
    host = Host(args.host, HOSTS[args.host])
    pid = host.leader(state)
    if pid is None:
        raise LabError(f"{args.host} is not running")
    cmd = args.command or ["bash", "-l"]
    return subprocess.call(["nsenter", "-t", str(pid), "-a", "--", *cmd])


def lab_processes() -> list[str]:
    """Processes that still belong to the lab: in its cgroups, or running from its directories."""
    left = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cgroup = (d / "cgroup").read_text()
        except OSError:
            continue
        # Only the lab's own: another harness on this machine may run systemd-nspawn too.
        if CGROUP_GROUP in cgroup or str(LAB) in cmdline:
            left.append(f"{d.name}: {cmdline.strip()[:120]}")
    return left


def cmd_down(args: argparse.Namespace) -> int:
    need_root()
    started = time.monotonic()
    state = load_state()
    close_ssh_masters()
    for name, ip in HOSTS.items():
        stop_host(Host(name, ip), state)
    for name in list(state["hosts"]):  # hosts of an older lab layout
        stop_host(Host(name, state["hosts"][name].get("ip", "")), state)
    # Overlays of a lab whose state file was lost.
    hosts_dir = LAB / "hosts"
    if hosts_dir.is_dir():
        for d in hosts_dir.iterdir():
            if mounted(d / "root"):
                run(["umount", str(d / "root")], check=False)
        shutil.rmtree(hosts_dir, ignore_errors=True)
    stop_stack()
    delete_bridge()
    for h in CGROUP_HIERARCHIES:
        kill_cgroup(Path(f"/sys/fs/cgroup/{h}/{CGROUP_GROUP}"))
    with contextlib.suppress(FileNotFoundError):
        STATE.unlink()
    left = lab_processes()
    log(f"lab down in {time.monotonic() - started:.1f}s")
    if left:
        log("processes left:\n" + "\n".join(f"  {p}" for p in left))
        return 1
    log("no lab process left; the image stays cached in " + str(CACHE))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lab/lab.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up", help="image, bridge, hosts, stack, site.yml twice, checks (make lab)")
    sub.add_parser("check", help="run the checks again on a lab that is up")
    sub.add_parser("status", help="the hosts, their units, and the stack")
    sh = sub.add_parser("shell", help="a shell (or a command) inside a host, through nsenter")
    sh.add_argument("host", choices=sorted(HOSTS))
    sh.add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser("down", help="power off, unmount, stop the stack, delete the bridge (make lab-down)")
    args = ap.parse_args(argv)
    try:
        return {"up": cmd_up, "check": cmd_check, "status": cmd_status, "shell": cmd_shell,
                "down": cmd_down}[args.cmd](args)
    except LabError as e:
        log(f"error: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
