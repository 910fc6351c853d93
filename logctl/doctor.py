"""``logctl doctor``: check etcd, the logferry keys, Kafka and Elasticsearch; say what is wrong.

Every finding is one line in plain words with a level: ``ok``, ``WARN`` (worth a look, may be
intended: a host switched off, a single-node cluster's yellow health) or ``FAIL`` (logs are
not, or will not be, collected and searchable as configured). ``doctor`` exits 1 when any check
FAILs (with ``--strict``, also on a WARN). The checks that only look at data are pure functions
(unit-tested); the ones that ask a server are thin wrappers around them.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from logctl.util import fmt_bytes
from logferry import engine
from logferry.estemplates import PRIORITY, index_patterns, matching_templates, same_priority_overlaps, template_name
from logferry.fleet import HostView, config_state
from logferry.schema import DEFAULT_INDEX, SchemaError, TransferConfig, index_name, parse_transfer_config

__all__ = [
    "Finding",
    "check_es_templates",
    "check_etcd",
    "check_kafka",
    "check_keys",
    "needed_topics",
    "render_findings",
]

OK, WARN, FAIL = "ok", "WARN", "FAIL"


@dataclass(frozen=True)
class Finding:
    component: str  # etcd, config, agents, transfers, kafka, elasticsearch
    level: str  # ok, WARN, FAIL
    message: str

    def as_json(self) -> dict[str, str]:
        return asdict(self)


def render_findings(findings: Iterable[Finding]) -> str:
    out: list[str] = []
    last = None
    for f in findings:
        if f.component != last:
            out.append(f.component)
            last = f.component
        out.append(f"  {f.level:<4}  {f.message}")
    return "\n".join(out)


# --- etcd ------------------------------------------------------------------------------------

_ALARM_HELP = {
    "NOSPACE": "etcd used up its storage quota and refuses every write (no collect list can be set, "
               "no status key refreshed): compact and defragment it, then `etcdctl alarm disarm`",
    "CORRUPT": "a member's data is corrupt: remove that member and add it back empty from the healthy ones",
}


def check_etcd(client: Any) -> list[Finding]:
    """Members (each asked directly), leader, versions, alarms."""
    c = "etcd"
    found: list[Finding] = []
    members = client.members()
    total = len(members)
    healthy = [m for m in members if m.healthy]
    for m in members:
        if not m.healthy:
            found.append(Finding(c, FAIL, f"member {m.name} ({', '.join(m.client_urls) or 'no client URL'}) is not "
                                          f"healthy: {m.error or 'no answer'}"))
    quorum = total // 2 + 1
    leaders = [m for m in healthy if m.is_leader]
    versions = sorted({m.version for m in healthy if m.version})
    if total and len(healthy) < quorum:
        found.append(Finding(c, FAIL, f"only {len(healthy)} of {total} members healthy, below the quorum of {quorum}: "
                                      "etcd accepts no writes and agents cannot follow their collect lists"))
    if healthy and not leaders:
        found.append(Finding(c, FAIL, "no member is the leader: the cluster cannot serve writes (network "
                                      "partition, or members still electing)"))
    if len(versions) > 1:
        found.append(Finding(c, WARN, f"members run different versions ({', '.join(versions)}): fine during a "
                                      "rolling upgrade, finish it"))
    if total == 1:
        found.append(Finding(c, WARN, "a single member: no fault tolerance; run 3 (or 5)"))
    elif total % 2 == 0:
        found.append(Finding(c, WARN, f"{total} members: an even count tolerates no more failures than "
                                      f"{total - 1}; run 3 or 5"))
    st = client.status()
    for alarm in st.alarms:
        kind = alarm.split()[0] if alarm else ""
        found.append(Finding(c, FAIL, f"alarm {alarm}: {_ALARM_HELP.get(kind, 'see etcdctl alarm list')}"))
    if healthy and leaders and len(healthy) >= quorum:
        lead = leaders[0]
        found.insert(0, Finding(c, OK, f"{total} member(s), {len(healthy)} healthy; leader {lead.name} "
                                       f"({', '.join(lead.client_urls)}); version {', '.join(versions) or st.version}; "
                                       f"db {fmt_bytes(st.db_size)}; revision {st.revision}"))
    return found


# --- the logferry keys (pure) ----------------------------------------------------------------


def _transfer_cfg(raw: bytes | None) -> tuple[TransferConfig | None, str | None]:
    if raw is None:
        return None, None
    try:
        return parse_transfer_config(raw), None
    except SchemaError as e:
        return None, str(e)


def consumed(cfg: TransferConfig | None, topic: str) -> bool:
    if cfg is None:
        return False
    if cfg.topics:
        return topic in cfg.topics
    return bool(cfg.topics_regex and re.search(cfg.topics_regex, topic))


def check_keys(hosts: dict[str, HostView], transfers: dict[str, dict[str, Any]], transfer_raw: bytes | None,
               transfer_key: str, now: datetime | None = None, transfer_revision: int = 0) -> list[Finding]:
    """Collect lists, agents, transfer config and transfers, as stored in etcd."""
    now = now or datetime.now(UTC)
    found: list[Finding] = []
    cfg, cfg_error = _transfer_cfg(transfer_raw)
    c = "config"
    if transfer_raw is None:
        found.append(Finding(c, FAIL, f"no transfer config at {transfer_key}: logtransfer does not know which "
                                      "topics to consume; set it with `logctl transfer-config set FILE`"))
    elif cfg_error:
        found.append(Finding(c, FAIL, f"transfer config at {transfer_key} is invalid, logtransfer refuses it: "
                                      f"{cfg_error}"))
    else:
        assert cfg is not None
        what = f"topics {', '.join(cfg.topics)}" if cfg.topics else f"topics matching {cfg.topics_regex}"
        found.append(Finding(c, OK, f"transfer config valid: {what} → index {cfg.index}"))
    with_list = [h for h in hosts.values() if h.has_list]
    bad = [h for h in with_list if h.collect_error]
    for h in bad:
        runs = ""
        if h.status:
            runs = f"; its agent keeps running {config_state(h)}"
        found.append(Finding(c, FAIL, f"collect list of {h.ip} (revision {h.collect_revision}) is invalid: "
                                      f"{h.collect_error}{runs}"))
    n_inputs = sum(len(h.inputs or []) for h in with_list)
    if with_list and not bad:
        found.append(Finding(c, OK, f"{len(with_list)} collect list(s), all valid, {n_inputs} input(s)"))
    elif not with_list:
        found.append(Finding(c, WARN, "no host has a collect list: nothing is collected; set one with "
                                      "`logctl collect set IP FILE` (or the Ansible playbook)"))
    if cfg is not None:
        for h in with_list:
            for topic in sorted({i.topic for i in h.inputs or []}):
                if not consumed(cfg, topic):
                    found.append(Finding(c, WARN, f"topic {topic} (collected on {h.ip}) is not consumed by "
                                                  "logtransfer: add it to the transfer config's topics, or its "
                                                  "lines stay in Kafka and never reach Elasticsearch"))
    # agents
    a = "agents"
    live = [h for h in hosts.values() if h.live]
    for h in hosts.values():
        st = h.status or {}
        if h.has_list and not h.live:
            found.append(Finding(a, WARN, f"{h.ip}: has a collect list but no live agent (no status key): the "
                                          "host is down, logagent is stopped, or it cannot reach etcd"))
            continue
        if not h.live:
            continue
        if h.status_error:
            found.append(Finding(a, FAIL, f"{h.ip}: {h.status_error}"))
            continue
        cfg_doc = st.get("config") if isinstance(st.get("config"), dict) else {}
        if cfg_doc.get("rejected_revision") and not h.collect_error:
            found.append(Finding(a, WARN, f"{h.ip}: refused revision {cfg_doc['rejected_revision']} earlier "
                                          f"({cfg_doc.get('error')})"))
        applied = cfg_doc.get("revision")
        if h.has_list and not h.collect_error and isinstance(applied, int) and applied < h.collect_revision:
            found.append(Finding(a, WARN, f"{h.ip}: runs collect list revision {applied}, etcd holds "
                                          f"{h.collect_revision}: it has not seen the change (watch broken?)"))
        if not h.has_list:
            found.append(Finding(a, WARN, f"{h.ip}: agent runs but the host has no collect list: it collects nothing"))
        if st.get("etcd") not in (None, "connected"):
            found.append(Finding(a, WARN, f"{h.ip}: agent's etcd connection is {st.get('etcd')}: it keeps "
                                          "collecting with the list in force but misses changes"))
        kafka = st.get("kafka") if isinstance(st.get("kafka"), dict) else {}
        if kafka.get("last_error"):
            found.append(Finding(a, WARN, f"{h.ip}: Kafka: {kafka['last_error']}"))
        err = st.get("last_error")
        if err and err != cfg_doc.get("error") and err != kafka.get("last_error"):
            found.append(Finding(a, WARN, f"{h.ip}: last error: {err}"))
        for f in st.get("files") or []:
            if isinstance(f, dict) and f.get("error"):
                found.append(Finding(a, WARN, f"{h.ip}: cannot read {f.get('path')}: {f.get('error')}"))
    if live:
        found.insert(next((i for i, f in enumerate(found) if f.component == a), len(found)),
                     Finding(a, OK, f"{len(live)} live agent(s)"))
    # transfers
    t = "transfers"
    if not transfers:
        level = FAIL if with_list else WARN
        found.append(Finding(t, level, "no live logtransfer (no status key under transfers/): nothing moves lines "
                                       "from Kafka to Elasticsearch"))
    else:
        found.append(Finding(t, OK, f"{len(transfers)} live logtransfer(s): {', '.join(transfers)}"))
        for tid, doc in transfers.items():
            tcfg = doc.get("config") if isinstance(doc.get("config"), dict) else {}
            es = doc.get("elasticsearch") if isinstance(doc.get("elasticsearch"), dict) else {}
            reported = {tcfg.get("error"), es.get("error")}
            if tcfg.get("rejected_revision"):
                found.append(Finding(t, WARN if cfg_error is None else FAIL,
                                     f"{tid}: refused transfer config revision {tcfg['rejected_revision']} "
                                     f"({tcfg.get('error')}); it runs revision {tcfg.get('revision')}"))
            rev = tcfg.get("revision")
            if (transfer_revision and isinstance(rev, int) and rev < transfer_revision
                    and not tcfg.get("rejected_revision")):
                found.append(Finding(t, WARN, f"{tid}: runs transfer config revision {rev}, etcd holds "
                                              f"{transfer_revision}: it has not seen the change (watch broken?)"))
            if es.get("state") not in (None, "ok"):
                found.append(Finding(t, WARN, f"{tid}: Elasticsearch {es.get('state')}: {es.get('error')} (lines "
                                              "wait in Kafka, nothing is lost)"))
            if doc.get("etcd") not in (None, "connected"):
                found.append(Finding(t, WARN, f"{tid}: etcd connection {doc.get('etcd')}: it keeps going with the "
                                              "config in force but misses changes"))
            if doc.get("last_error") and doc["last_error"] not in reported:
                found.append(Finding(t, WARN, f"{tid}: last error: {doc['last_error']}"))
    return found


def needed_topics(hosts: dict[str, HostView], transfer_raw: bytes | None) -> dict[str, list[str]]:
    """Topic → who needs it (``collect list of 10.0.0.5``, ``transfer config``, ``dead-letter``)."""
    need: dict[str, list[str]] = {}
    for h in hosts.values():
        for i in h.inputs or []:
            who = f"collect list of {h.ip}"
            if who not in need.setdefault(i.topic, []):
                need[i.topic].append(who)
    cfg, _ = _transfer_cfg(transfer_raw)
    if cfg is not None:
        for topic in cfg.topics:
            need.setdefault(topic, []).append("transfer config")
        need.setdefault(cfg.dead_letter_topic, []).append("transfer config (dead letters)")
    return need


# --- Kafka -----------------------------------------------------------------------------------


def _quiet_logger() -> logging.Logger:
    lg = logging.getLogger("logctl.kafka")
    lg.addHandler(logging.NullHandler())
    lg.propagate = False
    return lg


def check_kafka(conf: dict[str, str], need: dict[str, list[str]], topics_regex: str | None, timeout_s: float
                ) -> list[Finding]:
    """Brokers (metadata, then a TCP connect to each), the topics the lists and the transfer name."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

    c = "kafka"
    servers = conf.get("bootstrap.servers", "?")
    admin = AdminClient(conf | {"logger": _quiet_logger(), "socket.connection.setup.timeout.ms":
                                str(int(timeout_s * 1000))})
    try:
        md = admin.list_topics(timeout=timeout_s)
    except KafkaException as e:
        return [Finding(c, FAIL, f"cannot reach Kafka at {servers} within {timeout_s:g}s ({e.args[0].str()}): "
                                 "agents cannot send and lines wait in the files; check that the brokers run "
                                 "and the address and firewall")]
    found: list[Finding] = []
    brokers = sorted(md.brokers.values(), key=lambda b: b.id)
    unreachable = []
    for b in brokers:
        try:
            socket.create_connection((b.host, b.port), timeout=min(timeout_s, 3)).close()
        except OSError as e:
            unreachable.append(b)
            found.append(Finding(c, FAIL, f"broker {b.id} advertises {b.host}:{b.port}, which this host cannot "
                                          f"connect to ({e.strerror or e}): clients sent there fail; check the "
                                          "broker's advertised.listeners and the firewall"))
    found.insert(0, Finding(c, OK if not unreachable else WARN,
                            f"{len(brokers)} broker(s) via {servers}: "
                            + ", ".join(f"{b.id}@{b.host}:{b.port}" for b in brokers)
                            + f"; controller {md.controller_id}"))
    auto_create = None
    if brokers:
        try:
            res = ConfigResource(ResourceType.BROKER, str(brokers[0].id))
            entries = admin.describe_configs([res])[res].result(timeout=timeout_s)
            entry = entries.get("auto.create.topics.enable")
            auto_create = entry is not None and str(entry.value).lower() == "true"
            ibp = entries.get("inter.broker.protocol.version")
            old = engine.kafka_version_problem(str(ibp.value) if ibp is not None and ibp.value else None)
            if old:
                found.append(Finding(c, FAIL, old))
        except Exception:  # not allowed to describe configs, old broker: just do not know
            auto_create = None
    existing = md.topics
    missing = []
    for topic, who in sorted(need.items()):
        tm = existing.get(topic)
        if tm is None:
            missing.append(topic)
            if auto_create:
                found.append(Finding(c, WARN, f"topic {topic} ({', '.join(who)}) does not exist; the broker "
                                              "creates it on first use with its default partitions and "
                                              "replication: create it yourself to choose them"))
            else:
                found.append(Finding(c, FAIL, f"topic {topic} ({', '.join(who)}) does not exist"
                                              + (" and the broker does not create topics by itself"
                                                 if auto_create is False else "")
                                              + ": create it (kafka-topics.sh --create --topic "
                                              f"{topic} ...) or fix the name"))
            continue
        if tm.error is not None:
            found.append(Finding(c, FAIL, f"topic {topic}: {tm.error.str()}"))
            continue
        leaderless = sorted(p.id for p in tm.partitions.values() if p.leader < 0)
        if leaderless:
            found.append(Finding(c, FAIL, f"topic {topic}: partition(s) {leaderless} have no leader: writes to "
                                          "them fail until a replica broker is back"))
    if need and not missing:
        found.append(Finding(c, OK, f"all {len(need)} topic(s) named in collect lists and the transfer config "
                                    "exist"))
    if topics_regex:
        matching = [t for t in existing if re.search(topics_regex, t)]
        if not matching:
            found.append(Finding(c, WARN, f"no topic matches the transfer config's topics_regex {topics_regex}"))
    return found


# --- Elasticsearch ---------------------------------------------------------------------------


def check_es_templates(templates: list[dict[str, Any]], sample_index: str, index: str = DEFAULT_INDEX) -> list[Finding]:
    """Which index template applies to ``sample_index`` (the highest priority match), is it sane,
    and does any template stand in the way of logferry's (same priority, overlapping patterns)."""
    c = "elasticsearch"
    patterns = index_patterns(index)
    ours = template_name(patterns)
    found = [Finding(c, FAIL, f"index template {t.name} ({', '.join(t.patterns)}) overlaps logferry's {ours} "
                              f"({', '.join(patterns)}) at the same priority {t.priority}: Elasticsearch refuses "
                              "whichever is installed second, and logtransfer holds indexing until it can install "
                              "its own; give one of them another priority, or narrow its index_patterns")
             for t in same_priority_overlaps(templates, patterns, PRIORITY, exclude=ours)]
    matches = matching_templates(templates, sample_index)
    if not matches:
        return [*found, Finding(c, FAIL, f"no index template applies to indices like {sample_index}: "
                                         "Elasticsearch guesses the field types (message becomes text plus keyword, "
                                         "event.id text), so sorting and exact filters suffer; logtransfer installs "
                                         "logferry's template when it starts: start it, or check its log")]
    win = matches[0]
    if win.data_stream:
        found.append(Finding(c, FAIL, f"index template {win.name} (priority {win.priority}) makes {sample_index} a "
                                      "data stream, which refuses logferry's writes by _id (the no-duplicates "
                                      "guarantee); logtransfer holds such documents: narrow that template's "
                                      "index_patterns, or use logferry's default index prefix (logferry-)"))
    elif win.name != ours and "logferry" not in win.name.lower():
        found.append(Finding(c, WARN, f"the index template that applies to {sample_index} is {win.name} "
                                      f"(priority {win.priority}), not logferry's {ours} (priority {PRIORITY}); "
                                      "logtransfer checks the mappings it would give before writing"))
    else:
        found.append(Finding(c, OK, f"index template {win.name} (priority {win.priority}) applies to {sample_index}"))
    return found


def check_es(es: Any, cfg: TransferConfig | None, sample_topic: str) -> list[Finding]:
    c = "elasticsearch"
    found: list[Finding] = []
    # GET / in plain JSON first: an unsupported engine (ES 7, OpenSearch 1) still answers that, in one line
    eng = engine.probe(es)
    if eng is not None and eng.unsupported():
        return [Finding(c, FAIL, eng.unsupported())]
    if eng is not None and eng.untested():
        found.append(Finding(c, WARN, eng.untested()))
    info = es.info()
    version = info.get("version", {}).get("number", "?")
    if eng is not None:
        version = eng.label.replace("Elasticsearch ", "")  # "8.19.21" as before; "OpenSearch 2.19.6"
    name = info.get("cluster_name", "?")
    h = es.cluster.health()
    status = h.get("status")
    nodes = h.get("number_of_nodes")
    summary = f"cluster {name}, version {version}, {nodes} node(s), health {status}"
    if status == "green":
        found.append(Finding(c, OK, summary))
    elif status == "yellow":
        why = ("replicas cannot be placed on a single node (normal for one node; set number_of_replicas 0 to "
               "get green)" if nodes == 1 else "some replica shards are not assigned: one node failed?")
        found.append(Finding(c, WARN, f"{summary}: {why}"))
    else:
        found.append(Finding(c, FAIL, f"{summary}: primary shards are unassigned, some indices cannot be written "
                                      "or searched; see GET _cluster/allocation/explain"))
    sample = index_name(cfg or TransferConfig(topics=(sample_topic,)), sample_topic,
                        datetime.now(UTC).isoformat())
    templates = es.indices.get_index_template().get("index_templates", [])
    found += check_es_templates(templates, sample, (cfg or TransferConfig(topics=(sample_topic,))).index)
    return found
