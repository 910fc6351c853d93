"""The host's collect list: from etcd when it answers, from the last good copy on disk otherwise.

Why keep a copy: an agent that starts while etcd is down (a data-centre power-up, an etcd
upgrade) must still collect. The copy is the last list that passed validation, written
atomically, together with the etcd revision it came from, so the status key can say which
revision is applied.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from logferry.schema import InputSpec, SchemaError, dump_collect_list, parse_collect_list

log = logging.getLogger("logagent.collect")


@dataclass
class Applied:
    """The list in force and where it came from."""

    inputs: list[InputSpec]
    revision: int
    source: str  # "etcd", "disk" or "none"


class CollectList:
    """Validates candidate lists and keeps the last good one (in memory and on disk)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "collect.last-good.json"
        self.applied = Applied(inputs=[], revision=0, source="none")
        self.last_error: str | None = None
        self.rejected_revision: int | None = None
        self.save_error: OSError | None = None  # the last good list could not be saved (disk)

    def load_saved(self) -> Applied | None:
        """The list saved by an earlier run, or None (missing or unreadable: say so in the log)."""
        try:
            doc = json.loads(self.path.read_text())
            inputs = parse_collect_list(json.dumps(doc["inputs"]))
            self.applied = Applied(inputs=inputs, revision=int(doc.get("revision", 0)), source="disk")
            return self.applied
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, SchemaError) as e:
            log.error("saved collect list %s is unusable (%s); waiting for etcd", self.path, e)
            return None

    def offer(self, raw: bytes | None, revision: int) -> bool:
        """Validate a list read from etcd; keep it if good. A missing key means "collect nothing"."""
        try:
            inputs = parse_collect_list(raw) if raw is not None else []
        except SchemaError as e:
            self.last_error = (
                f"collect list at revision {revision} rejected, keeping revision {self.applied.revision}: {e}"
            )
            self.rejected_revision = revision
            log.error("%s", self.last_error)
            return False
        self.applied = Applied(inputs=inputs, revision=revision, source="etcd")
        self.last_error = None
        self.rejected_revision = None
        try:
            self._save()
            self.save_error = None
        except OSError as e:  # disk full or read-only: the list applies anyway, the agent reports it
            self.save_error = e
        return True

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps(
            {"revision": self.applied.revision, "inputs": json.loads(dump_collect_list(self.applied.inputs))},
            indent=2,
        )
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".collect.")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
