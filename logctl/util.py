"""Small pure helpers of ``logctl``: exit codes, tables, diffs, durations and times, prompts.

Kept apart from the commands so they are unit-tested without any server.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from logferry.documents import unified_diff
from logferry.search import iso_utc
from logferry.timeparse import DURATION_HELP, parse_duration, parse_time

__all__ = [
    "DURATION_HELP",
    "EXIT_CONFLICT",
    "EXIT_OK",
    "EXIT_PROBLEM",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "CtlError",
    "confirm",
    "fmt_age",
    "fmt_bytes",
    "fmt_count",
    "iso_utc",
    "parse_duration",
    "parse_time",
    "render_table",
    "unified_diff",
]

EXIT_OK = 0
EXIT_PROBLEM = 1  # a failure, or a problem found (invalid list in etcd, agent not live, doctor finding)
EXIT_USAGE = 2  # bad command line, or what you gave logctl is invalid (a collect list file, a query)
EXIT_CONFLICT = 3  # the key changed since it was read: nothing written
EXIT_UNREACHABLE = 4  # etcd, Kafka or Elasticsearch did not answer


class CtlError(Exception):
    """A failure logctl reports as one line on stderr, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_PROBLEM) -> None:
        super().__init__(message)
        self.code = code


# --- formatting ------------------------------------------------------------------------------


def fmt_bytes(n: float | None) -> str:
    """1536 → ``1.5 KiB``; None → ``-``."""
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def fmt_count(n: float | None) -> str:
    """Whole numbers with thousands separators; None → ``-``."""
    if n is None:
        return "-"
    if float(n).is_integer():
        return f"{int(n):,}"
    return f"{n:,.1f}"


def fmt_age(seconds: float | None) -> str:
    """A short age: ``42s``, ``5m``, ``3h12m``, ``4d2h``; None → ``-``."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s" if s < 600 else f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600}h"


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    text = str(value)
    return " ".join(text.split()) if ("\n" in text or "\t" in text) else text


def render_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, max_width: int | None = None,
                 right: Iterable[int] = ()) -> str:
    """A plain-text table: a header row, then one row per item, columns two spaces apart.

    ``None`` and empty cells show as ``-``; newlines in cells become spaces. With ``max_width``
    (the terminal's width) the last column is cut with ``…`` so rows do not wrap. Columns whose
    index is in ``right`` (numbers) are right-aligned.
    """
    body = [[_cell(c) for c in row] for row in rows]
    head = [str(h) for h in headers]
    ncol = len(head)
    for r in body:
        if len(r) != ncol:
            raise ValueError(f"row has {len(r)} cells, table has {ncol} columns")
    widths = [max([len(head[i])] + [len(r[i]) for r in body]) for i in range(ncol)]
    right = set(right)
    if max_width is not None and ncol:
        used = sum(widths[:-1]) + 2 * (ncol - 1)
        widths[-1] = max(len(head[-1]), min(widths[-1], max_width - used))

    def line(cells: list[str]) -> str:
        out = []
        for i, c in enumerate(cells):
            w = widths[i]
            if len(c) > w:
                c = c[: max(0, w - 1)] + "…"
            out.append(c.rjust(w) if i in right else c.ljust(w))
        return "  ".join(out).rstrip()

    return "\n".join([line(head), *(line(r) for r in body)])


def terminal_width(stream: TextIO = sys.stdout) -> int | None:
    """The terminal's width when ``stream`` is one, else None (pipes get whole lines)."""
    try:
        if not stream.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    return shutil.get_terminal_size((120, 40)).columns


def use_color(stream: TextIO = sys.stdout) -> bool:
    """Colour only on a terminal, and never with ``NO_COLOR`` set (no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# --- prompts ---------------------------------------------------------------------------------


def stdin_is_tty() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def confirm(question: str, *, assume_yes: bool, stdin_used: bool = False, default: bool = False) -> bool:
    """Ask ``question`` on the terminal; True for yes.

    With ``assume_yes`` (``--yes``) no question is asked. Without a terminal on stdin (a pipe,
    cron, CI), or when stdin carried the document itself, nobody can answer: that is a usage
    error telling the operator to add ``--yes``, never a silent yes.
    """
    if assume_yes:
        return True
    if stdin_used or not stdin_is_tty():
        raise CtlError("not asking for confirmation: stdin is not a terminal; add --yes to write "
                       "without asking (or --dry-run to only see the diff)", EXIT_USAGE)
    hint = "[Y/n]" if default else "[y/N]"
    while True:
        print(f"{question} {hint} ", end="", file=sys.stderr, flush=True)
        answer = sys.stdin.readline()
        if not answer:  # EOF
            return False
        a = answer.strip().lower()
        if not a:
            return default
        if a in ("y", "yes"):
            return True
        if a in ("n", "no"):
            return False
