"""The JSON documents logferry keeps in etcd that people edit: host collect lists and the transfer config.

Where each lives, how it is validated and normalized, and how a change is written: by
compare-and-swap on the ``mod_revision`` read before the change was shown, so two people
cannot silently overwrite each other. ``logctl collect``/``transfer-config`` and the console's
editors both go through here.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from logferry.etcd import EtcdClient
from logferry.keys import Keys
from logferry.schema import (
    SchemaError,
    dump_collect_list,
    dump_transfer_config,
    parse_collect_list,
    parse_transfer_config,
)

__all__ = [
    "COLLECT_TEMPLATE",
    "TRANSFER_TEMPLATE",
    "Doc",
    "WriteOutcome",
    "collect_doc",
    "transfer_doc",
    "unified_diff",
    "validate_text",
    "write_document",
]


@dataclass(frozen=True)
class Doc:
    """One etcd-held JSON document logctl edits: where it is and how it is validated."""

    what: str  # "collect list of 10.0.0.5"
    key: str
    parse: Callable[[str | bytes], Any]
    dump: Callable[[Any], str]
    template: str  # what `edit` starts from when the key does not exist
    after_write: str  # a hint printed after a successful write

    def normalized(self, raw: bytes | None) -> tuple[str, str | None]:
        """The stored value as pretty JSON when valid (its raw text otherwise), and the error."""
        if raw is None:
            return "", None
        try:
            return self.dump(self.parse(raw)) + "\n", None
        except SchemaError as e:
            return raw.decode("utf-8", "replace").rstrip("\n") + "\n", str(e)


COLLECT_TEMPLATE = """[
  {"path": "/var/log/app/*.log", "topic": "app"}
]
"""

TRANSFER_TEMPLATE = """{
  "topics": ["app"],
  "index": "logferry-{topic}-{yyyy.MM.dd}"
}
"""


def collect_doc(keys: Keys, ip: str) -> Doc:
    return Doc(
        what=f"collect list of {ip}",
        key=keys.agent_collect(ip),
        parse=parse_collect_list,
        dump=lambda inputs: dump_collect_list(inputs),
        template=COLLECT_TEMPLATE,
        after_write=f"the agent on {ip} applies it within a second or two; check: logctl status {ip}",
    )


def transfer_doc(keys: Keys) -> Doc:
    return Doc(
        what="transfer config",
        key=keys.transfer_config(),
        parse=parse_transfer_config,
        dump=dump_transfer_config,
        template=TRANSFER_TEMPLATE,
        after_write="every logtransfer applies it within a second or two; check: logctl status",
    )


def unified_diff(old: str, new: str, old_label: str, new_label: str, *, color: bool = False) -> str:
    """A unified diff of two texts, ``""`` when they are equal. Always ends with a newline."""
    old_lines = old.splitlines(keepends=True)
    new_lines = new.splitlines(keepends=True)
    for lines in (old_lines, new_lines):
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
    out = []
    for ln in difflib.unified_diff(old_lines, new_lines, old_label, new_label):
        if color:
            if ln.startswith(("+++", "---")):
                ln = f"\x1b[1m{ln.rstrip(chr(10))}\x1b[0m\n"
            elif ln.startswith("+"):
                ln = f"\x1b[32m{ln.rstrip(chr(10))}\x1b[0m\n"
            elif ln.startswith("-"):
                ln = f"\x1b[31m{ln.rstrip(chr(10))}\x1b[0m\n"
            elif ln.startswith("@@"):
                ln = f"\x1b[36m{ln.rstrip(chr(10))}\x1b[0m\n"
        out.append(ln)
    return "".join(out)


@dataclass(frozen=True)
class WriteOutcome:
    """What :func:`write_document` did: ``written``, ``unchanged``, ``conflict`` or ``absent`` (delete)."""

    result: str
    revision: int  # the key's mod_revision after (0: it does not exist)


def write_document(client: EtcdClient, doc: Doc, new_text: str | None, expected: int) -> WriteOutcome:
    """Write (``new_text``, already validated and normalized) or delete (None) only if etcd still
    holds ``expected`` (the mod_revision the change was based on; 0: the key did not exist).

    The one compare-and-swap of an edited document: logctl calls it after showing the diff and
    asking, the console after its check. Nothing to do (the same text, a key already gone) is
    said as ``unchanged``/``absent`` without a write.
    """
    value, rev = client.get(doc.key)
    if rev != expected:
        return WriteOutcome("conflict", rev)
    if new_text is None and value is None:
        return WriteOutcome("absent", 0)
    if new_text is not None and value is not None and doc.normalized(value) == (new_text, None):
        return WriteOutcome("unchanged", rev)
    if new_text is None:
        ok = client.compare_and_delete(doc.key, expected)
    else:
        ok = client.compare_and_put(doc.key, new_text.encode("utf-8"), expected)
    _, now = client.get(doc.key)
    return WriteOutcome("written" if ok else "conflict", now)


def validate_text(doc: Doc, text: str) -> tuple[str | None, str | None]:
    """``(normalized text to store, None)`` or ``(None, the schema's message)``."""
    try:
        return doc.dump(doc.parse(text)) + "\n", None
    except SchemaError as e:
        return None, str(e)
