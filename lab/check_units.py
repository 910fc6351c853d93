#!/usr/bin/env python3
"""Check systemd/*.service on a machine without systemd as PID 1: verify, and score hardening.

* ``systemd-analyze verify``: against a scratch root holding this machine's unit tree and stand-in
  executables at the ExecStart paths (/opt/logferry/venv/bin/…), so "not executable" means a
  typo in the unit, not a missing install. Warnings count as failures.
* ``systemd-analyze security --offline=yes``: the exposure score of each unit (0 best, 10 worst),
  and of logagent with its optional drop-in (Ansible's logagent_read_any_file), against the
  limits in LIMITS. Fails when a score is above its limit.

Prints a table for docs/systemd-security.md. Exit 0 when all is well.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
UNITS = REPO / "systemd"
DROPIN = REPO / "ansible/roles/logagent/templates/read-any-file.conf.j2"
LIMITS = {"logagent.service": 3.0, "logtransfer.service": 2.0, "logconsole.service": 2.0,
          "logagent.service + read-any-file.conf": 3.0}


def verify(unit: Path) -> list[str]:
    problems = []
    with tempfile.TemporaryDirectory(prefix="logferry-verify-") as tmp:
        root = Path(tmp)
        (root / "usr/lib/systemd").mkdir(parents=True)
        shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
        (root / "etc/systemd/system").mkdir(parents=True)
        shutil.copy(unit, root / "etc/systemd/system" / unit.name)
        for m in re.finditer(r"^Exec\w+=[-@:+!]*(/\S+)", unit.read_text(), re.M):
            stub = root / m.group(1).lstrip("/")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\nexit 0\n")
            stub.chmod(0o755)
        res = subprocess.run(["systemd-analyze", "verify", f"--root={root}", f"/etc/systemd/system/{unit.name}"],
                             capture_output=True, text=True)
        out = (res.stdout + res.stderr).strip()
        if res.returncode != 0 or out:
            problems.append(f"{unit.name}: systemd-analyze verify (rc {res.returncode}): {out}")
    return problems


def score(unit_text: str, name: str) -> tuple[float, str]:
    with tempfile.TemporaryDirectory(prefix="logferry-security-") as tmp:
        path = Path(tmp) / name
        path.write_text(unit_text)
        res = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(path)],
                             capture_output=True, text=True)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", res.stdout)
    if not m:
        raise SystemExit(f"systemd-analyze security gave no score for {name}:\n{res.stdout}{res.stderr}")
    open_items = [ln for ln in res.stdout.splitlines() if ln.startswith("✗")]
    return float(m.group(1)), m.group(2) + "".join(f"\n    {ln[:110].rstrip()}" for ln in open_items)


def main() -> int:
    if shutil.which("systemd-analyze") is None:
        print("systemd-analyze is missing: apt-get install systemd", file=sys.stderr)
        return 1
    problems: list[str] = []
    for unit in sorted(UNITS.glob("*.service")):
        found = verify(unit)
        problems += found
        print(f"systemd-analyze verify {unit.name}: {'clean' if not found else 'FAILED'}")
    dropin = re.sub(r"^#.*\n", "", DROPIN.read_text(), flags=re.M)
    cases = {
        "logagent.service": (UNITS / "logagent.service").read_text(),
        "logtransfer.service": (UNITS / "logtransfer.service").read_text(),
        "logconsole.service": (UNITS / "logconsole.service").read_text(),
        # A drop-in's [Service] lines after the unit's own: the same merge systemd does.
        "logagent.service + read-any-file.conf": (UNITS / "logagent.service").read_text() + "\n" + dropin,
    }
    print(f"\n{'unit':<40} {'exposure':>8}  limit")
    for label, text in cases.items():
        value, detail = score(text, label.split(" ")[0])
        limit = LIMITS[label]
        verdict = "ok" if value <= limit else "TOO HIGH"
        print(f"{label:<40} {value:>8.1f}  {limit:.1f}  {verdict}  ({detail})")
        if value > limit:
            problems.append(f"{label}: exposure {value} above {limit}")
    for p in problems:
        print(f"FAIL: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
