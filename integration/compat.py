"""``make compat``: the end-to-end delivery test on each cell of the version matrix.

For every cell a stack of those versions is started (``integration/stack``, in its own work dir on
free ports), ``integration/test_compat.py`` runs on it, and the stack is stopped. The results
(versions, what was checked, pass/fail, time) are printed as a table and, with ``--write-doc``,
put into docs/compatibility.md between its result markers.

    python -m integration.compat                        # all six cells
    python -m integration.compat --cells kafka4-opensearch
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from integration.stack import Stack, StackError, StackOptions
from integration.stack import downloads as dl
from integration.stack import elasticsearch as es_build
from integration.stack import opensearch as os_build

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "compatibility.md"
BEGIN, END = "<!-- compat-results:begin -->", "<!-- compat-results:end -->"
CHECKED = ("agent → Kafka → transfer → index, 20,000 lines, kill -9 of agent (Kafka frozen) and transfer "
           "(engine frozen, bulk in flight), exact count and every line once")


@dataclass(frozen=True)
class Cell:
    kafka: str  # "3" | "4"
    search: str  # "es8" | "es9" | "opensearch"
    etcd: str  # "3.4" | "3.6"

    @property
    def name(self) -> str:
        return f"kafka{self.kafka}-{self.search}"

    def versions(self) -> tuple[str, str, str]:
        kafka = f"{dl.KAFKA_VERSION} + ZooKeeper" if self.kafka == "3" else f"{dl.KAFKA4_VERSION} KRaft"
        search = {"es8": f"Elasticsearch {es_build.ES_VERSION}", "es9": f"Elasticsearch {es_build.ES9_VERSION}",
                  "opensearch": f"OpenSearch {os_build.OPENSEARCH_VERSION}"}[self.search]
        etcd = "3.4 (Debian)" if self.etcd == "3.4" else f"{dl.ETCD36_VERSION}"
        return kafka, search, etcd


# etcd 3.6 on the Kafka 4 row, Debian's 3.4 on the default row: both versions meet every engine.
CELLS = [Cell(k, s, "3.4" if k == "3" else "3.6") for k in ("3", "4") for s in ("es8", "es9", "opensearch")]


def _log(msg: str) -> None:
    print(f"[compat] {msg}", flush=True)


def run_cell(cell: Cell, workdir: Path, pytest_args: list[str]) -> dict:
    started = time.monotonic()
    stack = Stack(workdir=workdir / cell.name,
                  options=StackOptions(kafka=cell.kafka, search=cell.search, etcd=cell.etcd), log=_log)
    result: dict = {"cell": cell.name, "versions": cell.versions(), "ok": False, "note": "",
                    "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
    try:
        stack.up()
        up_s = time.monotonic() - started
        out = workdir / f"{cell.name}.result.json"
        out.unlink(missing_ok=True)
        env = dict(os.environ, LOGFERRY_STACK_DIR=str(stack.workdir), LOGFERRY_COMPAT_RESULT=str(out))
        proc = subprocess.run([sys.executable, "-m", "pytest", "integration/test_compat.py", "-q", "-s",
                               "-p", "no:cacheprovider", *pytest_args], cwd=ROOT, env=env)
        result["ok"] = proc.returncode == 0 and out.exists()
        if out.exists():
            detail = json.loads(out.read_text())
            result["note"] = f"{detail['documents']} documents for {detail['lines']} lines; {detail['engine']}"
        else:
            result["note"] = f"pytest exited {proc.returncode}"
        result["stack_s"] = round(up_s, 1)
    except (StackError, RuntimeError) as e:
        result["note"] = f"stack did not start: {str(e).splitlines()[0][:200]}"
    finally:
        stack.down()
    result["seconds"] = round(time.monotonic() - started, 1)
    (workdir / f"{cell.name}.cell.json").write_text(json.dumps(result) + "\n")
    return result


def table(results: list[dict]) -> str:
    rows = ["| Kafka | search engine | etcd | result | time (stack up + test) | run | what the test saw |",
            "|---|---|---|---|---|---|---|"]
    for r in results:
        kafka, search, etcd = r["versions"]
        rows.append(f"| {kafka} | {search} | {etcd} | {'pass' if r['ok'] else '**FAIL**'} | "
                    f"{r['seconds']:.0f} s ({r.get('stack_s', 0):.0f} s + {r['seconds'] - r.get('stack_s', 0):.0f} s)"
                    f" | {r.get('when', '?')} | {r['note']} |")
    return (f"`make compat` on this machine (2 cores, shared with other work). Each cell: {CHECKED}.\n\n"
            + "\n".join(rows) + "\n")


def write_doc(text: str) -> None:
    doc = DOC.read_text()
    if BEGIN not in doc or END not in doc:
        raise SystemExit(f"{DOC} has no {BEGIN} … {END} markers to put the table between")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m integration.compat", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", default="all", help="comma-separated cell names, or all: "
                    + ", ".join(c.name for c in CELLS))
    ap.add_argument("--workdir", type=Path, default=Path("/tmp") / f"logferry-compat-{os.getpid()}")
    ap.add_argument("--write-doc", action="store_true", help=f"put the table into {DOC.relative_to(ROOT)}")
    args, pytest_args = ap.parse_known_args(argv)
    wanted = [c for c in CELLS if args.cells == "all" or c.name in args.cells.split(",")]
    unknown = set(args.cells.split(",")) - {c.name for c in CELLS} - {"all"}
    if unknown or not wanted:
        print(f"compat: unknown cell(s) {', '.join(sorted(unknown))}; known: {', '.join(c.name for c in CELLS)}",
              file=sys.stderr)
        return 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results = []
    for cell in wanted:
        _log(f"cell {cell.name}: {', '.join(cell.versions())}")
        results.append(run_cell(cell, args.workdir, pytest_args))
        _log(f"cell {cell.name}: {'pass' if results[-1]['ok'] else 'FAIL'} in {results[-1]['seconds']:.0f}s")
    print(table(results) + f"\nThis run: {len(results)} cell(s) in {time.monotonic() - started:.0f} s.\n")
    if args.write_doc:
        # every cell's latest result in this work dir, so re-running one cell updates its row only
        latest = [json.loads(f.read_text()) for c in CELLS if (f := args.workdir / f"{c.name}.cell.json").exists()]
        total = sum(r["seconds"] for r in latest)
        write_doc(table(latest) + f"\nAll {len(latest)} cells: {total:.0f} s of stack and test time.\n")
        _log(f"table written to {DOC}")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
