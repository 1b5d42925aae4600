"""Coalescing token deltas between a model replica and the ingress.

Every item a replica yields crosses a Ray handle (and the ingress writes one SSE event per item). A GPU
engine steps every few milliseconds for every sequence, so per-step items cost the ingress more than
the engine. Deltas are therefore held until ``interval_s`` has passed since the last flush and sent
together; the first one is never held (time to first token), and text is never reordered or dropped.
On a slow engine (a step every 100 ms on this CPU) every step is past the interval: nothing is held.
The check runs when a step arrives, so a held delta waits at most one engine step.
"""

from __future__ import annotations

import time

from deployments.generation import Delta, ToolCall


def merge(deltas: list[Delta]) -> list[Delta]:
    """One delta per sequence, in order of first appearance: texts, logprobs and tool-call pieces joined,
    the last finish reason and answer kept."""
    merged: dict[int, Delta] = {}
    for d in deltas:
        before = merged.get(d.index)
        merged[d.index] = d if before is None else Delta(
            d.index, before.text + d.text, d.finish_reason or before.finish_reason, before.logprobs + d.logprobs,
            join_pieces(before.tool_calls, d.tool_calls), d.answer or before.answer)
    return list(merged.values())


def join_pieces(before: tuple[ToolCall, ...], after: tuple[ToolCall, ...]) -> tuple[ToolCall, ...]:
    """Tool-call pieces in order; a piece that only adds arguments to the call just before is folded into it."""
    out = list(before)
    for piece in after:
        last = out[-1] if out else None
        if last is not None and last.index == piece.index and piece.id is None and piece.name is None:
            out[-1] = ToolCall(last.index, last.id, last.name, last.arguments + piece.arguments)
        else:
            out.append(piece)
    return tuple(out)


class Coalescer:
    """Feed deltas per engine step with ``add``; it returns what to send now (or None)."""

    def __init__(self, interval_s: float):
        self.interval_s = interval_s
        self.pending: list[Delta] = []
        self.last_flush: float | None = None  # None: nothing sent yet, so the next delta goes at once

    def add(self, deltas: list[Delta], now: float | None = None) -> list[Delta] | None:
        self.pending.extend(deltas)
        now = time.monotonic() if now is None else now
        if not self.pending or (self.last_flush is not None and now - self.last_flush < self.interval_s):
            return None
        return self.flush(now)

    def flush(self, now: float | None = None) -> list[Delta] | None:
        """Whatever is held (at the end of the stream), or None."""
        if not self.pending:
            return None
        out, self.pending = merge(self.pending), []
        self.last_flush = time.monotonic() if now is None else now
        return out
