"""``include_lines`` / ``exclude_lines``: the lines an input drops before they leave the host.

Filebeat's semantics: with ``include_lines`` only lines that one of its regexes finds are kept;
then a line that one of the ``exclude_lines`` regexes finds is dropped. A multiline event is
tested as one text. Filtering runs in the agent so that dropped lines never cost the network,
Kafka or Elasticsearch anything; a dropped line's offset is acknowledged at once, as if Kafka
had taken it, so the file's saved offset moves past it.

:class:`InputPipeline` holds what an input does to its lines (filter, parser) with its counts;
the agent builds one per input that has either, and none for the others (no cost per line).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.parsers import LineParser
from logferry.schema import InputSpec

__all__ = ["InputPipeline", "LineFilter", "pipeline_for"]


class LineFilter:
    """Keeps or drops a line's text; the regexes are compiled once, here.

    Several regexes are joined into one alternation, so a line costs one search per list.
    """

    __slots__ = ("_exclude", "_include")

    def __init__(self, include: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> None:
        self._include = _joined(include)
        self._exclude = _joined(exclude)

    def keep(self, text: str) -> bool:
        """True when the line goes on to Kafka."""
        if self._include is not None and self._include(text) is None:
            return False
        return self._exclude is None or self._exclude(text) is None


def _joined(patterns: tuple[str, ...]) -> Callable[[str], object] | None:
    if not patterns:
        return None
    if len(patterns) == 1:
        return re.compile(patterns[0]).search
    # Each in its own non-capturing group, so an alternation inside one stays inside it; a
    # pattern with inline global flags ((?i) at its start) cannot be joined: searched one by one.
    if any(p.startswith("(?") and not p.startswith(("(?:", "(?P", "(?=", "(?!", "(?<")) for p in patterns):
        compiled = [re.compile(p).search for p in patterns]

        def any_of(text: str) -> object:
            for s in compiled:
                m = s(text)
                if m is not None:
                    return m
            return None

        return any_of
    return re.compile("|".join(f"(?:{p})" for p in patterns)).search


@dataclass(eq=False, slots=True)
class InputPipeline:
    """One input's filter and parser, with its counts since the agent started.

    ``dropped``: lines the filters dropped; ``parsed``: lines that went through the parser;
    ``failed``: lines indexed unparsed (or with an unreadable time), flagged ``parse_failure``.
    """

    path: str
    filter: LineFilter | None
    parser: LineParser | None
    dropped: int = 0
    parsed: int = 0
    failed: int = 0
    exported: dict[str, int] = field(default_factory=dict)  # counts already added to the metrics

    def counts(self) -> dict[str, int]:
        return {"lines_dropped": self.dropped, "lines_parsed": self.parsed, "parse_failures": self.failed}


def pipeline_for(spec: InputSpec, previous: InputPipeline | None = None) -> InputPipeline | None:
    """The pipeline of an input, or None when it neither filters nor parses (the plain fast path).

    ``previous`` (the same input before a collect-list change) passes its counts on, so a change
    of the regexes does not reset the input's counts in the status.
    """
    flt = LineFilter(spec.include_lines, spec.exclude_lines) if spec.include_lines or spec.exclude_lines else None
    parser = LineParser(spec.parse, spec.timestamp) if spec.parse is not None else None
    if flt is None and parser is None:
        return None
    pipe = InputPipeline(spec.path, flt, parser)
    if previous is not None:
        pipe.dropped, pipe.parsed, pipe.failed = previous.dropped, previous.parsed, previous.failed
        pipe.exported = previous.exported
    return pipe
