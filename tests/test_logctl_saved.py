"""logctl search --saved: a console saved search read from etcd as logctl's filters (pure logic)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from logctl.search import load_saved_search
from logctl.util import CtlError
from logferry.keys import Keys

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


class FakeEtcd:
    """get / get_prefix over a dict, the two calls load_saved_search makes."""

    def __init__(self, data: dict[str, bytes]) -> None:
        self.data = data

    def get(self, key: str) -> tuple[bytes | None, int]:
        return self.data.get(key), 1

    def get_prefix(self, prefix: str) -> tuple[list[tuple[str, bytes, int]], int]:
        return [(k, v, 1) for k, v in sorted(self.data.items()) if k.startswith(prefix)], 1


def saved(keys: Keys, name: str, state: dict) -> dict[str, bytes]:
    return {keys.saved_search(name): json.dumps({"state": state, "saved_by": "alice"}).encode()}


def test_relative_range_counts_back_from_now_and_filters_carry_over() -> None:
    keys = Keys("/lf")
    etcd = FakeEtcd(saved(keys, "5xx", {"q": "status>=500", "range": "1h", "topic": "nginx", "host": "10.0.0.5",
                                        "file": "/var/log/nginx/access.log"}))
    s = load_saved_search(etcd, keys, "5xx", now=NOW)
    assert (s.topic, s.host, s.file, s.text, s.saved_by) == ("nginx", "10.0.0.5", "/var/log/nginx/access.log",
                                                            "status>=500", "alice")
    assert s.since == NOW - timedelta(hours=1) and s.until is None


def test_absolute_range_is_kept() -> None:
    keys = Keys("/lf")
    etcd = FakeEtcd(saved(keys, "incident", {"from": "2026-12-01T10:00:00Z", "to": "2026-12-01T10:05:00Z"}))
    s = load_saved_search(etcd, keys, "incident", now=NOW)
    assert s.since == datetime(2026, 12, 1, 10, 0, tzinfo=UTC) and s.until == datetime(2026, 12, 1, 10, 5, tzinfo=UTC)
    assert s.text is None and s.topic is None


def test_unknown_name_lists_the_saved_ones() -> None:
    keys = Keys("/lf")
    etcd = FakeEtcd(saved(keys, "a", {"range": "1h"}) | saved(keys, "b", {"range": "15m"}))
    with pytest.raises(CtlError, match=r"no saved search named 'c'.*saved: a, b"):
        load_saved_search(etcd, keys, "c", now=NOW)


def test_a_value_that_is_not_a_saved_search_is_named() -> None:
    keys = Keys("/lf")
    etcd = FakeEtcd({keys.saved_search("x"): b"not json"})
    with pytest.raises(CtlError, match="is not a saved search"):
        load_saved_search(etcd, keys, "x", now=NOW)
