"""`make demo`: the whole chain on this machine, from log files to lines found in Elasticsearch.

Steps (each prints what it does and how long it took):

1. start the stack (etcd x3, ZooKeeper, Kafka, Elasticsearch) in ``.demo/stack``, or reuse it;
2. write INIs for logagent and logtransfer under ``.demo/`` (the same format as /etc/logferry);
3. with ``logctl``: put a collect list for this machine's IP (the source address of its route
   to etcd, exactly what the agent computes) and the transfer config;
4. start logagent, logtransfer and the console (``logconsole``, on 127.0.0.1:8430 or a free
   port) in the background (PIDs recorded in ``.demo/demo.json``);
5. write sample web-server access logs and an application log with a multi-line stack trace,
   rotate the access log once (rename + create) and keep writing;
6. wait until every line is searchable, show ``logctl status`` and ``logctl search``, and end
   with the console's URL (checked: its search API shows the lines).

``make demo-down`` (``python -m integration.demo down``) stops the daemons and the stack:
exactly the processes recorded, nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from agent.hostip import host_ip
from integration.stack import Stack, StackOptions
from integration.stack.procs import ProcRecord, spawn, stop, tail

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PREFIX = "/logferry"
TOPIC_WEB = "demo-nginx"
TOPIC_APP = "demo-app"


def say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def logctl(env: dict[str, str], *args: str, stdin: str | None = None, check: bool = True) -> str:
    cmd = [str(BIN / "logctl"), "--etcd", env["ETCD_ENDPOINTS"], "--es", env["ES_URL"],
           "--kafka", env["KAFKA_BOOTSTRAP_SERVERS"], "--prefix", PREFIX, *args]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise SystemExit(f"demo: `logctl {' '.join(args)}` failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def web_line(rng: random.Random, n: int) -> str:
    ip = f"192.0.2.{rng.randint(1, 254)}"
    path = rng.choice(["/", "/index.html", "/api/orders", "/api/cart", "/login", "/static/app.js"])
    status = rng.choices([200, 200, 200, 301, 404, 500], k=1)[0]
    ts = datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
    return (f'{ip} - - [{ts}] "GET {path}?req={n} HTTP/1.1" {status} {rng.randint(200, 9000)} '
            f'"-" "Mozilla/5.0 (demo)"')


def write_samples(logs: Path, rng: random.Random) -> int:
    """Write access logs (with one rename rotation) and an app log with a stack trace; return events."""
    logs.mkdir(parents=True, exist_ok=True)
    access = logs / "access.log"
    n = 0
    with open(access, "a") as f:
        for _ in range(300):
            f.write(web_line(rng, n) + "\n")
            n += 1
    time.sleep(1.5)
    os.replace(access, logs / "access.log.1")  # logrotate's default: rename, then create
    with open(access, "a") as f:
        for _ in range(200):
            f.write(web_line(rng, n) + "\n")
            n += 1
    with open(logs / "app.log", "a") as f:
        for i in range(20):
            f.write(f"{datetime.now(UTC).isoformat()} INFO order {i} accepted\n")
            n += 1
        f.write(f"{datetime.now(UTC).isoformat()} ERROR payment failed\n"
                "Traceback (most recent call last):\n  File \"pay.py\", line 42, in charge\n"
                "ValueError: card declined\n")
        n += 1  # one multi-line event
        f.write(f"{datetime.now(UTC).isoformat()} INFO shutting down\n")
        n += 1
    return n


def es_count(es_url: str) -> int:
    try:
        with urllib.request.urlopen(f"{es_url}/logferry-demo-*/_count", timeout=5) as r:
            return json.loads(r.read())["count"]
    except OSError:
        return 0


def up(workdir: Path) -> int:
    started = time.monotonic()
    state_file = workdir / "demo.json"
    stack_dir = workdir / "stack"
    st = Stack.load(stack_dir, log=say)
    if st and set(st.running()) == set(st.service_names):
        say(f"reusing the running stack in {stack_dir}")
    else:
        say("starting the stack: etcd x3, ZooKeeper, Kafka, Elasticsearch (first run downloads ~100 MB)")
        st = Stack(workdir=stack_dir, options=StackOptions(es_nodes=1), log=say)
        st.up()
    env = st.env()
    say(f"stack serving after {time.monotonic() - started:.0f}s")

    ip = host_ip(env["ETCD_ENDPOINTS"].split(","))
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    inputs = [
        {"path": f"{logs}/access.log", "topic": TOPIC_WEB, "start_at": "beginning",
         "fields": {"service": "nginx", "env": "demo"}},
        {"path": f"{logs}/app.log", "topic": TOPIC_APP, "start_at": "beginning",
         "multiline": {"pattern": r"^\d{4}-", "negate": True, "match": "after"},
         "fields": {"service": "shop", "env": "demo"}},
    ]
    say(f"this machine's IP on its route to etcd: {ip}; writing its collect list with logctl")
    print(logctl(env, "collect", "set", ip, "-", "--yes", stdin=json.dumps(inputs, indent=2)))
    transfer_cfg = {"topics_regex": "^demo-.*", "index": "logferry-{topic}-{yyyy.MM.dd}", "flush_interval_s": 0.5}
    print(logctl(env, "transfer-config", "set", "-", "--yes", stdin=json.dumps(transfer_cfg)))

    common = (f"[etcd]\nendpoints = {env['ETCD_ENDPOINTS']}\nprefix = {PREFIX}\n\n"
              f"[kafka]\nbootstrap_servers = {env['KAFKA_BOOTSTRAP_SERVERS']}\n\n")
    (workdir / "logagent.ini").write_text(
        common + f"[agent]\ndata_dir = {workdir / 'agent'}\nmetrics_address =\n"
        "scan_interval_s = 0.5\nstatus_interval_s = 1\n"
    )
    (workdir / "logtransfer.ini").write_text(
        common + f"[transfer]\nid = demo-transfer\nes_hosts = {env['ES_URL']}\ndata_dir = {workdir / 'transfer'}\n"
        "metrics_address =\nstatus_interval_s = 1\n"
    )
    port = free_port(8430)
    (workdir / "logconsole.ini").write_text(
        f"[console]\nlisten = 127.0.0.1:{port}\n\n[etcd]\nendpoints = {env['ETCD_ENDPOINTS']}\nprefix = {PREFIX}\n\n"
        f"[elasticsearch]\nhosts = {env['ES_URL']}\n"
    )
    procs = {}
    for name in ("logagent", "logtransfer", "logconsole"):
        rec = ProcRecord(name=name, argv=[str(BIN / name), "--config", str(workdir / f"{name}.ini")],
                         log=str(workdir / f"{name}.log"), cwd=str(workdir), env={"PYTHONUNBUFFERED": "1"})
        procs[name] = spawn(rec)
        say(f"started {name} (pid {rec.pid}, log {rec.log})")
    state_file.write_text(json.dumps({n: r.to_json() for n, r in procs.items()}, indent=2))

    from logferry.etcd import EtcdClient

    etcd = EtcdClient(env["ETCD_ENDPOINTS"].split(","))
    try:
        for key in (f"{PREFIX}/agents/{ip}/status", f"{PREFIX}/transfers/demo-transfer/status"):
            deadline = time.monotonic() + 60
            while etcd.get(key)[0] is None:
                for name, rec in procs.items():
                    if not rec.alive():
                        raise SystemExit(f"demo: {name} exited; last lines of {rec.log}:\n{tail(rec.log)}")
                if time.monotonic() > deadline:
                    raise SystemExit(f"demo: no status at {key} after 60 s; see {workdir}/*.log")
                time.sleep(0.3)
            say(f"live: {key}")
    finally:
        etcd.close()
    say("writing sample logs: 500 access-log lines with one rename rotation, an app log with a stack trace")
    expected = write_samples(logs, random.Random(42))
    deadline = time.monotonic() + 120
    while (count := es_count(env["ES_URL"])) < expected and time.monotonic() < deadline:
        for name, rec in procs.items():
            if not rec.alive():
                raise SystemExit(f"demo: {name} exited; last lines of {rec.log}:\n{tail(rec.log)}")
        time.sleep(1)
    say(f"{count} of {expected} events searchable in Elasticsearch")

    print("\n$ logctl status")
    print(logctl(env, "status", check=False))
    print("$ logctl search --topic demo-nginx -q 'api' -n 5")
    print(logctl(env, "search", "--topic", TOPIC_WEB, "-q", "api", "-n", "5", check=False))
    print("$ logctl search --topic demo-app -q declined")
    print(logctl(env, "search", "--topic", TOPIC_APP, "-q", "declined", check=False))
    say(f"done in {time.monotonic() - started:.0f}s. Endpoints: . {stack_dir / 'stack.env'}; "
        f"try: .venv/bin/logctl --etcd {env['ETCD_ENDPOINTS']} --es {env['ES_URL']} search -f")
    console = f"http://127.0.0.1:{port}/?range=1h"
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/search?range=1h&size=1", timeout=30) as r:
            shown = json.load(r)["total"]
    except OSError as e:
        raise SystemExit(f"demo: the console does not answer on port {port} ({e}); "
                         f"see {workdir}/logconsole.log") from None
    say(f"the console shows {shown} lines of the last hour: open {console}")
    say("stop everything with: make demo-down")
    return 0 if count >= expected and shown >= expected else 1


def free_port(preferred: int) -> int:
    """``preferred`` if nothing listens there, else any free port (another console may run)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


def down(workdir: Path) -> int:
    state_file = workdir / "demo.json"
    if state_file.exists():
        for name, data in json.loads(state_file.read_text()).items():
            if stop(ProcRecord(**data), timeout_s=70):
                say(f"stopped {name}")
        state_file.unlink()
    st = Stack.load(workdir / "stack", log=say)
    if st:
        stopped = st.down()
        say(f"stopped {', '.join(stopped) or 'no stack service (none was running)'}")
        left = st.running()
        if left:
            say(f"still running: {', '.join(left)}")
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m integration.demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("up", "down"), help="up: run the demo; down: stop all it started")
    ap.add_argument("--workdir", type=Path, default=ROOT / ".demo", help="where everything lives (default .demo/)")
    args = ap.parse_args(argv)
    workdir = args.workdir.absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    return up(workdir) if args.command == "up" else down(workdir)


if __name__ == "__main__":
    sys.exit(main())
