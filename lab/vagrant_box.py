#!/usr/bin/env python3
"""``make vagrant-box``: the image ``vagrant up --provider=docker`` boots, built on this machine.

No Vagrant box can be downloaded here, and KVM guests do not run (QEMU's TCG does, too slowly
for Elasticsearch and Kafka), so the lab's VMs are systemd containers under Vagrant's docker
provider. This builds their image: Debian 12 (debootstrap, the same mirror and package set as
``make lab``'s nspawn hosts, plus sudo), a ``vagrant`` user with Vagrant's published insecure key
(Vagrant replaces it with a key of its own on the first ``vagrant up``) and passwordless sudo,
sshd with host keys made at each container's first boot, and systemd as PID 1. The root
filesystem is cached as a tarball in ``~/.cache/logferry/vagrant``; ``docker import`` makes the
image ``logferry/vagrant-debian:bookworm`` from it. Rebuilt only when this recipe changes.

The backing services of the lab (etcd, ZooKeeper + Kafka, Elasticsearch) use the images of the
Docker-backed test suite (``python -m integration.docker images``), built by ``make vagrant-lab``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab as L  # lab/lab.py: the mirror, the package set, run(), log()

IMAGE = "logferry/vagrant-debian:bookworm"
PACKAGES = [*L.PACKAGES, "sudo"]
RECIPE = 2
LABEL = "org.logferry.recipe"
CACHE = L.CACHE.parent / "vagrant"


def insecure_key() -> str:
    """Vagrant's published insecure public key, from the installed Vagrant."""
    found = sorted(Path("/usr/share/rubygems-integration/all/gems").glob("vagrant-*/keys/vagrant.pub"))
    found += sorted(Path("/opt/vagrant/embedded/gems").glob("gems/vagrant-*/keys/vagrant.pub"))
    if not found:
        raise L.LabError("Vagrant's insecure key (keys/vagrant.pub) not found: apt-get install vagrant")
    return found[-1].read_text().strip()


def recipe_key() -> str:
    return hashlib.sha256(json.dumps([L.SUITE, PACKAGES, RECIPE, insecure_key()]).encode()).hexdigest()[:10]


def image_label() -> str | None:
    res = subprocess.run(["docker", "image", "inspect", "-f", "{{json .Config.Labels}}", IMAGE],
                         capture_output=True, text=True)
    if res.returncode != 0:
        return None
    return (json.loads(res.stdout or "null") or {}).get(LABEL)


def customize(root: Path) -> None:
    """A Vagrant base box's conventions, for a container whose PID 1 is systemd."""
    L.run(["chroot", str(root), "useradd", "--create-home", "--shell", "/bin/bash", "vagrant"])
    ssh = root / "home/vagrant/.ssh"
    ssh.mkdir(mode=0o700)
    (ssh / "authorized_keys").write_text(insecure_key() + "\n")
    (ssh / "authorized_keys").chmod(0o600)
    L.run(["chroot", str(root), "chown", "-R", "vagrant:vagrant", "/home/vagrant/.ssh"])
    (root / "etc/sudoers.d/vagrant").write_text("vagrant ALL=(ALL) NOPASSWD: ALL\n")
    (root / "etc/sudoers.d/vagrant").chmod(0o440)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # each container makes its own at first boot
    dropin = root / "etc/systemd/system/ssh.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "host-keys.conf").write_text(
        "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n")
    (root / "etc/ssh/sshd_config.d").mkdir(exist_ok=True)
    (root / "etc/ssh/sshd_config.d/vagrant.conf").write_text("UseDNS no\n")
    sysctl = ["systemctl", f"--root={root}"]
    L.run([*sysctl, "enable", "ssh.service"], capture=True)
    # Nothing that tries the Internet or the host's devices from a container.
    for unit in ("apt-daily.timer", "apt-daily-upgrade.timer", "fstrim.timer", "e2scrub_all.timer",
                 "systemd-networkd-wait-online.service", "getty@tty1.service", "console-getty.service",
                 "systemd-remount-fs.service", "sys-kernel-config.mount", "sys-kernel-debug.mount"):
        L.run([*sysctl, "mask", unit], capture=True, check=False)
    (root / "etc/machine-id").write_text("")
    (root / "etc/apt/apt.conf.d/99lab-no-recommends").write_text('APT::Install-Recommends "false";\n')
    L.run(["chroot", str(root), "apt-get", "clean"], check=False)


def build() -> None:
    key = recipe_key()
    if image_label() == key:
        L.log(f"vagrant box: {IMAGE} is current")
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    tarball = CACHE / f"rootfs-{L.SUITE}-vagrant-{key}.tar"
    if not tarball.exists():
        L.ensure_tools()
        root = CACHE / f"rootfs-{key}.tmp"
        shutil.rmtree(root, ignore_errors=True)
        mirror = L.apt_mirror()
        L.log(f"vagrant box: debootstrap {L.SUITE} from {mirror} (about a minute; cached afterwards)")
        t0 = time.monotonic()
        with open(CACHE / "debootstrap.log", "w") as out:
            res = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", L.SUITE,
                                  str(root), mirror], stdout=out, stderr=subprocess.STDOUT)
        if res.returncode != 0:
            raise L.LabError(f"debootstrap failed; see {CACHE / 'debootstrap.log'}")
        customize(root)
        partial = tarball.with_suffix(".partial")
        L.run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(partial), "."])
        partial.rename(tarball)
        shutil.rmtree(root, ignore_errors=True)
        L.log(f"vagrant box: root filesystem in {time.monotonic() - t0:.0f}s: {tarball}")
    with open(tarball, "rb") as f:
        res = subprocess.run(["docker", "import", "--change", f"LABEL {LABEL}={key}",
                              "--change", 'CMD ["/lib/systemd/systemd"]',
                              "--change", "ENV container=docker", "-", IMAGE],
                             stdin=f, capture_output=True, text=True)
    if res.returncode != 0:
        raise L.LabError(f"docker import of {IMAGE} failed: {res.stderr.strip()}")
    L.log(f"vagrant box: imported {IMAGE}")


if __name__ == "__main__":
    try:
        build()
    except L.LabError as e:
        print(f"vagrant-box: {e}", file=sys.stderr)
        sys.exit(1)
