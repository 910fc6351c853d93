"""Cutting a file's byte stream into lines, with the byte offsets the registry needs.

Offsets are the point of this module: every line knows where it starts (the event id is built
from it) and where the next one starts (the offset saved once Kafka acknowledged the line). The
ranges of consecutive lines are contiguous, so "everything before ``next_offset`` is shipped" is
true the moment a line is acknowledged, whatever the chunking of the reads was.

Memory stays bounded whatever the file holds: a line longer than ``max_line_bytes`` keeps only
its first ``max_line_bytes`` bytes (marked ``truncated``); the rest is counted, not buffered, up to
its newline, so a 1 GB line costs ``max_line_bytes`` of memory. The skipped bytes still belong to
the line's range, so its ``next_offset`` is past its newline and nothing is read twice.

Bytes are kept as bytes here; :func:`decode_line` turns them into text at the edge.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Line", "LineSplitter", "decode_line"]

# Building the named tuple through tuple.__new__ skips its Python-level __new__: about twice as
# fast, which is most of the hot loop's cost.
_tuple_new = tuple.__new__


class Line(NamedTuple):
    """One line: ``raw`` has no line terminator (``\\n`` or ``\\r\\n``)."""

    offset: int
    raw: bytes
    truncated: bool
    next_offset: int

    @property
    def lines(self) -> int:
        """Always 1: lets a plain line stand in where a joined multiline event is expected."""
        return 1


def decode_line(raw: bytes) -> str:
    """UTF-8 text of a line; invalid bytes become U+FFFD (the replacement character).

    Why replacement rather than refusing or escaping: a log line with one bad byte (a latin-1
    name, a binary blob in a debug line) is still worth searching, and Elasticsearch wants valid
    UTF-8. The original bytes are not recoverable from the text; the byte offsets are.
    """
    return raw.decode("utf-8", "replace")


class LineSplitter:
    """Feed it chunks of a file in order; it returns the lines completed by each chunk.

    A partial last line waits in the splitter for its newline. :meth:`flush_partial` hands it
    out anyway when the caller decides it has waited long enough (a writer that stalls
    mid-line): such a line ends where its bytes end, and if more bytes of the same line arrive
    later they form a new line of their own. The one exception is a bare terminator: if the
    first line completed after a flush is empty (just ``\\n`` or ``\\r\\n``, the end of the line
    already handed out), it is not emitted; its bytes are folded into the range of the next
    line, so offsets stay contiguous and no empty event appears.

    ``offset`` is the file offset of the first byte fed; ``after_flush`` says that the bytes
    before ``offset`` ended with a flushed partial line (a harvester that reopens a file at
    such a boundary passes it so the rule above survives the reopen).
    """

    __slots__ = ("_after_flush", "_buf", "_cap", "_pos", "_skipped", "_start", "max_line_bytes")

    def __init__(self, max_line_bytes: int, offset: int = 0, after_flush: bool = False) -> None:
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be >= 1, got {max_line_bytes}")
        self.max_line_bytes = max_line_bytes
        # One byte more than the limit: a line of exactly the limit may still end in "\r".
        self._cap = max_line_bytes + 1
        self._buf = bytearray()
        self._skipped = 0  # bytes of the current line past _cap, counted but not kept
        self._start = offset  # where the current (incomplete) line's range begins
        self._pos = offset  # offset just past the last byte fed
        self._after_flush = after_flush

    @property
    def offset(self) -> int:
        """Offset just past the last byte fed (where the next chunk must start)."""
        return self._pos

    @property
    def partial_start(self) -> int:
        """Offset where the incomplete line begins; equals :attr:`offset` when there is none."""
        return self._start

    @property
    def has_partial(self) -> bool:
        """True while bytes of an incomplete line are held (what :meth:`flush_partial` would return)."""
        return bool(self._buf) or self._skipped > 0

    @property
    def after_flush(self) -> bool:
        """True until the first line after a flushed partial line has completed."""
        return self._after_flush

    def feed(self, data: bytes) -> list[Line]:
        """Lines completed by ``data`` (which must follow the previous chunk in the file)."""
        out: list[Line] = []
        n = len(data)
        if not n:
            return out
        pos = self._pos
        self._pos = pos + n
        i = 0
        # Slow path: finish a line begun in an earlier chunk (or one right after a flush).
        while self._buf or self._skipped or self._after_flush or self._start != pos + i:
            nl = data.find(b"\n", i)
            if nl < 0:
                self._absorb(data, i, n)
                return out
            self._absorb(data, i, nl)
            i = nl + 1
            self._complete(pos + i, out)
            if i == n:
                return out
        # Fast path: whole lines inside this chunk, split in C.
        last = data.rfind(b"\n", i)
        if last >= 0:
            body = data[i:last]
            off = pos + i
            mx = self.max_line_bytes
            append = out.append
            new = _tuple_new
            if b"\r" not in body:
                for piece in body.split(b"\n"):
                    nxt = off + len(piece) + 1
                    if len(piece) > mx:
                        append(new(Line, (off, piece[:mx], True, nxt)))
                    else:
                        append(new(Line, (off, piece, False, nxt)))
                    off = nxt
            else:
                for piece in body.split(b"\n"):
                    nxt = off + len(piece) + 1
                    if piece.endswith(b"\r"):
                        piece = piece[:-1]
                    if len(piece) > mx:
                        append(new(Line, (off, piece[:mx], True, nxt)))
                    else:
                        append(new(Line, (off, piece, False, nxt)))
                    off = nxt
            i = last + 1
        self._start = pos + i
        if i < n:
            self._absorb(data, i, n)
        return out

    def flush_partial(self) -> Line | None:
        """Hand out the incomplete line now (the caller's flush timeout passed), or None.

        Its ``next_offset`` is the end of the bytes seen; see the class docstring for what
        happens to the rest of the line when it arrives.
        """
        if not self.has_partial:
            return None
        line = self._take(self._pos)
        self._after_flush = True
        return line

    def _absorb(self, data: bytes, start: int, end: int) -> None:
        # Keep at most _cap bytes of the current line; count the rest.
        if self._skipped:
            self._skipped += end - start
            return
        room = self._cap - len(self._buf)
        take = min(room, end - start)
        if take > 0:
            self._buf += data[start:start + take]
        rest = end - start - take
        if rest > 0:
            self._skipped += rest

    def _take(self, next_offset: int) -> Line:
        buf = self._buf
        mx = self.max_line_bytes
        if self._skipped:
            line = Line(self._start, bytes(buf[:mx]), True, next_offset)
        else:
            if buf.endswith(b"\r"):
                del buf[-1]
            if len(buf) > mx:
                line = Line(self._start, bytes(buf[:mx]), True, next_offset)
            else:
                line = Line(self._start, bytes(buf), False, next_offset)
        self._buf = bytearray()
        self._skipped = 0
        self._start = next_offset
        return line

    def _complete(self, next_offset: int, out: list[Line]) -> None:
        start = self._start
        line = self._take(next_offset)
        if self._after_flush:
            self._after_flush = False
            if not line.raw and not line.truncated:
                # The terminator of the line flushed earlier: fold it into the next line.
                self._start = start
                return
        out.append(line)
