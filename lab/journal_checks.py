"""The journal input checked on the lab's real systemd hosts (issue 23): every entry once.

Called by ``lab/lab.py`` (``make lab``) after the file checks. site.yml seeds every host's
collect list with the default journal entry (``logferry_seed_journal_input``: the whole journal
at priority info and above, topic ``journal``), so what is checked here is the rollout users get:

- entries written with ``logger``, with ``systemd-cat`` and by a real (transient) unit are found in
  Elasticsearch exactly once, with their unit, identifier and level;
- the same across a kill -9 of the agent (between two halves of the entries), a
  ``journalctl --rotate`` and a reboot of the host container (``systemctl reboot`` inside it: the
  lab's boot loop starts it again);
- a vacuum of the journal while the agent is stopped is reported as a gap with its time range in the
  agent's status key (what ``logctl status`` shows), and the entries written after it arrive;
- a ``units`` filter collects that unit's entries and no other unit's.

Each check tags its entries with a run id and counts them in ``logferry-journal-*`` by host; a
count is taken only once the agent's status says it has acknowledged past the entries (a state,
not a sleep), then once more after a further status round to catch late duplicates.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

#: the journal entry site.yml adds to every host's list, as the role's defaults say it
SEED_DEFAULTS = Path(__file__).resolve().parent.parent / "ansible/roles/logferry_seed/defaults/main.yml"


def default_input() -> dict[str, Any]:
    """``logferry_seed_journal_input`` from the role's defaults (read, not restated)."""
    return yaml.safe_load(SEED_DEFAULTS.read_text())["logferry_seed_journal_input"]


TOPIC = default_input()["topic"]
INDEX = f"logferry-{TOPIC}-*"
WAIT_S = 120.0
#: a transient unit, waited for; the description is set because systemd's default (the command
#: line) would put the tagged text in its own "Started …" entry
RUN = "systemd-run --quiet --wait --description=lab-journal-check"


class JournalChecks:
    """The checks, on the lab module's hosts and helpers (``lab`` is lab/lab.py, already loaded)."""

    def __init__(self, lab: Any, state: dict, env: dict[str, str]) -> None:
        self.lab = lab
        self.state = state
        self.env = env

    # ------------------------------------------------------------------ helpers
    def host(self, name: str) -> Any:
        return self.lab.Host(name, self.lab.HOSTS[name])

    def sh(self, name: str, script: str, *, check: bool = True) -> str:
        res = self.host(name).nsenter(self.state, ["sh", "-c", script], check=check)
        return res.stdout

    def count(self, ip: str, query: dict[str, Any]) -> int:
        body = {"query": {"bool": {"filter": [{"term": {"host.ip": ip}}, query]}}}
        try:
            return int(self.lab.es_post(self.env, f"/{INDEX}/_count?ignore_unavailable=true", body)["count"])
        except OSError:
            return -1

    def tagged(self, ip: str, tag: str, extra: dict[str, Any] | None = None) -> int:
        # the phrase, not the tag alone: systemd's own "lfj-<tag>.service: Deactivated…" lines
        # carry the tag too
        q: dict[str, Any] = {"match_phrase": {"message": f"lab-journal {tag}"}}
        if extra:
            q = {"bool": {"filter": [q, extra]}}
        return self.count(ip, q)

    def status(self, ip: str) -> dict[str, Any] | None:
        res = self.lab.logctl(self.env, "--json", "status", ip, check=False)
        if res.returncode != 0:
            return None
        try:
            doc = json.loads(res.stdout)
        except ValueError:
            return None
        # `logctl --json status IP`: {"agents": [{..., "status": <the agent's status key>}], "transfers": …}
        agents = doc.get("agents") if isinstance(doc, dict) else None
        for a in agents if isinstance(agents, list) else []:
            if isinstance(a, dict) and isinstance(a.get("status"), dict):
                return a["status"]
        return None

    def journals(self, ip: str) -> list[dict[str, Any]]:
        st = self.status(ip) or {}
        found = st.get("journals")
        return found if isinstance(found, list) else []

    def wait_count(self, ip: str, tag: str, want: int, what: str, extra: dict[str, Any] | None = None) -> list[str]:
        """Wait until ``want`` tagged documents are searchable; then make sure no more come."""
        started = time.monotonic()
        got = -1
        while time.monotonic() - started < WAIT_S:
            got = self.tagged(ip, tag, extra)
            if got >= want:
                break
            time.sleep(1)
        if got < want:
            return [f"journal {what}: {got} of {want} entries in Elasticsearch after {WAIT_S:.0f}s"]
        # A late duplicate would have a different _id only if event.id were wrong; wait for the
        # agent to report one more status round, then count again.
        self.wait_status_round(ip)
        again = self.tagged(ip, tag, extra)
        if again != want:
            return [f"journal {what}: {again} entries in Elasticsearch, {want} written"]
        self.lab.log(f"journal {what}: {want} of {want} entries in Elasticsearch, exactly once "
                     f"({time.monotonic() - started:.1f}s)")
        return []

    def wait_status_round(self, ip: str, timeout_s: float = 60.0) -> None:
        """Until the agent writes a status newer than now (its status interval is a few seconds)."""
        before = json.dumps(self.status(ip), sort_keys=True, default=str)
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            time.sleep(1)
            if json.dumps(self.status(ip), sort_keys=True, default=str) != before:
                return

    def agent_pid(self, name: str) -> str:
        return self.host(name).nsenter(self.state, ["systemctl", "show", "-P", "MainPID", "logagent"]).stdout.strip()

    def wait_agent_active(self, name: str, not_pid: str | None = None, timeout_s: float = 60.0) -> bool:
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            h = self.host(name)
            try:
                active = h.nsenter(self.state, ["systemctl", "is-active", "logagent"], check=False).stdout.strip()
                pid = self.agent_pid(name)
            except Exception:  # the host is rebooting: no leader yet
                active, pid = "", "0"
            if active == "active" and pid not in ("0", not_pid):
                return True
            time.sleep(0.5)
        return False

    def write(self, name: str, tag: str, n: int, *, how: str = "logger", start: int = 1) -> None:
        """``n`` entries tagged ``tag`` on host ``name``, by ``logger`` or ``systemd-cat``."""
        if how == "logger":
            script = (f"i={start}; while [ $i -lt {start + n} ]; do "
                      f"logger -t lfj-logger -p user.err \"lab-journal {tag} logger $i\"; i=$((i+1)); done")
        else:
            script = (f"i={start}; while [ $i -lt {start + n} ]; do echo \"lab-journal {tag} cat $i\"; "
                      f"i=$((i+1)); done | systemd-cat -t lfj-cat -p warning")
        self.sh(name, script)

    # ------------------------------------------------------------------ checks
    def entries_once(self, name: str = "lab-host1") -> list[str]:
        ip = self.lab.HOSTS[name]
        tag = uuid.uuid4().hex[:10]
        n = 20
        self.write(name, tag, n, how="logger")
        self.write(name, tag, n, how="cat")
        unit = f"lfj-{tag}"
        self.sh(name, f"{RUN} --unit={unit} sh -c 'i=1; while [ $i -le {n} ]; do "
                      f"echo \"lab-journal {tag} unit $i\"; i=$((i+1)); done'")
        problems = self.wait_count(ip, tag, 3 * n, f"{name}: logger + systemd-cat + unit {unit}.service")
        if problems:
            return problems
        checks = [
            ("the unit's entries with systemd.unit", {"term": {"systemd.unit": f"{unit}.service"}}, n),
            ("logger's entries with log.level err", {"bool": {"filter": [
                {"term": {"log.level": "err"}}, {"term": {"log.syslog.appname": "lfj-logger"}}]}}, n),
            ("systemd-cat's entries with log.level warning", {"bool": {"filter": [
                {"term": {"log.level": "warning"}}, {"term": {"log.syslog.appname": "lfj-cat"}}]}}, n),
        ]
        for what, q, want in checks:
            got = self.tagged(ip, tag, q)
            if got != want:
                problems.append(f"journal {name}: {got} of {want} {what}")
            else:
                self.lab.log(f"journal {name}: {got} {what}")
        if not problems:
            res = self.lab.logctl(self.env, "search", "--host", ip, "-q", tag, "-n", "3", check=False)
            self.lab.log(f"logctl search --host {ip} -q {tag} -n 3:")
            print(self.lab.textblock(res.stdout or res.stderr))
        return problems

    def kill9_and_rotate(self, name: str = "lab-host1") -> list[str]:
        ip = self.lab.HOSTS[name]
        tag = uuid.uuid4().hex[:10]
        self.host(name).nsenter(self.state, ["systemctl", "reset-failed", "logagent"], check=False)
        self.write(name, tag, 200, how="logger", start=1)
        pid = self.agent_pid(name)
        self.host(name).nsenter(self.state, ["kill", "-9", pid])
        self.write(name, tag, 200, how="logger", start=201)
        self.sh(name, "journalctl --rotate")
        self.write(name, tag, 200, how="cat", start=401)
        if not self.wait_agent_active(name, not_pid=pid):
            return [f"journal {name}: logagent not restarted after kill -9"]
        self.sh(name, "journalctl --rotate")
        self.write(name, tag, 200, how="logger", start=601)
        return self.wait_count(ip, tag, 800, f"{name}: kill -9 of the agent and two journalctl --rotate "
                                            "among 800 entries")

    def reboot(self, name: str = "lab-host2") -> list[str]:
        ip = self.lab.HOSTS[name]
        tag = uuid.uuid4().hex[:10]
        self.write(name, tag, 100, how="logger", start=1)
        old_leader = self.host(name).leader(self.state)
        self.host(name).nsenter(self.state, ["systemctl", "reboot"], check=False)
        started = time.monotonic()
        while time.monotonic() - started < 90:
            leader = self.host(name).leader(self.state)
            if leader is not None and leader != old_leader:
                break
            time.sleep(0.5)
        else:
            return [f"journal {name}: the host did not come back within 90s of systemctl reboot"]
        self.lab.wait_booted(self.host(name), self.state)
        if not self.wait_agent_active(name):
            return [f"journal {name}: logagent not active after the reboot"]
        self.lab.log(f"journal {name}: rebooted (systemctl reboot) in {time.monotonic() - started:.1f}s, "
                     "logagent active again")
        self.write(name, tag, 100, how="cat", start=101)
        return self.wait_count(ip, tag, 200, f"{name}: 100 entries before and 100 after a reboot of the host")

    def vacuum_gap(self, name: str = "lab-host1") -> list[str]:
        ip = self.lab.HOSTS[name]
        tag = uuid.uuid4().hex[:10]
        self.write(name, tag, 10, how="logger", start=1)
        problems = self.wait_count(ip, tag, 10, f"{name}: 10 entries before the vacuum")
        if problems:
            return problems
        self.host(name).nsenter(self.state, ["systemctl", "stop", "logagent"])
        self.write(name, tag, 30, how="logger", start=11)  # lost with the vacuum: never read
        # Everything so far into archived files, then delete them all: the saved cursor is gone.
        self.sh(name, "journalctl --rotate && sleep 1.1 && journalctl --vacuum-time=1s >/dev/null 2>&1")
        self.write(name, tag, 10, how="logger", start=41)
        self.host(name).nsenter(self.state, ["systemctl", "start", "logagent"])
        started = time.monotonic()
        gap = None
        while time.monotonic() - started < WAIT_S and gap is None:
            for j in self.journals(ip):
                if j.get("gaps") and j.get("gap"):
                    gap = j["gap"]
            if gap is None:
                time.sleep(1)
        if gap is None:
            return [f"journal {name}: no gap in the agent's status after a vacuum while it was stopped "
                    f"(journals: {self.journals(ip)})"]
        self.lab.log(f"journal {name}: the vacuum while the agent was stopped is reported: gap from "
                     f"{gap.get('from')} to {gap.get('to')}")
        res = self.lab.logctl(self.env, "status", ip, check=False)
        print(self.lab.textblock("\n".join(ln for ln in res.stdout.splitlines() if "journal" in ln or "gap" in ln)))
        # the 10 written after the vacuum arrive: 10 + 10 with this tag in all
        return self.wait_count(ip, tag, 20, f"{name}: the entries before the vacuum and after it (the 30 "
                                            "vacuumed while the agent was stopped are the reported gap)")

    def unit_filter(self, name: str = "lab-host2") -> list[str]:
        """Host ``name``'s journal entry narrowed to one unit: only that unit's entries arrive."""
        ip = self.lab.HOSTS[name]
        tag = uuid.uuid4().hex[:10]
        wanted, other = f"lfj-want-{tag}", f"lfj-other-{tag}"
        base = self.lab.host_inputs(name)
        narrowed = [*base, {"journal": {"units": [f"{wanted}.service"]}, "topic": TOPIC}]
        self.lab.logctl(self.env, "collect", "set", ip, "-", "--yes", input_text=json.dumps(narrowed))
        try:
            started = time.monotonic()
            while time.monotonic() - started < WAIT_S:
                ids = [str(j.get("input") or "") for j in self.journals(ip)]
                if any(wanted in i for i in ids) and len(ids) == 1:
                    break
                time.sleep(1)
            else:
                return [f"journal {name}: the agent did not take the unit-filtered entry "
                        f"(journals: {self.journals(ip)})"]
            run = "i=1; while [ $i -le 25 ]; do echo \"lab-journal {tag} {u} $i\"; i=$((i+1)); done"
            self.sh(name, f"{RUN} --unit={other} sh -c '{run.format(tag=tag, u=other)}'")
            self.sh(name, f"{RUN} --unit={wanted} sh -c '{run.format(tag=tag, u=wanted)}'")
            # the other unit's entries were written first: once the wanted ones are all in, the
            # agent has read past the others
            problems = self.wait_count(ip, tag, 25, f"{name}: units [{wanted}.service] (25 of its entries, "
                                                   f"25 of {other}.service written before them)")
            got_other = self.tagged(ip, tag, {"term": {"systemd.unit": f"{other}.service"}})
            if got_other:
                problems.append(f"journal {name}: {got_other} entries of {other}.service collected by a "
                                f"filter for {wanted}.service")
            return problems
        finally:
            restored = [*base, default_input()]
            self.lab.logctl(self.env, "collect", "set", ip, "-", "--yes", input_text=json.dumps(restored))

    def all(self) -> list[str]:
        problems = self.entries_once()
        if problems:
            return problems  # the journal input does not work at all: the rest would say the same
        for check in (self.kill9_and_rotate, self.reboot, self.unit_filter, self.vacuum_gap):
            problems += check()
        return problems


def check_journal(lab: Any, state: dict, env: dict[str, str]) -> list[str]:
    """Every journal check; the problems found (empty: passed)."""
    return JournalChecks(lab, state, env).all()
