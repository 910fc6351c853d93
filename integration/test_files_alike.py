"""Files that start alike (issue 18.2): each one is its own source, every line exactly once.

CSV exports under one header, services printing the same startup banner: files whose first KiB
is the same. A shipper naming files by a hash of their start alone (Filebeat's fingerprint,
Vector's checksum, logferry before 0.2) collapses them into one and skips the others without a
word. Here, on the real stack: two such files at start, one created later, one rotated by
rename (still matching the glob) with an alike successor, one shorter than the fingerprint that
grows past it, a kill -9 and a restart in the middle. Every line is counted in Kafka and, through
a transfer, in Elasticsearch: exactly once.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from pathlib import Path

from integration.agents import wait_for
from integration.test_agent import (  # noqa: F401
    agents,
    prefix,
    set_list,
    status,
    wait_count,
)
from integration.test_transfer import (  # noqa: F401
    es_count,
    es_count_soon,
    index_pattern,
    indices,
    put_config,
    transfer_config,
    transfers,
)

BANNER = [f"# nightly export of the orders table, column {i:02d} ........................................"
          for i in range(24)]  # 24 lines, 2,184 bytes: longer than the 1 KiB fingerprint


def _write(path: Path, lines: list[str], mode: str = "a") -> None:
    with open(path, mode) as f:
        f.write("".join(line + "\n" for line in lines))


def _rows(tag: str, start: int, n: int) -> list[str]:
    return [f"{tag},row {i:05d},{i * 7 % 1000}" for i in range(start, start + n)]


def test_files_that_start_alike_each_arrive_exactly_once(stack, etcd, es, prefix, agents, topic_factory,  # noqa: F811
                                                         transfers, index_pattern, indices, tmp_path):  # noqa: F811
    assert len("".join(line + "\n" for line in BANNER)) > 1024
    ip = "10.210.0.60"
    topic = topic_factory("alike")
    d = tmp_path / "exports"
    d.mkdir()
    rows: list[str] = []
    banners = 0  # banner lines expected (each file's own copy is its own line)

    def new_file(name: str, tag: str, n: int, banner: list[str] = BANNER) -> None:
        nonlocal banners
        body = _rows(tag, 0, n)
        _write(d / name, banner + body, "w")
        rows.extend(body)
        banners += len(banner)

    new_file("a.csv", "a", 100)
    new_file("b.csv", "b", 100)
    new_file("short.csv", "short", 1, BANNER[:4])  # 369 bytes: no fingerprint yet
    assert os.path.getsize(d / "short.csv") < 1024
    set_list(etcd, prefix, ip, [{"path": f"{d}/*.csv*", "topic": topic, "start_at": "beginning"}])
    agent = agents("alike", ip).start()
    wait_count(stack, topic, len(set(rows)) + len(set(BANNER)))

    new_file("c.csv", "c", 100)  # created later, alike
    os.rename(d / "a.csv", d / "a.csv.1")  # rotated by rename; the new name still matches
    more = _rows("a", 100, 20)
    _write(d / "a.csv.1", more)
    rows.extend(more)
    new_file("a.csv", "a2", 50)  # its successor, alike again
    more = _rows("short", 1, 40)  # grows past the fingerprint size: same source, not read again
    _write(d / "short.csv", more)
    rows.extend(more)
    assert os.path.getsize(d / "short.csv") > 1024

    def acked_all() -> bool:
        files = (status(etcd, prefix, ip) or {}).get("files", [])
        done = {f.get("path"): f.get("offset") for f in files}
        return all(done.get(str(p)) == p.stat().st_size for p in d.iterdir())

    wait_for(acked_all, 60, "the agent to acknowledge every file")
    agent.kill9()
    for name, tag, start in (("b.csv", "b", 100), ("c.csv", "c", 100), ("a.csv", "a2", 50)):
        more = _rows(tag, start, 25)
        _write(d / name, more)
        rows.extend(more)
    agent.start()
    assert len(rows) == len(set(rows))

    # Kafka: every row once; each banner line once per file that has it; one record per event.id
    recs = wait_count(stack, topic, len(rows) + len(BANNER), timeout=90)
    wait_for(acked_all, 60, "the agent to acknowledge every file after the restart")
    recs = wait_count(stack, topic, len(rows) + len(BANNER), timeout=30)
    ids_by_msg: dict[str, set[str]] = defaultdict(set)
    for r in recs:
        ids_by_msg[r["message"]].add(r["event"]["id"])
    got_rows = {m for m in ids_by_msg if not m.startswith("# nightly")}
    missing, extra = sorted(set(rows) - got_rows), sorted(got_rows - set(rows))
    assert not missing and not extra, f"{len(missing)} rows missing, e.g. {missing[:5]}; extra {extra[:5]}"
    twice = {m: len(v) for m, v in ids_by_msg.items() if m in got_rows and len(v) > 1}
    assert not twice, f"rows sent under two event ids: {list(twice.items())[:5]}"
    per_banner = Counter({m: len(v) for m, v in ids_by_msg.items() if m.startswith("# nightly")})
    want_banner = Counter({line: 5 if i < 4 else 4 for i, line in enumerate(BANNER)})  # a, a2, b, c (+ short)
    assert per_banner == want_banner, f"banner lines: {per_banner} != {want_banner}"
    distinct = len({r["event"]["id"] for r in recs})
    assert distinct == len(rows) + banners
    replayed = len(recs) - distinct

    # Elasticsearch, through a transfer: one document per line
    dlq = topic_factory("alike-dlq")
    put_config(etcd, prefix, transfer_config([topic], index_pattern, dlq))
    transfers("alike-t").start()
    wait_for(lambda: es_count_soon(es, indices) >= distinct, 120, "the lines in Elasticsearch")
    in_es = es_count(es, indices)
    assert in_es == len(rows) + banners, f"{in_es} documents for {len(rows) + banners} lines"
    log = agent.log_text()
    assert "Traceback" not in log and "taken for the same file" not in log
    print(f"files alike: 5 sources (a, a's successor, b, c, short), {len(rows)} rows + {banners} banner lines; "
          f"Kafka {len(recs)} records, {distinct} distinct event ids ({replayed} replayed after kill -9 with "
          f"the same id); Elasticsearch {in_es} documents")
