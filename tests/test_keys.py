"""etcd key layout: one spelling per key, whoever builds it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logferry.keys import Keys, canonical_ip


def test_default_layout() -> None:
    k = Keys()
    assert k.prefix == "/logferry"
    assert k.agent_collect("10.0.0.5") == "/logferry/agents/10.0.0.5/collect"
    assert k.agent_status("10.0.0.5") == "/logferry/agents/10.0.0.5/status"
    assert k.agents_prefix() == "/logferry/agents/"
    assert k.transfer_config() == "/logferry/transfer/config"
    assert k.transfer_status("t1") == "/logferry/transfers/t1/status"
    assert k.transfers_prefix() == "/logferry/transfers/"


@pytest.mark.parametrize(("given_prefix", "normal"), [
    ("/logferry", "/logferry"), ("logferry", "/logferry"), ("/logferry/", "/logferry"),
    ("/a/b/", "/a/b"), ("  /x  ", None), ("/", ""),
])
def test_prefix_is_normalised(given_prefix: str, normal: str | None) -> None:
    if normal is None:
        with pytest.raises(ValueError, match="without spaces"):
            Keys(given_prefix)
        return
    k = Keys(given_prefix)
    assert k.prefix == normal
    assert k.agent_collect("10.0.0.1") == f"{normal}/agents/10.0.0.1/collect"
    assert k == Keys(normal or "/") and hash(k) == hash(Keys(normal or "/"))


@pytest.mark.parametrize("bad", ["/a//b", "/a\nb", "/a b"])
def test_bad_prefix_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="etcd prefix"):
        Keys(bad)


@pytest.mark.parametrize(("ip", "canonical"), [
    ("10.0.0.5", "10.0.0.5"), (" 10.0.0.5 ", "10.0.0.5"), ("2001:DB8::1", "2001:db8::1"),
    ("2001:db8:0:0:0:0:0:1", "2001:db8::1"), ("::1", "::1"), ("fe80::1%eth0", "fe80::1%eth0"),
])
def test_ipv4_and_ipv6_are_canonical(ip: str, canonical: str) -> None:
    assert canonical_ip(ip) == canonical
    assert Keys().agent_collect(ip) == f"/logferry/agents/{canonical}/collect"


@pytest.mark.parametrize("bad", ["10.0.0", "host1", "", "10.0.0.5/24", 167772165])
def test_bad_ip_refused_with_its_name(bad: object) -> None:
    with pytest.raises(ValueError, match="is not an IPv4 or IPv6 address"):
        Keys().agent_status(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", "a/b", " a", "a\n"])
def test_bad_transfer_id_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="cannot be used in an etcd key"):
        Keys().transfer_status(bad)


@pytest.mark.parametrize(("key", "parsed"), [
    ("/logferry/agents/10.0.0.5/collect", ("10.0.0.5", "collect")),
    ("/logferry/agents/10.0.0.5/status", ("10.0.0.5", "status")),
    (b"/logferry/agents/2001:db8::1/status", ("2001:db8::1", "status")),
    ("/logferry/agents/2001:DB8::1/collect", ("2001:db8::1", "collect")),
    ("/logferry/agents/10.0.0.5/other", None),
    ("/logferry/agents/10.0.0.5/collect/x", None),
    ("/logferry/agents/10.0.0.5", None),
    ("/logferry/agents/web1/collect", None),
    ("/logferry/agents-old/10.0.0.5/collect", None),
    ("/other/agents/10.0.0.5/collect", None),
    ("/logferry/transfer/config", None),
    (b"\xff\xfe", None),
])
def test_parse_agent_key(key: str | bytes, parsed: tuple[str, str] | None) -> None:
    assert Keys().parse_agent_key(key) == parsed


def test_parse_agent_key_round_trips_and_respects_prefix() -> None:
    k = Keys("/lab/one")
    assert k.parse_agent_key(k.agent_status("::1")) == ("::1", "status")
    assert Keys().parse_agent_key(k.agent_status("::1")) is None


@pytest.mark.parametrize(("key", "tid"), [
    ("/logferry/transfers/t1/status", "t1"), (b"/logferry/transfers/host-2/status", "host-2"),
    ("/logferry/transfers/t1/other", None), ("/logferry/transfers//status", None),
    ("/logferry/transfer/config", None),
])
def test_parse_transfer_key(key: str | bytes, tid: str | None) -> None:
    assert Keys().parse_transfer_key(key) == tid


@settings(max_examples=150, deadline=None)
@given(st.ip_addresses())
def test_any_ip_round_trips(ip: object) -> None:
    k = Keys()
    assert k.parse_agent_key(k.agent_collect(str(ip))) == (str(ip), "collect")


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60) | st.binary(max_size=60))
def test_parse_never_raises(key: str | bytes) -> None:
    Keys().parse_agent_key(key)
    Keys().parse_transfer_key(key)


def test_saved_search_keys_live_under_the_console_prefix() -> None:
    k = Keys("/logferry")
    assert k.saved_searches_prefix() == "/logferry/console/searches/"
    assert k.saved_search("checkout failures") == "/logferry/console/searches/checkout failures"
    with pytest.raises(ValueError, match="saved search name"):
        k.saved_search("a/b")
