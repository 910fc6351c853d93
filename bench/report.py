"""Turn a results dict into the goal verdicts and the Markdown tables of BENCHMARKS.md."""

from __future__ import annotations

import re
from pathlib import Path

from .common import docs_rate

START = "<!-- bench:results:start (written by `make bench`; edit outside these markers) -->"
END = "<!-- bench:results:end -->"


def _cores(cpu_s: float | None, r: dict) -> str:
    return "—" if cpu_s is None or not r.get("seconds") else f"{cpu_s / r['seconds']:.2f}"


def _cores_table(runs: list[dict]) -> list[str]:
    """Where the machine's cores went during each Kafka → ES run: CPU-seconds ÷ the run's seconds.

    Why: on shared cores ES is the bottleneck, so what the contender and the broker take, and what
    nobody uses (idle: pacing lost), is what separates a contender from direct bulk.
    """
    runs = [r for r in runs if r.get("idle_cpu_s") is not None]
    if not runs:
        return []
    out = ["Where the cores went during each run (CPU-seconds ÷ the run's seconds; direct bulk's posting "
           "threads are the bench's own, its bodies built before its clock starts):", "",
           "| run | tool | ES cores | Kafka broker cores | the contender's cores | idle cores |",
           "|---:|---|---:|---:|---:|---:|"]
    for i, r in enumerate(runs, 1):
        cores = [_cores(r.get(k), r) for k in ("es_cpu_s", "kafka_cpu_s", "cpu_s", "idle_cpu_s")]
        out.append(f"| {r.get('run', i)} | {r['tool']} | {' | '.join(cores)} |")
    return [*out, ""]


def _find(rows: list[dict], tool: str, **match) -> dict | None:
    for r in rows:
        if r.get("tool") == tool and all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def goals(res: dict) -> list[dict]:
    """The goals of issue 13 (and the console's and issue 24's parsing), each met or not, from one run's results."""
    out = []

    def add(goal: str, met: bool | None, **value) -> None:
        out.append({"goal": goal, "met": met, **value})

    tp = res.get("throughput") or []
    for nf in sorted({r["files"] for r in tp}):
        ag, rs = _find(tp, "logagent", files=nf), _find(tp, "rsyslog", files=nf)
        label = f"{nf} file{'s' if nf > 1 else ''}"
        r = _ratio(ag and ag["lines_per_s"], rs and rs["lines_per_s"])
        add(f"files → Kafka lines/s ≥ 1.5× rsyslog ({label})", None if r is None else r >= 1.5, ratio=r)
        if ag and nf == 1 and ag.get("cpu_us_per_line") is not None:
            add("files → Kafka ≤ 5 µs agent CPU per line (1 file)", ag["cpu_us_per_line"] <= 5,
                value_us=ag["cpu_us_per_line"])
        if ag and ag.get("peak_rss_mb") is not None:
            add(f"files → Kafka agent peak RSS ≤ 100 MB ({label})", ag["peak_rss_mb"] <= 100,
                value_mb=ag["peak_rss_mb"])
    tr = res.get("transfer") or []
    for peer, want in (("direct bulk", 0.8), ("rsyslog", 1.2)):
        r = _ratio(docs_rate(tr, "logtransfer"), docs_rate(tr, peer))
        add(f"Kafka → ES docs/s ≥ {want}× {peer}", None if r is None else r >= want, ratio=r)
    own = (res.get("transfer_es_core") or {}).get("ratio")
    if own is not None:  # the same goal where the transfer's CPU is not taken from ES (see part 2)
        add("Kafka → ES docs/s ≥ 0.8× direct bulk, ES on its own core", own >= 0.8, ratio=own)
    for lat in res.get("latency") or []:
        if lat.get("rate") in (1_000, 10_000) and not lat.get("tuned"):
            p99 = lat.get("p99_s")
            add(f"p99 append→searchable ≤ 1.5 s at {lat['rate']:,} lines/s (defaults)",
                p99 is not None and p99 <= 1.5, value_s=p99)
    mf = res.get("manyfiles")
    if mf and mf.get("idle"):
        add("1,000 files idle ≤ 1% of a core", mf["idle"]["cpu_pct"] <= 1.0, value_pct=mf["idle"]["cpu_pct"])
        ld = mf.get("load") or {}
        if ld.get("cpu_us_per_line") is not None:
            add(f"1,000 files at {ld.get('rate', 10_000):,} lines/s ≤ 20 µs CPU per line",
                ld["cpu_us_per_line"] <= 20, value_us=ld["cpu_us_per_line"])
        worst = max(mf["idle"]["rss_mb"], ld.get("peak_rss_mb", 0))
        add("agent RSS ≤ 100 MB with 1,000 files (idle and under load)", worst <= 100, value_mb=worst)
    for data, r in ((res.get("parse") or {}).get("ratios") or {}).items():  # issue 24
        add(f"parsed lines/s ≥ 0.7× plain ({data}, in logagent)",
            None if r.get("ratio") is None else r["ratio"] >= 0.7, ratio=r.get("ratio"))
    con = res.get("console") or {}
    cs, ct = con.get("search") or {}, con.get("tail") or {}
    if cs:
        out.append({"goal": f"console search p95 ≤ 300 ms (24 h, {cs['docs']:,} docs)", "value_ms": cs["search_p95_ms"],
                    "met": cs["search_p95_ms"] <= 300})
        out.append({"goal": "console context p95 ≤ 150 ms", "value_ms": cs["context_p95_ms"],
                    "met": cs["context_p95_ms"] <= 150})
    if ct:
        out.append({"goal": "console live tail p99 append→shown ≤ 2 s", "value_s": ct["p99_s"],
                    "met": ct["p99_s"] is not None and ct["p99_s"] <= 2.0})
    return out


def _busy(la0: list[float], la1: list[float]) -> bool:
    """More runnable work than the machine's 2 cores, besides the bench itself (~2)."""
    return max([*la0[:1], *la1[:1], 0]) > 2.5


def _n(x, fmt="{:,}") -> str:
    return "—" if x is None else fmt.format(x)


def markdown(res: dict) -> str:
    m = res.get("machine", {})
    v = res.get("versions", {})
    la0, la1 = res.get("loadavg_start", []), res.get("loadavg_end", [])
    a = res.get("args", {})
    lines = [
        f"Run of {res.get('started_at', '?')} (`python -m bench {'--quick ' if a.get('quick') else ''}"
        f"--lines {a.get('lines')} --files {a.get('files')}`), {res.get('duration_s', 0) / 60:.1f} min. "
        f"Machine: {m.get('cpus')} × {m.get('cpu_model')}, {m.get('mem_gib')} GiB, {m.get('os')}, "
        f"kernel {m.get('kernel')}, Python {m.get('python')}. "
        f"Load average (1/5/15 min) at start {la0}, at end {la1}"
        + (" — **the machine was shared and busy: the figures are pessimistic**." if _busy(la0, la1) else "."),
        "",
        f"librdkafka {v.get('librdkafka')} (confluent-kafka {v.get('confluent_kafka')}); rsyslog {v.get('rsyslog')}; "
        f"kcat {v.get('kcat')}.",
        "",
    ]
    tp = res.get("throughput") or []
    if tp:
        lines += ["### 1. Files → Kafka (6 partitions, acks=all, idempotent, lz4)", "",
                  "| files | tool | lines | seconds | lines/s | MB/s | CPU s | µs CPU/line | peak RSS MB "
                  "| vs rsyslog | vs kcat |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in tp:
            rs = _find(tp, "rsyslog", files=r["files"])
            kc = _find(tp, "kcat", files=r["files"])
            lines.append(
                f"| {r['files']} | {r['tool']} | {r['lines']:,} | {r['seconds']} | {_n(r['lines_per_s'])} | "
                f"{_n(r['mb_per_s'])} | {r['cpu_s']} | {_n(r['cpu_us_per_line'])} | {r['peak_rss_mb']} | "
                f"{_n(_ratio(r['lines_per_s'], rs and rs['lines_per_s']), '{}×')} | "
                f"{_n(_ratio(r['lines_per_s'], kc and kc['lines_per_s']), '{}×')} |")
        lines.append("")
        for r in tp:
            if r.get("extra_records"):
                lines.append(f"- {r['tool']}, {r['files']} file(s): the topic holds {r['records']:,} records for "
                             f"{r['lines']:,} lines ({r['extra_records']:+,}): see Findings.")
        lines.append("")
    tr = res.get("transfer") or []
    if tr:
        d, rs = docs_rate(tr, "direct bulk"), docs_rate(tr, "rsyslog")
        several = len(tr) > len({r.get("tool") for r in tr})
        lines += ["### 2. Kafka → Elasticsearch (1 node, `_id` = event.id, same mappings)", ""]
        if several:
            lines += ["In ABBA order; each run's ratios are to the peer's summed docs over summed seconds:", ""]
        lines += ["| run | tool | docs | seconds | docs/s | first doc searchable s | docs/s after it | CPU s | "
                  "peak RSS MB | ES CPU s (JIT) | vs direct bulk | vs rsyslog |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for i, r in enumerate(tr, 1):
            jit = r.get("es_jit_cpu_s")
            lines.append(
                f"| {r.get('run', i)} | {r['tool']} | {r['docs']:,} | {r['seconds']} | {_n(r['docs_per_s'])} | "
                f"{_n(r.get('first_doc_s'))} | {_n(r.get('docs_per_s_after_first'))} | {_n(r['cpu_s'])} | "
                f"{_n(r['peak_rss_mb'])} | {_n(r['es_cpu_s'])}{'' if jit is None else f' ({jit})'} | "
                f"{_n(_ratio(r['docs_per_s'], d), '{}×')} | {_n(_ratio(r['docs_per_s'], rs), '{}×')} |")
        lines.append("")
        if several:
            lt = docs_rate(tr, "logtransfer")
            sums = ", ".join(f"{t} {_n(round(x))}" for t in ("logtransfer", "rsyslog", "direct bulk")
                             if (x := docs_rate(tr, t)) is not None)
            lines += [f"Summed docs over summed seconds: {sums} docs/s; logtransfer ÷ direct bulk "
                      f"**{_n(_ratio(lt, d), '{}×')}**, ÷ rsyslog **{_n(_ratio(lt, rs), '{}×')}**.", ""]
        lines += _cores_table(tr)
    own = res.get("transfer_es_core")
    if own:
        lines += ["With Elasticsearch on its own core (ES on core 0; Kafka, logtransfer and direct bulk's posting "
                  "threads on core 1), in ABBA order; ratio = summed docs over summed seconds:", "",
                  "| run | tool | seconds | docs/s | first doc searchable s | docs/s after it | CPU s | ES CPU s |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|"]
        for i, r in enumerate(own["runs"], 1):
            lines.append(f"| {i} | {r['tool']} | {r['seconds']} | {_n(r['docs_per_s'])} | {_n(r.get('first_doc_s'))} | "
                         f"{_n(r.get('docs_per_s_after_first'))} | {_n(r['cpu_s'])} | {_n(r['es_cpu_s'])} |")
        lines += ["", f"logtransfer ÷ direct bulk: **{_n(own.get('ratio'), '{}×')}**", ""]
    lat = res.get("latency") or []
    if lat:
        lines += ["### 3. Append → searchable (logagent → Kafka → logtransfer → ES)", "",
                  "| lines/s | seconds | lines | probes seen | p50 s | p99 s | max s | append→read p50 / p99 s "
                  "| read→searchable p50 / p99 s | transfer config |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in lat:
            cfg = {k: v for k, v in (r.get("transfer_config") or {}).items() if k not in ("topics", "index")}
            lines.append(f"| {r['rate']:,} | {r['seconds']:.0f} | {r['lines']:,} | {r['probes_seen']}/{r['probes']} | "
                         f"{r['p50_s']} | {r['p99_s']} | {r['max_s']} | "
                         f"{r.get('append_to_read_p50_s')} / {r.get('append_to_read_p99_s')} | "
                         f"{r.get('read_to_searchable_p50_s')} / {r.get('read_to_searchable_p99_s')} | "
                         f"{cfg or 'defaults'} |")
        lines.append("")
    mf = res.get("manyfiles")
    if mf and mf.get("idle"):
        i, ld = mf["idle"], mf.get("load") or {}
        lines += [f"### 4. logagent with {mf['files']:,} files", "",
                  "| phase | seconds | CPU % of a core | RSS MB | peak RSS MB | notes |",
                  "|---|---:|---:|---:|---:|---|",
                  f"| idle | {i['seconds']:.0f} | {i['cpu_pct']} | {i['rss_mb']} | {i['rss_max_sampled_mb']} | "
                  f"start-up (read {mf['files'] * 5:,} lines) {mf.get('startup_s')} s |"]
        if ld:
            lines.append(f"| {ld['rate']:,} lines/s | {ld['seconds']} | {ld['cpu_pct']} | {ld['rss_mb']} | "
                         f"{ld['peak_rss_mb']} | {ld['cpu_us_per_line']} µs CPU/line; all delivered: "
                         f"{ld['all_delivered']}, caught up {ld['caught_up_after_writer_s']} s after the writer |")
        lines.append("")
    con = res.get("console") or {}
    cs, ct = con.get("search") or {}, con.get("tail") or {}
    if cs or ct:
        lines += ["### 5. The console", "", "| request | console p50 ms | console p95 ms | Elasticsearch directly "
                  "p50 / p95 ms | console p95 ÷ direct p95 | notes |", "|---|---:|---:|---:|---:|---|"]
        if cs:
            lines.append(f"| search page, 24 h (100 lines, histogram, topic/host/file counts, total) | "
                         f"{cs['search_p50_ms']} | {cs['search_p95_ms']} | "
                         f"{cs['direct_p50_ms']} / {cs['direct_p95_ms']} | {cs['search_p95_vs_direct']}× | "
                         f"{cs['docs']:,} documents, {len(cs['queries'])} queries × {cs['rounds']} rounds |")
            lines.append(f"| a line's context (10 before, 10 after) | {cs['context_p50_ms']} | "
                         f"{cs['context_p95_ms']} | — | — | {cs['contexts']} random lines |")
        if ct:
            lines.append(f"| live tail: append → shown (agent → Kafka → transfer → ES → console) | "
                         f"{ct['p50_s'] * 1000:.0f} | p99 {ct['p99_s'] * 1000:.0f} | — | — | {ct['rate']} lines/s, "
                         f"{ct['shown']}/{ct['lines']} shown |")
        lines.append("")
    pa = res.get("parse") or {}
    if pa.get("ratios"):
        lines += [f"### 6. Parsing in logagent ({pa['lines']:,} lines, plain vs parsed, side by side)", "",
                  "| data | plain lines/s | parsed lines/s | ratio | plain µs CPU/line | parsed µs CPU/line | "
                  "CPU ratio |", "|---|---:|---:|---:|---:|---:|---:|"]
        for data, r in pa["ratios"].items():
            cpu = _ratio(r.get("plain_cpu_us_per_line"), r.get("parsed_cpu_us_per_line"))
            lines.append(f"| {data} | {_n(r.get('plain_lines_per_s'))} | {_n(r.get('parsed_lines_per_s'))} | "
                         f"{r.get('ratio')}× | {r.get('plain_cpu_us_per_line')} | {r.get('parsed_cpu_us_per_line')} | "
                         f"{cpu}× |")
        lines.append("")
    jo = res.get("journal") or {}
    if jo.get("runs"):
        lines += [f"### 7. The systemd journal → Kafka ({jo['entries']:,} entries)", "",
                  "| tool | entries/s | CPU s | µs CPU/entry | peak RSS MB | vs rsyslog imjournal |",
                  "|---|---:|---:|---:|---:|---:|"]
        rs = _find(jo["runs"], "rsyslog imjournal")
        for r in jo["runs"]:
            vs = _ratio(r.get("lines_per_s"), rs and rs.get("lines_per_s"))
            lines.append(f"| {r['tool']} | {_n(r.get('lines_per_s'))} | {r.get('cpu_s')} | "
                         f"{r.get('cpu_us_per_line')} | {r.get('peak_rss_mb')} | {vs}× |")
        lines.append("")
    g = res.get("goals") or []
    if g:
        lines += ["### Goals", "", "| goal | measured | met |", "|---|---:|:---:|"]
        for x in g:
            val = x.get("ratio")
            shown = f"{val}×" if val is not None else next(
                (f"{x[k]}{unit}" for k, unit in (("value_s", " s"), ("value_mb", " MB"), ("value_ms", " ms"),
                                                  ("value_us", " µs"), ("value_pct", " %")) if x.get(k) is not None),
                "—")
            met = "—" if x["met"] is None else ("yes" if x["met"] else "**no**")
            lines.append(f"| {x['goal']} | {shown} | {met} |")
        lines.append("")
    if res.get("errors"):
        lines += ["Errors:", ""] + [f"- {e['step']}: {e['error']}" for e in res["errors"]] + [""]
    return "\n".join(lines)


def update_benchmarks_md(path: Path, md: str) -> None:
    """Replace the text between the markers (the file's prose outside them stays as written)."""
    block = f"{START}\n\n{md}\n{END}"
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START in text and END in text:
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _m: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
