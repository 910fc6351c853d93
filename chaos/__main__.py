"""``python -m chaos run``: the chaos run of ``make chaos``; ``python -m chaos net-down``: clean up.

By default the run makes its own network (a bridge and one namespace per agent host, see
:mod:`chaos.netns`), its own stack bound to the bridge (``--bind 10.78.0.1``), runs, prints
the report, writes it to ``chaos/results/latest.json``, and removes the stack and the network.
Exit status 0 when nothing was missing or duplicated (and nothing crashed), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

from .harness import DEFAULT_RESULTS, ChaosConfig, Endpoints, Run, summary
from .netns import BRIDGE_IP, NetnsHosts, OverrideHosts


def _log(msg: str) -> None:
    print(msg, flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    from integration.stack import Stack, StackOptions

    workdir = Path(args.workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    hosts: NetnsHosts | OverrideHosts
    use_netns = not args.no_netns
    if use_netns:
        ok, why = NetnsHosts.available()
        if not ok:
            _log(f"[chaos] network namespaces unavailable ({why}): agents get distinct host_ip overrides instead")
            use_netns = False
    stack = None
    own_stack = False
    if args.stack_dir:
        stack = Stack.load(Path(args.stack_dir), log=lambda m: _log(f"[stack] {m}"))
        if stack is None or set(stack.running()) != set(stack.service_names):
            _log(f"[chaos] no running stack in {args.stack_dir}")
            return 2
        if use_netns and stack.options.bind != BRIDGE_IP:
            _log(f"[chaos] the stack in {args.stack_dir} listens on {stack.options.bind}, which namespaces cannot "
                 f"reach: agents get distinct host_ip overrides instead (start it with --bind {BRIDGE_IP})")
            use_netns = False
    hosts = NetnsHosts(args.agents) if use_netns else OverrideHosts(args.agents)
    try:
        hosts.setup()  # namespaces (and the bridge, unless a stack bound to it made it exist already)
        if stack is None:
            old = Stack.load(workdir / "stack", log=lambda m: _log(f"[stack] {m}"))
            if old is not None:  # left running by an earlier run that was killed: ours, stop it
                stopped = old.down()
                if stopped:
                    _log(f"[chaos] stopped a stack left by an earlier run: {', '.join(stopped)}")
            shutil.rmtree(workdir / "stack", ignore_errors=True)
            stack = Stack(workdir=workdir / "stack", options=StackOptions(
                es_nodes=1, bind=BRIDGE_IP if use_netns else "127.0.0.1"), log=lambda m: _log(f"[stack] {m}"))
            t0 = time.monotonic()
            stack.up()
            own_stack = True
            _log(f"[chaos] stack up in {time.monotonic() - t0:.0f}s (bound to {stack.options.bind})")
        env = stack.env()
        ep = Endpoints(etcd=env["ETCD_ENDPOINTS"].split(","), kafka=env["KAFKA_BOOTSTRAP_SERVERS"], es=env["ES_URL"],
                       stack=stack, bind=stack.options.bind)
        cfg = ChaosConfig(lines=args.lines, agents=args.agents, transfers=args.transfers, rate=args.rate,
                          schedule=args.schedule, rotate_every=args.rotate_every, workdir=workdir / "runs",
                          results=Path(args.results) if args.results else None,
                          drain_timeout_s=args.drain_timeout, keep_indices=own_stack or args.keep)
        run = Run(cfg, ep, hosts, say=_log)
        report = run.execute()
        _log(summary(report))
        if report["passed"] and not args.keep:
            # the written files (and their rotated copies) are the bulk of the disk used; daemon logs stay
            shutil.rmtree(run.home / "hosts", ignore_errors=True)
        if cfg.results:
            _log(f"[chaos] report written to {cfg.results}")
        if args.json:
            print(json.dumps(report, indent=1))
        return 0 if report["passed"] else 1
    finally:
        if own_stack and stack is not None and not args.keep:
            stack.down()
            shutil.rmtree(workdir / "stack", ignore_errors=True)
        hosts.teardown()


def cmd_net_down(args: argparse.Namespace) -> int:
    NetnsHosts(args.agents).teardown(stale=True)
    _log("[chaos] removed the chaos bridge and namespaces (if there were any)")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m chaos", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    r = sub.add_parser("run", help="one chaos run (make chaos)")
    r.add_argument("--lines", type=int, default=1_000_000, help="lines to write in total (default 1,000,000)")
    r.add_argument("--rate", type=float, default=2000.0, help="lines per second, all files together (default 2000)")
    r.add_argument("--agents", type=int, default=3, help="agent hosts (default 3)")
    r.add_argument("--transfers", type=int, default=2, help="logtransfers in the group (default 2)")
    r.add_argument("--schedule", choices=["full", "short"], default="full", help="fault schedule (default full)")
    r.add_argument("--rotate-every", type=int, default=0,
                   help="lines per file between rotations (default: about 5 rotations per file)")
    r.add_argument("--workdir", default="/tmp/logferry-chaos", help="files, data dirs, logs (and the stack)")
    r.add_argument("--stack-dir", help="use this running stack instead of starting one")
    r.add_argument("--no-netns", action="store_true", help="no namespaces: distinct host_ip overrides")
    r.add_argument("--results", default=str(DEFAULT_RESULTS), help="where to write the JSON report ('' for nowhere)")
    r.add_argument("--drain-timeout", type=float, default=600.0, help="seconds to wait for ES to hold everything")
    r.add_argument("--keep", action="store_true", help="keep the stack, indices and topics afterwards")
    r.add_argument("--json", action="store_true", help="also print the JSON report")
    r.set_defaults(fn=cmd_run)
    d = sub.add_parser("net-down", help="remove a leftover chaos bridge and namespaces")
    d.add_argument("--agents", type=int, default=8)
    d.set_defaults(fn=cmd_net_down)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
