"""logctl's command line in-process, against an in-memory etcd with real revision semantics."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest

from logctl import cli as ctl
from logctl.util import EXIT_CONFLICT, EXIT_OK, EXIT_PROBLEM, EXIT_USAGE
from logferry.documents import COLLECT_TEMPLATE

IP = "10.0.0.5"
KEY = f"/logferry/agents/{IP}/collect"
GOOD = [{"path": "/var/log/app/*.log", "topic": "app"}]


class FakeEtcd:
    """get/put/compare-and-swap with mod revisions like etcd's; ``before_cas`` simulates a rival."""

    def __init__(self) -> None:
        self.store: dict[str, tuple[bytes, int]] = {}
        self.rev = 1
        self.before_cas: Any = None
        self.closed = False

    def get(self, key: str) -> tuple[bytes | None, int]:
        v = self.store.get(key)
        return (v[0], v[1]) if v else (None, 0)

    def get_prefix(self, prefix: str) -> tuple[list[tuple[str, bytes, int]], int]:
        return sorted((k, v, r) for k, (v, r) in self.store.items() if k.startswith(prefix)), self.rev

    def put(self, key: str, value: bytes) -> int:
        self.rev += 1
        self.store[key] = (value, self.rev)
        return self.rev

    def compare_and_put(self, key: str, value: bytes, expected: int) -> bool:
        if self.before_cas:
            self.before_cas()
        if self.get(key)[1] != expected:
            return False
        self.put(key, value)
        return True

    def compare_and_delete(self, key: str, expected: int) -> bool:
        if self.get(key)[1] != expected:
            return False
        del self.store[key]
        return True

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def etcd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeEtcd:
    fake = FakeEtcd()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # `edit`'s kept texts stay in the test's dir
    monkeypatch.setattr(ctl.Ctx, "etcd", lambda self: fake)
    for name in ("LOGFERRY_ETCD", "LOGFERRY_PREFIX", "LOGFERRY_ES", "LOGFERRY_KAFKA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOGFERRY_ETCD", "127.0.0.1:2379")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr("logctl.settings.DEFAULT_CTL_CONFIG", "/nonexistent/logctl.ini")
    return fake


def run(*args: str) -> int:
    return ctl.main(list(args))


def jfile(tmp_path: Path, obj: object, name: str = "doc.json") -> str:
    p = tmp_path / name
    p.write_text(json.dumps(obj))
    return str(p)


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["collect"], ["collect", "set", IP], ["collect", "get", "not-an-ip"], ["nosuch"],
                 ["search", "--since", "15"]):
        with pytest.raises(SystemExit) as e:
            ctl.main(argv)
        assert e.value.code == 2, argv
    assert "has no unit" in capsys.readouterr().err


def test_help_explains_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["collect", "set", "--help"], ["doctor", "--help"], ["search", "--help"]):
        with pytest.raises(SystemExit) as e:
            ctl.main(argv)
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert "exit codes:" in out and "3  conflict" in out and "4  etcd, Kafka or Elasticsearch" in out


def test_no_etcd_configured(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("LOGFERRY_ETCD", raising=False)
    monkeypatch.setattr("logctl.settings.DEFAULT_CTL_CONFIG", "/nonexistent/logctl.ini")
    assert run("hosts") == EXIT_USAGE
    assert "no etcd endpoints" in capsys.readouterr().err


def test_validate_file_needs_no_etcd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("LOGFERRY_ETCD", raising=False)
    monkeypatch.setattr("logctl.settings.DEFAULT_CTL_CONFIG", "/nonexistent/logctl.ini")
    assert run("collect", "validate", "--file", jfile(tmp_path, GOOD)) == EXIT_OK
    assert "valid collect list: 1 input(s)" in capsys.readouterr().out
    bad = jfile(tmp_path, [{"path": "/a", "topic": "t", "multiline": {"pattern": "("}}])
    assert run("collect", "validate", "--file", bad) == EXIT_USAGE
    assert 'collect list entry 1 ("/a"): field "multiline.pattern": not a valid regular expression' in \
        capsys.readouterr().err
    assert run("transfer-config", "validate", "--file", jfile(tmp_path, {"topics": ["a"], "indx": "x"}),
               "--json") == EXIT_USAGE
    out = json.loads(capsys.readouterr().out)
    assert out["valid"] is False and 'did you mean "index"' in out["error"]


def test_set_get_delete(etcd: FakeEtcd, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("collect", "get", IP) == EXIT_PROBLEM
    assert "does not exist" in capsys.readouterr().err
    assert run("collect", "set", IP, jfile(tmp_path, GOOD), "--dry-run") == EXIT_OK
    assert "dry run: nothing written" in capsys.readouterr().out and KEY not in etcd.store
    assert run("collect", "set", IP, jfile(tmp_path, GOOD), "--yes") == EXIT_OK
    out = capsys.readouterr().out
    assert f"--- {KEY} (does not exist)" in out and '+    "topic": "app"' in out and "written" in out
    stored, rev = etcd.get(KEY)
    assert json.loads(stored) == GOOD
    assert run("collect", "get", IP) == EXIT_OK
    assert json.loads(capsys.readouterr().out) == GOOD
    assert run("collect", "delete", IP) == EXIT_USAGE  # no terminal, no --yes
    assert KEY in etcd.store
    capsys.readouterr()
    assert run("collect", "delete", IP, "--yes", "--json") == EXIT_OK
    out = json.loads(capsys.readouterr().out)
    assert out["written"] is True and out["previous_revision"] == rev and KEY not in etcd.store
    assert run("collect", "delete", IP, "--yes") == EXIT_OK  # nothing left: fine, nothing done


def test_get_invalid_stored_value(etcd: FakeEtcd, capsys: pytest.CaptureFixture[str]) -> None:
    etcd.put(KEY, b'[{"path": "/a", "topic": "t", "colour": "red"}]')
    assert run("collect", "get", IP) == EXIT_PROBLEM
    out, err = capsys.readouterr()
    assert '"colour"' in out and "INVALID" in err and 'field "colour": unknown field' in err
    assert run("collect", "get", IP, "--raw") == EXIT_PROBLEM
    assert capsys.readouterr().out == '[{"path": "/a", "topic": "t", "colour": "red"}]\n'


def test_conflicts_exit_3(etcd: FakeEtcd, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("collect", "set", IP, jfile(tmp_path, GOOD), "--yes") == EXIT_OK
    _, rev = etcd.get(KEY)
    other = [{"path": "/var/log/b.log", "topic": "b"}]
    assert run("collect", "set", IP, jfile(tmp_path, other), "--yes", "--expect-revision", str(rev + 5)) \
        == EXIT_CONFLICT
    assert f"changed since logctl read it at revision {rev + 5} (now revision {rev})" in capsys.readouterr().err
    # a rival writes between logctl's read and its write
    etcd.before_cas = lambda: (etcd.put(KEY, b"[]"), setattr(etcd, "before_cas", None))
    assert run("collect", "set", IP, jfile(tmp_path, other), "--yes") == EXIT_CONFLICT
    assert "conflict" in capsys.readouterr().err and etcd.get(KEY)[0] == b"[]"
    # --expect-revision 0: create only
    assert run("collect", "set", "10.0.0.6", jfile(tmp_path, other), "--yes", "--expect-revision", "0") == EXIT_OK
    assert run("collect", "set", "10.0.0.6", jfile(tmp_path, GOOD), "--yes", "--expect-revision", "0") \
        == EXIT_CONFLICT


def _editor(monkeypatch: pytest.MonkeyPatch, contents: list[str]) -> list[str]:
    seen: list[str] = []

    def fake_call(cmd: list[str]) -> int:
        path = Path(cmd[-1])
        seen.append(path.read_text())
        path.write_text(contents.pop(0))
        return 0

    monkeypatch.setattr(ctl.subprocess, "call", fake_call)
    monkeypatch.setenv("EDITOR", "myeditor --wait")
    return seen


def test_edit_loops_on_errors(etcd: FakeEtcd, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    seen = _editor(monkeypatch, ['[{"path": "relative", "topic": "a"}]', json.dumps(GOOD)])
    monkeypatch.setattr(ctl, "stdin_is_tty", lambda: True)
    asked: list[str] = []
    monkeypatch.setattr(ctl, "confirm", lambda q, **kw: asked.append(q) or True)
    assert run("collect", "edit", IP) == EXIT_OK
    assert seen[0] == COLLECT_TEMPLATE  # a missing key starts from an example
    assert seen[1] == '[{"path": "relative", "topic": "a"}]'  # the second round starts from the bad text
    err = capsys.readouterr().err
    assert 'collect list entry 1 ("relative"): field "path": relative path' in err
    assert asked[0] == "Edit again?" and asked[1].startswith("Write collect list of 10.0.0.5")
    assert json.loads(etcd.get(KEY)[0]) == GOOD


def test_edit_without_terminal(etcd: FakeEtcd, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    _editor(monkeypatch, ["not json"])
    assert run("collect", "edit", IP, "--yes") == EXIT_USAGE
    out, err = capsys.readouterr()
    assert "not valid JSON" in err and "your text is kept in" in out
    kept = Path(out.split("your text is kept in ")[1].strip())
    assert kept.read_text() == "not json"
    kept.unlink()
    # no change in the editor: nothing written, no question
    _editor(monkeypatch, [COLLECT_TEMPLATE])
    assert run("collect", "edit", IP) == EXIT_OK
    assert "no change made in the editor" in capsys.readouterr().out and KEY not in etcd.store


def test_edit_conflict_keeps_text(etcd: FakeEtcd, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    etcd.put(KEY, json.dumps(GOOD).encode())
    mine = [{"path": "/var/log/mine.log", "topic": "mine"}]

    def rival_then_edit(cmd: list[str]) -> int:
        etcd.put(KEY, b"[]")  # someone else, while this operator edits
        Path(cmd[-1]).write_text(json.dumps(mine))
        return 0

    monkeypatch.setattr(ctl.subprocess, "call", rival_then_edit)
    assert run("collect", "edit", IP, "--yes") == EXIT_CONFLICT
    err = capsys.readouterr().err
    kept = Path(err.split("your text is kept in ")[1].split(".json")[0] + ".json")
    assert json.loads(kept.read_text()) == mine and etcd.get(KEY)[0] == b"[]"
    kept.unlink()


def test_editor_failure(etcd: FakeEtcd, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(ctl.subprocess, "call", lambda cmd: 1)
    assert run("collect", "edit", IP) == EXIT_PROBLEM
    err = capsys.readouterr().err
    assert "the editor exited with status 1; nothing written; your text is in " in err
    assert Path(err.split("your text is in ")[1].strip()).read_text() == COLLECT_TEMPLATE


def test_transfer_config(etcd: FakeEtcd, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("transfer-config", "set", jfile(tmp_path, {"topics": ["app"]}), "--yes") == EXIT_OK
    capsys.readouterr()
    assert run("transfer-config", "get") == EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    assert doc["topics"] == ["app"] and doc["index"] == "logferry-{topic}-{yyyy.MM.dd}"  # defaults made explicit
    bad = jfile(tmp_path, {"topics": ["logferry-dead-letter"]})
    assert run("transfer-config", "set", bad, "--yes") == EXIT_USAGE
    assert "dead-letter topic" in capsys.readouterr().err


def test_hosts_and_status(etcd: FakeEtcd, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("hosts") == EXIT_OK
    assert "no hosts under /logferry/agents/" in capsys.readouterr().out
    etcd.put(KEY, json.dumps(GOOD).encode())
    assert run("hosts", "--json") == EXIT_OK
    assert json.loads(capsys.readouterr().out)[0]["ip"] == IP
    assert run("status", IP) == EXIT_PROBLEM
    assert "no live agent" in capsys.readouterr().out
    status = {"hostname": "web1", "ip": IP, "version": "0.1.0", "config": {"revision": etcd.get(KEY)[1]},
              "files": [], "counters": {}}
    etcd.put(f"/logferry/agents/{IP}/status", json.dumps(status).encode())
    assert run("status", IP) == EXIT_OK
    assert "(current)" in capsys.readouterr().out
    assert run("status", "--json") == EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    assert doc["agents"][0]["status"]["hostname"] == "web1" and doc["transfers"] == []
