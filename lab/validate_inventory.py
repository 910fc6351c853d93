#!/usr/bin/env python3
"""Validate the collect lists and transfer configs written in Ansible inventories.

Every ``logagent_inputs`` and ``logferry_transfer_config`` found in the YAML files under the given
directories (default: ansible/inventory) is checked with logferry's own schema
(``logferry.schema.parse_collect_list`` / ``parse_transfer_config``, what logctl and the daemons
use), so a typo is caught before a playbook run. Values that are Jinja templates are skipped.
Exit 1 when any is invalid.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from logferry.schema import SchemaError, parse_collect_list, parse_transfer_config  # noqa: E402

CHECKS = {"logagent_inputs": parse_collect_list, "logferry_transfer_config": parse_transfer_config}


def main(argv: list[str]) -> int:
    roots = [Path(a) for a in argv] or [REPO / "ansible" / "inventory"]
    bad = 0
    for root in roots:
        for f in sorted(p for p in root.rglob("*") if p.suffix in (".yml", ".yaml")):
            data = yaml.safe_load(f.read_text()) or {}
            if not isinstance(data, dict):
                continue
            for var, parse in CHECKS.items():
                if var not in data or "{{" in json.dumps(data[var]):
                    continue
                try:
                    parse(json.dumps(data[var]))
                    print(f"  {f.relative_to(REPO) if f.is_relative_to(REPO) else f}: {var} valid")
                except SchemaError as e:
                    print(f"  {f}: {var} INVALID: {e}")
                    bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
