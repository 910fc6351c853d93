"""logctl on the real stack, run as a subprocess the way an operator runs it.

Each test works under its own etcd prefix (``/it-ctl-<unique>``) and its own topics and indices.
logctl runs in a new session (no controlling terminal), like cron or CI: writes then need
``--yes``, which one test checks on purpose.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from integration.agents import LineWriter, agent_ini, agent_process, wait_for
from integration.conftest import StackHandle
from logferry.envelope import encode_record
from logferry.etcd import EtcdClient, LeaseKeeper
from logferry.keys import Keys

LOGCTL = str(Path(sys.executable).parent / "logctl")

GOOD = [{"path": "/var/log/app/*.log", "topic": "app"},
        {"path": "/var/log/nginx/access.log", "topic": "nginx-access", "fields": {"env": "prod"}}]
BAD = [{"path": "/var/log/app/*.log", "topic": "app"},
       {"path": "var/log/relative.log", "topic": "rel"}]


@pytest.fixture
def prefix(unique: str, etcd: EtcdClient):
    p = f"/it-ctl-{unique}"
    yield p
    items, _ = etcd.get_prefix(p + "/")
    for key, _v, _r in items:
        etcd.delete(key)


Run = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def logctl(stack: StackHandle, prefix: str) -> Run:
    """Run logctl with this test's etcd prefix, Kafka and ES in the environment."""

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
        e = {k: v for k, v in os.environ.items() if not k.startswith("LOGFERRY_")}
        e |= {"LOGFERRY_ETCD": ",".join(stack.etcd_endpoints), "LOGFERRY_PREFIX": prefix,
              "LOGFERRY_KAFKA": stack.kafka_bootstrap, "LOGFERRY_ES": stack.es_url, "NO_COLOR": "1"}
        e |= env or {}
        started = time.monotonic()
        cp = subprocess.run([LOGCTL, *args], input=input, capture_output=True, text=True, env=e,
                            timeout=timeout, start_new_session=True,
                            stdin=None if input is not None else subprocess.DEVNULL)
        print(f"$ logctl {' '.join(args)}  -> {cp.returncode} ({time.monotonic() - started:.1f}s)\n"
              f"{cp.stdout[-2000:]}{cp.stderr[-2000:]}")
        return cp

    return run


def write_json(path: Path, obj: object) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


# ------------------------------------------------------------------------------------------ 1
def test_collect_set_get_round_trip(logctl: Run, tmp_path: Path, etcd: EtcdClient, prefix: str) -> None:
    ip = "10.220.0.1"
    f = write_json(tmp_path / "list.json", GOOD)
    r = logctl("collect", "set", ip, f, "--yes")
    assert r.returncode == 0, r.stderr
    assert "+    \"topic\": \"nginx-access\"," in r.stdout  # the diff, shown before writing
    assert "written" in r.stdout

    r = logctl("collect", "get", ip)
    assert r.returncode == 0
    assert json.loads(r.stdout) == GOOD
    stored, rev = etcd.get(Keys(prefix).agent_collect(ip))
    assert json.loads(stored) == GOOD

    r = logctl("collect", "get", ip, "--json")
    doc = json.loads(r.stdout)
    assert doc["mod_revision"] == rev and doc["valid"] is True and doc["value"] == GOOD

    # the same list again: nothing to write, the revision stays
    r = logctl("collect", "set", ip, f, "--yes")
    assert r.returncode == 0 and "no change" in r.stdout
    assert etcd.get(Keys(prefix).agent_collect(ip))[1] == rev

    # from stdin, in a script: a changed list, written
    changed = [*GOOD, {"path": "/var/log/syslog", "topic": "syslog"}]
    r = logctl("collect", "set", ip, "-", "--yes", "--json", input=json.dumps(changed))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["written"] is True and out["previous_revision"] == rev and out["mod_revision"] > rev
    assert "+    \"topic\": \"syslog\"" in out["diff"]

    r = logctl("hosts", "--json")
    row = next(h for h in json.loads(r.stdout) if h["ip"] == ip)
    assert row["inputs"] == 3 and row["live"] is False and row["collect_valid"] is True
    r = logctl("hosts")
    assert ip in r.stdout and "DOWN" in r.stdout

    r = logctl("collect", "delete", ip, "--yes")
    assert r.returncode == 0, r.stderr
    assert etcd.get(Keys(prefix).agent_collect(ip))[0] is None
    assert logctl("collect", "get", ip).returncode == 1


# ------------------------------------------------------------------------------------------ 2
def test_invalid_list_refused_naming_the_entry(logctl: Run, tmp_path: Path, etcd: EtcdClient, prefix: str) -> None:
    ip = "10.220.0.2"
    f = write_json(tmp_path / "bad.json", BAD)
    r = logctl("collect", "set", ip, f, "--yes")
    assert r.returncode == 2
    assert 'collect list entry 2 ("var/log/relative.log")' in r.stderr
    assert 'field "path"' in r.stderr and "nothing written" in r.stderr
    assert etcd.get(Keys(prefix).agent_collect(ip))[0] is None

    r = logctl("collect", "validate", "--file", f)
    assert r.returncode == 2 and "collect list entry 2" in r.stderr
    assert logctl("collect", "validate", "--file", write_json(tmp_path / "good.json", GOOD)).returncode == 0

    r = logctl("collect", "set", ip, "-", "--yes", input='[{"path": "/x.log", "topic": "a b"}]')
    assert r.returncode == 2 and 'field "topic"' in r.stderr

    # no terminal and no --yes: nobody can confirm, so nothing is written
    r = logctl("collect", "set", ip, write_json(tmp_path / "good.json", GOOD))
    assert r.returncode == 2 and "--yes" in r.stderr
    assert etcd.get(Keys(prefix).agent_collect(ip))[0] is None

    # what someone put into etcd behind logctl's back is reported as invalid
    etcd.put(Keys(prefix).agent_collect(ip), json.dumps(BAD).encode())
    r = logctl("collect", "get", ip)
    assert r.returncode == 1 and "INVALID" in r.stderr and "collect list entry 2" in r.stderr
    r = logctl("collect", "validate", ip)
    assert r.returncode == 2 and "collect list entry 2" in r.stderr


# ------------------------------------------------------------------------------------------ 3
def test_concurrent_writes_conflict(logctl: Run, tmp_path: Path, etcd: EtcdClient, prefix: str,
                                    stack: StackHandle) -> None:
    ip = "10.220.0.3"
    key = Keys(prefix).agent_collect(ip)
    assert logctl("collect", "set", ip, write_json(tmp_path / "l0.json", GOOD), "--yes").returncode == 0
    rev = json.loads(logctl("collect", "get", ip, "--json").stdout)["mod_revision"]

    # two operators both read revision `rev`, both write: the first wins, the second gets 3
    a = [{"path": "/var/log/a.log", "topic": "a"}]
    b = [{"path": "/var/log/b.log", "topic": "b"}]
    r1 = logctl("collect", "set", ip, write_json(tmp_path / "a.json", a), "--yes", "--expect-revision", str(rev))
    assert r1.returncode == 0, r1.stderr
    r2 = logctl("collect", "set", ip, write_json(tmp_path / "b.json", b), "--yes", "--expect-revision", str(rev))
    assert r2.returncode == 3
    assert "conflict" in r2.stderr and f"revision {rev}" in r2.stderr and "nothing written" in r2.stderr
    assert json.loads(etcd.get(key)[0]) == a

    # the real race: someone writes while the operator is in the editor
    other = [{"path": "/var/log/other.log", "topic": "other"}]
    editor = tmp_path / "editor.py"
    editor.write_text(textwrap.dedent(f"""\
        import json, sys
        from logferry.etcd import EtcdClient
        c = EtcdClient({stack.etcd_endpoints!r})
        c.put({key!r}, {json.dumps(other)!r}.encode())   # the other operator, meanwhile
        c.close()
        with open(sys.argv[1], "w") as f:
            json.dump({json.dumps(b)}, f)                # this operator's edit
        """))
    r = logctl("collect", "edit", ip, "--yes", env={"EDITOR": f"{sys.executable} {editor}"})
    assert r.returncode == 3, r.stderr
    assert "conflict" in r.stderr and "your text is kept in" in r.stderr
    assert json.loads(etcd.get(key)[0]) == other
    kept = r.stderr.split("your text is kept in ")[1].split(".json")[0] + ".json"
    assert json.loads(Path(kept).read_text()) == b
    Path(kept).unlink()


# ------------------------------------------------------------------------------------------ 4
def test_status_shows_live_agent_and_transfer(logctl: Run, tmp_path: Path, etcd: EtcdClient, prefix: str,
                                              stack: StackHandle, topic_factory) -> None:
    ip = "127.0.0.42"
    topic = topic_factory("ctl", 1)
    logs = tmp_path / "logs"
    logs.mkdir()
    w = LineWriter(logs / "app.log", "S")
    w.write(10)
    f = write_json(tmp_path / "l.json", [{"path": f"{logs}/*.log", "topic": topic, "start_at": "beginning"}])
    assert logctl("collect", "set", ip, f, "--yes").returncode == 0
    home = tmp_path / "agent"
    agent = agent_process(home, agent_ini(etcd=stack.etcd_endpoints, kafka=stack.kafka_bootstrap,
                                         data_dir=home / "data", prefix=prefix, host_ip=ip)).start()
    # a transfer's status key, kept alive under a lease as logtransfer does
    tdoc = {"id": "t-it", "host": "tr1", "version": "0.1.0", "pid": 4242,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": {"revision": 1, "source": "etcd", "topics": [topic], "index": "logs-{topic}-{yyyy.MM.dd}"},
            "etcd": "connected", "elasticsearch": {"state": "ok", "error": None},
            "partitions": [{"topic": topic, "partition": 0, "committed": 10, "lag": 7}], "consumer_lag": 7,
            "counters": {"consumed": 12, "indexed": 12}, "last_error": None}
    keeper = LeaseKeeper(etcd, Keys(prefix).transfer_status("t-it"), lambda: json.dumps(tdoc).encode(), ttl_s=5)
    try:
        size = (logs / "app.log").stat().st_size

        def caught_up() -> dict | None:
            r = logctl("status", ip, "--json")
            agents = json.loads(r.stdout)["agents"] if r.stdout else []
            st = agents[0]["status"] if agents and agents[0]["status"] else None
            files = (st or {}).get("files", [])
            return st if r.returncode == 0 and any(x.get("offset") == size for x in files) else None

        st = wait_for(caught_up, 60, "the agent's status to show the file read to its end", interval=1)
        assert st["ip"] == ip and st["config"]["inputs"] == 1

        r = logctl("status", ip)
        assert r.returncode == 0
        assert f"AGENT {ip}" in r.stdout and str(logs / "app.log") in r.stdout and "(current)" in r.stdout
        r = logctl("status")
        assert "TRANSFER t-it on tr1" in r.stdout and "consumer   lag 7 record(s)" in r.stdout
        assert any(ln.split() == [topic, "0", "10", "7"] for ln in r.stdout.splitlines())
        r = logctl("status", "--json")
        assert json.loads(r.stdout)["transfers"][0]["status"]["consumer_lag"] == 7
        r = logctl("hosts")
        line = next(ln for ln in r.stdout.splitlines() if ln.startswith(ip))
        assert "live" in line and "(current)" in line

        # `--wait`: the agent reports the new revision applied
        w2 = [{"path": f"{logs}/*.log", "topic": topic, "start_at": "beginning", "fields": {"k": "v"}}]
        r = logctl("collect", "set", ip, write_json(tmp_path / "l2.json", w2), "--yes", "--wait", "30")
        assert r.returncode == 0 and "applied revision" in r.stdout, r.stdout + r.stderr
    finally:
        keeper.stop(delete=True)
        agent.stop()
    # clean stop: the status key is gone at once, the host is listed as down
    r = logctl("status", ip)
    assert r.returncode == 1 and "no live agent" in r.stdout
    print(agent.log_text()[-2000:])


# ------------------------------------------------------------------------------------------ 5
def _index_line(es, topic: str, message: str, host_ip: str, ts: float, offset: int) -> str:
    rec = json.loads(encode_record(message=message, timestamp=ts, host_name=f"h-{host_ip}", host_ip=host_ip,
                                   path="/var/log/it.log", offset=offset, file_identity="fp:it", fields=None,
                                   agent_version="0.1.0"))
    index = f"logferry-{topic}-{time.strftime('%Y.%m.%d', time.gmtime(ts))}"
    es.index(index=index, id=rec["event"]["id"], document=rec, refresh=True)
    return index


@pytest.fixture
def log_topic(unique: str, es):
    topic = f"ctl{unique}"
    yield topic
    es.options(ignore_status=[404]).indices.delete(index=f"logferry-{topic}*")


def test_search_finds_indexed_lines(logctl: Run, es, log_topic: str) -> None:
    now = time.time()
    _index_line(es, log_topic, "payment failed for order 17", "10.230.0.1", now - 30, 0)
    _index_line(es, log_topic, "payment ok for order 18", "10.230.0.2", now - 20, 100)
    # a topic whose name starts like ours: its index must not show up under --topic
    _index_line(es, f"{log_topic}-x", "payment in the sibling topic", "10.230.0.1", now - 10, 200)

    r = logctl("search", "--topic", log_topic, "--since", "5m")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(f"h-10.230.0.1 {log_topic}: payment failed for order 17")  # oldest first
    assert lines[1].endswith("payment ok for order 18")

    r = logctl("search", "--topic", log_topic, "-q", "failed", "--json")
    docs = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert [d["message"] for d in docs] == ["payment failed for order 17"]
    assert docs[0]["_id"] == docs[0]["event"]["id"]

    r = logctl("search", "--host", "10.230.0.1", "-q", "payment", "--since", "5m")
    assert r.returncode == 0
    assert "order 17" in r.stdout and "sibling" in r.stdout and "order 18" not in r.stdout

    r = logctl("search", "--topic", log_topic, "-n", "1")
    assert r.stdout.splitlines() == [lines[1]]  # the newest, like tail -n 1

    r = logctl("search", "--topic", log_topic, "-q", "nosuchwordanywhere")
    assert r.returncode == 1 and "no lines match" in r.stderr


def test_search_follow_streams_new_lines(stack: StackHandle, prefix: str, es, log_topic: str) -> None:
    now = time.time()
    _index_line(es, log_topic, "old line", "10.230.0.3", now - 5, 0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGFERRY_")}
    env |= {"LOGFERRY_ES": stack.es_url, "LOGFERRY_ETCD": ",".join(stack.etcd_endpoints), "LOGFERRY_PREFIX": prefix}
    p = subprocess.Popen([LOGCTL, "search", "--topic", log_topic, "--follow", "-n", "5"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    got: list[str] = []

    def read_until(pred: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not pred() and time.monotonic() < deadline:
            ready, _, _ = select.select([p.stdout], [], [], 0.5)
            if ready:
                line = p.stdout.readline()
                if not line:
                    break
                got.append(line.rstrip("\n"))

    try:
        read_until(lambda: any("old line" in g for g in got), 20)
        time.sleep(1.5)  # follow has started polling
        _index_line(es, log_topic, "new line one", "10.230.0.3", time.time(), 100)
        _index_line(es, log_topic, "new line two", "10.230.0.4", time.time(), 200)
        read_until(lambda: sum("new line" in g for g in got) >= 2, 20)
        # a line that becomes visible late, stamped a few seconds before the newest one
        _index_line(es, log_topic, "late line", "10.230.0.4", time.time() - 4, 300)
        read_until(lambda: any("late line" in g for g in got), 20)
    finally:
        p.send_signal(signal.SIGINT)
        try:
            rc = p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = p.wait()
    print("\n".join(got), p.stderr.read())
    assert [g.split(": ", 1)[1] for g in got] == ["old line", "new line one", "new line two", "late line"]
    assert rc == 0


# ------------------------------------------------------------------------------------------ 6
def test_doctor_and_transfer_config(logctl: Run, tmp_path: Path, unique: str, topic_factory) -> None:
    existing = topic_factory("doc", 1)
    missing = f"it-missing-{unique}"
    f = write_json(tmp_path / "l.json", [{"path": "/var/log/a.log", "topic": existing},
                                         {"path": "/var/log/b.log", "topic": missing}])
    assert logctl("collect", "set", "10.220.0.6", f, "--yes").returncode == 0

    r = logctl("doctor")
    assert r.returncode == 1
    assert "3 member(s), 3 healthy; leader" in r.stdout
    assert "no transfer config" in r.stdout
    assert f"topic {missing} (collect list of 10.220.0.6) does not exist" in r.stdout
    assert "no live logtransfer" in r.stdout and "health" in r.stdout

    bad = write_json(tmp_path / "tbad.json", {"topics": [existing], "bulk_max_docs": 0})
    r = logctl("transfer-config", "set", bad, "--yes")
    assert r.returncode == 2 and 'field "bulk_max_docs"' in r.stderr
    good = write_json(tmp_path / "t.json", {"topics": [existing]})
    r = logctl("transfer-config", "set", good, "--yes")
    assert r.returncode == 0, r.stderr
    r = logctl("transfer-config", "get", "--json")
    assert json.loads(r.stdout)["value"]["topics"] == [existing]

    r = logctl("doctor", "--json")
    doc = json.loads(r.stdout)
    msgs = [x["message"] for x in doc["findings"]]
    assert doc["ok"] is False
    assert any(m.startswith("transfer config valid: topics " + existing) for m in msgs)
    assert any(f"topic {missing} (collected on 10.220.0.6) is not consumed" in m for m in msgs)


def test_unreachable_etcd_exit_4(logctl: Run) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens there once the socket is closed
    started = time.monotonic()
    r = logctl("hosts", "--etcd", f"127.0.0.1:{port}", "--timeout", "1")
    assert r.returncode == 4
    assert "no member of" in r.stderr and time.monotonic() - started < 15
    r = logctl("search", "--es", f"http://127.0.0.1:{port}", "--index", "logs-*")
    assert r.returncode == 4 and "cannot reach Elasticsearch" in r.stderr
