"""The embedded echo AI provider: the AI Provider protocol at ``/ws/v1/echo`` on the same server.

It is the default route, so a fresh ``callbridge serve`` runs whole calls with nothing else:
after ``start``, every ``media`` frame comes straight back as ``media`` (the caller hears
themself), a mark follows every second of echoed audio (so the mark path runs too; callbridge
answers it once that audio has played), and ``hangup`` ends the session with a normal close.
Anything else (``dtmf``, mark answers) is accepted and ignored.
"""

from __future__ import annotations

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

MARK_EVERY = 50  # frames of 20 ms: one mark a second


async def echo_ai(ws: ServerConnection) -> None:
    """Serve one AI leg until the bridge hangs up or goes away."""
    echoed = 0
    started = False
    try:
        async for message in ws:
            try:
                event = orjson.loads(message)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(event, dict):
                continue
            kind = event.get("event")
            if kind == "media" and started:
                media = event.get("media")
                if not isinstance(media, dict) or not isinstance(media.get("payload"), str):
                    continue
                # The bridge's media message is already the shape it accepts from an AI.
                await ws.send(message)
                echoed += 1
                if echoed % MARK_EVERY == 0:
                    await ws.send(
                        orjson.dumps(
                            {"event": "mark", "mark": {"name": f"echo-{echoed // MARK_EVERY}"}}
                        ),
                        text=True,
                    )
            elif kind == "start":
                started = True
            elif kind == "hangup":
                break
        await ws.close(1000, "hangup")
    except ConnectionClosed:
        pass
