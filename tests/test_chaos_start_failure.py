"""chaos's note when a server does not start: the line of the error that says why."""

from __future__ import annotations

from chaos.harness import start_failure


def test_the_cause_is_the_last_error_line_of_the_logs_tail() -> None:
    err = ("kafka exited during start-up; last lines of /tmp/x/kafka/kafka.log:\n"
           "[2026-12-05 12:29:01,112] INFO starting (kafka.server.KafkaServer)\n"
           "[2026-12-05 12:29:02,410] ERROR Error while creating ephemeral at /brokers/ids/0, node already "
           "exists (kafka.zk.KafkaZkClient$CheckedEphemeral)\n"
           "[2026-12-05 12:29:02,420] INFO shutting down (kafka.server.KafkaServer)\n")
    assert start_failure(err).startswith("[2026-12-05 12:29:02,410] ERROR Error while creating ephemeral")


def test_without_an_error_line_the_first_line_and_never_an_empty_reason() -> None:
    assert start_failure("es1 did not serve within 120s; last lines of x.log:\nstarting\n") == (
        "es1 did not serve within 120s; last lines of x.log:")
    assert start_failure("") == "no message"
    assert len(start_failure("x" * 500)) == 200
