"""The agent's per-run fast paths give exactly what its per-line paths give.

``Agent.produce_events`` encodes a run of fresh plain lines with ``map`` (no bytecode a line) and
asks the stamp journal once a run; ``TailManager.ack_events`` and ``_Pending.ack_run`` acknowledge a
run of in-order offsets with one slice comparison. Each is held here to the general path it stands
in for: the same records to the sink in the same order, the same stamps journalled, the same
offsets acknowledged and saved.
"""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.main import Agent
from agent.stamps import StampJournal
from agent.tailer import Event, TailManager, _Pending
from tests.test_tailer import registry_at, spec


class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def inc(self, n: int = 1) -> None:
        self.n += n


class _Sink:
    """Records the sink calls (pure logic: the records produce_events hands over, in order)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.calls: list[tuple[str, bytes, list[tuple[bytes, Any]]]] = []

    def value_limit(self, topic: str, key_len: int) -> int:
        return self.limit

    def produce_many(self, topic: str, key: bytes, records: list[tuple[bytes, Any]]) -> None:
        self.calls.append((topic, key, list(records)))


def _agent(tmp_path: Path, name: str, limit: int) -> Agent:
    ag = Agent.__new__(Agent)
    ag._filtering = False
    ag._pipes = {}
    ag._encoders = {}
    ag._cuts = {}
    ag.hostname, ag.ip = "web1", "10.0.0.5"
    ag.sink = _Sink(limit)
    ag.stamps = StampJournal(tmp_path / f"{name}.journal")
    ag.metrics = SimpleNamespace(lines_read=_Counter(), bytes_read=_Counter(), lines_truncated=_Counter())
    return ag


def _events(rng: random.Random, n: int) -> list[Event]:
    """Lines of three files over two topics, interleaved in runs, some long, truncated or joined."""
    files = [("in-a", "t1", "/var/log/a.log", "fp:a", {}), ("in-a", "t1", "/var/log/b.log", "fp:b", {}),
             ("in-c", "t2", "/srv/c.log", "fp:c", {"env": "prod"})]
    offsets = {f[3]: 0 for f in files}
    out = []
    while len(out) < n:
        inp, topic, path, source, fields = rng.choice(files)
        for _ in range(rng.randint(1, 12)):
            size = rng.choice([0, 5, 40, 300, 2_000])
            raw = bytes(rng.choice(b'abc "\\\t\xc3\xa9\xff\x00') for _ in range(size))
            off = offsets[source]
            nxt = off + size + 1
            offsets[source] = nxt
            out.append(Event(inp, topic, path, source, source, off, nxt, raw, rng.random() < 0.1,
                             rng.choice([1, 1, 1, 3]), fields))
    return out


@pytest.mark.parametrize("seed", range(8))
def test_produce_events_fast_path_equals_the_per_line_path(tmp_path: Path, monkeypatch, seed: int) -> None:
    """Fresh plain lines (the run path) give the same sink calls, stamps journalled and counts as
    the per-line path; lines over Kafka's limit are cut the same way; a batch that replays lines
    sent before a crash (stamps in the journal) goes the per-line way for those runs."""
    rng = random.Random(seed)
    limit = rng.choice([1_000_000, 1_200])  # 1,200: some 2,000-byte lines are cut to fit
    batches = [_events(rng, rng.randint(1, 60)) for _ in range(4)]
    fast, slow = _agent(tmp_path, "fast", limit), _agent(tmp_path, "slow", limit)
    # the slow agent never takes the run path: its journal says every run may hold replayed lines
    monkeypatch.setattr(slow.stamps, "none_from", lambda source, offset: False)
    clock = iter(range(1_700_000_000, 1_700_000_100))
    for batch in batches:
        t = next(clock) + 0.5
        monkeypatch.setattr("agent.main.time.time", lambda t=t: t)
        fast.produce_events(list(batch))
        slow.produce_events(list(batch))
    assert fast.sink.calls == slow.sink.calls
    assert sum(len(c[2]) for c in fast.sink.calls) == sum(map(len, batches))
    assert [r[1] for c in fast.sink.calls for r in c[2]] == [ev for b in batches for ev in b]
    for counter in ("lines_read", "bytes_read", "lines_truncated"):
        assert getattr(fast.metrics, counter).n == getattr(slow.metrics, counter).n, counter
    assert fast.metrics.lines_truncated.n > 0
    fast.stamps.close()
    slow.stamps.close()
    assert (tmp_path / "fast.journal").read_text() == (tmp_path / "slow.journal").read_text() != ""


def test_replayed_lines_keep_their_stamps_beside_fresh_ones(tmp_path: Path, monkeypatch) -> None:
    """A batch re-reading lines sent before a crash: those lines get their journalled @timestamp,
    the fresh lines after them (in the same run) `now`, and only the fresh ones are journalled."""
    ag = _agent(tmp_path, "j", 1_000_000)
    evs = _events(random.Random(1), 30)
    evs = [e for e in evs if e.source_id == "fp:a"]
    before = evs[: len(evs) // 2]
    ag.stamps.record([("fp:a", before[0].offset, before[-1].next_offset)], 1_600_000_000.0)
    monkeypatch.setattr("agent.main.time.time", lambda: 1_700_000_000.0)
    ag.produce_events(evs)
    values = [r[0] for c in ag.sink.calls for r in c[2]]
    assert all(b'"@timestamp":"2020-09-13T12:26:40.000Z"' in v for v in values[: len(before)])
    assert all(b'"@timestamp":"2023-11-14T22:13:20.000Z"' in v for v in values[len(before):])
    ag.stamps.close()
    journal = (tmp_path / "j.journal").read_text().splitlines()
    assert journal[-1].split("\t")[:3] == ["fp:a", str(evs[len(before)].offset), str(evs[-1].next_offset)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=1, max_size=40, unique=True), st.data())
def test_ack_run_equals_acking_each_offset(gaps: list[int], data: st.DataObject) -> None:
    """_Pending.ack_run on any runs of acknowledgements, in and out of order, with the per-ack
    fallback when it declines: the same offsets acknowledged, the same ``done``, as ack one by one."""
    offs, at = [], 0
    for g in gaps:
        at += g
        offs.append(at)
    order = data.draw(st.permutations(offs))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(order)), max_size=6)))
    runs = [order[a:b] for a, b in zip([0, *cuts], [*cuts, len(order)], strict=True) if a < b]
    one, batched = _Pending(0), _Pending(0)
    one.offs.extend(offs)
    batched.offs.extend(offs)
    for run in runs:
        taken = [one.ack(o) for o in run]
        if not batched.ack_run(run):
            assert [batched.ack(o) for o in run] == taken
        else:
            assert all(taken)
        assert _unacked(batched) == _unacked(one) and batched.done == one.done
        assert not batched.ack_run(run)  # the same acknowledgements again: not the next ones
    assert _unacked(batched) == [] and batched.done == offs[-1]


def _unacked(p: _Pending) -> list[int]:
    return [o for i, o in enumerate(p.offs) if i >= p.head and i not in p.acked]


def test_ack_run_compacts_a_long_segment_as_ack_does() -> None:
    p = _Pending(0)
    p.offs.extend(range(1, 10_001))
    assert p.ack_run(list(range(1, 6_001)))
    assert p.head == 0 and len(p.offs) == 4_000 and p.done == 6_000
    assert p.ack_run(list(range(6_001, 10_001))) and len(p) == 0 and p.done == 10_000


def test_ack_events_moves_offsets_as_acking_each_event(tmp_path: Path) -> None:
    """TailManager.ack_events with events of several files interleaved, in order and shuffled within
    chunks (a retried record overtaking others): after each chunk, the same events in flight and
    the same offsets for the registry as TailManager.ack one event at a time."""
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.log").write_bytes(b"".join(b"%s line %d\n" % (name.encode(), i) for i in range(400)))
    managers = []
    for side in ("batched", "single"):
        reg = registry_at(tmp_path / side)
        tm = TailManager([spec(tmp_path / "*.log", start_at="beginning")], reg, use_inotify=False,
                         scan_interval_s=0.0)
        managers.append((tm, reg))
    (tm1, reg1), (tm2, reg2) = managers
    ev1, ev2 = tm1.poll(1 << 20), tm2.poll(1 << 20)
    assert [(e.path, e.offset) for e in ev1] == [(e.path, e.offset) for e in ev2] and len(ev1) == 1_200
    rng = random.Random(7)
    order = list(range(len(ev1)))
    rng.shuffle(order)  # files interleaved
    order.sort(key=lambda i: (i // 50, rng.random() < 0.8, i))  # chunks of 50, mostly in order
    i = 0
    while i < len(order):
        chunk = order[i:i + rng.randint(1, 120)]
        i += len(chunk)
        known = tm1.ack_events([ev1[j] for j in chunk])
        assert known == sum(tm2.ack(ev2[j].identity, ev2[j].next_offset) for j in chunk) == len(chunk)
        assert tm1.inflight == tm2.inflight
        assert _offsets(reg1) == _offsets(reg2)
    assert tm1.inflight == 0 and tm1.ack_events(ev1[:3]) == 0  # twice: unknown
    size = (tmp_path / "a.log").stat().st_size
    assert sorted(_offsets(reg1).values()) == [size] * 3  # every line of each file acknowledged


def _offsets(reg: Any) -> dict[str, int]:
    return {e.path: e.offset for e in reg}
