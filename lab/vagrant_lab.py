#!/usr/bin/env python3
"""``make vagrant-lab`` / ``make vagrant-lab-down``: ``vagrant up`` for real, then the lab's checks.

``up``:
1. the images: the service images of the Docker-backed suite (``integration.docker.images``:
   official where a registry answers, local builds of the same versions where none does) and the
   box image of ``lab/vagrant_box.py``;
2. ``vagrant up --no-parallel`` with the docker provider (see the Vagrantfile): etcd, ZooKeeper,
   Kafka and Elasticsearch containers, then app1, app2 and transfer booted with systemd and
   provisioned by ``ansible/site.yml``;
3. checks, through Vagrant as a user would: ``vagrant ssh app1 -c 'systemctl status logagent'``
   shows it running on each app host, lines appended on app1 and app2 are found in Elasticsearch
   exactly (with each host's IP), the console answers on the transfer host, and a second
   ``vagrant provision`` reports changed=0 on every host.
Every phase is timed. ``down`` destroys the machines and the networks Vagrant made.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "lab"))
import vagrant_box  # noqa: E402

import lab as L  # noqa: E402  (timer, log, LabError)

APP_HOSTS = {"app1": "192.168.56.21", "app2": "192.168.56.22"}
TRANSFER = "transfer"
ES = "http://192.168.56.13:9200"
LINES = 200
WAIT_S = 120


def vagrant_env() -> dict[str, str]:
    env = dict(os.environ, VAGRANT_DEFAULT_PROVIDER="docker", VAGRANT_DOTFILE_PATH=str(REPO / ".lab" / "vagrant"),
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return env


def vagrant(*args: str, capture: bool = True, check: bool = True, input_text: str | None = None,
            log_to: Path | None = None) -> subprocess.CompletedProcess[str]:
    argv = ["vagrant", *args]
    if log_to is not None:
        with open(log_to, "w") as out:
            res = subprocess.run(argv, cwd=REPO, env=vagrant_env(), stdout=out, stderr=subprocess.STDOUT, text=True)
        if check and res.returncode != 0:
            raise L.LabError(f"{' '.join(argv)} exited {res.returncode}; its output: {log_to}\n"
                             + "\n".join(log_to.read_text().splitlines()[-25:]))
        return res
    res = subprocess.run(argv, cwd=REPO, env=vagrant_env(), capture_output=capture, text=True, input=input_text)
    if check and res.returncode != 0:
        out = (res.stdout or "")[-800:] + (res.stderr or "")[-800:]
        raise L.LabError(f"{' '.join(argv)} exited {res.returncode}: {out}")
    return res


def ensure_images() -> None:
    from integration.docker import engine, images

    client, why = engine.client_or_reason(L.log)
    if client is None:
        raise L.LabError(f"no Docker engine for the Vagrant lab: {why}")
    names = images.resolve_images(client, L.log)
    env_names = {"etcd": "LOGFERRY_IMAGE_ETCD", "kafka": "LOGFERRY_IMAGE_KAFKA",
                 "elasticsearch": "LOGFERRY_IMAGE_ELASTICSEARCH"}
    for role, name in names.items():
        os.environ[env_names[role]] = name  # the Vagrantfile reads them
    L.log("service images: " + ", ".join(f"{r}={n}" for r, n in names.items()))
    vagrant_box.build()


def es_count(query: dict) -> int:
    req = urllib.request.Request(f"{ES}/logs-lab-app-*/_count?ignore_unavailable=true",
                                 data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)["count"]


def check() -> list[str]:
    problems = []
    units = [(n, "logagent") for n in APP_HOSTS] + [(TRANSFER, "logtransfer"), (TRANSFER, "logconsole")]
    for name, unit in units:
        res = vagrant("ssh", name, "-c", f"systemctl status {unit} --no-pager", check=False)
        first = next((ln.strip() for ln in res.stdout.splitlines() if "Active:" in ln), "(no Active: line)")
        L.log(f"vagrant ssh {name} -c 'systemctl status {unit}': {first}")
        if "active (running)" not in first:
            problems.append(f"{name}: {unit} is not running: {first}")
    run_id = uuid.uuid4().hex[:10]
    for name in APP_HOSTS:
        lines = "".join(f"vagrant-check {run_id} {name} line {i}\n" for i in range(1, LINES + 1))
        vagrant("ssh", name, "-c", "sudo mkdir -p /var/log/lab && sudo tee -a /var/log/lab/check.log >/dev/null",
                input_text=lines)
    L.log(f"appended {LINES} lines tagged {run_id} to /var/log/lab/check.log on {', '.join(APP_HOSTS)}")
    started = time.monotonic()
    pending = dict(APP_HOSTS)
    counts: dict[str, int] = {}
    while pending and time.monotonic() - started < WAIT_S:
        for name, ip in list(pending.items()):
            q = {"bool": {"filter": [{"match_phrase": {"message": run_id}}, {"match_phrase": {"host.ip": ip}}]}}
            try:
                counts[name] = es_count(q)
            except OSError:
                counts[name] = 0
            if counts[name] >= LINES:
                L.log(f"{name}: {counts[name]} of {LINES} lines in Elasticsearch with host.ip {ip} "
                      f"after {time.monotonic() - started:.1f}s")
                del pending[name]
        if pending:
            time.sleep(1)
    problems += [f"{n}: {counts.get(n, 0)} of {LINES} lines in Elasticsearch after {WAIT_S}s" for n in pending]
    problems += [f"{n}: {counts[n]} lines in Elasticsearch, {LINES} written (duplicates)"
                 for n in APP_HOSTS if counts.get(n, 0) > LINES]
    probe = ("python3 -c \"import urllib.request; "
             "print(urllib.request.urlopen('http://127.0.0.1:8430/healthz', timeout=5).status)\"")
    res = vagrant("ssh", TRANSFER, "-c", probe, check=False)
    L.log(f"{TRANSFER}: the console on 127.0.0.1:8430 answers {res.stdout.strip() or res.stderr.strip()[-200:]}")
    if res.stdout.strip() != "200":
        problems.append(f"{TRANSFER}: the console does not answer: {(res.stdout + res.stderr).strip()[-300:]}")
    return problems


def recap_changed(log_file: Path) -> dict[str, int]:
    text = log_file.read_text()
    recap = text[text.rfind("PLAY RECAP"):]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\S+)\s*:\s*ok=\d+\s+changed=(\d+)", recap, re.M)}


def cmd_up(_: argparse.Namespace) -> int:
    timer = L.Timer()
    logs = REPO / ".lab" / "vagrant-logs"
    logs.mkdir(parents=True, exist_ok=True)
    if not list((REPO / "wheelhouse").glob("logferry-*.whl")):
        raise L.LabError("no wheelhouse/ with a logferry wheel: run `make wheelhouse` (make vagrant-lab does)")
    if docker_names("logferry-lab-"):
        L.log("a Vagrant lab of an earlier run is still there: destroying it first")
        cmd_down(_)
    with timer.phase("images (service images + vagrant box, cached)"):
        ensure_images()
    with timer.phase("vagrant up --no-parallel (boot + site.yml)"):
        vagrant("up", "--no-parallel", log_to=logs / "vagrant-up.log")
    L.log(f"vagrant up: PLAY RECAP changed={recap_changed(logs / 'vagrant-up.log')}")
    with timer.phase("checks (systemctl status, lines in Elasticsearch, console)"):
        problems = check()
    with timer.phase("vagrant provision (second run)"):
        vagrant("provision", TRANSFER, log_to=logs / "vagrant-provision.log")
        changed = recap_changed(logs / "vagrant-provision.log")
    L.log(f"second vagrant provision: changed={changed}")
    if not changed or any(changed.values()):
        problems.append(f"the second vagrant provision changed something (or printed no recap): {changed}")
    L.log("timings:\n" + timer.summary())
    if problems:
        for p in problems:
            L.log(f"PROBLEM: {p}")
        L.log("vagrant lab: FAILED")
        return 1
    L.log("vagrant lab: PASSED")
    return 0


def cmd_check(_: argparse.Namespace) -> int:
    problems = check()
    for p in problems:
        L.log(f"PROBLEM: {p}")
    return 1 if problems else 0


def docker_names(prefix: str) -> list[str]:
    """Names of the containers (any state) whose name starts with `prefix`."""
    out = subprocess.run(["docker", "ps", "-a", "--filter", f"name={prefix}", "--format", "{{.Names}}"],
                         capture_output=True, text=True).stdout.split()
    return [n for n in out if n.startswith(prefix)]


def cmd_down(_: argparse.Namespace) -> int:
    res = vagrant("destroy", "-f", check=False, capture=True)
    L.log(f"vagrant destroy -f: exit {res.returncode}")
    left = docker_names("logferry-lab-")
    for name in left:  # machines Vagrant no longer knows (a renamed or deleted .lab/vagrant)
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    nets = subprocess.run(["docker", "network", "ls", "--filter", "name=vagrant_network", "--format", "{{.Name}}"],
                          capture_output=True, text=True).stdout.split()
    for net in nets:
        subprocess.run(["docker", "network", "rm", net], capture_output=True)
    L.log(f"removed {len(left)} leftover container(s), {len(nets)} network(s)")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up").set_defaults(func=cmd_up)
    sub.add_parser("check").set_defaults(func=cmd_check)
    sub.add_parser("down").set_defaults(func=cmd_down)
    args = ap.parse_args()
    try:
        return args.func(args)
    except L.LabError as e:
        L.log(f"ERROR: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
