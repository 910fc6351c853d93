"""Elasticsearch refusing writes with a block (disk flood-stage watermark, read-only index).

When a node passes ``cluster.routing.allocation.disk.watermark.flood_stage`` Elasticsearch puts
``index.blocks.read_only_allow_delete`` on every index with a shard there, and each bulk item
comes back ``429 cluster_block_exception`` ("disk usage exceeded flood-stage watermark, index has
read-only-allow-delete block"); other blocks (``index.blocks.write``, a cluster-wide
``create_index`` block) answer 403 with the same type. None of that is the document's fault:
the indexer retries those items like an outage, so nothing is committed past them and nothing is
dead-lettered. This module only makes the state *visible*, because "Elasticsearch answers but
indexes nothing" is otherwise hard to tell from a slow cluster: one WARNING when the block starts
(naming the index and what to do), one INFO when writes are accepted again, the status key's
``elasticsearch.state = "blocked"`` and the ``logtransfer_elasticsearch_blocked`` gauge.

Elasticsearch 8 lifts the flood-stage block by itself once the node's disk usage is below the
high watermark again, so the transfer resumes without anyone touching the index settings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["BLOCK_ERROR_TYPE", "BlockState", "block_reason"]

log = logging.getLogger("logtransfer.indexer")

BLOCK_ERROR_TYPE = "cluster_block_exception"

_ADVICE = {
    "flood": "free disk space on the Elasticsearch data nodes (or delete old indices); Elasticsearch lifts "
             "the block by itself once disk usage is below the high watermark",
    "other": "find who set the block (GET <index>/_settings/index.blocks*) and lift it",
}


def block_reason(status: int, error: Any) -> str | None:
    """The one-line reason when ``error`` (a bulk item's or a whole request's ``error``) is a block.

    None for every other error. The reason keeps Elasticsearch's own words (which say which
    block: flood-stage, read-only, ...) and adds what the operator should do.
    """
    if not isinstance(error, dict) or error.get("type") != BLOCK_ERROR_TYPE:
        return None
    reason = str(error.get("reason") or "blocked")[:500]
    kind = "flood" if ("flood" in reason or "read-only-allow-delete" in reason) else "other"
    return f"{status} {BLOCK_ERROR_TYPE}: {reason}; {_ADVICE[kind]}"


class BlockState:
    """Whether Elasticsearch currently refuses our writes with a block; logs its start and end once.

    ``gauge`` (optional) is set to 1 while blocked and 0 otherwise.
    """

    def __init__(self, gauge: Any = None, clock: Callable[[], float] = time.time) -> None:
        self.gauge = gauge
        self.clock = clock
        self.reason: str | None = None
        self.since: float | None = None  # epoch seconds
        self.episodes = 0
        self.held = 0  # documents held back by the current block, as last reported
        #: sequence number (``Indexer``) of the request whose answer last changed the state: an
        #: answer to a request sent before it is stale (two requests in flight across the end of a
        #: block must not end it, start it again and end it again)
        self.changed_by = -1

    @property
    def active(self) -> bool:
        return self.since is not None

    def blocked(self, reason: str, documents: int, seq: int = 0) -> None:
        """The answer to request ``seq`` said the writes are blocked; the first one of a block logs a WARNING."""
        if self.since is None and seq < self.changed_by:
            return  # sent before the block was seen to end: says nothing about now
        self.reason = reason
        self.held = documents
        if self.since is None:
            self.changed_by = seq
            self.since = self.clock()
            self.episodes += 1
            if self.gauge is not None:
                self.gauge.set(1)
            log.warning("elasticsearch: writes BLOCKED (%s); holding %d document(s): they are retried until "
                        "accepted, their offsets are not committed and nothing is dead-lettered", reason, documents)

    def clear(self, seq: int = 0) -> None:
        """The answer to request ``seq`` came without any block: log the end of the block, if there was one."""
        if self.since is None or seq < self.changed_by:
            return
        self.changed_by = seq
        log.info("elasticsearch: writes accepted again after a block of %.0fs; resuming", self.clock() - self.since)
        self.since = None
        self.reason = None
        self.held = 0
        if self.gauge is not None:
            self.gauge.set(0)

    def status(self) -> dict[str, Any] | None:
        """For the status key: None when not blocked."""
        if self.since is None:
            return None
        return {"reason": self.reason, "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.since)),
                "held_documents": self.held}
