"""``python -m bench``: logferry's benchmarks on the real stack (see BENCHMARKS.md).

1. throughput: files → Kafka (6 partitions, acks=all, idempotent, lz4): logagent, rsyslog
   imfile→omkafka, kcat -P (the raw producer ceiling), on 1 file and on 100 files;
2. transfer: Kafka → Elasticsearch: logtransfer, rsyslog imkafka→omelasticsearch, direct bulk;
3. latency: append → searchable through both daemons at 1,000 and 10,000 lines/s;
4. manyfiles: logagent with 1,000 files, idle and at 10,000 lines/s in total;
5. console: the console's search (24 h, histogram and counts) and a line's context on 1,000,000
   documents next to Elasticsearch answering the same searches directly, and its live tail;
6. parse: logagent with nginx_combined and JSON parsing against the same files unparsed (bench/parse_bench.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

from . import common
from .common import REPO, say

PARTS = ("throughput", "transfer", "latency", "manyfiles", "console", "parse", "journal")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark logagent and logtransfer on the real stack (etcd x3, ZooKeeper, Kafka, ES "
                    "as local processes), side by side with rsyslog and kcat. Starts its own stack in a "
                    "temporary directory and stops it at the end (unless --stack-dir names a running one). "
                    "Writes bench/results/latest.json and the results section of BENCHMARKS.md "
                    "(--quick: bench/results/quick.json only).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--lines", type=int, default=2_000_000, help="lines for the files → Kafka throughput runs")
    ap.add_argument("--files", default="1,100", help="file counts for the throughput runs (comma-separated)")
    ap.add_argument("--transfer-records", type=int, default=500_000,
                    help="records for the Kafka → ES runs (500k: 2M takes too long for ES on 2 cores)")
    ap.add_argument("--rates", default="1000,10000", help="lines/s for the latency runs")
    ap.add_argument("--latency-seconds", type=float, default=60.0, help="length of each latency run")
    ap.add_argument("--latency-tuned-flush", type=float, default=0.25,
                    help="also run the lowest rate with this transfer flush_interval_s (0: skip)")
    ap.add_argument("--many-files", type=int, default=1000, help="files for the many-files run")
    ap.add_argument("--many-rate", type=int, default=10_000, help="total lines/s over the many files")
    ap.add_argument("--many-seconds", type=float, default=30.0, help="idle window and load window, each")
    ap.add_argument("--console-docs", type=int, default=1_000_000, help="documents for the console's search runs")
    ap.add_argument("--console-rounds", type=int, default=10, help="rounds of the console's search queries")
    ap.add_argument("--tail-rate", type=int, default=100, help="lines/s for the console's live-tail run")
    ap.add_argument("--tail-seconds", type=float, default=30.0, help="length of the console's live-tail run")
    ap.add_argument("--parse-lines", type=int, default=500_000, help="lines for each parse run (part parse)")
    ap.add_argument("--parse-pairs", type=int, default=2,
                    help="plain/parsed pairs per data set (part parse), in ABBA order: plain, parsed, parsed, plain")
    ap.add_argument("--transfer-pairs", type=int, default=2,
                    help="rounds of the Kafka → ES contenders (part transfer), in ABBA order: logtransfer, rsyslog, "
                         "direct bulk, then reversed; the ratios are summed docs over summed seconds")
    ap.add_argument("--journal-entries", type=int, default=300_000,
                    help="entries written to the journal for the journal part (logagent vs rsyslog imjournal)")
    ap.add_argument("--skip-peers", action="store_true", help="only logferry (no rsyslog, kcat, direct bulk)")
    ap.add_argument("--quick", action="store_true",
                    help="a fast smoke run: 100k lines, 100k records, 15 s latency runs, 10 s many-files windows; "
                         "writes bench/results/quick.json, leaves BENCHMARKS.md alone")
    ap.add_argument("--only", default=",".join(PARTS), help=f"parts to run, from {', '.join(PARTS)}")
    ap.add_argument("--stack-dir", type=Path, help="use the stack already running in this work dir")
    ap.add_argument("--workdir", type=Path,
                    help="where data files and daemons' homes go (default: a temp dir, removed)")
    ap.add_argument("--es-heap-mb", type=int, default=1024, help="Elasticsearch heap when the bench starts the stack")
    ap.add_argument("--kafka-heap-mb", type=int, default=1024, help="Kafka heap when the bench starts the stack")
    ap.add_argument("--profile", action="store_true",
                    help="py-spy flame graph of logagent during the 1-file run: bench/results/agent.svg")
    ap.add_argument("--agent-src", type=Path,
                    help="run logagent from this source tree (PYTHONPATH) instead of the installed one: "
                         "for measuring a patch before/after")
    ap.add_argument("--src", type=Path,
                    help="run logagent and logtransfer from this source tree (PYTHONPATH): for measuring older "
                         "code on today's machine (e.g. a 'git worktree' of the commit before a change)")
    ap.add_argument("--out", type=Path,
                    help="results JSON (default bench/results/latest.json; run.json with --no-report, "
                         "quick.json with --quick)")
    ap.add_argument("--no-report", action="store_true", help="do not rewrite BENCHMARKS.md's results section nor "
                    "bench/results/latest.json (a trial run)")
    a = ap.parse_args(argv)
    if a.quick:
        a.lines = min(a.lines, 100_000)
        a.transfer_records = min(a.transfer_records, 100_000)
        a.latency_seconds = min(a.latency_seconds, 15.0)
        a.many_seconds = min(a.many_seconds, 10.0)
        a.console_docs = min(a.console_docs, 100_000)
        a.console_rounds = min(a.console_rounds, 3)
        a.tail_seconds = min(a.tail_seconds, 10.0)
        a.parse_lines = min(a.parse_lines, 100_000)
        a.transfer_pairs = min(a.transfer_pairs, 1)
        a.journal_entries = min(a.journal_entries, 50_000)
        a.no_report = True
    # latest.json is the committed record of the last full run: a run that does not report does not
    # overwrite it either
    a.out = a.out or REPO / "bench" / "results" / ("quick.json" if a.quick else "run.json" if a.no_report
                                                   else "latest.json")
    a.parts = [p.strip() for p in a.only.split(",") if p.strip()]
    bad = [p for p in a.parts if p not in PARTS]
    if bad:
        ap.error(f"--only: unknown part(s) {bad}; choose from {', '.join(PARTS)}")
    a.file_counts = [int(x) for x in a.files.split(",") if x]
    a.rate_list = [int(x) for x in a.rates.split(",") if x]
    return a


def use_sources(src: Path | None, agent_src: Path | None) -> dict[str, str]:
    """Point the daemons the bench starts at other source trees; what to record in the results.

    ``--src`` moves both logagent and logtransfer (older code measured on today's machine, beside
    today's peers); ``--agent-src`` then overrides the agent's alone.
    """
    out: dict[str, str] = {}
    if src is not None:
        common.AGENT_ENV["PYTHONPATH"] = common.TRANSFER_ENV["PYTHONPATH"] = str(src.resolve())
        out["agent_src"] = out["transfer_src"] = str(src.resolve())
    if agent_src is not None:
        common.AGENT_ENV["PYTHONPATH"] = out["agent_src"] = str(agent_src.resolve())
    return out


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    from . import latency, manyfiles, throughput
    from .gen import write_files

    t_start = time.monotonic()
    results: dict = {
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        "machine": common.machine(),
        "loadavg_start": common.loadavg(),
        "throughput": [], "transfer": [], "latency": [], "manyfiles": None, "console": None, "parse": None,
        "journal": None,
        "errors": [],
    }
    results.update(use_sources(a.src, a.agent_src))
    peers = not a.skip_peers and common.ensure_peers()
    results["versions"] = common.versions()
    tmp = None
    if a.workdir:
        work = a.workdir.resolve()
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.mkdtemp(prefix="logferry-bench-")
        work = Path(tmp)
    say(f"work dir {work}; load average {results['loadavg_start']}")
    stack = common.stack_attach(a.stack_dir.resolve()) if a.stack_dir else \
        common.stack_up(work / "stack", a.es_heap_mb, a.kafka_heap_mb)
    results["stack"] = {"owned": stack.owned, "es_heap_mb": a.es_heap_mb if stack.owned else None,
                        "kafka_heap_mb": a.kafka_heap_mb if stack.owned else None}
    timeout = max(300.0, a.lines / 2000)  # never less than 2,000 lines/s
    try:
        if "throughput" in a.parts:
            data = work / "data"
            for nf in a.file_counts:
                say(f"generating {a.lines:,} lines in {nf} file(s)")
                paths = write_files(data / f"{a.lines}-{nf}", a.lines, nf)
                runs = [("logagent", throughput.run_logagent)]
                if peers:
                    runs += [("rsyslog", throughput.run_rsyslog), ("kcat", throughput.run_kcat)]
                for name, fn in runs:
                    kw = {}
                    if name == "logagent" and a.profile and nf == a.file_counts[0]:
                        kw["profile_svg"] = REPO / "bench" / "results" / "agent.svg"
                    try:
                        results["throughput"].append(fn(stack, paths, a.lines, work, timeout_s=timeout, **kw))
                    except Exception as e:
                        _fail(results, f"throughput {name} {nf} files", e)
                _save(a.out, results)
        if "transfer" in a.parts:
            _transfer(a, stack, work, results, peers)
            _save(a.out, results)
        if "latency" in a.parts:
            for rate in a.rate_list:
                try:
                    results["latency"].append(latency.run_latency(stack, work, rate, a.latency_seconds))
                except Exception as e:
                    _fail(results, f"latency {rate}/s", e)
                _save(a.out, results)
            if a.latency_tuned_flush and a.rate_list:
                rate = min(a.rate_list)
                tuned = {"flush_interval_s": a.latency_tuned_flush}
                try:
                    results["latency"].append(latency.run_latency(stack, work, rate, a.latency_seconds,
                                                                  transfer_overrides=tuned,
                                                                  label=f"flush_interval_s={a.latency_tuned_flush}"))
                except Exception as e:
                    _fail(results, f"latency {rate}/s tuned", e)
                _save(a.out, results)
        if "manyfiles" in a.parts:
            try:
                results["manyfiles"] = manyfiles.run_manyfiles(stack, work, files=a.many_files,
                                                               idle_s=a.many_seconds, rate=a.many_rate,
                                                               load_s=a.many_seconds)
            except Exception as e:
                _fail(results, "manyfiles", e)
        if "console" in a.parts:
            from . import console_bench

            results["console"] = {}
            try:
                results["console"]["search"] = console_bench.run_search_context(stack, work, a.console_docs,
                                                                               a.console_rounds)
            except Exception as e:
                _fail(results, "console search", e)
            try:
                results["console"]["tail"] = console_bench.run_tail(stack, work, a.tail_rate, a.tail_seconds)
            except Exception as e:
                _fail(results, "console tail", e)
            _save(a.out, results)
        if "parse" in a.parts:
            from . import parse_bench

            try:
                results["parse"] = parse_bench.run_parse(stack, work, a.parse_lines, timeout_s=timeout,
                                                       pairs=a.parse_pairs)
            except Exception as e:
                _fail(results, "parse", e)
            _save(a.out, results)
        if "journal" in a.parts:
            from . import journal_bench

            try:
                results["journal"] = journal_bench.run_journal(stack, work, a.journal_entries, timeout_s=timeout,
                                                               peers=peers)
            except Exception as e:
                _fail(results, "journal", e)
            _save(a.out, results)
    finally:
        results["loadavg_end"] = common.loadavg()
        results["duration_s"] = round(time.monotonic() - t_start, 1)
        common.stack_down(stack)
        if tmp:
            common.rmtree(Path(tmp))
    from .report import goals, markdown, update_benchmarks_md

    results["goals"] = goals(results)
    _save(a.out, results)
    md = markdown(results)
    (a.out.with_suffix(".md")).write_text(md)
    if not a.no_report:
        update_benchmarks_md(REPO / "BENCHMARKS.md", md)
    print(md)
    say(f"done in {results['duration_s'] / 60:.1f} min; results in {a.out}")
    return 1 if results["errors"] else 0


def _transfer(a: argparse.Namespace, stack: common.StackRef, work: Path, results: dict, peers: bool) -> None:
    from . import throughput, transfer_bench
    from .gen import write_files

    n = a.transfer_records
    timeout = max(300.0, n / 500)
    say(f"transfer: filling the source topic with {n:,} logagent records")
    paths = write_files(work / "data" / f"{n}-1", n, 1)
    src = f"bench-src-{int(time.time())}"
    try:
        throughput.run_logagent(stack, paths, n, work, timeout_s=timeout, label="logagent (source fill)",
                                keep_topic=src)
        values, _keys = transfer_bench.read_topic_values(stack, src, n)
        if len(values) != n:
            raise RuntimeError(f"the source topic holds {len(values)} records, not {n}")
        # warm ES up until its JIT has little left to compile: a 50k warm-up left ~9 CPU-s of
        # compilation to the first contender, which made ES look twice as busy for logtransfer
        transfer_bench.warm_up_es(stack, values, timeout_s=timeout)
    except Exception as e:
        _fail(results, "transfer source", e)
        return
    contenders = {"logtransfer": lambda: transfer_bench.run_logtransfer(stack, work, src, n, timeout_s=timeout),
                  "rsyslog": lambda: transfer_bench.run_rsyslog_es(stack, work, src, n, timeout_s=timeout),
                  "direct": lambda: transfer_bench.run_direct_bulk(stack, values, threads=3, timeout_s=timeout)}
    # ABBA over the contenders: with one run of each, the transfer's ratio to rsyslog moved between
    # 1.15x and 1.39x over four bench runs of the same code
    order = common.abba(["logtransfer", "rsyslog", "direct"] if peers else ["logtransfer"], a.transfer_pairs)
    for i, name in enumerate(order, 1):
        try:
            results["transfer"].append(contenders[name]() | {"run": i})
        except Exception as e:
            _fail(results, f"transfer {name} (run {i})", e)
    if peers:
        try:
            results["transfer_es_core"] = transfer_bench.run_es_own_core(stack, work, src, values, timeout_s=timeout)
        except Exception as e:
            _fail(results, "transfer with ES on its own core", e)
    common.delete_topics(stack.kafka, [src])


def _fail(results: dict, what: str, e: BaseException) -> None:
    say(f"FAILED: {what}: {e}")
    traceback.print_exc(file=sys.stderr)
    results["errors"].append({"step": what, "error": f"{type(e).__name__}: {e}"})


def _save(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
