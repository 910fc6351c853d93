"""logagent's own disk full or read-only (issue 22): it keeps shipping, says so, recovers.

The agent's data directory is a small tmpfs. While a writer appends 20,000 lines, the tmpfs is
filled to the last byte, then emptied, twice, then made read-only for a while. The agent must
stay up throughout, show the condition in its status within seconds, keep lines flowing, clear
the error by itself, and after a kill -9 and a restart every line is in Kafka exactly once (and
in Elasticsearch, through a transfer).
"""

from __future__ import annotations

import errno
import subprocess
import threading
import time
from pathlib import Path

import pytest

from integration.agents import LineWriter, wait_for
from integration.test_agent import (  # noqa: F401
    agents,
    assert_exactly,
    prefix,
    set_list,
    status,
    wait_caught_up,
    wait_count,
)
from integration.test_transfer import (  # noqa: F401
    Feed,
    es_count,
    es_count_soon,
    index_pattern,
    indices,
    put_config,
    status_of,
    transfer_config,
    transfers,
    wait_committed,
)
from integration.test_transfer import assert_exactly as es_assert_exactly


class Filler:
    """Keeps `fs` full to the last page: a thread appends zeros whenever space appears.

    Needed because the agent's own saves free pages now and then (a replaced registry file, a
    failed temporary file removed), and a disk full only for an instant is not the test.
    """

    def __init__(self, fs: Path) -> None:
        self.path = fs / "filler"
        self.stop_ev = threading.Event()
        self.written = 0
        self.full = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Filler:
        self.thread.start()
        assert self.full.wait(30), "the tmpfs did not fill up"
        return self

    def _run(self) -> None:
        chunk = b"\0" * 4096
        with open(self.path, "wb", buffering=0) as f:
            while not self.stop_ev.is_set():
                try:
                    self.written += f.write(chunk)
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                    self.full.set()
                    self.stop_ev.wait(0.02)

    def __exit__(self, *exc: object) -> None:
        self.stop_ev.set()
        self.thread.join(10)
        self.path.unlink()


@pytest.fixture
def small_fs(tmp_path: Path):
    d = tmp_path / "agent-disk" / "data"
    d.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(d)], check=True)
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)


def test_full_data_dir_agent_keeps_shipping_and_recovers(
        stack, etcd, es, prefix, agents, topic_factory, small_fs, tmp_path, transfers, index_pattern,  # noqa: F811
        indices):  # noqa: F811
    ip = "10.210.0.41"
    topic = topic_factory("disk")
    logs = tmp_path / "logs"
    logs.mkdir()
    w = LineWriter(logs / "app.log", "DISK")
    set_list(etcd, prefix, ip, [{"path": f"{logs}/*.log", "topic": topic, "start_at": "beginning"}])
    agent = agents("disk", ip)  # its data dir is tmp_path/agent-disk/data: the tmpfs
    assert agent.home / "data" == small_fs
    agent.start()
    expected = set(w.write(2000))
    wait_count(stack, topic, len(expected))

    def err() -> str:
        return (status(etcd, prefix, ip) or {}).get("last_error") or ""

    # 1. the disk fills up (and stays full) while lines keep coming
    with Filler(small_fs) as filler:
        expected.update(w.write(3000))
        wait_for(lambda: "cannot save the" in err(), 60, "the full disk in the agent's status")
        full_status = err()
        assert "no space left" in full_status and str(small_fs) in full_status
        expected.update(w.write(3000))
        wait_count(stack, topic, len(expected), timeout=120)  # shipping goes on meanwhile
        assert agent.alive()
        filled = filler.written

    # 2. space comes back: the error clears by itself
    wait_for(lambda: "cannot save the" not in err(), 60, "the disk error to clear")
    expected.update(w.write(2000))

    # 3. full again, for longer
    with Filler(small_fs):
        expected.update(w.write(2000))
        wait_for(lambda: "cannot save the" in err(), 60, "the full disk in the agent's status again")
        expected.update(w.write(2000))
        wait_count(stack, topic, len(expected), timeout=120)
        for _ in range(10):  # 5 s more of a full disk, lines flowing
            expected.update(w.write(200))
            time.sleep(0.5)
        wait_count(stack, topic, len(expected), timeout=120)
        assert "cannot save the" in err() and agent.alive()
    wait_for(lambda: "cannot save the" not in err(), 60, "the disk error to clear again")

    # 4. the directory turns read-only for a while. (`mount -o remount,ro` of the tmpfs itself is
    # refused, EBUSY, while the agent holds its stamp journal open for writing; a read-only bind
    # mount over the directory makes every new write there fail with EROFS, as a file system
    # the kernel remounted read-only after errors does.)
    subprocess.run(["mount", "--bind", str(small_fs), str(small_fs)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(small_fs)], check=True)
        expected.update(w.write(1000))
        wait_for(lambda: "read-only file system" in err(), 60, "the read-only directory in the agent's status")
        ro_status = err()
        expected.update(w.write(1000))
        wait_count(stack, topic, len(expected), timeout=120)
        assert agent.alive()
    finally:
        subprocess.run(["umount", str(small_fs)], check=True)  # the bind mount on top only
    wait_for(lambda: "cannot save the" not in err(), 60, "the read-only error to clear")
    expected.update(w.write(2000))
    assert len(expected) == 20_000

    # 5. kill -9 once the registry on disk holds the end of the file: a restart sends nothing twice
    path = logs / "app.log"
    wait_caught_up(etcd, prefix, ip, path, timeout=90)
    size = path.stat().st_size
    wait_for(lambda: f'"offset":{size},' in (small_fs / "registry.json").read_text(), 30,
             "the registry on disk to hold the end of the file")
    agent.kill9()
    agent.start()
    expected.update(w.write(0))
    wait_caught_up(etcd, prefix, ip, path, timeout=90)
    recs = wait_count(stack, topic, len(expected), timeout=120)
    assert_exactly(recs, expected)
    # ... and in Elasticsearch, through a transfer: 20,000 documents, one per line
    dlq = topic_factory("disk-dlq")
    put_config(etcd, prefix, transfer_config([topic], index_pattern, dlq))
    transfers("disk-t").start()
    wait_for(lambda: es_count_soon(es, indices) >= len(expected), 120, "the lines in Elasticsearch")
    in_es = es_count(es, indices)
    assert in_es == len(expected), f"{in_es} documents for {len(expected)} lines"
    log = agent.log_text()
    said = log.count("cannot save the")
    print(f"disk full: filler {filled} bytes; status: {full_status!r}\nread-only: status: {ro_status!r}\n"
          f"{len(expected)} lines exactly once in Kafka after kill -9 and restart, {in_es} documents in ES; "
          f"'cannot save' logged {said} times")
    assert "Traceback" not in log
    assert said <= 8, f"'cannot save' logged {said} times: not rate-limited"


def test_read_only_data_dir_at_start_is_one_clear_line_and_exit_1(stack, etcd, prefix, agents,  # noqa: F811
                                                                  tmp_path):
    """(A read-only remount while the agent runs is refused by the kernel, EBUSY, as long as the
    agent holds its stamp journal open for writing; at start it is the common case.)"""
    agent = agents("rodisk", "10.210.0.42")
    data = agent.home / "data"
    data.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(data)], check=True)
    try:
        agent.start()
        assert agent.proc is not None
        rc = agent.proc.wait(60)
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)
    log = agent.log_text()
    errors = [ln for ln in log.splitlines() if " ERROR " in ln]
    print(f"read-only data dir at start: exit {rc}; {errors}")
    assert rc == 1
    assert "Traceback" not in log
    assert len(errors) == 1 and "Read-only file system" in errors[0] and "data_dir" in errors[0]


def test_transfer_with_a_full_data_dir_keeps_indexing_and_says_so(
        stack, es, etcd, kafka_admin, topic_factory, transfers, prefix, unique, index_pattern, indices,  # noqa: F811
        tmp_path) -> None:
    topic, dlq = topic_factory("tdisk", 1), topic_factory("tdlq", 1)
    t = transfers("disk")
    data = t.home / "data"
    data.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(data)], check=True)
    try:
        with Filler(data):
            put_config(etcd, prefix, transfer_config([topic], index_pattern, dlq))
            t.start()
            tid = f"disk-{unique}"
            wait_for(lambda: "cannot save the transfer config" in ((status_of(etcd, prefix, tid) or {})
                                                                  .get("last_error") or ""), 60,
                     "the full disk in the transfer's status")
            shown = (status_of(etcd, prefix, tid) or {}).get("last_error")
            feed = Feed(stack, topic, f"d{unique}")
            ids = feed.produce(3000)
            wait_committed(stack, kafka_admin, f"it-transfer-{unique}", topic, 1, 3000, 120, [t])
            assert t.alive()
        print(f"transfer, full data dir: 3000 records indexed and committed; status: {shown!r}")
        assert t.stop() == 0
        es_assert_exactly(es, indices, ids)
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)
