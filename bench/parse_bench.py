"""Part 6: what parsing costs logagent (issue 24), side by side in one run on the same files.

Two data sets, each shipped by a fresh agent to a fresh topic for every run: nginx ``combined``
access lines without ``parse`` and with ``{"format": "nginx_combined"}``; JSON application lines
without ``parse`` and with ``{"format": "json"}``. Plain and parsed runs alternate in ABBA order
(``plain, parsed, parsed, plain`` for the default 2 pairs, ``--parse-pairs``): one pair on a shared
2-core machine gave 0.72x and 0.68x for the same code. The figure is the parsed runs' summed lines
over their summed seconds, against the plain runs' the same (goal: at least 0.7; why summed:
:func:`summarize`). The path measured is files → Kafka, where parsing runs (the agent); the clock
and CPU are part 1's (bench/throughput.py ``run_logagent``).

With ``LOGFERRY_PARSE_BASELINE_SRC=<a source tree of another agent>`` each data set is also shipped
parsed by that agent (``PYTHONPATH``), next to each parsed run (``plain, before, parsed, parsed,
before, plain``): before/after figures of a parser change side by side in one run, under the same
load (results under ``before_*``).
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


def order(pairs: int, baseline: bool) -> list[str]:
    """The runs of one data set, in ABBA order (``common.abba``: why): ``plain, parsed, parsed, plain``
    for 2 pairs, the baseline's parsed run between the two when there is one (``plain, before, parsed,
    parsed, before, plain``). One plain/parsed pair put the machine's drift whole into the ratio (0.72x
    and 0.68x for the same code in two runs).
    """
    return common.abba(["plain", "before", "parsed"] if baseline else ["plain", "parsed"], pairs)


def summarize(runs: list[dict]) -> dict | None:
    """One data set's figures from its runs (each marked ``variant``: plain, parsed or before), or
    None when the plain or the parsed runs have none complete (a failed run is left out of the sums).

    The ratio is the parsed runs' summed lines over their summed seconds, against the plain runs'
    the same (and so for CPU: summed CPU seconds over summed lines). Why summed rather than the
    median of per-pair ratios: with the default 2 pairs a median is the mean of two ratios, no more
    robust; sums over an ABBA order cancel a linear drift, and they are what "lines/s of all the
    runs" means. The per-pair ratios are kept beside it (``pair_ratios``) to show the spread.
    """
    by: dict[str, list[dict]] = {}
    for r in runs:
        if r.get("ok") and r.get("lines_per_s"):
            by.setdefault(r["variant"], []).append(r)
    if not by.get("plain") or not by.get("parsed"):
        return None

    def agg(variant: str) -> tuple[int, float]:
        rs = by[variant]
        lines, cpu = sum(r["lines"] for r in rs), sum(r["cpu_s"] for r in rs)
        return round(common.summed_rate(rs, "lines")), round(cpu / lines * 1e6, 2)

    plain_lps, plain_cpu = agg("plain")
    parsed_lps, parsed_cpu = agg("parsed")
    ratio = parsed_lps / plain_lps
    out = {"ratio": round(ratio, 2), "plain_lines_per_s": plain_lps, "parsed_lines_per_s": parsed_lps,
           "plain_cpu_us_per_line": plain_cpu, "parsed_cpu_us_per_line": parsed_cpu, "met": ratio >= GOAL,
           "runs_per_variant": {v: len(rs) for v, rs in by.items()},
           "pair_ratios": _pair_ratios(runs, "parsed")}
    if by.get("before"):
        before_lps, before_cpu = agg("before")
        out |= {"before_ratio": round(before_lps / plain_lps, 2), "before_parsed_lines_per_s": before_lps,
                "before_parsed_cpu_us_per_line": before_cpu, "before_pair_ratios": _pair_ratios(runs, "before")}
    return out


def _pair_ratios(runs: list[dict], variant: str) -> list[float | None]:
    """``variant``'s lines/s over plain's in each pair (runs carry their ``pair``); None for a pair
    with a failed run."""
    pairs: dict[int, dict[str, float | None]] = {}
    for r in runs:
        pairs.setdefault(r["pair"], {})[r["variant"]] = r.get("lines_per_s")
    return [round(p[variant] / p["plain"], 3) if p.get(variant) and p.get("plain") else None
            for _, p in sorted(pairs.items())]


def run_parse(stack: StackRef, work: Path, lines: int, *, timeout_s: float, pairs: int = 2) -> dict:
    """Plain and parsed runs of both data sets, ``pairs`` of each in ABBA order (:func:`order`);
    returns every run (marked ``variant`` and ``pair``) and each data set's parsed/plain ratios
    (:func:`summarize`)."""
    if pairs < 1:
        raise ValueError(f"--parse-pairs {pairs}: give at least 1 (2 or more for the ABBA order)")
    sets = {
        "nginx_combined": (write(work / "data" / f"parse-nginx-{lines}" / "access.log", lines, nginx_line),
                           {"parse": {"format": "nginx_combined"}}),
        "json": (write(work / "data" / f"parse-json-{lines}" / "app.log", lines, json_line),
                 {"parse": {"format": "json", "target": "app"}}),
    }
    out: dict = {"lines": lines, "goal": GOAL, "pairs": pairs, "runs": [], "ratios": {}}
    baseline = os.environ.get("LOGFERRY_PARSE_BASELINE_SRC")
    if baseline:
        out["baseline_src"] = str(Path(baseline).resolve())
    seq = order(pairs, bool(baseline))
    per_pair = len(seq) // pairs
    for name, (path, parse) in sets.items():
        runs: list[dict] = []
        for i, variant in enumerate(seq):
            pair = i // per_pair
            label = f"logagent {name} {variant} (pair {pair + 1}/{pairs})"
            saved = dict(common.AGENT_ENV)
            if variant == "before":  # the baseline agent's tree first on the agent's path
                common.AGENT_ENV["PYTHONPATH"] = out["baseline_src"]
                label += f" baseline {baseline}"
            try:
                res = run_logagent(stack, [path], lines, work, timeout_s=timeout_s, label=label,
                                   input_extra=None if variant == "plain" else parse)
            finally:
                common.AGENT_ENV.clear()
                common.AGENT_ENV.update(saved)
            runs.append(res | {"data": name, "parse": None if variant == "plain" else parse["parse"],
                               "variant": variant, "pair": pair})
        out["runs"] += runs
        r = summarize(runs)
        if r is None:
            say(f"parse {name}: no ratio (a plain or parsed run did not complete)")
            continue
        out["ratios"][name] = r
        if "before_ratio" in r:
            say(f"parse {name} baseline: {r['before_parsed_lines_per_s']:,} lines/s = {r['before_ratio']:.2f}x "
                f"(pairs {r['before_pair_ratios']}); CPU {r['before_parsed_cpu_us_per_line']} µs/line")
        say(f"parse {name}: {r['parsed_lines_per_s']:,} lines/s parsed vs {r['plain_lines_per_s']:,} plain = "
            f"{r['ratio']:.2f}x over {pairs} ABBA pair(s) (pairs {r['pair_ratios']}; goal {GOAL}x); "
            f"CPU {r['parsed_cpu_us_per_line']} vs {r['plain_cpu_us_per_line']} µs/line")
    return out
