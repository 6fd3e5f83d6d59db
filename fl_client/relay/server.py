"""The relay as an HTTP service (aiohttp), on 127.0.0.1: ``python -m fl_client relay``.

- ``POST /updates``: a signed update (JSON, see :mod:`fl_client.relay.wire`); 202 when taken,
  400 with ``{"error": ...}`` when refused.
- ``GET /rounds/{round}/clients/{client}/words``: the words of a registered relayed update, so
  that anyone can close the round.
- ``GET /status``: the open round and the relay's queue.

Chain work (checks, registrations, closes) runs on one worker thread, so that web3 is used by one
thread at a time; a background task polls every ``poll_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web
from eth_utils.address import is_address, to_checksum_address

from fl_client.chain import read_round
from fl_client.errors import ChainError, UpdateRefusedError
from fl_client.relay.core import Relay
from fl_client.relay.wire import from_json, words_to_hex
from fl_client.serving import run_until_interrupted

logger = logging.getLogger(__name__)

RELAY_KEY = web.AppKey("relay", Relay)
WORKER_KEY = web.AppKey("worker", ThreadPoolExecutor)


async def _in_worker(request: web.Request, function: Any, *args: Any) -> Any:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(request.app[WORKER_KEY], function, *args)


async def post_update(request: web.Request) -> web.Response:
    """Take a signed update."""
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": "the body is not JSON"}, status=400)
    try:
        update = from_json(body)
        await _in_worker(request, request.app[RELAY_KEY].hand_over, update)
    except UpdateRefusedError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    except ChainError as exc:
        return web.json_response({"error": f"the relay cannot reach the chain: {exc}"}, status=503)
    return web.json_response(
        {"accepted": True, "client": update.client, "round": update.round_number}, status=202
    )


async def get_words(request: web.Request) -> web.Response:
    """The words of a registered relayed update."""
    client = request.match_info["client"]
    try:
        round_number = int(request.match_info["round"])
    except ValueError:
        return web.json_response({"error": "round must be an integer"}, status=400)
    if not is_address(client):
        return web.json_response({"error": "client must be an address"}, status=400)
    words = request.app[RELAY_KEY].words(round_number, to_checksum_address(client))
    if words is None:
        return web.json_response({"error": "no such relayed update"}, status=404)
    return web.json_response({"words": words_to_hex(words)})


async def get_status(request: web.Request) -> web.Response:
    """The open round and the relay's queue."""
    relay = request.app[RELAY_KEY]
    info = await _in_worker(request, read_round, relay.contract)
    return web.json_response(
        {
            "round": info.number,
            "phase": info.phase,
            "pending": relay.pending(),
            "address": relay.view.address,
        }
    )


async def _poller(app: web.Application, interval: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        try:
            await loop.run_in_executor(app[WORKER_KEY], app[RELAY_KEY].poll)
        except ChainError as exc:
            logger.warning("relay: %s", exc)
        except Exception:  # the poller must outlive any one bad poll; the next one tries again
            logger.exception("relay: a poll failed")
        await asyncio.sleep(interval)


def make_app(relay: Relay, *, poll_interval: float = 0.5) -> web.Application:
    """The relay's aiohttp application (with its poller)."""
    # A whole update as JSON (64 hex digits a word, 66 a segment hash) and room for the rest:
    # aiohttp's default 1 MiB would refuse updates above about 16,000 words.
    view = relay.view
    app = web.Application(client_max_size=64 * view.num_words + 70 * view.num_segments + 65_536)
    app[RELAY_KEY] = relay
    app[WORKER_KEY] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-chain")
    app.router.add_post("/updates", post_update)
    app.router.add_get("/rounds/{round}/clients/{client}/words", get_words)
    app.router.add_get("/status", get_status)

    async def poll_in_background(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_poller(app, poll_interval))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        app[WORKER_KEY].shutdown(wait=True)

    app.cleanup_ctx.append(poll_in_background)
    return app


def serve(
    relay: Relay,
    *,
    host: str = "127.0.0.1",
    port: int,
    poll_interval: float = 0.5,
    banner: str | None = None,
) -> None:
    """Run the relay until interrupted (``banner``: printed once it accepts connections)."""
    run_until_interrupted(
        make_app(relay, poll_interval=poll_interval), host=host, port=port, banner=banner
    )
