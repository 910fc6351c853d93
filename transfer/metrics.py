"""Prometheus metrics of logtransfer, and the same figures as a dict for the etcd status key.

One registry per instance (not the global default), so tests can build several in one process.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from logferry.httpstatus import HealthCheck, serve

__all__ = ["TransferMetrics"]

_BULK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class TransferMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.consumed = Counter("logtransfer_records_consumed", "Records consumed from Kafka", registry=r)
        self.indexed = Counter("logtransfer_documents_indexed", "Documents Elasticsearch accepted", registry=r)
        self.failed = Counter("logtransfer_documents_failed",
                              "Documents Elasticsearch did not accept in an attempt, by kind: retryable "
                              "(retried) or rejected (sent to the dead-letter topic)", ["kind"], registry=r)
        self.retried = Counter("logtransfer_documents_retried", "Documents sent again after a retryable failure",
                               registry=r)
        self.dead_lettered = Counter("logtransfer_dead_lettered",
                                     "Records written to the dead-letter topic, by kind: invalid_record "
                                     "(not a logferry envelope) or rejected (refused by Elasticsearch)",
                                     ["kind"], registry=r)
        self.bulk_seconds = Histogram("logtransfer_bulk_seconds", "Latency of one bulk request",
                                      buckets=_BULK_BUCKETS, registry=r)
        self.bulk_requests = Counter("logtransfer_bulk_requests", "Bulk requests by outcome: ok, partial "
                                     "(some items not accepted), error (no answer or whole request refused)",
                                     ["outcome"], registry=r)
        self.commits = Counter("logtransfer_commits", "Offset commits by outcome", ["outcome"], registry=r)
        self.consumer_lag = Gauge("logtransfer_consumer_lag",
                                  "Records in a partition not yet committed (high watermark - committed)",
                                  ["topic", "partition"], registry=r)
        self.consumer_lag_total = Gauge("logtransfer_consumer_lag_total", "Sum of the consumer lag of the "
                                        "partitions assigned to this transfer", registry=r)
        self.assigned_partitions = Gauge("logtransfer_assigned_partitions", "Partitions assigned to this transfer",
                                         registry=r)
        self.config_rejected = Counter("logtransfer_config_rejected", "Transfer configs refused as invalid",
                                       registry=r)
        self.rebalances = Counter("logtransfer_rebalances", "Partition assignment changes by kind "
                                  "(assigned, revoked, lost)", ["kind"], registry=r)
        self.lost_to_retention = Counter("logtransfer_records_lost_to_retention",
                                         "Records Kafka deleted (retention) before this transfer group read "
                                         "them, by topic: never in Elasticsearch (see the log and the "
                                         "status key's retention_gaps for partition and offsets)",
                                         ["topic"], registry=r)

        self.es_blocked = Gauge("logtransfer_elasticsearch_blocked",
                                "1 while Elasticsearch refuses this transfer's writes with a block "
                                "(cluster_block_exception, e.g. disk flood-stage watermark); documents are "
                                "held and retried, nothing is committed past them", registry=r)
        self.retention_deleted = Counter("logtransfer_retention_indices_deleted",
                                         "Indices this transfer deleted because they were older than the "
                                         "transfer config's retention_days", registry=r)

    def serve(self, address: str | None, health: HealthCheck) -> None:
        """Serve /metrics and /health on "host:port"; None or empty disables it."""
        if not address:
            return
        serve(address, self.registry, health)

    def set_lag(self, lags: dict[tuple[str, int], int | None]) -> None:
        self.consumer_lag.clear()
        total = 0
        for (topic, partition), lag in lags.items():
            if lag is None:
                continue
            self.consumer_lag.labels(topic, str(partition)).set(lag)
            total += lag
        self.consumer_lag_total.set(total)

    def summary(self) -> dict[str, float]:
        def labelled(counter: Counter) -> dict[str, float]:
            out = {}
            for metric in counter.collect():
                for s in metric.samples:
                    if s.name.endswith("_total"):
                        out[next(iter(s.labels.values()))] = s.value
            return out

        return {
            "consumed": self.consumed._value.get(),
            "indexed": self.indexed._value.get(),
            "failed": labelled(self.failed),
            "retried": self.retried._value.get(),
            "dead_lettered": labelled(self.dead_lettered),
            "bulk_requests": labelled(self.bulk_requests),
            "commits": labelled(self.commits),
            "config_rejected": self.config_rejected._value.get(),
            "records_lost_to_retention": sum(s.value for m in self.lost_to_retention.collect() for s in m.samples
                                             if s.name.endswith("_total")),
        }
