"""logtransfer's daemon: Kafka → Elasticsearch in one synchronous main loop, configured from etcd.

The loop:

1. drain etcd watch events; a changed transfer config is validated, and a valid one applied
   (the in-flight work is settled and committed first; a new index pattern gets its template; a
   new topic list or regex means a re-subscription). An invalid one is refused: the last good
   config stays in force, the error goes to the log and the status key;
2. consume records into the pipeline's buffer (``pipeline``);
3. when the buffer is full (``bulk_max_docs``/``bulk_max_bytes``) or old (``flush_interval_s``),
   or the consumer is caught up and no bulk is in flight (``Pipeline.ready``),
   dispatch it: its bulk request goes out on a sender thread while the loop goes on consuming
   (at most two batches in flight, see ``pipeline``); each turn settles, oldest first, the
   batches Elasticsearch answered: dead-letter what it rejects and what is not an envelope, then
   commit the offsets. Retryable failures are retried with backoff for as long as it takes,
   on this loop, while the consumer is kept in its group (paused partitions, polls);
4. refresh metrics (consumer lag) and the status key.

SIGTERM/SIGINT: stop consuming, settle the batch in flight and the buffer, commit, leave the
group (which commits again through the revoke callback), delete the status key, exit 0. If
Elasticsearch does not come back within ``SHUTDOWN_GRACE_S`` (or a second signal arrives) the
transfer exits anyway without committing past what is unsettled: those records are consumed
again at the next start and overwrite themselves.
"""

from __future__ import annotations

import argparse
import gc
import logging
import queue
import signal
import sys
import threading
import time
from typing import Any

from confluent_kafka import KafkaException
from elasticsearch import Elasticsearch

from logferry import __version__, engine
from logferry.config import ConfigError, EsSettings, TransferDaemonConfig, load_transfer_config
from logferry.etcd import EtcdClient, EtcdError, WatchEvent
from logferry.schema import TransferConfig

from .consumer import GroupConsumer, consumer_config
from .deadletter import DeadLetterProducer
from .gaps import RetentionGaps
from .indexer import BulkBodySerializer, BulkResponseSerializer, Indexer
from .liveconfig import LiveConfig
from .metrics import TransferMetrics
from .pipeline import Pipeline
from .retention import RetentionConfig, RetentionRunner, lock_key
from .status import StatusKey
from .template import TemplateGuard, ensure_template

log = logging.getLogger("logtransfer")

DEFAULT_CONFIG = "/etc/logferry/logtransfer.ini"
#: How long SIGTERM waits for Elasticsearch/Kafka to take the batch in flight (systemd's
#: TimeoutStopSec must be above it).
SHUTDOWN_GRACE_S = 60.0
#: Records per consume call (the pipeline dispatches by bulk_max_docs/bytes in between).
CONSUME_MAX = 1000
#: Longest consume wait while a bulk is in flight, so its answer is settled and committed soon.
IN_FLIGHT_POLL_S = 0.02


def make_es_client(t: Any) -> Elasticsearch:
    """The ES client; retries are ours (the indexer's), only fail-over between hosts is the client's."""
    kwargs: dict[str, Any] = {
        "request_timeout": 60,
        "max_retries": max(0, len(t.es_hosts) - 1),
        "retry_on_status": (),
        "retry_on_timeout": len(t.es_hosts) > 1,
        # (the x-ndjson one also serves the compatibility mimetype the client sends for ES 8)
        "serializers": {"application/json": BulkResponseSerializer(), "application/x-ndjson": BulkBodySerializer()},
    }
    es = EsSettings(hosts=t.es_hosts, api_key=t.es_api_key, username=t.es_username, password=t.es_password,
                    ca_file=t.es_ca_file, verify_certs=t.es_verify_certs)
    kwargs |= es.auth_kwargs()
    # ES 8, ES 9 or OpenSearch 2: the differences are in logferry/engine.py
    return engine.client(t.es_hosts, **kwargs)


class Transfer:
    """State of one running logtransfer; :meth:`run` is the main loop."""

    def __init__(self, cfg: TransferDaemonConfig) -> None:
        self.cfg = cfg
        t = cfg.transfer
        self.keys = cfg.etcd.keys()
        self.metrics = TransferMetrics()
        self.es = make_es_client(t)
        self.indexer = Indexer(self.es, self.metrics)
        self.template_guard = TemplateGuard(self.es)
        self.indexer.guard = self.template_guard
        self.deadletters = DeadLetterProducer(cfg.kafka.producer_config(), t.id, self.metrics)
        self.pipeline = Pipeline(self.indexer, self.deadletters, self.metrics)
        self.gaps = RetentionGaps(self.metrics.lost_to_retention)
        self.pipeline.gaps = self.gaps
        self.consumer = GroupConsumer(
            consumer_config(cfg.kafka.consumer_config(), t.group_id, t.id),
            on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost,
            on_message=self.pipeline.add_message,
        )
        self.pipeline.consumer = self.consumer
        self.pipeline.hard_stop = self.hard_stop
        self.live = LiveConfig(self.keys.transfer_config(), t.data_dir)
        self.active: TransferConfig | None = None
        self.status = StatusKey(t.id, t.group_id, self.keys.transfer_status(t.id))
        self.events: queue.Queue[WatchEvent] = queue.Queue()
        self.stopping = threading.Event()
        self.stop_deadline = float("inf")
        self.etcd: EtcdClient | None = None
        self.watch: Any = None
        self.etcd_state = "connecting"
        self._health: list[str] = ["starting"]  # reasons /health answers 503 (refresh_status)
        self.last_error: str | None = None
        self._lags: dict[tuple[str, int], int | None] = {}
        self._last_status = 0.0
        self.retention = RetentionRunner(self.es, lambda: self.etcd, lock_key(self.keys.prefix), t.id,
                                         self._retention_config, self.metrics.retention_deleted)

    def _retention_config(self) -> RetentionConfig | None:
        cfg = self.active  # (read by the retention thread: one attribute read, the config is frozen)
        if cfg is None or cfg.retention_days is None:
            return None
        return RetentionConfig(cfg.index, cfg.retention_days)

    # ----------------------------------------------------------------- stopping
    def request_stop(self, signame: str = "stop signal") -> None:
        if self.stopping.is_set():
            log.warning("%s again: exiting without waiting for the batch in flight", signame)
            self.stop_deadline = 0.0
        else:
            log.info("%s: stopping; the batch in flight is settled and committed first (up to %.0fs; a second "
                     "signal exits at once)", signame, SHUTDOWN_GRACE_S)
            self.stop_deadline = time.monotonic() + SHUTDOWN_GRACE_S
            self.stopping.set()

    def hard_stop(self) -> bool:
        return self.stopping.is_set() and time.monotonic() >= self.stop_deadline

    def keepalive(self, timeout_s: float) -> None:
        """Between retries: keep the consumer in its group (paused, polling) and the status key current."""
        self.consumer.keepalive(timeout_s)
        now = time.monotonic()
        if now - self._last_status >= self.cfg.transfer.status_interval_s:
            self.refresh_status()

    # ----------------------------------------------------------------- rebalance hooks
    def _on_assign(self, tps: list[tuple[str, int]]) -> None:
        self.pipeline.on_assign(tps)
        self.refresh_status(push=True)

    def _on_revoke(self, tps: list[tuple[str, int]]) -> None:
        self.pipeline.on_revoke(tps)
        self.refresh_status(push=True)

    def _on_lost(self, tps: list[tuple[str, int]]) -> None:
        self.pipeline.on_lost(tps)
        self.refresh_status(push=True)

    # ----------------------------------------------------------------- etcd / config
    def connect_etcd(self) -> None:
        e = self.cfg.etcd
        self.etcd = EtcdClient(e.endpoints, user=e.user, password=e.password, ca_file=e.ca_file,
                               cert_file=e.cert_file, key_file=e.key_file, timeout_s=e.dial_timeout_s)
        key = self.live.key
        try:
            value, mod_rev, header_rev = self.etcd.get_with_revision(key)
            self.etcd_state = "connected"
            new = self.live.offer(value, mod_rev)
            if value is not None and self.live.rejected_revision == mod_rev:
                self.metrics.config_rejected.inc()
                if self.live.current is None:
                    # Starting with a bad config in etcd (a reboot during a bad edit): go on with
                    # the last good one saved here, as the agent does with its collect list.
                    new = self.live.load_saved()
                    if new is not None:
                        log.warning("transfer config in etcd refused at start; using the saved transfer config of "
                                    "revision %d until a good one is written", self.live.revision)
            start_revision = header_rev + 1
        except EtcdError as exc:
            self.etcd_state = "unavailable"
            new = self.live.load_saved()
            self.note_error(f"etcd unavailable at start ({exc}); "
                            + (f"using the saved transfer config of revision {self.live.revision}" if new else
                               "no saved transfer config: consuming nothing until etcd answers"))
            start_revision = self.live.revision + 1 if new else 1
        self.watch = self.etcd.watch(key, prefix=False, start_revision=start_revision, sink=self.events)
        self.refresh_status()  # the first value the lease keeper writes is a complete document
        self.status.keep(self.etcd, self.cfg.transfer.status_interval_s)
        if new is not None:
            self.apply_config(new)
        else:
            self.refresh_status(push=True)

    def drain_watch(self) -> None:
        latest: WatchEvent | None = None
        while True:
            try:
                ev = self.events.get_nowait()
            except queue.Empty:
                break
            if ev.kind in ("put", "delete"):
                latest = ev  # a burst (a replay) counts by its last state
            elif ev.kind == "error":
                if self.etcd_state != "unavailable":
                    log.warning("%s (consuming goes on with the config in force)", ev.detail)
                self.etcd_state = "unavailable"
            elif ev.kind in ("restored", "resync"):
                log.info("%s", ev.detail)
                self.etcd_state = "connected"
        if latest is None:
            return
        self.etcd_state = "connected"
        new = self.live.offer(latest.value if latest.kind == "put" else None, latest.mod_revision)
        if new is not None:
            self.apply_config(new)
        else:
            if self.live.rejected_revision == latest.mod_revision and latest.mod_revision:
                self.metrics.config_rejected.inc()
            self.refresh_status(push=True)

    def apply_config(self, new: TransferConfig) -> None:
        """Settle and commit what is in flight under the old config, then switch."""
        old = self.active
        if old is not None and not self.pipeline.flush(self.keepalive, self.hard_stop):
            return  # stopping
        self.pipeline.cfg = new
        self.active = new
        if old is None or old.index != new.index:
            sleep = self.keepalive if self.consumer.subscription else None
            installed = ensure_template(self.es, new.index, abort=self.hard_stop if old else self.stopping.is_set,
                                        sleep=sleep)
            self.template_guard.reset(new.index, installed)
            self.consumer.resume()
            if old is None and self.stopping.is_set():
                return  # stopped while waiting for Elasticsearch: nothing to subscribe to
        if old is None or old.dead_letter_topic != new.dead_letter_topic:
            self.deadletters.ensure_topic(new.dead_letter_topic)
        if old is None or old.subscription() != new.subscription():
            self.consumer.subscribe(new.subscription())
        what = f"topics {list(new.topics)}" if new.topics else f"topics matching {new.topics_regex}"
        log.info("transfer config of revision %d applied: %s → index %s, bulk %d docs / %d bytes / %gs, "
                 "dead letters to %s", self.live.revision, what, new.index, new.bulk_max_docs, new.bulk_max_bytes,
                 new.flush_interval_s, new.dead_letter_topic)
        self.refresh_status(push=True)

    # ----------------------------------------------------------------- status
    def note_error(self, msg: str) -> None:
        self.last_error = msg
        log.warning("%s", msg)

    def refresh_status(self, push: bool = False) -> None:
        self._last_status = time.monotonic()
        tracker = self.pipeline.tracker
        try:
            self._lags = self.consumer.lag(tracker.committed)
        except Exception:  # lag is informative; a closed consumer must not break shutdown
            self._lags = {}
        self.metrics.set_lag(self._lags)
        self.metrics.assigned_partitions.set(len(self.consumer.assignment))
        cfg = self.active
        es_fault = self.indexer.fault
        faults = [es_fault, self.deadletters.fault, self.consumer.fault, self.consumer.commit_fault]
        # a fault going on now first, then the config refusal, then the most recent one that is over
        current = [f"{f.what}: {f.last_error}" for f in faults if f.active]
        over = sorted((f for f in faults if f.last_error and not f.active), key=lambda f: f.last_at, reverse=True)
        last_error = next(iter(current), None) or self.live.error or self.live.save_error or self.last_error or next(
            (f"{f.what}: {f.last_error} (over)" for f in over), None)
        lag_values = [v for v in self._lags.values() if v is not None]
        # /health: what stops delivery now (a new list each time: the HTTP thread reads it whole)
        self._health = current + ([] if cfg is not None else [self.live.error or "no transfer config in force"])
        self.status.update({
            "config": {
                "revision": self.live.revision, "source": self.live.source,
                "topics": list(cfg.topics) if cfg else None,
                "topics_regex": cfg.topics_regex if cfg else None,
                "index": cfg.index if cfg else None,
                "dead_letter_topic": cfg.dead_letter_topic if cfg else None,
                "retention_days": cfg.retention_days if cfg else None,
                "rejected_revision": self.live.rejected_revision, "error": self.live.error,
            },
            "etcd": self.etcd_state,
            "elasticsearch": self._es_status(),
            "assigned_partitions": [f"{t}[{p}]" for t, p in sorted(self.consumer.assignment)],
            "partitions": [{"topic": t, "partition": p, "committed": tracker.committed((t, p)), "lag": lag}
                           for (t, p), lag in sorted(self._lags.items())],
            "consumer_lag": sum(lag_values) if lag_values else None,
            "in_flight": tracker.pending(),
            "paused": self.consumer.paused,
            "counters": self.metrics.summary(),
            # records Kafka deleted before this group read them: the last few, with partition and offsets
            "retention_gaps": self.gaps.status(),
            # index retention (retention_days): the last check of this transfer; None when off
            "index_retention": self.retention.status(),
            "last_error": last_error,
        }, push=push)

    def _es_status(self) -> dict[str, Any]:
        """``ok``, ``blocked`` (answers, but refuses writes with a block: see esblock) or ``unavailable``."""
        es_fault = self.indexer.fault
        block = self.indexer.block.status()
        if block is not None:
            return {"state": "blocked", "error": es_fault.last_error, **block}
        return {"state": "unavailable" if es_fault.active else "ok",
                "error": es_fault.last_error if es_fault.active else None}

    # ----------------------------------------------------------------- main loop
    def run(self) -> int:
        t = self.cfg.transfer
        self.metrics.serve(t.metrics_address, lambda: self._health)
        log.info("logtransfer %s starting: id %s, group %s, config key %s, elasticsearch %s", __version__, t.id,
                 t.group_id, self.live.key, ", ".join(t.es_hosts))
        if not self.check_engine():
            return 2
        self.connect_etcd()
        self.retention.start()
        tune_gc()
        last_commit = time.monotonic()
        while not self.stopping.is_set():
            self.drain_watch()
            if self.active is None or not self.consumer.subscription:
                self.stopping.wait(0.2)
            else:
                self.consume_once()
            now = time.monotonic()
            if now - last_commit >= 1.0:
                self.pipeline.commit()  # retries a commit Kafka refused earlier
                last_commit = now
            if now - self._last_status >= t.status_interval_s:
                self.refresh_status()
        return self.shutdown()

    def check_engine(self) -> bool:
        """Ask the Kafka brokers' protocol and the search cluster's engine; False (after one line saying
        why) when either is a version logferry does not support.

        A cluster that does not answer yet is not an error: the client finds out at its first answer
        (logferry/engine.py) and an unsupported one is then the Elasticsearch fault, retried.
        """
        old_kafka = engine.kafka_version_problem(engine.kafka_broker_protocol(self.cfg.kafka.common_config(), 3.0))
        if old_kafka:
            log.error("%s", old_kafka)
            return False
        found = engine.probe(self.es, timeout_s=5.0)
        if found is None:
            log.info("search engine: no answer yet from %s; checked again at the first answer",
                     ", ".join(self.cfg.transfer.es_hosts))
            return True
        if found.unsupported():
            log.error("%s", found.unsupported())
            return False
        log.info("search engine: %s%s", found.label, f" ({found.untested()})" if found.untested() else "")
        return True

    def consume_once(self) -> None:
        p = self.pipeline
        left = p.time_to_due()
        timeout = 0.1 if left is None else min(0.1, left)
        if p.in_flight or p.buffered:
            # an answer to settle soon, or a partial bulk to send as soon as Kafka has nothing more
            timeout = min(timeout, IN_FLIGHT_POLL_S)
        asked = min(CONSUME_MAX, max(1, p.room()))
        msgs = self.consumer.consume(asked, timeout)
        p.add_messages(msgs, self.keepalive, self.hard_stop)  # dispatches each buffer that fills up
        # fewer records than asked for: caught up, a live stream is sent without waiting (Pipeline.ready)
        if p.ready(caught_up=len(msgs) < asked):
            p.dispatch(self.keepalive, self.hard_stop)
        p.reap(self.keepalive, self.hard_stop)

    def shutdown(self) -> int:
        p = self.pipeline
        if p.tracker.pending():
            log.info("settling %d record(s) in flight, then committing", p.tracker.pending())
        clean = True
        if self.active is not None and not p.flush(self.keepalive, self.hard_stop):
            clean = False
            p.abandoned = True
            log.warning("stopping with %d record(s) not settled (Elasticsearch or Kafka did not take them in "
                        "time); their offsets are not committed: they are consumed again at the next start and "
                        "overwrite themselves", p.tracker.pending())
        try:
            self.consumer.close()  # leaves the group; the revoke callback commits once more
        except Exception as e:
            log.warning("closing the Kafka consumer: %s", e)
        self.retention.stop()
        self.deadletters.close()
        self.status.stop()
        if self.etcd is not None:
            self.etcd.close()
        log.info("stopped%s", "" if clean else " (unsettled records left for the next start)")
        return 0


def tune_gc() -> None:
    """Make Python's cyclic garbage collector cheap for the steady state.

    Per document the transfer allocates a few short-lived containers (the parsed envelope, the
    record's ``Source`` and ``IndexItem``) and forms no reference cycles; they are freed by
    reference counting. With the default thresholds (700, 10, 10) the collector still ran every
    ~100 documents and, every so often, walked every object the process holds (the ES, Kafka and
    etcd clients' modules included): about 20 % of the per-document CPU in a micro-benchmark of
    the pipeline. ``gc.freeze()`` moves what start-up built out of the collector's sight, and a
    gen-0 threshold of 50,000 makes collections rare. Cycles (from libraries) are still collected.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # librdkafka's own lines come through this logger; keep its chatter out of INFO.
    logging.getLogger("logtransfer.kafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    logging.getLogger("elastic_transport").setLevel(logging.ERROR)
    logging.getLogger("elasticsearch").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="logtransfer",
        description="Consume the topics named by the transfer config in etcd (<prefix>/transfer/config, "
                    "followed live) and bulk-index the records into Elasticsearch; offsets are committed only "
                    "after Elasticsearch (or the dead-letter topic) took every record before them.",
    )
    ap.add_argument("--config", default=DEFAULT_CONFIG, help=f"bootstrap INI (default {DEFAULT_CONFIG})")
    ap.add_argument("--check-config", action="store_true", help="validate the INI and exit")
    ap.add_argument("--version", action="version", version=f"logtransfer {__version__}")
    args = ap.parse_args(argv)
    try:
        cfg = load_transfer_config(args.config)
    except ConfigError as e:
        print(f"logtransfer: {e}", file=sys.stderr)
        return 2
    if args.check_config:
        print(f"{args.config}: OK")
        return 0
    setup_logging(cfg.transfer.log_level)
    transfer = Transfer(cfg)

    def on_signal(signum: int, _frame: object) -> None:
        transfer.request_stop(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        return transfer.run()
    except EtcdError as e:
        log.error("etcd: %s", e)
        return 1
    except KafkaException as e:  # fatal client errors only; transient ones are handled and logged inside
        log.error("kafka: fatal error, exiting (systemd restarts the transfer): %s", e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
