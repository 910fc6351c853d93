"""KafkaSink's bookkeeping: each delivery report is matched to the record it is for.

No broker: the producer points at a closed port, so records stay queued in librdkafka and the
reports are fed to the sink's callback by hand, in order, out of order and failed.
"""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from agent.producer import KafkaSink


class Msg:
    def __init__(self, key: bytes, value: bytes) -> None:
        self._key, self._value = key, value

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value


@pytest.fixture
def sink() -> KafkaSink:
    s = KafkaSink({"bootstrap.servers": "127.0.0.1:1"})
    yield s
    s._producer.purge()


def test_reports_match_their_records_in_any_order(sink: KafkaSink) -> None:
    recs = [(b"k1", b"v%d" % i, ("tok1", i)) for i in range(5)] + [(b"k2", b"w%d" % i, ("tok2", i)) for i in range(3)]
    for key, value, token in recs:
        sink.produce("t", key, value, token)
    assert sink.inflight_count == 8
    assert sink.inflight_bytes == sum(len(k) + len(v) for k, v, _ in recs)
    # in order for k1, interleaved with k2, and one of k1 overtaking others (matched by value)
    order = [0, 5, 1, 3, 6, 2, 7, 4]
    for i in order:
        key, value, _ = recs[i]
        sink._on_delivery(None, Msg(key, value))
    acked, failed = sink.poll(0)
    assert acked == [recs[i][2] for i in order]
    assert failed == []
    assert sink.inflight_count == 0 and sink.inflight_bytes == 0
    assert sink._sent == {}
    assert sink.poll(0) == ([], [])


def test_failed_report_hands_back_token_and_value(sink: KafkaSink) -> None:
    sink.produce("t", b"k", b"a", "A")
    sink.produce("t", b"k", b"b", "B")
    err = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    sink._on_delivery(err, Msg(b"k", b"a"))
    sink._on_delivery(None, Msg(b"k", b"b"))
    acked, failed = sink.poll(0)
    assert acked == ["B"]
    assert [(d.token, d.value, d.error.code()) for d in failed] == [("A", b"a", KafkaError.TOPIC_AUTHORIZATION_FAILED)]
    assert sink.inflight_count == 0 and sink.inflight_bytes == 0


def test_same_record_sent_twice_is_acked_twice(sink: KafkaSink) -> None:
    # a re-sent record has the same key and value: each report takes one of them
    sink.produce("t", b"k", b"same", "first")
    sink.produce("t", b"k", b"same", "again")
    sink._on_delivery(None, Msg(b"k", b"same"))
    sink._on_delivery(None, Msg(b"k", b"same"))
    assert sink.poll(0)[0] == ["first", "again"]


def test_report_for_unknown_record_is_an_error(sink: KafkaSink) -> None:
    sink.produce("t", b"k", b"a", "A")
    with pytest.raises(RuntimeError):
        sink._on_delivery(None, Msg(b"k", b"zzz"))
