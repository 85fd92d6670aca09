"""What the model lets a test read back: the plugin's log lines and the host's violations.

A violation is something the filter did that Envoy would not tolerate or would silently ignore
(continuing a stream that is not paused, buffering past the limit, a local reply on a root
context, a malformed header map, a gauge below zero). Tests end by asserting there are none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .abi import LogLevel

if TYPE_CHECKING:
    from .worker import Worker


@dataclass(frozen=True)
class LogRecord:
    """One ``proxy_log`` (or stdout/stderr) line. ``worker`` -1 is the configuration canary."""

    level: LogLevel
    message: str
    worker: int
    context_id: int


class LogBook:
    """Log lines and violations of one model."""

    def __init__(self) -> None:
        self.logs: list[LogRecord] = []
        self.violations: list[str] = []

    def log(self, level: LogLevel, message: bytes, worker: Worker) -> None:
        """Record a line from ``worker``'s effective context."""
        self.logs.append(LogRecord(level, message.decode("utf-8", "replace"), worker.index, worker.effective_id))

    def violation(self, message: str) -> None:
        """Record a violation."""
        self.violations.append(message)

    def log_messages(self, min_level: LogLevel = LogLevel.TRACE, worker: int | None = None) -> list[str]:
        """Messages at ``min_level`` or above, optionally of one worker (-1: the canary)."""
        return [r.message for r in self.logs if r.level >= min_level and (worker is None or r.worker == worker)]
