"""Phone numbers to E.164 (the AI Provider protocol wants callerIdNumber/calleeIdNumber in E.164)."""

from __future__ import annotations

import traceback
from functools import lru_cache

import phonenumbers


@lru_cache(maxsize=4096)
def to_e164(number: str, default_region: str = "US") -> str:
    """``number`` in E.164 when it parses as a valid number, otherwise unchanged.

    Numbers without ``+`` are read in ``default_region``; digits that already start with a
    country code (``919701966915``) are recognised too. Anything else (a SIP user, a UUID
    ``caller_id``) is returned as given rather than invented.
    """
    text = number.strip()
    if not text:
        return number
    candidates = [(text, default_region)]
    digits = "".join(ch for ch in text if ch.isdigit())
    if not text.startswith("+") and digits:
        candidates.append(("+" + digits, None))  # type: ignore[arg-type]
    for candidate, region in candidates:
        try:
            parsed = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException as exc:
            # phonenumbers keeps an exception in a local of the frame that raised it, a cycle
            # through the traceback that only a full collection would free: clear those frames.
            traceback.clear_frames(exc.__traceback__)
            continue
        if phonenumbers.is_valid_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return number
