"""Fault schedules: what happens when, as a fraction of the lines written.

Steps are keyed to the writers' progress, not to the clock, so one schedule serves any N:
step ``at=0.30`` starts once 30 % of the lines are written (the writer waits at that point
until the step starts, then writes on during the fault). Steps run one after the other, each
after the previous fault's recovery (or a time limit); a step that restarts a service returns
when the service answers again.

Actions (see ``harness.Run.do_<action>``):

===================== ============================================================================
kill_agent            kill -9 the agent of host ``host``, wait ``down_s``, start it again
kill_transfer         kill -9 logtransfer ``transfer`` (1-based), wait ``down_s``, start it again
kill_agent_transfer   both of the above at the same moment
restart_kafka         stop the broker (SIGTERM, or kill -9 with ``kill=True``), start it again
stop_es               stop Elasticsearch, wait ``down_s``, start it again
kill_etcd_member      kill -9 an etcd member that is not the leader, wait ``down_s``, start it
kill_etcd_leader      kill -9 the etcd leader, wait ``down_s``, start it
set_topic             collect list of ``host``: its input now goes to another topic
add_input             collect list of ``host``: a second input for a new directory (its file has
                      been written since the start: read from the beginning)
bad_list              put a collect list with wrong types and an unknown key for ``host``; check
                      it is refused and collection goes on; put the good one back
honest_copytruncate   copytruncate ``host``'s b.log at once, without waiting for the agent
===================== ============================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Step:
    at: float
    action: str
    args: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        a = ", ".join(f"{k}={v}" for k, v in self.args.items())
        return f"{self.action}({a})"


def full(agents: int) -> list[Step]:
    """For ``make chaos``: every fault of the issue, several agent and transfer kills."""
    h = [i % agents for i in range(3)]
    return [
        Step(0.04, "kill_agent", {"host": h[0], "down_s": 3}),
        Step(0.09, "kill_transfer", {"transfer": 1, "down_s": 5}),
        Step(0.14, "restart_kafka", {}),
        Step(0.21, "kill_etcd_member", {"down_s": 10}),
        Step(0.26, "kill_agent", {"host": h[1], "down_s": 2}),
        Step(0.31, "stop_es", {"down_s": 25}),
        Step(0.36, "honest_copytruncate", {"host": h[0]}),
        Step(0.39, "set_topic", {"host": h[1]}),
        Step(0.44, "kill_etcd_leader", {"down_s": 10}),
        Step(0.45, "add_input", {"host": h[2]}),
        Step(0.50, "kill_transfer", {"transfer": 2, "down_s": 5}),
        Step(0.55, "kill_agent", {"host": h[2], "down_s": 2}),
        Step(0.60, "bad_list", {"host": h[0], "hold_s": 6}),
        Step(0.65, "kill_agent_transfer", {"host": h[0], "transfer": 1, "down_s": 3}),
        Step(0.77, "restart_kafka", {"kill": True}),
        Step(0.84, "kill_agent", {"host": h[1], "down_s": 1}),
        Step(0.90, "kill_transfer", {"transfer": 2, "down_s": 1}),
    ]


def short(agents: int) -> list[Step]:
    """For ``make test``: each kind of fault once, close together."""
    h = [i % agents for i in range(3)]
    return [
        Step(0.06, "kill_agent", {"host": h[0], "down_s": 1}),
        Step(0.12, "kill_transfer", {"transfer": 1, "down_s": 1}),
        Step(0.20, "restart_kafka", {}),
        Step(0.30, "kill_etcd_member", {"down_s": 3}),
        Step(0.36, "set_topic", {"host": h[1]}),
        Step(0.42, "stop_es", {"down_s": 5}),
        Step(0.47, "honest_copytruncate", {"host": h[0]}),
        Step(0.52, "kill_etcd_leader", {"down_s": 3}),
        Step(0.53, "add_input", {"host": h[2]}),
        Step(0.62, "kill_agent_transfer", {"host": h[1], "transfer": 2, "down_s": 1}),
        Step(0.80, "kill_agent", {"host": h[2], "down_s": 1}),
    ]


SCHEDULES = {"full": full, "short": short}
