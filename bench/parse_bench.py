"""Part 6: what parsing costs logagent (issue 24), side by side in one run on the same files.

Two data sets, each shipped twice by a fresh agent to a fresh topic: nginx ``combined`` access
lines without ``parse`` and with ``{"format": "nginx_combined"}``; JSON application lines without
``parse`` and with ``{"format": "json"}``. The figure is the parsed run's lines/s over the plain
run's on the same lines (goal: at least 0.7). The path measured is files → Kafka, where parsing
runs (the agent); the clock and CPU are part 1's (bench/throughput.py ``run_logagent``).

With ``LOGFERRY_PARSE_BASELINE_SRC=<a source tree of another agent>`` each data set is also shipped
parsed by that agent (``PYTHONPATH``), between the two runs: before/after figures of a parser change
side by side in one run, under the same load (results under ``before_*``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import common
from .common import StackRef, say
from .throughput import run_logagent

#: the goal of issue 24: parsed throughput at least this share of the unparsed one
GOAL = 0.7

_AGENTS = ("curl/8.5.0", "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
           "Go-http-client/1.1", "kube-probe/1.29")
_PATHS = ("/", "/api/v1/cart?id={n}", "/static/app.{n}.js", "/login", "/api/v1/items/{n}/reviews?page=2")


#: lines a second in the generated logs (a busy server's lines share their time text)
PER_SECOND = 200


def nginx_line(n: int) -> str:
    """A realistic combined line: varied addresses, paths, statuses, sizes and user agents."""
    status = (200, 200, 200, 200, 304, 301, 404, 500, 502)[n % 9]
    s = n // PER_SECOND
    return (f"10.{n % 7}.{n // 256 % 256}.{n % 256} - - [04/Dec/2026:{s // 3600 % 24:02d}:{s // 60 % 60:02d}:"
            f"{s % 60:02d} +0000] \"{'GET' if n % 5 else 'POST'} {_PATHS[n % 5].format(n=n)} HTTP/1.1\" "
            f"{status} {n * 37 % 90_000} \"https://shop.example/p/{n % 100}\" \"{_AGENTS[n % 4]}\"")


def json_line(n: int) -> str:
    """A typical structured application line: a dozen fields, one nested object."""
    s = n // PER_SECOND
    return json.dumps({"time": f"2026-12-04T10:{s // 60 % 60:02d}:{s % 60:02d}.{n % 1000:03d}Z",
                       "level": ("info", "info", "warn", "error")[n % 4], "logger": "checkout.cart",
                       "msg": f"cart updated for order {n}", "order_id": n, "items": n % 9,
                       "amount": round(n * 1.37 % 500, 2), "duration_ms": n % 1200, "trace_id": f"{n:032x}",
                       "user": {"id": n % 5000, "country": ("de", "fr", "us")[n % 3]}, "ok": n % 7 != 0})


def write(path: Path, lines: int, make) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for start in range(0, lines, 10_000):
            f.write("".join(make(n) + "\n" for n in range(start, min(lines, start + 10_000))))
    return path


def run_parse(stack: StackRef, work: Path, lines: int, *, timeout_s: float) -> dict:
    """Plain and parsed runs of both data sets; returns each run and the parsed/plain ratios."""
    sets = {
        "nginx_combined": (write(work / "data" / f"parse-nginx-{lines}" / "access.log", lines, nginx_line),
                           {"parse": {"format": "nginx_combined"}}),
        "json": (write(work / "data" / f"parse-json-{lines}" / "app.log", lines, json_line),
                 {"parse": {"format": "json", "target": "app"}}),
    }
    out: dict = {"lines": lines, "goal": GOAL, "runs": [], "ratios": {}}
    baseline = os.environ.get("LOGFERRY_PARSE_BASELINE_SRC")
    if baseline:
        out["baseline_src"] = str(Path(baseline).resolve())
    for name, (path, parse) in sets.items():
        plain = run_logagent(stack, [path], lines, work, timeout_s=timeout_s, label=f"logagent {name} plain")
        before = None
        if baseline:
            saved = dict(common.AGENT_ENV)
            common.AGENT_ENV["PYTHONPATH"] = out["baseline_src"]
            try:
                before = run_logagent(stack, [path], lines, work, timeout_s=timeout_s,
                                      label=f"logagent {name} parsed (baseline {baseline})", input_extra=parse)
            finally:
                common.AGENT_ENV.clear()
                common.AGENT_ENV.update(saved)
            out["runs"].append(before | {"data": name, "parse": parse["parse"], "baseline": True})
        parsed = run_logagent(stack, [path], lines, work, timeout_s=timeout_s, label=f"logagent {name} parsed",
                              input_extra=parse)
        out["runs"] += [plain | {"data": name, "parse": None}, parsed | {"data": name, "parse": parse["parse"]}]
        if plain.get("lines_per_s") and parsed.get("lines_per_s"):
            ratio = parsed["lines_per_s"] / plain["lines_per_s"]
            out["ratios"][name] = {"ratio": round(ratio, 2), "plain_lines_per_s": plain["lines_per_s"],
                                   "parsed_lines_per_s": parsed["lines_per_s"],
                                   "plain_cpu_us_per_line": plain["cpu_us_per_line"],
                                   "parsed_cpu_us_per_line": parsed["cpu_us_per_line"], "met": ratio >= GOAL}
            if before and before.get("lines_per_s"):
                out["ratios"][name] |= {
                    "before_ratio": round(before["lines_per_s"] / plain["lines_per_s"], 2),
                    "before_parsed_lines_per_s": before["lines_per_s"],
                    "before_parsed_cpu_us_per_line": before["cpu_us_per_line"]}
                say(f"parse {name} baseline: {before['lines_per_s']:,} lines/s = "
                    f"{before['lines_per_s'] / plain['lines_per_s']:.2f}x; CPU {before['cpu_us_per_line']} µs/line")
            say(f"parse {name}: {parsed['lines_per_s']:,} lines/s parsed vs {plain['lines_per_s']:,} plain = "
                f"{ratio:.2f}x (goal {GOAL}x); CPU {parsed['cpu_us_per_line']} vs {plain['cpu_us_per_line']} µs/line")
    return out
