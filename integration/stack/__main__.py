"""Command line of the stack: ``python -m integration.stack COMMAND``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .services import Stack, StackError, StackOptions, default_workdir

HELP = """\
Run real etcd (3 members), ZooKeeper + Kafka and Elasticsearch as local processes on free
loopback ports, each with its own data dir and log file under the work dir. What is missing is
installed first (Debian etcd-server with apt; Kafka and Elasticsearch jars from Maven Central
into ~/.cache/logferry, or $LOGFERRY_CACHE). Clients find the endpoints in <workdir>/stack.env
(shell: `. .stack/stack.env`) and <workdir>/stack.env.json.

Service names for stop/kill/start/restart: etcd1 etcd2 etcd3 zookeeper kafka es1 [es2 es3]
(with --kafka-brokers N > 1: kafka1..kafkaN), or the groups `etcd`, `kafka` and `es`.
"""


def _log(msg: str) -> None:
    print(f"[stack] {msg}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m integration.stack", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--workdir", type=Path, default=default_workdir(),
        help="where data, logs, stack.json and stack.env live (default: $LOGFERRY_STACK_DIR or ./.stack)",
    )
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    up = sub.add_parser("up", help="install what is missing, start every service, wait until all serve")
    up.add_argument("--es-nodes", type=int, choices=(1, 3), default=1, help="Elasticsearch nodes (default 1)")
    up.add_argument("--kafka-brokers", type=int, default=1, metavar="N",
                    help="Kafka brokers on one ZooKeeper (default 1); N > 1 names them kafka1..kafkaN")
    up.add_argument("--kraft", action="store_true", help="run Kafka in KRaft mode instead of with ZooKeeper")
    up.add_argument("--kafka", choices=("3", "4"), default="3",
                    help="Kafka 3 (3.9.2, with ZooKeeper unless --kraft; default) or 4 (4.x, KRaft only)")
    up.add_argument("--search", choices=("es8", "es9", "opensearch"), default="es8",
                    help="the search engine: Elasticsearch 8.19 (default), Elasticsearch 9.x (needs a JDK 21+, "
                    "found in /usr/lib/jvm or $LOGFERRY_ES_JAVA_HOME) or OpenSearch 2.19")
    up.add_argument("--etcd", choices=("3.4", "3.6"), default="3.4",
                    help="etcd 3.4 (Debian's package; default) or 3.6 (built with Go from its modules, cached)")
    up.add_argument(
        "--secure", action="store_true",
        help="TLS and authentication everywhere: etcd with client certificates and users/roles, Kafka "
        "SASL_SSL (SCRAM-SHA-512), Elasticsearch behind an nginx TLS proxy with basic auth/API key; "
        "certificates and secrets under <workdir>/security (see docs/security.md)",
    )
    up.add_argument("--no-es", action="store_true", help="do not start Elasticsearch (agent-only work)")
    up.add_argument("--kafka-heap-mb", type=int, default=512, help="Kafka JVM max heap (default 512)")
    up.add_argument("--es-heap-mb", type=int, default=512, help="heap of each Elasticsearch node (default 512)")
    up.add_argument(
        "--bind", default="127.0.0.1", metavar="ADDRESS",
        help="address of etcd's client URLs, Kafka's listener and ES's HTTP port (default 127.0.0.1; "
        "one address of this machine, e.g. a lab bridge's 10.77.0.1, not 0.0.0.0)",
    )
    st = sub.add_parser("status", help="show each service, its PID, address and whether it serves")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser("down", help="stop exactly the processes this work dir started")
    sub.add_parser("env", help="print the shell-sourceable endpoints (same as stack.env)")
    sub.add_parser("leader", help="print the name of the current etcd leader")
    for name, text in (
        ("stop", "stop a service gracefully (SIGTERM, then SIGKILL after 30 s)"),
        ("kill", "kill -9 a service (for fault tests)"),
        ("start", "start a stopped service again with the same ports and data, wait until it serves"),
        ("restart", "stop then start a service (add --kill for kill -9)"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("service", help="etcd1..3, zookeeper, kafka (or kafka1..N), es1..3, or a group: etcd, kafka, es")
        if name == "restart":
            p.add_argument("--kill", action="store_true", help="kill -9 instead of SIGTERM")
    args = ap.parse_args(argv)
    workdir: Path = args.workdir.absolute()
    try:
        return _run(args, workdir)
    except StackError as e:
        print(f"stack: {e}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, workdir: Path) -> int:
    stack = Stack.load(workdir, log=_log)
    if args.cmd == "up":
        if stack and stack.running():
            print(
                f"stack: a stack is already running in {workdir} ({', '.join(stack.running())}); "
                "use `make stack-status`, or `make stack-down` first",
                file=sys.stderr,
            )
            return 1
        started = time.monotonic()
        opts = StackOptions(
            es_nodes=args.es_nodes, kafka_brokers=args.kafka_brokers, kraft=args.kraft, with_es=not args.no_es,
            kafka_heap_mb=args.kafka_heap_mb, es_heap_mb=args.es_heap_mb, bind=args.bind, secure=args.secure,
            kafka=args.kafka, search=args.search, etcd=args.etcd,
        )
        stack = Stack(workdir=workdir, options=opts, log=_log)
        stack.up()
        _log(f"stack up in {time.monotonic() - started:.1f}s; endpoints in {workdir / 'stack.env'}:")
        for k, v in stack.env().items():
            print(f"  {k}={'***' if 'PASSWORD' in k or 'API_KEY' in k else v}")
        return 0
    if stack is None:
        print(f"stack: no stack recorded in {workdir} (start one with `make stack-up`)", file=sys.stderr)
        return 1 if args.cmd != "down" else 0
    if args.cmd == "status":
        rows = stack.status_rows()
        if args.json:
            fields = ("name", "pid", "address", "state")
            services = [dict(zip(fields, r, strict=True)) for r in rows]
            print(json.dumps({"env": stack.env(), "services": services}, indent=2))
        else:
            print(f"{'SERVICE':<10} {'PID':>8}  {'ADDRESS':<22} STATE")
            for r in rows:
                print(f"{r[0]:<10} {r[1]:>8}  {r[2]:<22} {r[3]}")
        return 0 if all(r[3] == "serving" for r in rows) else 3
    if args.cmd == "down":
        stopped = stack.down()
        left = stack.running()
        _log(f"stopped {', '.join(stopped) or 'nothing (none was running)'}")
        if left:
            print(f"stack: still running: {', '.join(left)}", file=sys.stderr)
            return 1
        return 0
    if args.cmd == "env":
        for k, v in stack.env().items():
            print(f"export {k}={v}")
        return 0
    if args.cmd == "leader":
        print(stack.etcd_leader() or "none")
        return 0
    if args.cmd in ("stop", "kill"):
        done = stack.stop_service(args.service, kill=args.cmd == "kill")
        _log(f"{args.cmd}: {', '.join(done) or 'nothing was running'}")
        return 0
    if args.cmd == "start":
        done = stack.start_service(args.service)
        _log(f"started: {', '.join(done) or 'already running'}")
        return 0
    if args.cmd == "restart":
        done = stack.restart_service(args.service, kill=args.kill)
        _log(f"restarted: {', '.join(done)}")
        return 0
    raise AssertionError(args.cmd)


if __name__ == "__main__":
    sys.exit(main())
