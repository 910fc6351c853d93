"""Index retention: which names are old and ours, and one run per lock.

The etcd lock is exercised against real etcd in integration/test_es_disk_full.py; here it is
replaced by stubs, so what is tested is the choice of indices and the run's bookkeeping.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

import transfer.retention as retention
from transfer.retention import RetentionConfig, RetentionRunner, expired_indices, index_regex, lock_key

NOW = datetime(2024, 5, 20, 9, 30, tzinfo=UTC)
PATTERN = "logferry-{topic}-{yyyy.MM.dd}"


def test_only_names_of_the_pattern_older_than_the_cutoff() -> None:
    names = [
        "logferry-nginx-2024.05.05",  # 15 days before: goes with retention 14
        "logferry-nginx-2024.05.06",  # 14 days before: kept (D < today - 14 days is false)
        "logferry-app.web-2023.12.31",
        "logferry-nginx-2024.05.20",  # today
        "logferry-nginx-keep",  # decoys: same prefix, not the pattern
        "logferry-nginx-2024.05.01-restored",
        "logferry-nginx-2024.13.45",  # not a date
        "other-nginx-2024.01.01",  # another prefix
        ".logferry-nginx-2024.01.01",  # hidden
    ]
    assert expired_indices(names, PATTERN, 14, NOW) == ["logferry-app.web-2023.12.31", "logferry-nginx-2024.05.05"]


def test_monthly_and_hourly_patterns_count_their_whole_period() -> None:
    monthly = ["logs-x-2024.04", "logs-x-2024.05", "logs-x-2024.03"]
    # cut-off 2024-05-10: April ends 2024-05-01 (gone), May is not over (kept)
    assert expired_indices(monthly, "logs-{topic}-{yyyy.MM}", 10, NOW) == ["logs-x-2024.03", "logs-x-2024.04"]
    hourly = ["h-2024.05.18.23", "h-2024.05.19.00"]
    assert expired_indices(hourly, "h-{yyyy.MM.dd.HH}", 1, NOW) == ["h-2024.05.18.23"]


def test_pattern_without_a_year_matches_nothing() -> None:
    assert index_regex("logferry-{topic}") is None
    assert expired_indices(["logferry-a"], "logferry-{topic}", 1, NOW) == []


def test_lock_key_is_under_the_prefix() -> None:
    assert lock_key("/logferry") == "/logferry/transfer/retention-lock"


class FakeIndices:
    def __init__(self, names: list[str], fail_on: str | None = None) -> None:
        self.names = names
        self.deleted: list[str] = []
        self.fail_on = fail_on

    def resolve_index(self, name: str, expand_wildcards: str) -> dict[str, Any]:
        return {"indices": [{"name": n} for n in self.names] + [{"name": ".ds-logferry-x-2020.01.01-000001",
                                                                 "data_stream": "logferry-x"}]}

    def delete(self, index: str, expand_wildcards: str) -> None:
        if index == self.fail_on:
            raise RuntimeError("boom")
        self.deleted.append(index)


class FakeES:
    def __init__(self, indices: FakeIndices) -> None:
        self.indices = indices

    def options(self, **_kw: Any) -> FakeES:
        return self


@pytest.fixture
def lock(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    state: dict[str, Any] = {"held": None, "released": [], "updated": []}

    def take(_etcd: Any, _key: str, value: bytes, _ttl: int) -> int | None:
        if state["held"] is not None:
            return None
        state["held"] = value
        return 7

    monkeypatch.setattr(retention, "take_lock", take)
    monkeypatch.setattr(retention, "release_lock", lambda _e, lease: state["released"].append(lease))
    monkeypatch.setattr(retention, "update_lock", lambda _e, _k, v, lease: state["updated"].append(v))
    return state


class FakeEtcd:
    def get(self, _key: str) -> tuple[bytes | None, int]:
        return b'{"holder": "t0"}', 1


def runner(es: FakeES, days: int | None = 14) -> RetentionRunner:
    cfg = RetentionConfig(PATTERN, days) if days else None
    return RetentionRunner(es, FakeEtcd, "/p/transfer/retention-lock", "t1", lambda: cfg,
                           clock=lambda: NOW.timestamp())


def test_a_run_deletes_the_old_ones_and_the_next_transfer_skips(lock: dict[str, Any]) -> None:
    idx = FakeIndices(["logferry-a-2024.01.01", "logferry-a-2024.05.20", "logferry-a-keep"])
    first = runner(FakeES(idx)).check()
    assert first["outcome"] == "ran" and first["deleted"] == ["logferry-a-2024.01.01"]
    assert idx.deleted == ["logferry-a-2024.01.01"] and lock["updated"] and not lock["released"]
    second = runner(FakeES(idx)).check()
    assert second["outcome"].startswith("skipped: another transfer") and second["lock"] == {"holder": "t0"}
    assert idx.deleted == ["logferry-a-2024.01.01"]


def test_a_failed_run_releases_the_lock_for_a_retry(lock: dict[str, Any]) -> None:
    idx = FakeIndices(["logferry-a-2024.01.01", "logferry-a-2024.01.02"], fail_on="logferry-a-2024.01.02")
    r = runner(FakeES(idx)).check()
    assert r["outcome"].startswith("error: cannot delete index logferry-a-2024.01.02")
    assert lock["released"] == [7] and r["deleted"] == ["logferry-a-2024.01.01"]


def test_no_retention_days_runs_nothing(lock: dict[str, Any]) -> None:
    idx = FakeIndices(["logferry-a-2020.01.01"])
    r = runner(FakeES(idx), days=None)
    assert "outcome" not in r.check() and r.status() is None
    assert idx.deleted == [] and lock["held"] is None


def test_schema_retention_days_is_checked_and_documented_in_the_error() -> None:
    from logferry.schema import SchemaError, parse_transfer_config

    cfg = parse_transfer_config('{"topics": ["a"], "retention_days": 14}')
    assert cfg.retention_days == 14 and cfg.to_json()["retention_days"] == 14
    assert parse_transfer_config('{"topics": ["a"]}').retention_days is None
    assert "retention_days" not in parse_transfer_config('{"topics": ["a"]}').to_json()
    for bad, words in [('0', "whole number"), ('true', "whole number"), ('"14"', "whole number")]:
        with pytest.raises(SchemaError, match=words):
            parse_transfer_config(f'{{"topics": ["a"], "retention_days": {bad}}}')
    with pytest.raises(SchemaError, match="fixed text"):
        parse_transfer_config('{"topics": ["a"], "retention_days": 3, "index": "{topic}-{yyyy.MM.dd}"}')
    with pytest.raises(SchemaError, match="year"):
        parse_transfer_config('{"topics": ["a"], "retention_days": 3, "index": "logs-{topic}-{MM.dd}"}')
