"""The journal input's pure parts: schema, entry → record, cursor handling (issue 23).

The reading against a real journald is integration/test_journal.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import agent.journal as journal_mod
from agent.journal import JournalInput, JournalInputs, journalctl_command, same_entry
from agent.registry import Registry
from logferry.envelope import JOURNAL_MAX_FIELDS, decode_record, journal_document, journal_record
from logferry.schema import Journal, SchemaError, dump_collect_list, parse_collect_list


def cur(i: int, s: str = "aa11", t: int = 1_700_000_000_000_000) -> str:
    return f"s={s};i={i:x};b=bb;m={i:x};t={t + i:x};x={i * 7:x}"


def entry(i: int, msg: object = "hello", **extra: object) -> dict:
    return {"__CURSOR": cur(i), "__REALTIME_TIMESTAMP": str(1_700_000_000_000_000 + i), "MESSAGE": msg,
            "PRIORITY": "3", "_PID": "42", "SYSLOG_IDENTIFIER": "sshd", "_SYSTEMD_UNIT": "ssh.service",
            "_TRANSPORT": "syslog", "SYSLOG_FACILITY": "4", **extra}


# --- schema -----------------------------------------------------------------------------------------

def test_journal_entries_parse_dump_and_round_trip() -> None:
    specs = parse_collect_list(json.dumps([
        {"journal": {}, "topic": "all"},
        {"journal": {"units": ["nginx.service"], "identifiers": ["sshd"], "matches": ["_TRANSPORT=kernel"],
                     "priority": 6}, "topic": "sys", "exclude_lines": ["DEBUG"], "fields": {"env": "prod"}},
        {"path": "/var/log/app/*.log", "topic": "app"},
    ]))
    assert specs[0].path == "journal:*" and specs[0].journal == Journal()
    assert specs[1].journal.priority == "info" and specs[1].exclude_lines == ("DEBUG",)
    assert specs[1].path.startswith("journal:{") and specs[2].journal is None
    assert parse_collect_list(dump_collect_list(specs)) == specs
    assert json.loads(dump_collect_list(specs))[0] == {"journal": {}, "topic": "all"}
    assert specs[1].journal.journalctl_args() == ["--unit=nginx.service", "--identifier=sshd", "--priority=info",
                                                  "_TRANSPORT=kernel"]


@pytest.mark.parametrize(("doc", "words"), [
    ({"journal": {"unit": ["a"]}, "topic": "t"}, ['field "journal.unit"', 'did you mean "units"']),
    ({"journal": {}, "path": "/a.log", "topic": "t"}, ['field "path"', "not both"]),
    ({"journal": {}}, ['field "topic"', "missing"]),
    ({"journal": [], "topic": "t"}, ['field "journal"', "must be an object"]),
    ({"journal": {"units": "a.service"}, "topic": "t"}, ['field "journal.units"', "array"]),
    ({"journal": {"units": ["a b"]}, "topic": "t"}, ['field "journal.units"', "item 1"]),
    ({"journal": {"identifiers": ["-x"]}, "topic": "t"}, ['field "journal.identifiers"', "not starting with -"]),
    ({"journal": {"matches": ["transport=kernel"]}, "topic": "t"}, ['field "journal.matches"', "FIELD=value"]),
    ({"journal": {"matches": ["_TRANSPORT"]}, "topic": "t"}, ['field "journal.matches"', "FIELD=value"]),
    ({"journal": {"priority": "loud"}, "topic": "t"}, ['field "journal.priority"', "syslog level"]),
    ({"journal": {"priority": 8}, "topic": "t"}, ['field "journal.priority"', "0 to 7"]),
    ({"journal": {}, "topic": "t", "multiline": {"pattern": "^x"}}, ['field "multiline"', "applies to files"]),
    ({"journal": {}, "topic": "t", "exclude_files": ["x"]}, ['field "exclude_files"', "applies to files"]),
    ({"journal": {}, "topic": "t", "exclude_lines": ["("]}, ["entry 1 (journal)", 'field "exclude_lines"']),
    ({"journal": {}, "topic": "bad topic"}, ['field "topic"']),
])
def test_bad_journal_entries_are_refused_naming_the_field(doc: dict, words: list[str]) -> None:
    with pytest.raises(SchemaError) as e:
        parse_collect_list(json.dumps([doc]))
    for w in words:
        assert w in str(e.value), str(e.value)


def test_the_same_journal_filter_twice_is_refused() -> None:
    with pytest.raises(SchemaError, match="same journal filter as entry 1"):
        parse_collect_list('[{"journal": {"units": ["a.service"]}, "topic": "a"},'
                           ' {"journal": {"units": ["a.service"]}, "topic": "b"}]')


# --- entry → record -------------------------------------------------------------------------------

def test_entry_becomes_an_ecs_record_with_the_rest_under_journald() -> None:
    doc = journal_document(entry(5, [104, 105, 0xFF]), host_name="web1", host_ip="10.0.0.5",
                           fields=(("env", "prod"),), agent_version="9")
    rec = decode_record(journal_record(doc))
    assert rec["message"] == "hi\ufffd"
    assert rec["@timestamp"] == "2023-11-14T22:13:20.000Z"
    assert rec["log"]["level"] == "err" and rec["log"]["offset"] == 5
    assert rec["log"]["syslog"] == {"severity": {"code": 3, "name": "err"}, "facility": {"code": 4},
                                    "appname": "sshd"}
    assert rec["process"] == {"pid": 42} and rec["systemd"] == {"unit": "ssh.service"}
    assert rec["journald"] == {"_TRANSPORT": "syslog"}
    assert rec["host"] == {"name": "web1", "ip": "10.0.0.5"} and rec["fields"] == {"env": "prod"}


def test_event_id_is_host_seqnum_id_and_seqnum_whatever_else_the_cursor_says() -> None:
    def eid(c: str, ip: str = "10.0.0.5") -> str:
        e = entry(1) | {"__CURSOR": c}
        return journal_document(e, host_name="h", host_ip=ip, fields=None, agent_version="1")["event"]["id"]

    a = eid("s=aa;i=10;b=b1;m=1;t=2;x=3")
    assert a == eid("s=aa;i=10;b=b1;m=9;t=2;x=4")  # the same entry read from another file
    assert a != eid("s=aa;i=11;b=b1;m=1;t=2;x=3")
    assert a != eid("s=ab;i=10;b=b1;m=1;t=2;x=3")
    assert a != eid("s=aa;i=10;b=b1;m=1;t=2;x=3", ip="10.0.0.6")


def test_limits_on_message_fields_and_values_are_flagged() -> None:
    many = {f"F{i}": "v" for i in range(JOURNAL_MAX_FIELDS + 10)}
    doc = journal_document(entry(1, "x" * 500, BIG="y" * 5000, MULTI=["a", [98]], NULLED=None, **many),
                           host_name="h", host_ip="1.1.1.1", fields=None, agent_version="1", max_message_bytes=100)
    assert doc["message"] == "x" * 100
    assert set(doc["log"]["flags"]) == {"truncated", "journald_limited"}
    assert len(doc["journald"]) == JOURNAL_MAX_FIELDS
    assert len(doc["journald"]["BIG"]) == 2048 and doc["journald"]["MULTI"] == ["a", "b"]
    assert "NULLED" not in doc["journald"]


# --- cursors ---------------------------------------------------------------------------------------

def _input(tmp_path: Path, doc: dict | None = None, clock=None) -> tuple[JournalInput, Registry]:
    reg = Registry(tmp_path / "registry.json")
    reg.load()
    spec = parse_collect_list(json.dumps([doc or {"journal": {"identifiers": ["a"]}, "topic": "t"}]))[0]
    return JournalInput(spec, reg, **({"clock": clock} if clock else {})), reg


def _lines(*entries: dict) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in entries)



def _fake_journalctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: Path, cases: str) -> None:
    """A real child standing in for journalctl: it appends its arguments to ``calls`` and answers
    per ``cases`` (the arms of a shell ``case`` over its arguments)."""
    fake = tmp_path / "journalctl"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {calls}\ncase " $* " in{cases}\nesac\n')
    fake.chmod(0o755)
    monkeypatch.setattr(journal_mod, "JOURNALCTL", str(fake))

def test_cursor_moves_only_past_entries_acknowledged_with_all_before_them(tmp_path: Path) -> None:
    inp, reg = _input(tmp_path)
    out: list = []
    data = _lines(*(entry(i) for i in range(1, 6)))
    inp._feed(data[:37], out)  # a partial line waits for its end
    assert out == []
    inp._feed(data[37:], out)
    assert [ev.cursor for ev in out] == [cur(i) for i in range(1, 6)]
    inp.ack(out[1].n)
    assert reg.journal_cursor(inp.id) is None  # entry 1 not acknowledged yet
    inp.ack(out[0].n)
    assert reg.journal_cursor(inp.id)["cursor"] == cur(2)
    inp.ack(out[4].n)
    inp.ack(out[3].n)
    assert reg.journal_cursor(inp.id)["cursor"] == cur(2)
    inp.ack(out[2].n)
    assert reg.journal_cursor(inp.id) == {"cursor": cur(5), "realtime": 1_700_000_000_000_005}
    reg.save()
    again = Registry(tmp_path / "registry.json")
    again.load()
    assert again.journal_cursor(inp.id)["cursor"] == cur(5)
    assert JournalInput(inp.spec, again).read_cursor == cur(5)
    assert journalctl_command(inp.spec, cur(5), "end")[-2:] == [f"--cursor={cur(5)}", "--identifier=a"]


def test_resuming_skips_the_saved_entry_or_reports_the_gap(tmp_path: Path) -> None:
    inp, _ = _input(tmp_path)
    out: list = []
    inp._check_first = (cur(7), "delivered")
    inp._feed(_lines(entry(7), entry(8)), out)
    assert [ev.cursor for ev in out] == [cur(8)] and inp.gap is None
    inp._check_first = (cur(9), "delivered")  # entry 9 vacuumed: journalctl starts at 12
    inp._feed(_lines(entry(12)), out)
    assert [ev.cursor for ev in out] == [cur(8), cur(12)]
    assert inp.gaps == 1
    assert inp.gap["from"] == "2023-11-14T22:13:20.000Z" and inp.gap["to"] == "2023-11-14T22:13:20.000Z"
    assert inp.status()["gap"] == inp.gap
    # a start position (the journal's last entry at the first start) is skipped, never a gap
    inp._check_first = (cur(20), "before")
    inp._feed(_lines(entry(21)), out)
    assert inp.gaps == 1 and out[-1].cursor == cur(21)
    inp._check_first = (cur(30), "from")  # start_at beginning: the first entry is read
    inp._feed(_lines(entry(30)), out)
    assert out[-1].cursor == cur(30)


def test_a_resume_catches_up_without_follow_then_follows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """systemd 252's ``journalctl --follow --cursor=C`` starts at the current boot when C is from an
    earlier one (a reboot): the agent first reads to the journal's end without ``--follow`` (a real
    child standing in for journalctl: entries 5..7, exit 0), then follows from the last entry read;
    the follower's first entry being another one is then no gap."""
    calls = tmp_path / "calls"
    catch_up = tmp_path / "catch-up.jsonl"
    catch_up.write_bytes(_lines(entry(5), entry(6), entry(7)))
    follow = tmp_path / "follow.jsonl"
    follow.write_bytes(_lines(entry(100)))  # the current boot's first entry, not entry 7
    _fake_journalctl(tmp_path, monkeypatch, calls, f"""
  *" --follow "*) cat {follow}; exec sleep 30;;
  *) cat {catch_up};;""")
    inp, reg = _input(tmp_path)
    reg.set_journal_cursor(inp.id, cur(5), 1_700_000_000_000_005)
    inp = JournalInput(inp.spec, reg)
    got: list = []
    deadline = time.monotonic() + 10
    while len(got) < 3 and time.monotonic() < deadline:
        got += inp.poll(1 << 20)
        time.sleep(0.02)
    inp.stop()
    started = calls.read_text().splitlines()
    assert [ev.cursor for ev in got] == [cur(6), cur(7), cur(100)]
    assert "--follow" not in started[0].split() and f"--cursor={cur(5)}" in started[0].split()
    assert "--follow" in started[1].split() and f"--cursor={cur(7)}" in started[1].split()
    assert inp.gaps == 0 and inp.restarts == 0 and inp.error is None


def test_a_silent_follower_is_checked_backing_off_and_restarted_when_behind(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """journalctl --follow printing nothing: ``journalctl --lines=1`` (a real child standing in) is
    asked after STALL_CHECK_S; while it shows nothing newer the next check waits twice as long (a
    quiet input is not a process every 10 s); once it shows a newer entry journalctl is started
    again from the last entry read."""
    calls = tmp_path / "calls"
    newest = tmp_path / "newest.jsonl"
    newest.write_bytes(_lines(entry(7)))  # the journal's newest matching entry: the one read last
    _fake_journalctl(tmp_path, monkeypatch, calls, f"""
  *" --lines=1 "*) cat {newest};;
  *" --follow "*) exec sleep 30;;""")
    now = [1000.0]
    inp, reg = _input(tmp_path)
    reg.set_journal_cursor(inp.id, cur(7), 1_700_000_000_000_007)
    inp = JournalInput(inp.spec, reg, clock=lambda: now[0])
    inp.start(follow=True)

    def checks() -> int:  # (each check's journalctl has ended when poll returns: run, not spawned)
        return sum("--lines=1" in c for c in calls.read_text().splitlines()) if calls.exists() else 0

    for step, want in ((5, 0), (5, 1), (10, 1), (10, 2), (20, 2), (20, 3)):
        now[0] += step
        inp.poll(1 << 20)
        assert checks() == want, f"after +{step}s: {checks()} checks, {want} expected"
    assert inp.restarts == 0
    newest.write_bytes(_lines(entry(9)))  # journalctl missed entry 9
    now[0] += 79
    inp.poll(1 << 20)
    assert inp.restarts == 0 and checks() == 3  # the next check is 80 s after the last
    now[0] += 1
    inp.poll(1 << 20)
    assert inp.restarts == 1 and checks() == 4
    restarted = [c for c in calls.read_text().splitlines() if "--lines=1" not in c]
    deadline = time.monotonic() + 10
    while len(restarted) < 2 and time.monotonic() < deadline:  # the new child writes its line itself
        time.sleep(0.02)
        restarted = [c for c in calls.read_text().splitlines() if "--lines=1" not in c]
    assert f"--cursor={cur(7)}" in restarted[-1].split()  # started again from the last entry read
    inp.stop()


def test_an_over_long_line_is_dropped_and_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_mod, "MAX_LINE_BYTES", 1000)
    inp, _ = _input(tmp_path)
    out: list = []
    big = json.dumps(entry(1, "z" * 5000)).encode()
    for k in range(0, len(big), 300):
        inp._feed(big[k:k + 300], out)
    inp._feed(b"\n" + _lines(entry(2)), out)
    assert [ev.cursor for ev in out] == [cur(2)] and inp.oversize == 1
    assert len(inp._buf) == 0


def test_same_entry_compares_seqnum_id_and_seqnum() -> None:
    assert same_entry(cur(3), cur(3).replace("m=3", "m=99"))
    assert not same_entry(cur(3), cur(4))
    assert same_entry("opaque", "opaque") and not same_entry("opaque", "other")


def test_a_dead_journalctl_is_restarted_with_backoff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real child that exits at once (``false``): reported, started again after 1 s, then 2 s."""
    monkeypatch.setattr(journal_mod, "JOURNALCTL", "false")
    now = [100.0]
    inp, _ = _input(tmp_path, clock=lambda: now[0])
    inp.start()
    assert inp.proc is not None
    inp.proc.wait(10)
    assert inp.poll(1 << 20) == []
    assert inp.restarts == 1 and "exited with status 1" in inp.error and inp.proc is None
    assert inp.poll(1 << 20) == [] and inp.proc is None  # backoff: not yet
    now[0] += 1.0
    deadline = time.monotonic() + 10
    while inp.restarts < 2 and time.monotonic() < deadline:
        inp.poll(1 << 20)  # started again, then seen exiting
    assert inp.restarts == 2 and inp._next_start == now[0] + 2.0
    inp.stop()


def test_inputs_follow_the_collect_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_mod, "JOURNALCTL", "false")
    reg = Registry(tmp_path / "r.json")
    reg.load()
    ji = JournalInputs(reg)
    a, b = parse_collect_list('[{"journal": {}, "topic": "a"}, {"path": "/x.log", "topic": "b"}]')
    ji.set_inputs([a, b])
    assert list(ji.inputs) == ["journal:*"] and ji.topic_of("journal:*") == "a"
    first = ji.inputs["journal:*"]
    ji.set_inputs([a])
    assert ji.inputs["journal:*"] is first  # unchanged: kept
    (a2,) = parse_collect_list('[{"journal": {}, "topic": "c"}]')
    ji.set_inputs([a2])
    assert ji.inputs["journal:*"] is not first and ji.topic_of("journal:*") == "c"
    ji.set_inputs([])
    assert ji.inputs == {} and ji.topic_of("journal:*") is None


def test_parse_and_filters_apply_to_the_message(tmp_path: Path) -> None:
    """The input's parse on MESSAGE: fields merged into the record, the journal's own fields kept."""
    from agent.filters import pipeline_for
    from agent.main import Agent

    (spec,) = parse_collect_list('[{"journal": {}, "topic": "t", "parse": {"format": "kv"}, '
                                 '"exclude_lines": ["^DEBUG"]}]')
    pipe = pipeline_for(spec)
    assert pipe is not None and not pipe.filter.keep("DEBUG x") and pipe.filter.keep("user=bob n=3")
    inp, _ = _input(tmp_path, {"journal": {}, "topic": "t"})
    out: list = []
    inp._feed(_lines(entry(3, "user=bob n=3")), out)
    doc = journal_document(out[0].entry, host_name="h", host_ip="1.1.1.1", fields=None, agent_version="1")
    Agent._parse_journal(pipe, doc, out[0])
    rec = decode_record(journal_record(doc))
    assert rec["kv"] == {"user": "bob", "n": "3"} and pipe.parsed == 1
    assert rec["log"]["level"] == "err" and rec["systemd"]["unit"] == "ssh.service" and rec["message"] == "user=bob n=3"


def test_the_first_start_position_is_kept_until_an_entry_is_acknowledged(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """start_at end: the journal's last entry when the input first started is saved, so a restart before
    any entry was read starts there again (no entry written meanwhile lost, no old history read)."""
    monkeypatch.setattr(journal_mod, "JOURNALCTL", "false")
    monkeypatch.setattr(journal_mod, "journal_position", lambda start_at: cur(50))
    inp, reg = _input(tmp_path)
    inp.start()
    inp.stop()
    assert reg.journal_cursor(inp.id) == {"cursor": cur(50), "realtime": 1_700_000_000_000_050, "start": "before"}
    reg.save()
    reg2 = Registry(tmp_path / "registry.json")
    reg2.load()
    again = JournalInput(inp.spec, reg2)
    assert again._position == (cur(50), "before") and again.read_cursor is None and again.acked_cursor is None
    out: list = []
    again._check_first = again._position
    again._feed(_lines(entry(50), entry(51)), out)
    again.ack(out[0].n)
    assert [ev.cursor for ev in out] == [cur(51)] and again.gaps == 0
    assert reg2.journal_cursor(inp.id) == {"cursor": cur(51), "realtime": 1_700_000_000_000_051}


def test_logctl_status_shows_journal_inputs_and_their_gap() -> None:
    from logctl.status import _journal_lines

    lines = _journal_lines([{"input": "journal:*", "topic": "j", "running": True, "entries_read": 12,
                             "entries_acked": 10, "entries_dropped": 1, "acked_time": "2026-12-04T10:00:00.000Z",
                             "restarts": 2, "gap": {"from": "2026-12-04T09:00:00.000Z",
                                                    "to": "2026-12-04T09:30:00.000Z",
                                                    "detected_at": "2026-12-04T10:00:01+00:00"}}])
    assert lines[0].startswith("  journal   journal:* → j: reading, read 12, acked 10, dropped 1")
    assert "journalctl restarts 2" in lines[0]
    assert lines[1].startswith("  LOST      journal:*: entries from 2026-12-04T09:00:00.000Z to "
                               "2026-12-04T09:30:00.000Z")


@pytest.mark.skipif(journal_mod.SETPRIV is None, reason="util-linux setpriv not installed")
def test_journalctl_dies_with_a_killed_agent(tmp_path: Path) -> None:
    """kill -9 of the agent process: its journalctl (here a real child standing in, waiting forever
    like ``journalctl --follow`` with nothing to print) is ended by the kernel, not orphaned."""
    pidfile = tmp_path / "journalctl.pid"
    fake = tmp_path / "journalctl"
    fake.write_text(f'#!/bin/sh\ncase " $* " in *" --follow "*) echo $$ > {pidfile}.tmp && mv {pidfile}.tmp {pidfile}\n'
                    '  exec sleep 600;;\nesac\n')  # the start position query: an empty journal
    fake.chmod(0o755)
    code = ("import json, sys, time\nfrom pathlib import Path\nfrom agent.journal import JournalInput\n"
            "from agent.registry import Registry\nfrom logferry.schema import parse_collect_list\n"
            f"reg = Registry(Path({str(tmp_path)!r}) / 'r.json'); reg.load()\n"
            "spec = parse_collect_list(json.dumps([{'journal': {}, 'topic': 't'}]))[0]\n"
            "JournalInput(spec, reg).start(follow=True)\ntime.sleep(600)\n")
    agent = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "LOGFERRY_JOURNALCTL": str(fake)},
                             cwd=Path(__file__).resolve().parent.parent)
    try:
        deadline = time.monotonic() + 30
        while not pidfile.exists():
            assert agent.poll() is None and time.monotonic() < deadline, "the stand-in journalctl never started"
            time.sleep(0.05)
        pid = int(pidfile.read_text())

        def alive() -> bool:
            try:  # an orphan nobody reaps stays a zombie: that is dead too
                return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
            except FileNotFoundError:
                return False
        assert alive()
    finally:
        agent.kill()
        agent.wait(10)
    deadline = time.monotonic() + 10
    while alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(), f"journalctl {pid} outlived the agent killed with SIGKILL"


def test_journalctl_started_without_setpriv_where_it_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """Under logagent.service's seccomp filter setpriv's capset fails: tried once, then journalctl runs
    as it is (the unit's cgroup ends it with the agent) instead of never starting."""
    refusing = tmp_path / "setpriv"
    refusing.write_text("#!/bin/sh\necho 'setpriv: apply capabilities: Operation not permitted' >&2\nexit 127\n")
    refusing.chmod(0o755)
    monkeypatch.setattr(journal_mod, "SETPRIV", str(refusing))
    monkeypatch.setattr(journal_mod, "_setpriv_works", None)
    caplog.set_level("INFO", "logagent.journal")
    calls = tmp_path / "calls"
    _fake_journalctl(tmp_path, monkeypatch, calls, '\n  *" --follow "*) echo "{}";;')
    inp, _ = _input(tmp_path)
    inp.start(follow=True)
    assert inp.proc is not None and inp.proc.wait(10) == 0
    assert "--follow" in calls.read_text() and journal_mod._setpriv_works is False
    assert journal_mod.die_with_agent() == [] and "does not work here" in caplog.text
    inp.stop()
