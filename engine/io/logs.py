"""JSON log lines, one per event: ``ts``, ``level``, ``call_id``, ``leg``, ``code``, ``message``.

Use :class:`JsonLog` everywhere in the server (never ``print``); :meth:`JsonLog.notice` logs a
core :class:`~engine.core.commands.Notice`. Phone numbers in the fields named in
:data:`NUMBER_FIELDS` are masked (``+91*******915``) unless ``show_numbers`` is on.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

import orjson

from engine.core.commands import Notice

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
NUMBER_FIELDS = frozenset(
    {"caller", "callee", "caller_id", "caller_number", "callee_number", "from", "to"}
)


def mask_number(text: str) -> str:
    """Keep a leading ``+``, the first two and the last three digits: ``+91*******915``."""
    if not isinstance(text, str):
        return text
    digits = [c for c in text if c.isdigit()]
    if len(digits) < 6:
        return "*" * len(text)
    plus = "+" if text.startswith("+") else ""
    return plus + "".join(digits[:2]) + "*" * (len(digits) - 5) + "".join(digits[-3:])


class JsonLog:
    """Writes one JSON object per line to ``stream`` (stderr by default)."""

    def __init__(
        self, stream: TextIO | None = None, level: str = "info", show_numbers: bool = False
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.threshold = LEVELS.get(level, 20)
        self.show_numbers = show_numbers

    def enabled(self, level: str) -> bool:
        """Whether a line at ``level`` would be written: check it before building a costly message."""
        return LEVELS.get(level, 20) >= self.threshold

    def event(
        self,
        level: str,
        code: str,
        message: str,
        *,
        call_id: str = "",
        leg: str = "",
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        """Write one line (if ``level`` is enabled): ``code`` is a stable dotted name to search
        and alert on (``call.detected``), ``message`` is for people, ``fields`` add keys (phone
        numbers masked). A stream that cannot be written is skipped, never raised."""
        if LEVELS.get(level, 20) < self.threshold:
            return
        line: dict[str, Any] = {
            "ts": round(time.time(), 3),
            "level": level,
            "call_id": call_id,
            "leg": leg,
            "code": code,
            "message": message,
        }
        if fields:
            for key, value in fields.items():
                if key in line:
                    continue
                if key in NUMBER_FIELDS and not self.show_numbers and isinstance(value, str):
                    value = mask_number(value)
                line[key] = value
        try:
            self.stream.write(orjson.dumps(line, default=str).decode() + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed stderr must not take a call down
            pass

    def notice(self, call_id: str, notice: Notice) -> None:
        """Log a :class:`~engine.core.commands.Notice` the call core returned, under its call."""
        self.event(
            notice.level,
            notice.code,
            notice.message,
            call_id=call_id,
            leg=notice.leg,
            fields=notice.fields,
        )


class Throttle:
    """At most ``burst`` log lines per key in each ``window_s``; the rest are counted, and
    :meth:`summaries` reports each key's count once its window is over.

    Use it for lines a stranger can cause at will (refused upgrades): the log stays bounded
    however fast they come. Keys must come from a bounded set (provider and reason names);
    past ``max_keys`` every new key shares one overflow key.
    """

    OVERFLOW = ("*",)

    def __init__(self, burst: int = 5, window_s: float = 10.0, max_keys: int = 256) -> None:
        self.burst = burst
        self.window_s = window_s
        self.max_keys = max_keys
        self._started: dict[tuple[str, ...], float] = {}
        self._lines: dict[tuple[str, ...], int] = {}
        self._held: dict[tuple[str, ...], int] = {}  # lines held back, owed a summary

    def admit(self, key: tuple[str, ...], now: float) -> bool:
        """Whether a line for ``key`` may be written now (else it is counted for the summary)."""
        if key not in self._started and len(self._started) >= self.max_keys:
            key = self.OVERFLOW
        started = self._started.get(key)
        if started is None or now - started >= self.window_s:
            self._started[key] = now
            self._lines[key] = 0
        if self._lines[key] < self.burst:
            self._lines[key] += 1
            return True
        self._held[key] = self._held.get(key, 0) + 1
        return False

    def summaries(self, now: float) -> list[tuple[tuple[str, ...], int]]:
        """Keys whose window is over with lines held back, and how many; each is reported once."""
        out = []
        for key, started in list(self._started.items()):
            if now - started < self.window_s:
                continue
            held = self._held.pop(key, 0)
            if held:
                out.append((key, held))
            del self._started[key], self._lines[key]
        return out
