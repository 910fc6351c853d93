"""The transfer config held in etcd (``<prefix>/transfer/config``), as the daemon follows it.

:meth:`LiveConfig.offer` takes each new value of the key. A valid one that differs from the
config in force becomes the new config; an invalid one (or a deleted key) is refused: the last
good config stays in force, and the error is kept for the log and the status key. The last good
config is also saved in the data dir, so a transfer restarted while etcd is unreachable goes on
with it instead of idling.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path

from logferry.schema import SchemaError, TransferConfig, parse_transfer_config

__all__ = ["LiveConfig"]

log = logging.getLogger("logtransfer.config")


class LiveConfig:
    def __init__(self, key: str, data_dir: str | Path | None = None) -> None:
        self.key = key
        self.saved_path = Path(data_dir) / "transfer-config.json" if data_dir else None
        self.current: TransferConfig | None = None
        self.revision = 0
        self.source: str | None = None  # "etcd" or "saved"
        self.rejected_revision: int | None = None
        self.error: str | None = None
        #: the saved copy could not be written (disk full, read-only): shown in the status
        self.save_error: str | None = None

    def offer(self, raw: bytes | None, revision: int) -> TransferConfig | None:
        """Consider a value of the key (None: deleted); returns the config to apply when it changed."""
        if revision and self.source == "etcd" and revision <= self.revision:
            return None  # already seen (a replay after a re-watch)
        if raw is None:
            self._refuse(revision, f"{self.key} does not exist (deleted?); "
                                   + ("keeping the config in force" if self.current else
                                      "nothing is consumed until it is written, e.g. with logctl"))
            return None
        try:
            cfg = parse_transfer_config(raw)
        except SchemaError as e:
            self._refuse(revision, f"{self.key} (revision {revision}) refused: {e}"
                                   + ("; keeping the config in force" if self.current else
                                      "; nothing is consumed until a valid one is written"))
            return None
        self.error = None
        self.rejected_revision = None
        changed = cfg != self.current
        self.current = cfg
        self.revision = revision
        self.source = "etcd"
        if changed:
            self.save()
            return cfg
        return None

    def _refuse(self, revision: int, message: str) -> None:
        self.error = message
        self.rejected_revision = revision
        log.error("%s", message)

    # ------------------------------------------------------------------ saved copy
    def save(self) -> None:
        if self.saved_path is None or self.current is None:
            return
        data = json.dumps({"revision": self.revision, "config": self.current.to_json()}, indent=1).encode()
        try:
            self.saved_path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.saved_path.parent, prefix=".transfer-config.")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.saved_path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            self.save_error = None
        except OSError as e:
            self.save_error = (f"cannot save the transfer config to {self.saved_path} ({e.strerror or e}); "
                               "indexing goes on; a restart without etcd would wait for etcd: free space there")
            log.warning("%s", self.save_error)

    def load_saved(self) -> TransferConfig | None:
        """The config saved by an earlier run, if there is a valid one (used when etcd is down at start)."""
        if self.saved_path is None:
            return None
        try:
            doc = json.loads(self.saved_path.read_bytes())
            cfg = parse_transfer_config(json.dumps(doc["config"]))
            revision = int(doc["revision"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, SchemaError) as e:
            log.warning("ignoring the saved transfer config %s: %s", self.saved_path, e)
            return None
        self.current = cfg
        self.revision = revision
        self.source = "saved"
        return cfg
