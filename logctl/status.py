"""``logctl hosts`` and ``logctl status``: what etcd says about hosts, agents and transfers, as text.

The views (hosts, agents, transfers, and how an applied list compares with the stored one) are
read by :mod:`logferry.fleet`, which the console uses too; this module only renders them for a
terminal. Rendering is pure (tested without servers).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from logctl.util import fmt_age, fmt_bytes, fmt_count, render_table
from logferry.fleet import (
    HostView,
    age_s,
    config_state,
    gather_hosts,
    gather_transfers,
    host_sort_key,
    hosts_json,
    lag_bytes,
    last_error,
    parse_iso,
)

__all__ = [
    "HostView",
    "agent_lines",
    "config_state",
    "gather_hosts",
    "gather_transfers",
    "host_sort_key",
    "hosts_json",
    "hosts_table",
    "rates",
    "transfer_lines",
]


def _inputs_cell(h: HostView) -> str:
    if not h.has_list:
        return "-"
    if h.collect_error is not None:
        return "INVALID"
    return str(len(h.inputs or []))


def hosts_table(hosts: dict[str, HostView], *, max_width: int | None = None) -> str:
    rows = []
    for h in hosts.values():
        st = h.status or {}
        lag = lag_bytes(h)
        rows.append([h.ip, "live" if h.live else "DOWN", st.get("hostname"), st.get("version"),
                     _inputs_cell(h), fmt_bytes(lag), config_state(h), last_error(h)])
    return render_table(["IP", "AGENT", "HOSTNAME", "VERSION", "INPUTS", "LAG", "CONFIG", "LAST ERROR"], rows,
                        max_width=max_width, right=[4, 5])


# --- rates -----------------------------------------------------------------------------------


def rates(before: dict[str, Any] | None, after: dict[str, Any], now: datetime) -> tuple[dict[str, float], str]:
    """Per-second rates of the ``counters`` of a status document, and over what.

    With two samples (``before`` from an earlier read) the rate is the difference over the time
    between their ``updated_at``; otherwise the average since ``started_at``.
    """
    c1 = after.get("counters") if isinstance(after.get("counters"), dict) else {}
    t1 = parse_iso(after.get("updated_at")) or now
    if before is not None:
        c0 = before.get("counters") if isinstance(before.get("counters"), dict) else {}
        t0 = parse_iso(before.get("updated_at"))
        if t0 is not None and (t1 - t0).total_seconds() > 0 and before.get("pid") == after.get("pid"):
            dt = (t1 - t0).total_seconds()
            return ({k: (float(v) - float(c0.get(k, 0))) / dt for k, v in c1.items()
                     if isinstance(v, int | float) and isinstance(c0.get(k, 0), int | float)},
                    f"over the last {dt:.0f}s")
    t0 = parse_iso(after.get("started_at"))
    if t0 is None or (t1 - t0).total_seconds() <= 0:
        return {}, "no time base"
    dt = (t1 - t0).total_seconds()
    return ({k: float(v) / dt for k, v in c1.items() if isinstance(v, int | float)},
            f"average since start ({fmt_age(dt)})")


def _rate(r: dict[str, float], key: str) -> str:
    v = r.get(key)
    if v is None:
        return ""
    return f" ({v:,.1f}/s)" if v < 100 else f" ({v:,.0f}/s)"


# --- agent detail ----------------------------------------------------------------------------


def agent_lines(h: HostView, now: datetime, *, before: dict[str, Any] | None = None,
                max_width: int | None = None) -> list[str]:
    """The human block for one host in ``logctl status``."""
    if not h.live:
        what = (f"collect list revision {h.collect_revision}, {_inputs_cell(h)} input(s)"
                if h.has_list else "no collect list")
        return [f"HOST {h.ip}: no live agent (no status key: not running, hung, or cannot reach etcd); "
                f"{what}"]
    if h.status is None:
        return [f"AGENT {h.ip}: {h.status_error}"]
    st = h.status
    up = age_s(st.get("started_at"), now)
    fresh = age_s(st.get("updated_at"), now)
    out = [f"AGENT {h.ip} ({st.get('hostname', '?')})  version {st.get('version', '?')}, pid {st.get('pid', '?')}, "
           f"up {fmt_age(up)}, status updated {fmt_age(fresh)} ago"]
    cfg = st.get("config") if isinstance(st.get("config"), dict) else {}
    inputs = cfg.get("inputs")
    out.append(f"  config    {config_state(h)}; {inputs if inputs is not None else '?'} input(s) in force"
               + (f"; stored list INVALID: {h.collect_error}" if h.collect_error else ""))
    if cfg.get("error"):
        out.append(f"  refused   {cfg['error']}")
    out.append(f"  etcd      {st.get('etcd', '?')}")
    k = st.get("kafka") if isinstance(st.get("kafka"), dict) else {}
    out.append(f"  kafka     in flight {fmt_count(k.get('inflight_lines'))} line(s), "
               f"{fmt_bytes(k.get('inflight_bytes'))}"
               + (f", held for a retry {fmt_count(k.get('held_lines'))} line(s)" if k.get("held_lines") else "")
               + (f"; last error: {k['last_error']}" if k.get("last_error") else ""))
    for b in k.get("blocked") or []:
        if isinstance(b, dict):
            out.append(f"  BLOCKED   {b.get('path')} → topic {b.get('topic')}: {fmt_count(b.get('lines'))} line(s) "
                       f"held, {b.get('retries', 0)} retries, next in {b.get('next_retry_s', '?')}s; "
                       f"reading paused: {b.get('reason')}")
    counters = st.get("counters") if isinstance(st.get("counters"), dict) else {}
    r, over = rates(before, st, now)
    if counters:
        out.append(f"  lines     read {fmt_count(counters.get('lines_read'))}{_rate(r, 'lines_read')}, "
                   f"sent {fmt_count(counters.get('lines_sent'))}{_rate(r, 'lines_sent')}, "
                   f"{fmt_bytes(counters.get('bytes_read'))} read{_rate_bytes(r, 'bytes_read')}; rates {over}")
        out.append(f"  problems  send failures {fmt_count(counters.get('send_failures'))}, "
                   f"retries {fmt_count(counters.get('retries'))}, "
                   f"truncated lines {fmt_count(counters.get('lines_truncated'))}, "
                   f"lists refused {fmt_count(counters.get('config_rejected'))}")
    out += _input_lines(st.get("inputs"))
    out += _journal_lines(st.get("journals"))
    out.append(f"  error     {st.get('last_error') or '-'}")
    lost = st.get("files_lost") if isinstance(st.get("files_lost"), list) else []
    for loss in lost[-5:]:
        if isinstance(loss, dict):
            out.append(f"  LOST      {loss.get('path')}: {fmt_bytes(loss.get('bytes'))} never read, "
                       f"the file was {loss.get('reason')}")
    files = st.get("files") if isinstance(st.get("files"), list) else []
    if files:
        rows = []
        for f in files:
            if not isinstance(f, dict):
                continue
            if f.get("error") and "offset" not in f:
                rows.append([f.get("error"), "", "", "", "", "ERROR"])
                continue
            rows.append([f.get("path"), fmt_count(f.get("offset")), fmt_count(f.get("size")),
                         fmt_bytes(f.get("lag_bytes")), "open" if f.get("open") else "closed",
                         f.get("input")])
        table = render_table(["FILE", "OFFSET", "SIZE", "LAG", "STATE", "INPUT"], rows,
                             max_width=None if max_width is None else max_width - 4, right=[1, 2, 3])
        out += ["    " + ln for ln in table.splitlines()]
    else:
        out.append("  files     none found for the inputs in force")
    return out


_INPUT_COUNTS = (("lines_parsed", "parsed"), ("parse_failures", "parse failures"), ("lines_dropped", "dropped"))


def _input_lines(inputs: Any) -> list[str]:
    """One line per input that parsed, failed to parse or dropped lines (the agent's ``inputs``,
    counts since it started); inputs with nothing to show are left out, so a host without
    ``parse`` or filters shows nothing. Failures name the query that finds them."""
    out = []
    failures = False
    for inp in inputs if isinstance(inputs, list) else []:
        if not isinstance(inp, dict):
            continue
        counts = [(label, inp.get(key)) for key, label in _INPUT_COUNTS]
        shown = [f"{label} {fmt_count(v)}" for label, v in counts if isinstance(v, int | float) and v]
        if shown:
            out.append(f"  input     {inp.get('path', '?')}: {', '.join(shown)}")
            failures = failures or bool(inp.get("parse_failures"))
    if failures:
        out.append("            (lines that did not parse: logctl search 'log.flags:parse_failure')")
    return out


def _journal_lines(journals: Any) -> list[str]:
    """One line per journal input (the agent's ``journals``: agent/journal.py), and a LOST line for a
    gap: entries vacuumed or rotated out of the journal before the agent read them."""
    out = []
    for j in journals if isinstance(journals, list) else []:
        if not isinstance(j, dict):
            continue
        state = "reading" if j.get("running") else "NOT READING"
        out.append(f"  journal   {j.get('input')} → {j.get('topic')}: {state}, "
                   f"read {fmt_count(j.get('entries_read'))}, acked {fmt_count(j.get('entries_acked'))}, "
                   f"dropped {fmt_count(j.get('entries_dropped'))}, "
                   f"acked up to {j.get('acked_time') or '-'}"
                   + (f", journalctl restarts {j['restarts']}" if j.get("restarts") else "")
                   + (f"; error: {j['error']}" if j.get("error") else ""))
        gap = j.get("gap")
        if isinstance(gap, dict):
            out.append(f"  LOST      {j.get('input')}: entries from {gap.get('from')} to {gap.get('to')} were gone "
                       f"from the journal (vacuumed or rotated away) before they were read; "
                       f"found {gap.get('detected_at')}")
    return out


def _rate_bytes(r: dict[str, float], key: str) -> str:
    v = r.get(key)
    return "" if v is None else f" ({fmt_bytes(v)}/s)"


# --- transfer detail -------------------------------------------------------------------------

_TRANSFER_SHOWN = {"id", "host", "hostname", "version", "pid", "started_at", "updated_at", "group_id", "config",
                   "etcd", "elasticsearch", "assigned_partitions", "partitions", "assigned", "assignment", "lag",
                   "consumer_lag", "in_flight", "paused", "counters", "last_error", "retention_gaps",
                   "index_retention"}


_NO_RATE = {"records_lost_to_retention"}


def _partitions(value: Any) -> str:
    """Assigned partitions as ``topic[0,1,2] other[0]``, from the shapes a status may use."""
    by_topic: dict[str, list[str]] = {}
    if isinstance(value, dict):
        for t, parts in value.items():
            by_topic[str(t)] = [str(p) for p in (parts if isinstance(parts, list) else [parts])]
    elif isinstance(value, list):
        for p in value:
            if isinstance(p, dict):
                by_topic.setdefault(str(p.get("topic", "?")), []).append(str(p.get("partition", "?")))
            elif isinstance(p, list | tuple) and len(p) == 2:
                by_topic.setdefault(str(p[0]), []).append(str(p[1]))
            else:
                m = re.fullmatch(r"(.+)\[(\d+)\]", str(p))
                t, sep, n = (m.group(1), "[", m.group(2)) if m else str(p).rpartition(":")
                if sep and n.isdigit():
                    by_topic.setdefault(t, []).append(n)
                else:
                    by_topic.setdefault(str(p), [])
    else:
        return "-" if value is None else str(value)
    if not by_topic:
        return "none"
    return " ".join(f"{t}[{','.join(ps)}]" if ps else t for t, ps in sorted(by_topic.items()))


def _lag(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float):
        return fmt_count(value)
    if isinstance(value, dict):
        nums = {k: v for k, v in value.items() if isinstance(v, int | float)}
        if "total" in nums:
            rest = {k: v for k, v in nums.items() if k != "total"}
            detail = ", ".join(f"{k} {fmt_count(v)}" for k, v in sorted(rest.items()))
            return fmt_count(nums["total"]) + (f" ({detail})" if detail else "")
        if nums:
            detail = ", ".join(f"{k} {fmt_count(v)}" for k, v in sorted(nums.items()))
            return f"{fmt_count(sum(nums.values()))} ({detail})"
    return json.dumps(value, separators=(",", ":"))[:200]


def _flat_counters(counters: dict[str, Any]) -> dict[str, float]:
    """``{"failed": {"mapping": 2}}`` → ``{"failed mapping": 2}``: one level of labels flattened."""
    out: dict[str, float] = {}
    for k, v in counters.items():
        if isinstance(v, dict):
            for label, n in v.items():
                if isinstance(n, int | float):
                    out[f"{k} {label}"] = n
        elif isinstance(v, int | float):
            out[k] = v
    return out


def transfer_config_state(doc: dict[str, Any], stored_revision: int | None) -> str:
    cfg = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    if not cfg:
        return "-"
    rev = cfg.get("revision")
    if cfg.get("topics"):
        what = "topics " + ", ".join(map(str, cfg["topics"]))
    elif cfg.get("topics_regex"):
        what = f"topics matching {cfg['topics_regex']}"
    else:
        what = "no topics"
    if stored_revision is None or rev is None:
        where = f"rev {rev}"
    elif rev == stored_revision:
        where = f"rev {rev} (current)"
    elif isinstance(rev, int) and rev < stored_revision:
        where = f"rev {rev} (behind {stored_revision})"
    else:
        where = f"rev {rev}"
    src = f" from {cfg['source']}" if cfg.get("source") not in (None, "etcd") else ""
    return f"{where}{src}: {what} → index {cfg.get('index') or '?'}"


def transfer_lines(tid: str, doc: dict[str, Any], now: datetime, *, before: dict[str, Any] | None = None,
                   stored_revision: int | None = None, max_width: int | None = None) -> list[str]:
    """The human block for one logtransfer in ``logctl status``."""
    host = doc.get("host") or doc.get("hostname") or "?"
    group = f", group {doc['group_id']}" if doc.get("group_id") else ""
    out = [f"TRANSFER {doc.get('id', tid)} on {host}  version {doc.get('version', '?')}, pid {doc.get('pid', '?')}"
           f"{group}, up {fmt_age(age_s(doc.get('started_at'), now))}, "
           f"status updated {fmt_age(age_s(doc.get('updated_at'), now))} ago"]
    cfg = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    if cfg:
        out.append(f"  config     {transfer_config_state(doc, stored_revision)}")
        if cfg.get("rejected_revision"):
            out.append(f"  refused    rev {cfg['rejected_revision']}: {cfg.get('error')}")
    if "etcd" in doc:
        out.append(f"  etcd       {doc['etcd']}")
    es = doc.get("elasticsearch")
    if isinstance(es, dict) and es.get("state") == "blocked":
        # Elasticsearch answers but refuses writes (disk flood stage...): say so loudly, with the way out
        held = es.get("held_documents")
        out.append(f"  es         BLOCKED since {es.get('since', '?')}"
                   + (f", {fmt_count(held)} document(s) held" if isinstance(held, int) else "")
                   + " (retried; not committed, not dead-lettered): " + str(es.get("reason") or es.get("error")))
    elif isinstance(es, dict):
        out.append(f"  es         {es.get('state', '?')}" + (f": {es['error']}" if es.get("error") else ""))
    lag = next((doc[k] for k in ("consumer_lag", "lag") if k in doc), None)
    consumer = f"  consumer   lag {_lag(lag)} record(s)"
    if doc.get("in_flight") is not None:
        consumer += f", {fmt_count(doc['in_flight'])} in flight"
    if doc.get("paused"):
        consumer += ", PAUSED (waiting for Elasticsearch)"
    out.append(consumer)
    counters = doc.get("counters") if isinstance(doc.get("counters"), dict) else {}
    if counters:
        flat = _flat_counters(counters)
        flat_before = None
        if before is not None and isinstance(before.get("counters"), dict):
            flat_before = before | {"counters": _flat_counters(before["counters"])}
        r, over = rates(flat_before, doc | {"counters": flat}, now)
        # a loss is an event, not a flow: its count without a rate
        shown = ", ".join(f"{k.replace('_', ' ')} {fmt_count(v)}{'' if k in _NO_RATE else _rate(r, k)}"
                          for k, v in flat.items())
        out.append(f"  counters   {shown}; rates {over}")
    for k, v in doc.items():
        if k not in _TRANSFER_SHOWN:
            text = v if isinstance(v, str) else json.dumps(v, separators=(",", ":"), ensure_ascii=False)
            out.append(f"  {k:<10} {text[:300]}")
    out.append(f"  error      {doc.get('last_error') or '-'}")
    ret = doc.get("index_retention")
    if isinstance(ret, dict):
        line = f"  retention  {ret.get('retention_days', '?')} days"
        if ret.get("checked_at"):
            line += f"; last check {ret['checked_at']}: {ret.get('outcome', '?')}"
            if ret.get("deleted_count") is not None:
                line += f", {fmt_count(ret['deleted_count'])} index(es) deleted"
        line += f" (deleted since start: {fmt_count(ret.get('deleted_total', 0))})"
        out.append(line)
    gaps = doc.get("retention_gaps") if isinstance(doc.get("retention_gaps"), list) else []
    for gap in gaps[-5:]:
        if isinstance(gap, dict):
            count = gap.get("count")
            out.append(f"  LOST       {gap.get('topic')}[{gap.get('partition')}] offsets {gap.get('first')}.."
                       f"{gap.get('last')}: {fmt_count(count) if isinstance(count, int | float) else '?'} "
                       "record(s) deleted by Kafka retention "
                       f"before this group read them (found {gap.get('found', '?')}, {gap.get('at', '?')})")
    parts = doc.get("partitions")
    if isinstance(parts, list) and parts and all(isinstance(p, dict) for p in parts):
        rows = [[p.get("topic"), p.get("partition"), fmt_count(p.get("committed")), fmt_count(p.get("lag"))]
                for p in parts]
        table = render_table(["TOPIC", "PARTITION", "COMMITTED", "LAG"], rows,
                             max_width=None if max_width is None else max_width - 4, right=[1, 2, 3])
        out += ["    " + ln for ln in table.splitlines()]
    else:
        shown = next((doc[k] for k in ("assigned_partitions", "partitions", "assigned", "assignment") if k in doc),
                     None)
        out.append(f"  partitions {_partitions(shown)}")
    return out
