"""``logctl``: the operators' command line for logferry.

It reads and writes the documents logferry keeps in etcd (host collect lists, the transfer
config), shows what agents and transfers report about themselves, searches the lines in
Elasticsearch, and checks the whole chain (``doctor``). See ``logctl --help`` and
docs/runbook.md.

Writes are compare-and-swap on the etcd ``mod_revision`` read before the change was shown, so
two operators cannot silently overwrite each other: the second one gets exit code 3 and
nothing is written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from logctl.settings import (
    DEFAULT_CTL_CONFIG,
    ENV_ES,
    ENV_ETCD,
    ENV_KAFKA,
    ENV_PREFIX,
    Settings,
    resolve_settings,
)
from logctl.util import (
    DURATION_HELP,
    EXIT_CONFLICT,
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CtlError,
    confirm,
    parse_duration,
    parse_time,
    stdin_is_tty,
    terminal_width,
    unified_diff,
    use_color,
)
from logferry import __version__
from logferry.documents import Doc, collect_doc, transfer_doc, validate_text, write_document
from logferry.etcd import EtcdClient, EtcdError, EtcdUnavailable
from logferry.keys import Keys, canonical_ip
from logferry.schema import (
    SchemaError,
    parse_collect_list,
    parse_transfer_config,
)

__all__ = ["main"]

PROG = "logctl"

EXIT_CODES_HELP = f"""\
exit codes:
  {EXIT_OK}  success
  {EXIT_PROBLEM}  failure, or a problem found: a key that does not exist or holds an invalid
     document (get), no live agent (status IP), a failed check (doctor), a refused request
  {EXIT_USAGE}  usage error, or the document given is invalid (set, edit, validate): nothing written
  {EXIT_CONFLICT}  conflict: the key changed since logctl read it (another operator?): nothing written
  {EXIT_UNREACHABLE}  etcd, Kafka or Elasticsearch did not answer

where logctl finds the services (later wins):
  1. the INI file: --config FILE, by default {DEFAULT_CTL_CONFIG} if it exists. It takes the
     daemons' sections: [etcd] (endpoints, prefix, user, password, TLS), [kafka]
     (bootstrap_servers and security, for doctor) and the es_* keys of [transfer] (for search
     and doctor). A logagent.ini or logtransfer.ini serves as it is.
  2. the environment: {ENV_ETCD}, {ENV_PREFIX}, {ENV_KAFKA}, {ENV_ES}
  3. the flags --etcd, --prefix, --kafka, --es, --timeout (before or after the subcommand)
"""


# --- context: settings, lazily opened clients, output ---------------------------------------


class Ctx:
    """What a command needs: the arguments, the settings, and clients opened on first use."""

    def __init__(self, args: argparse.Namespace, settings: Settings) -> None:
        self.args = args
        self.settings = settings
        self.json: bool = bool(getattr(args, "json", False))
        self._etcd: EtcdClient | None = None
        self._es: Any = None

    @property
    def keys(self) -> Keys:
        return self.settings.need_etcd().keys()

    def etcd(self) -> EtcdClient:
        if self._etcd is None:
            s = self.settings.need_etcd()
            self._etcd = EtcdClient(s.endpoints, user=s.user, password=s.password, ca_file=s.ca_file,
                                    cert_file=s.cert_file, key_file=s.key_file, timeout_s=s.dial_timeout_s)
        return self._etcd

    def es(self) -> Any:
        if self._es is None:
            from logctl.search import es_client

            self._es = es_client(self.settings.need_es(), self.settings.es_timeout_s)
        return self._es

    def close(self) -> None:
        if self._etcd is not None:
            self._etcd.close()
        if self._es is not None:
            with contextlib.suppress(Exception):
                self._es.close()

    def emit_json(self, obj: Any) -> None:
        print(json.dumps(obj, indent=2, ensure_ascii=False, default=str))

    def say(self, text: str) -> None:
        """Human progress lines: stdout normally, stderr with --json (stdout is for the JSON)."""
        print(text, file=sys.stderr if self.json else sys.stdout, flush=True)


def _ip(text: str) -> str:
    try:
        return canonical_ip(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _duration_arg(text: str) -> float:
    try:
        return parse_duration(text).total_seconds()
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _time_arg(text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# --- reading, writing, comparing documents --------------------------------------------------


def _read_source(source: str) -> tuple[str, str, bool]:
    """(text, label for messages, whether stdin was used) of a FILE argument, ``-`` for stdin."""
    if source == "-":
        return sys.stdin.read(), "stdin", True
    try:
        return Path(source).read_text(encoding="utf-8-sig"), source, False
    except FileNotFoundError:
        raise CtlError(f"{source}: no such file", EXIT_USAGE) from None
    except IsADirectoryError:
        raise CtlError(f"{source}: is a directory; give a JSON file", EXIT_USAGE) from None
    except UnicodeDecodeError as e:
        raise CtlError(f"{source}: not UTF-8 text (bad byte at offset {e.start})", EXIT_USAGE) from None
    except OSError as e:
        raise CtlError(f"{source}: cannot read it ({e.strerror})", EXIT_USAGE) from None


def _validate(doc: Doc, text: str, label: str) -> str:
    """The normalized text to store, or CtlError (exit 2) with the schema's message."""
    normalized, error = validate_text(doc, text)
    if normalized is None:
        raise CtlError(f"{label}: {error}; nothing written", EXIT_USAGE)
    return normalized


def _conflict(ctx: Ctx, doc: Doc, expected: int, kept: str | None = None) -> CtlError:
    _, now_rev = ctx.etcd().get(doc.key)
    now_text = f"revision {now_rev}" if now_rev else "deleted"
    keep = f"; your text is kept in {kept}" if kept else ""
    return CtlError(f"conflict: {doc.key} changed since logctl read it at revision {expected} (now {now_text}), "
                    f"someone else wrote it; nothing written{keep}. Run the command again to see the diff "
                    "against the new value", EXIT_CONFLICT)


def write_doc(ctx: Ctx, doc: Doc, new_text: str | None, *, expected: int | None, dry_run: bool, yes: bool,
              stdin_used: bool = False, kept: str | None = None) -> int:
    """Show the diff against what etcd holds, confirm, and compare-and-swap. ``new_text`` None deletes.

    ``expected`` is the mod_revision the change was based on (None: the one read now); when etcd
    holds another revision already, that is a conflict before anything is shown.
    """
    client = ctx.etcd()
    value, rev = client.get(doc.key)
    if expected is not None and expected != rev:
        raise _conflict(ctx, doc, expected, kept)
    expected = rev
    old_text, old_error = doc.normalized(value)
    result: dict[str, Any] = {"key": doc.key, "previous_revision": rev or None, "written": False,
                              "changed": False, "dry_run": dry_run}
    if new_text is None and value is None:
        ctx.say(f"{doc.key} does not exist; nothing to delete")
        if ctx.json:
            ctx.emit_json(result)
        return EXIT_OK
    if new_text is not None and value is not None and old_error is None and old_text == new_text:
        ctx.say(f"no change: {doc.key} already holds this {doc.what} (revision {rev}); nothing written")
        if ctx.json:
            ctx.emit_json(result | {"mod_revision": rev})
        return EXIT_OK
    old_label = f"{doc.key} (revision {rev})" if value is not None else f"{doc.key} (does not exist)"
    new_label = f"{doc.key} (new)" if new_text is not None else f"{doc.key} (deleted)"
    diff = unified_diff(old_text, new_text or "", old_label, new_label,
                        color=not ctx.json and use_color(sys.stdout))
    result |= {"changed": True, "diff": diff}
    if old_error:
        ctx.say(f"note: the value stored now is invalid ({old_error}); this replaces it")
    if not ctx.json:
        sys.stdout.write(diff)
        sys.stdout.flush()
    if dry_run:
        ctx.say("dry run: nothing written")
        if ctx.json:
            ctx.emit_json(result)
        return EXIT_OK
    verb = "Delete" if new_text is None else "Write"
    if not confirm(f"{verb} {doc.what} ({doc.key})?", assume_yes=yes, stdin_used=stdin_used):
        ctx.say("not confirmed: nothing written" + (f"; your text is kept in {kept}" if kept else ""))
        if ctx.json:
            ctx.emit_json(result)
        return EXIT_PROBLEM
    outcome = write_document(client, doc, new_text, expected)
    if outcome.result == "conflict":
        raise _conflict(ctx, doc, expected, kept)
    new_rev = outcome.revision
    result |= {"written": True, "mod_revision": new_rev or None}
    if new_text is None:
        ctx.say(f"deleted {doc.key}")
    else:
        ctx.say(f"written {doc.key} at revision {new_rev}; {doc.after_write}")
    if ctx.json:
        ctx.emit_json(result)
    return EXIT_OK


def _wait_applied(ctx: Ctx, ip: str, revision: int, timeout_s: float) -> int:
    """After a write: wait until the agent on ``ip`` reports that revision applied (or refused)."""
    key = ctx.keys.agent_status(ip)
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        raw, _ = ctx.etcd().get(key)
        if raw is not None:
            try:
                cfg = json.loads(raw).get("config") or {}
            except (ValueError, AttributeError):
                cfg = {}
            last = cfg
            if cfg.get("rejected_revision") == revision:
                ctx.say(f"the agent on {ip} REFUSED revision {revision}: {cfg.get('error')}")
                return EXIT_PROBLEM
            if isinstance(cfg.get("revision"), int) and cfg["revision"] >= revision:
                ctx.say(f"the agent on {ip} applied revision {cfg['revision']} ({cfg.get('inputs')} input(s))")
                return EXIT_OK
        if time.monotonic() >= deadline:
            state = ("no live agent (no status key)" if raw is None
                     else f"it still runs revision {(last or {}).get('revision')}")
            ctx.say(f"the agent on {ip} has not applied revision {revision} within {timeout_s:g}s: {state}")
            return EXIT_PROBLEM
        time.sleep(0.3)


# --- commands: collect / transfer-config ----------------------------------------------------


def _doc_for(ctx: Ctx) -> Doc:
    if ctx.args.command == "collect":
        return collect_doc(ctx.keys, ctx.args.ip)
    return transfer_doc(ctx.keys)


def cmd_doc_get(ctx: Ctx) -> int:
    doc = _doc_for(ctx)
    value, rev = ctx.etcd().get(doc.key)
    if value is None:
        if ctx.json:
            ctx.emit_json({"key": doc.key, "exists": False, "mod_revision": None, "valid": None, "error": None,
                           "value": None})
        hint = (f"the host collects nothing; create it with: {PROG} collect set {ctx.args.ip} FILE"
                if ctx.args.command == "collect" else f"create it with: {PROG} transfer-config set FILE")
        print(f"{PROG}: {doc.key} does not exist: {hint}", file=sys.stderr)
        return EXIT_PROBLEM
    text, error = doc.normalized(value)
    if ctx.json:
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        ctx.emit_json({"key": doc.key, "exists": True, "mod_revision": rev, "valid": error is None, "error": error,
                       "value": parsed, "text": value.decode("utf-8", "replace")})
    else:
        sys.stdout.write(value.decode("utf-8", "replace").rstrip("\n") + "\n" if ctx.args.raw else text)
    if error:
        print(f"{PROG}: the stored {doc.what} (revision {rev}) is INVALID: {error}. The agents refuse it and "
              "keep their last good one; fix it with set or edit", file=sys.stderr)
        return EXIT_PROBLEM
    return EXIT_OK


def cmd_doc_set(ctx: Ctx) -> int:
    doc = _doc_for(ctx)
    text, label, stdin_used = _read_source(ctx.args.file)
    new_text = _validate(doc, text, label)
    rc = write_doc(ctx, doc, new_text, expected=ctx.args.expect_revision, dry_run=ctx.args.dry_run,
                   yes=ctx.args.yes, stdin_used=stdin_used)
    return _maybe_wait(ctx, doc, rc)


def _maybe_wait(ctx: Ctx, doc: Doc, rc: int) -> int:
    wait = getattr(ctx.args, "wait", None)
    if rc != EXIT_OK or not wait or ctx.args.command != "collect" or ctx.args.dry_run:
        return rc
    _, rev = ctx.etcd().get(doc.key)
    return _wait_applied(ctx, ctx.args.ip, rev, wait) if rev else rc


def _editor_command() -> list[str]:
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    return shlex.split(editor)


def _ask_again(error: str) -> bool:
    print(f"{PROG}: {error}", file=sys.stderr)
    if not stdin_is_tty():
        return False
    return confirm("Edit again?", assume_yes=False, default=True)


def cmd_doc_edit(ctx: Ctx) -> int:
    doc = _doc_for(ctx)
    value, rev = ctx.etcd().get(doc.key)
    start, stored_error = doc.normalized(value)
    if value is None:
        start = doc.template
    elif stored_error:
        ctx.say(f"note: the stored {doc.what} is invalid: {stored_error}")
    safe = doc.what.replace(" ", "-").replace(":", "_")
    fd, tmp = tempfile.mkstemp(prefix=f"logctl-{safe}-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(start)
    keep = True
    try:
        while True:
            cmd = [*_editor_command(), tmp]
            try:
                rc = subprocess.call(cmd)
            except OSError as e:
                raise CtlError(f"cannot run the editor {cmd[0]!r} ({e.strerror}); set $EDITOR; your text is "
                               f"in {tmp}", EXIT_PROBLEM) from None
            if rc != 0:
                raise CtlError(f"the editor exited with status {rc}; nothing written; your text is in {tmp}",
                               EXIT_PROBLEM)
            text = Path(tmp).read_text(encoding="utf-8-sig")
            if text.strip() == start.strip():
                ctx.say(f"no change made in the editor; nothing written ({doc.key} stays at revision {rev})")
                keep = False
                if ctx.json:
                    ctx.emit_json({"key": doc.key, "written": False, "changed": False})
                return EXIT_OK
            try:
                new_text = doc.dump(doc.parse(text)) + "\n"
                break
            except SchemaError as e:
                if not _ask_again(str(e)):
                    ctx.say(f"nothing written; your text is kept in {tmp}")
                    return EXIT_USAGE
        rc = write_doc(ctx, doc, new_text, expected=rev, dry_run=ctx.args.dry_run, yes=ctx.args.yes, kept=tmp)
        keep = rc != EXIT_OK
        return _maybe_wait(ctx, doc, rc)
    finally:
        if not keep:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def cmd_doc_validate(ctx: Ctx) -> int:
    if ctx.args.file is not None:
        text, label, _ = _read_source(ctx.args.file)
        if ctx.args.command == "collect":
            parse: Callable[[str], Any] = parse_collect_list
            what = "collect list"
        else:
            parse, what = parse_transfer_config, "transfer config"
        try:
            parsed = parse(text)
        except SchemaError as e:
            if ctx.json:
                ctx.emit_json({"source": label, "valid": False, "error": str(e)})
            else:
                print(f"{PROG}: {label}: {e}", file=sys.stderr)
            return EXIT_USAGE
        detail = f"{len(parsed)} input(s)" if isinstance(parsed, list) else "ok"
        if isinstance(parsed, list) and any(i.journal is not None for i in parsed):
            detail += f" ({sum(i.journal is not None for i in parsed)} of the systemd journal)"
        if ctx.json:
            ctx.emit_json({"source": label, "valid": True, "error": None})
        else:
            print(f"{label}: valid {what}: {detail}")
        return EXIT_OK
    if ctx.args.command == "collect" and ctx.args.ip is None:
        raise CtlError("give the host IP (to check what etcd holds) or --file FILE", EXIT_USAGE)
    doc = _doc_for(ctx)
    value, rev = ctx.etcd().get(doc.key)
    if value is None:
        raise CtlError(f"{doc.key} does not exist; nothing to validate", EXIT_PROBLEM)
    _, error = doc.normalized(value)
    agent_note = None
    if ctx.args.command == "collect":
        raw, _ = ctx.etcd().get(ctx.keys.agent_status(ctx.args.ip))
        if raw is None:
            agent_note = "no live agent on this host"
        else:
            with contextlib.suppress(ValueError, AttributeError):
                cfg = json.loads(raw).get("config") or {}
                if cfg.get("rejected_revision") == rev:
                    agent_note = f"its agent refused this revision and runs revision {cfg.get('revision')}"
                elif cfg.get("revision") == rev:
                    agent_note = "its agent runs this revision"
                else:
                    agent_note = f"its agent runs revision {cfg.get('revision')}"
    if ctx.json:
        ctx.emit_json({"key": doc.key, "mod_revision": rev, "valid": error is None, "error": error,
                       "agent": agent_note})
    elif error:
        print(f"{PROG}: {doc.key} (revision {rev}) is INVALID: {error}" + (f"; {agent_note}" if agent_note else ""),
              file=sys.stderr)
    else:
        print(f"{doc.key} (revision {rev}): valid" + (f"; {agent_note}" if agent_note else ""))
    return EXIT_USAGE if error else EXIT_OK


def cmd_doc_delete(ctx: Ctx) -> int:
    doc = _doc_for(ctx)
    return write_doc(ctx, doc, None, expected=ctx.args.expect_revision, dry_run=ctx.args.dry_run,
                     yes=ctx.args.yes)


# --- commands: hosts, status ----------------------------------------------------------------


def cmd_hosts(ctx: Ctx) -> int:
    from logctl.status import hosts_table
    from logferry.fleet import gather_hosts, hosts_json

    hosts = gather_hosts(ctx.etcd(), ctx.keys)
    if ctx.json:
        ctx.emit_json(hosts_json(hosts))
    elif not hosts:
        print(f"no hosts under {ctx.keys.agents_prefix()}: no collect list set and no agent reporting")
    else:
        print(hosts_table(hosts, max_width=terminal_width()))
    return EXIT_OK


def cmd_status(ctx: Ctx) -> int:
    from logctl.status import agent_lines, transfer_lines
    from logferry.fleet import gather_hosts, gather_transfers, hosts_json

    client, keys = ctx.etcd(), ctx.keys
    hosts = gather_hosts(client, keys)
    transfers = gather_transfers(client, keys) if ctx.args.ip is None else {}
    transfer_rev = (client.get(keys.transfer_config())[1] or None) if transfers else None
    before_h: dict[str, Any] = {}
    before_t: dict[str, Any] = {}
    if ctx.args.sample:
        before_h = {ip: h.status for ip, h in hosts.items() if h.status}
        before_t = dict(transfers)
        ctx.say(f"sampling for {ctx.args.sample:g}s…")
        time.sleep(ctx.args.sample)
        hosts = gather_hosts(client, keys)
        transfers = gather_transfers(client, keys) if ctx.args.ip is None else {}
    rc = EXIT_OK
    if ctx.args.ip is not None:
        h = hosts.get(ctx.args.ip)
        if h is None or not h.live:
            rc = EXIT_PROBLEM
        hosts = {ctx.args.ip: h} if h is not None else {}
    now = datetime.now(UTC)
    if ctx.json:
        summary = {row["ip"]: row for row in hosts_json(hosts)}
        ctx.emit_json({
            "agents": [{"ip": ip, "live": h.live, "collect_revision": h.collect_revision or None,
                        "collect_error": h.collect_error, "summary": summary[ip], "status": h.status}
                       for ip, h in hosts.items()],
            "transfers": [{"id": tid, "config_revision": transfer_rev, "status": doc}
                          for tid, doc in transfers.items()],
        })
        if rc != EXIT_OK:
            print(f"{PROG}: no live agent on {ctx.args.ip}", file=sys.stderr)
        return rc
    width = terminal_width()
    blocks: list[list[str]] = []
    for h in hosts.values():
        if h.live or ctx.args.ip is not None:
            blocks.append(agent_lines(h, now, before=before_h.get(h.ip), max_width=width))
    down = [h for h in hosts.values() if not h.live and ctx.args.ip is None]
    if down:
        blocks.append([f"HOSTS WITHOUT A LIVE AGENT: {', '.join(h.ip for h in down)} "
                       "(collect list set, no status key)"])
    for tid, doc in transfers.items():
        blocks.append(transfer_lines(tid, doc, now, before=before_t.get(tid), stored_revision=transfer_rev,
                                     max_width=width))
    if ctx.args.ip is None and not transfers:
        blocks.append([f"TRANSFERS: none live (no status key under {keys.transfers_prefix()})"])
    if ctx.args.ip is not None and not hosts:
        blocks.append([f"HOST {ctx.args.ip}: no collect list and no live agent under {keys.agents_prefix()}"])
    print("\n\n".join("\n".join(b) for b in blocks))
    return rc


# --- command: search ------------------------------------------------------------------------


def _index_pattern(ctx: Ctx) -> str | None:
    """The transfer config's index pattern when etcd is configured and holds a valid one."""
    if ctx.settings.etcd is None:
        return None
    try:
        raw, _ = ctx.etcd().get(ctx.keys.transfer_config())
    except EtcdError as e:
        print(f"{PROG}: warning: cannot read the transfer config from etcd ({e}); assuming the default "
              "index pattern", file=sys.stderr)
        return None
    if raw is None:
        return None
    try:
        return parse_transfer_config(raw).index
    except SchemaError:
        return None


def cmd_search(ctx: Ctx) -> int:
    from logctl.search import IndexSelection, SearchRequest, es_errors, run_search, select_indices

    a = ctx.args
    file = None
    if a.saved:
        # A saved search of the console (shared in etcd) gives what the command line leaves out.
        from logctl.search import load_saved_search

        saved = load_saved_search(ctx.etcd(), ctx.keys, a.saved)
        a.topic = a.topic or saved.topic
        a.host = a.host or saved.host
        a.query = a.query or saved.text
        if a.since is None and a.until is None:
            a.since, a.until = saved.since, saved.until
        file = saved.file
    if a.follow and a.until is not None:
        raise CtlError("--follow and --until do not go together: follow shows lines as they arrive", EXIT_USAGE)
    if a.count < 0:
        raise CtlError("-n must be 0 or more", EXIT_USAGE)
    if a.since and a.until and a.since > a.until:
        raise CtlError("--since is after --until: nothing can match", EXIT_USAGE)
    if a.index and a.topic:
        raise CtlError("give --topic or --index, not both (--topic picks the topic's indices itself)", EXIT_USAGE)
    es_settings = ctx.settings.need_es()
    if a.index:
        sel = IndexSelection(target=a.index, exact=None, topic_of=None)
    else:
        sel = select_indices(_index_pattern(ctx), a.topic)
    req = SearchRequest(sel=sel, since=a.since, until=a.until, host=a.host, text=a.query, count=a.count,
                        follow=a.follow, lookback_s=a.lookback, file=file)
    convert = es_errors(es_settings.hosts, "search")
    if a.follow:
        # Ctrl-C ends --follow; so does SIGTERM (a supervisor or `timeout`), both with exit 0.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        printed = run_search(ctx.es(), req, as_json=ctx.json)
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception as e:
        err = convert(e)
        if err is None:
            raise
        raise err from None
    if printed == 0 and not a.follow:
        print(f"{PROG}: no lines match (searched {sel.target})", file=sys.stderr)
        return EXIT_PROBLEM
    return EXIT_OK


# --- command: doctor ------------------------------------------------------------------------


def cmd_doctor(ctx: Ctx) -> int:
    from logctl.doctor import (
        FAIL,
        WARN,
        Finding,
        check_es,
        check_etcd,
        check_kafka,
        check_keys,
        needed_topics,
        render_findings,
    )
    from logctl.search import es_errors
    from logferry.fleet import gather_hosts, gather_transfers

    findings: list[Finding] = []
    hosts: dict[str, Any] = {}
    transfer_raw: bytes | None = None
    etcd_ok = False
    if ctx.settings.etcd is None:
        findings.append(Finding("etcd", FAIL, f"not checked: {ctx.settings.etcd_error}"))
    else:
        try:
            client = ctx.etcd()
            findings += check_etcd(client)
            keys = ctx.keys
            hosts = gather_hosts(client, keys)
            transfers = gather_transfers(client, keys)
            transfer_raw, transfer_rev = client.get(keys.transfer_config())
            etcd_ok = True
            findings += check_keys(hosts, transfers, transfer_raw, keys.transfer_config(),
                                   transfer_revision=transfer_rev)
        except EtcdError as e:
            findings.append(Finding("etcd", FAIL, f"cannot read etcd: {e}"))
    cfg = None
    if transfer_raw is not None:
        with contextlib.suppress(SchemaError):
            cfg = parse_transfer_config(transfer_raw)
    if ctx.settings.kafka is None:
        findings.append(Finding("kafka", WARN, f"not checked: no brokers given (--kafka, {ENV_KAFKA}, or [kafka] "
                                               "bootstrap_servers in the --config file)"))
    else:
        if not etcd_ok:
            findings.append(Finding("kafka", WARN, "topics not checked: etcd could not be read"))
        need = needed_topics(hosts, transfer_raw) if etcd_ok else {}
        try:
            findings += check_kafka(ctx.settings.kafka.common_config(), need,
                                    cfg.topics_regex if cfg else None, ctx.settings.timeout_s)
        except Exception as e:
            findings.append(Finding("kafka", FAIL, f"check failed: {e}"))
    if ctx.settings.es is None:
        findings.append(Finding("elasticsearch", WARN, f"not checked: no Elasticsearch given (--es, {ENV_ES}, or "
                                                       "[transfer] es_hosts in the --config file)"))
    else:
        sample = next((i.topic for h in hosts.values() for i in (h.inputs or [])
                       if not cfg or i.topic != cfg.dead_letter_topic), "example")
        try:
            findings += check_es(ctx.es(), cfg, sample)
        except Exception as e:
            err = es_errors(ctx.settings.es.hosts, "health check")(e)
            findings.append(Finding("elasticsearch", FAIL, str(err) if err else f"check failed: {e}"))
    bad = [f for f in findings if f.level == FAIL or (ctx.args.strict and f.level == WARN)]
    if ctx.json:
        ctx.emit_json({"ok": not bad, "findings": [f.as_json() for f in findings]})
    else:
        print(render_findings(findings))
        fails = sum(f.level == FAIL for f in findings)
        warns = sum(f.level == WARN for f in findings)
        print(f"\n{fails} failure(s), {warns} warning(s)" + (": all good" if not fails and not warns else ""))
    return EXIT_PROBLEM if bad else EXIT_OK


# --- the parser -----------------------------------------------------------------------------


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions are wrapped paragraphs; epilogs (exit codes, examples) keep their layout."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30, width=min(100, shutil.get_terminal_size((100, 40)).columns))

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return super()._fill_text(text, width, indent)
        return textwrap.fill(text, width, initial_indent=indent, subsequent_indent=indent)


def _common(p: argparse.ArgumentParser, *, sub: bool) -> None:
    """Connection options and --json, accepted before and after the subcommand."""
    d = argparse.SUPPRESS if sub else None
    g = p.add_argument_group("connection (also from --config and the environment)")
    g.add_argument("--config", metavar="FILE", default=d,
                   help=f"INI file with [etcd], [kafka], [transfer] es_* (default {DEFAULT_CTL_CONFIG} if it "
                        "exists; a logagent.ini or logtransfer.ini serves)")
    g.add_argument("--etcd", metavar="HOST:PORT,…", default=d, help=f"etcd endpoints (env {ENV_ETCD})")
    g.add_argument("--prefix", metavar="PATH", default=d, help=f"root of logferry's etcd keys, default /logferry "
                                                              f"(env {ENV_PREFIX})")
    g.add_argument("--kafka", metavar="HOST:PORT,…", default=d, help=f"Kafka bootstrap servers, for doctor "
                                                                     f"(env {ENV_KAFKA})")
    g.add_argument("--es", metavar="URL,…", default=d, help=f"Elasticsearch URLs, for search and doctor "
                                                            f"(env {ENV_ES})")
    g.add_argument("--timeout", metavar="SECONDS", type=float, default=d,
                   help="give up on a service after this long (default: [etcd] dial_timeout_s, 5; "
                        "Elasticsearch searches 30)")
    p.add_argument("--json", action="store_true", default=False if not sub else argparse.SUPPRESS,
                   help="machine-readable JSON on stdout instead of tables and text")


def _sub(subs: Any, name: str, help_: str, description: str, epilog: str = "") -> argparse.ArgumentParser:
    p = subs.add_parser(name, help=help_, description=description, formatter_class=_Formatter,
                        epilog=(epilog + "\n\n" if epilog else "") + EXIT_CODES_HELP.split("\n\nwhere")[0])
    _common(p, sub=True)
    return p


def _write_flags(p: argparse.ArgumentParser, *, expect: bool = True) -> None:
    p.add_argument("--dry-run", action="store_true", help="validate and show the diff; write nothing")
    p.add_argument("-y", "--yes", action="store_true",
                   help="write without asking (needed when stdin is not a terminal, e.g. in scripts)")
    if expect:
        p.add_argument("--expect-revision", type=int, metavar="REV",
                       help="write only if the key is still at this mod_revision (from `get --json`); 0 means "
                            "it must not exist. Without it, the revision read just before the diff is used")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=PROG, formatter_class=_Formatter,
        description="Operate logferry: the host collect lists and the transfer config in etcd, the live "
                    "status of agents and transfers, the lines in Elasticsearch, and a health check of the "
                    "whole chain.",
        epilog=EXIT_CODES_HELP,
    )
    ap.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _common(ap, sub=False)
    subs = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = _sub(subs, "hosts", "list hosts: collect list, live agent, last error",
             "One row per host IP that has a collect list or a live agent: whether its agent is live (its "
             "status key exists; it expires ~10 s after the agent stops or hangs), host name and version, "
             "the number of inputs in its list, which list revision the agent runs, and its last error.")
    p.set_defaults(func=cmd_hosts)

    for name, is_collect in (("collect", True), ("transfer-config", False)):
        if is_collect:
            top = subs.add_parser(
                name, help="get, set, edit, validate or delete a host's collect list", formatter_class=_Formatter,
                description="A host's collect list is a JSON array of inputs at <prefix>/agents/<ip>/collect, "
                            "e.g. [{\"path\": \"/var/log/nginx/*.log\", \"topic\": \"nginx-access\"}]. The agent "
                            "on that host follows it live. Writes are validated with the agent's own schema, show "
                            "a diff, ask for confirmation, and are compare-and-swap: if someone else changed the "
                            "key since it was read, nothing is written and the exit code is 3.",
                epilog="examples:\n  logctl collect get 10.0.0.5\n  logctl collect set 10.0.0.5 web.json\n"
                       "  logctl collect edit 10.0.0.5\n  logctl collect validate --file web.json\n\n"
                       + EXIT_CODES_HELP.split("\n\nwhere")[0])
        else:
            top = subs.add_parser(
                name, help="get, set, edit or validate the transfer config", formatter_class=_Formatter,
                description="The transfer config is one JSON object at <prefix>/transfer/config, shared by every "
                            "logtransfer: topics (or topics_regex), index pattern, bulk sizes, dead-letter topic. "
                            "Writes are validated, diffed, confirmed and compare-and-swap (exit 3 on conflict).",
                epilog="examples:\n  logctl transfer-config get\n  logctl transfer-config set transfer.json\n\n"
                       + EXIT_CODES_HELP.split("\n\nwhere")[0])
        _common(top, sub=True)
        actions = top.add_subparsers(dest="action", metavar="ACTION", required=True)
        ip_arg: dict[str, Any] = {"type": _ip, "help": "the host's IP address (as in its etcd key)"}

        g = _sub(actions, "get", "print the document", "Print the document as etcd holds it (pretty-printed "
                 "when valid). Exit 1 when it does not exist or is invalid (the reason goes to stderr).")
        if is_collect:
            g.add_argument("ip", **ip_arg)
        g.add_argument("--raw", action="store_true", help="print the stored bytes as they are, not pretty-printed")
        g.set_defaults(func=cmd_doc_get)

        s = _sub(actions, "set", "replace the document with a file", "Validate FILE (`-` for stdin), show the "
                 "diff against what etcd holds, ask, and write it (compare-and-swap). The stored form is "
                 "normalized JSON with a stable key order. An invalid FILE is refused (exit 2) with the "
                 "schema's message naming the entry and field.")
        if is_collect:
            s.add_argument("ip", **ip_arg)
        s.add_argument("file", metavar="FILE", help="JSON file, or - for stdin (then --yes is needed)")
        _write_flags(s)
        s.set_defaults(func=cmd_doc_set)

        e = _sub(actions, "edit", "edit the document in $EDITOR", "Open the document in $VISUAL or $EDITOR "
                 "(default vi) on a temporary file; on save it is validated (on an error you are asked to edit "
                 "again), diffed, confirmed and written compare-and-swap against the revision read before the "
                 "editor opened. On a conflict or refusal your text is kept and its path printed.")
        if is_collect:
            e.add_argument("ip", **ip_arg)
        _write_flags(e, expect=False)
        e.set_defaults(func=cmd_doc_edit)

        v = _sub(actions, "validate", "check a file or what etcd holds", "Validate the document etcd holds "
                 "(collect: for IP) or, with --file, a local file (no etcd needed). Exit 0 when valid, 2 when "
                 "not, with the schema's message naming the bad entry and field.")
        if is_collect:
            v.add_argument("ip", nargs="?", **ip_arg)
        v.add_argument("--file", metavar="FILE", help="validate this file (- for stdin) instead of etcd's value")
        v.set_defaults(func=cmd_doc_validate)

        if is_collect:
            for p in (s, e):
                p.add_argument("--wait", type=float, metavar="SECONDS", default=0,
                               help="after writing, wait up to this long for the host's agent to report the "
                                    "new revision applied (exit 1 if it refuses it or does not within the time)")
            d = _sub(actions, "delete", "delete a host's collect list", "Delete the key (compare-and-swap on "
                     "the revision read). The host's agent then collects nothing; it keeps its file offsets, so "
                     "setting the list again resumes where it stopped.")
            d.add_argument("ip", **ip_arg)
            _write_flags(d)
            d.set_defaults(func=cmd_doc_delete)

    p = _sub(subs, "status", "live agents and transfers: files, offsets, lag, rates, errors",
             "What agents (<prefix>/agents/<ip>/status) and transfers (<prefix>/transfers/<id>/status) report "
             "about themselves: version, uptime, the collect list revision applied, each file with its "
             "acknowledged offset, size and lag, Kafka in-flight, counters and rates, last error. Rates are "
             "averages since start, or with --sample the change over that many seconds. With IP: that host "
             "only, exit 1 when it has no live agent.")
    p.add_argument("ip", nargs="?", type=_ip, help="only this host")
    p.add_argument("--sample", type=_duration_arg, metavar="DURATION",
                   help=f"read twice, this far apart, and show current rates ({DURATION_HELP}; the agents "
                        "refresh their status every status_interval_s, 5s by default)")
    p.set_defaults(func=cmd_status)

    p = _sub(subs, "search", "search the lines in Elasticsearch, like tail (-f)",
             "Search the indices logtransfer writes (by the transfer config's index pattern, "
             "logferry-{topic}-{yyyy.MM.dd} by default: every topic's, or one with --topic). Prints the newest "
             "-n lines, oldest first, as `@timestamp host topic: message`. --follow then prints new lines as "
             "they arrive, from all hosts, polling every second, until Ctrl-C. Exit 1 when nothing matches "
             "(without --follow).",
             epilog="examples:\n  logctl search --topic nginx-access --since 15m -q '\"GET /api\" NOT 200'\n"
                    "  logctl search --host 10.0.0.5 -n 50\n  logctl search --topic app -f\n"
                    "  logctl search --since 2024-05-01T10:00 --until 2024-05-01T10:05 -q 'connection refused'\n\n"
                    "-q is Lucene query_string syntax on the message: words are ANDed, \"quotes\" make a phrase,\n"
                    "field:value is an exact term on another field (log.file.path:\"/var/log/app.log\",\n"
                    "fields.env:prod, source.ip:10.0.0.0/8), field>=value a range on it\n"
                    "(http.response.status_code>=500, also > < <=); the parsed fields: docs/parsing.md.")
    p.add_argument("--topic", help="only this Kafka topic's lines")
    p.add_argument("--host", metavar="IP|NAME", help="only lines from this host (host.ip, or host.name)")
    p.add_argument("--since", type=_time_arg, metavar="TIME",
                   help=f"lines at or after TIME: {DURATION_HELP} ago, or an ISO time (local unless it has Z "
                        "or an offset)")
    p.add_argument("--until", type=_time_arg, metavar="TIME", help="lines at or before TIME")
    p.add_argument("-q", "--query", metavar="TEXT", help="free text / Lucene query on the message")
    p.add_argument("-n", "--count", type=int, default=20, metavar="N", help="how many of the newest lines (20)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C")
    p.add_argument("--index", metavar="PATTERN",
                   help="search these indices instead (e.g. 'logs-*-*' for indices named by logferry 0.1's default)")
    p.add_argument("--lookback", type=_duration_arg, default=10.0, metavar="DURATION",
                   help="--follow: how far before the newest line seen to look for lines that arrived late "
                        "(default 10s)")
    p.add_argument("--saved", metavar="NAME",
                   help="a search saved in the console (etcd <prefix>/console/searches/NAME): its topic, host, "
                        "file, query and range, where the other options do not say otherwise")
    p.set_defaults(func=cmd_search)

    p = _sub(subs, "doctor", "check etcd, the keys, Kafka and Elasticsearch; say what is wrong",
             "Checks: etcd (each member asked directly, leader, versions, alarms); the keys (transfer config "
             "present and valid, collect lists valid, hosts without a live agent, agents that refused a list "
             "or report errors, live transfers, topics collected but not consumed); Kafka (brokers reachable, "
             "every topic named in the collect lists and the transfer config exists, partitions have leaders); "
             "Elasticsearch (version 8, cluster health, an index template for logferry's indices). Each finding "
             "is one line: ok, WARN or FAIL. Exit 1 when any check FAILs (with --strict also on WARN).")
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    p.set_defaults(func=cmd_doctor)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    ctx: Ctx | None = None
    try:
        settings = resolve_settings(config=args.config, etcd=args.etcd, prefix=args.prefix, kafka=args.kafka,
                                    es=args.es, timeout=args.timeout)
        ctx = Ctx(args, settings)
        return int(args.func(ctx))
    except CtlError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return e.code
    except EtcdUnavailable as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except EtcdError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return EXIT_PROBLEM
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `logctl search | head`: the reader is gone; exit quietly like other Unix tools.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    finally:
        if ctx is not None:
            ctx.close()


if __name__ == "__main__":
    sys.exit(main())
