"""The dashboard as an HTTP service (aiohttp) on 127.0.0.1: ``python -m fl_client dashboard``.

- ``GET /``: the page (``static/index.html``, its CSS and script under ``/static/``).
- ``GET /vendor/chart.umd.min.js``: Chart.js, served from ``node_modules`` (pinned in
  package.json, installed by ``tools/setup.sh``): the page loads nothing from the internet.
- ``GET /api/snapshot``: everything the page shows, as JSON.
- ``GET /api/stream``: the same, pushed as Server-Sent Events (``event: snapshot``) whenever the
  chain moves or the node's status changes, with a comment line every few seconds to keep the
  connection open.

A background task polls the chain every ``poll_interval`` seconds on one worker thread (web3 and
the evaluations never run on the event loop, and never on two threads at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web

from fl_client.config import PROJECT_ROOT
from fl_client.dashboard.tracker import Tracker
from fl_client.errors import ConfigError
from fl_client.serving import run_until_interrupted

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
CHART_JS = PROJECT_ROOT / "node_modules" / "chart.js" / "dist" / "chart.umd.min.js"
HEARTBEAT_SECONDS = 10.0
NO_CACHE = {"Cache-Control": "no-store"}


class Broadcast:
    """The latest snapshot, and a way for the stream handlers to wait for the next one."""

    def __init__(self) -> None:
        self.payload = "{}"
        self.revision = 0
        self.closing = False
        self._condition = asyncio.Condition()

    async def publish(self, payload: str) -> None:
        """Make ``payload`` the latest snapshot and wake every stream."""
        async with self._condition:
            self.payload = payload
            self.revision += 1
            self._condition.notify_all()

    async def close(self) -> None:
        """End every stream (the server is shutting down)."""
        async with self._condition:
            self.closing = True
            self._condition.notify_all()

    async def after(self, revision: int, timeout: float) -> tuple[int, str] | None:
        """The first snapshot newer than ``revision``, or ``None`` after ``timeout`` seconds."""
        async with self._condition:
            try:
                await asyncio.wait_for(
                    self._condition.wait_for(lambda: self.revision > revision or self.closing),
                    timeout,
                )
            except TimeoutError:
                return None
            return self.revision, self.payload


TRACKER_KEY = web.AppKey("tracker", Tracker)
WORKER_KEY = web.AppKey("worker", ThreadPoolExecutor)
BROADCAST_KEY = web.AppKey("broadcast", Broadcast)


async def index(request: web.Request) -> web.FileResponse:
    """The page."""
    return web.FileResponse(STATIC_DIR / "index.html", headers=NO_CACHE)


async def chart_library(request: web.Request) -> web.FileResponse:
    """Chart.js from node_modules."""
    return web.FileResponse(CHART_JS)


async def snapshot(request: web.Request) -> web.Response:
    """The latest snapshot."""
    return web.Response(
        text=request.app[BROADCAST_KEY].payload, content_type="application/json", headers=NO_CACHE
    )


async def stream(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: the snapshot now, then each new one."""
    broadcast = request.app[BROADCAST_KEY]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    revision, payload = broadcast.revision, broadcast.payload
    try:
        await response.write(f"retry: 1000\nevent: snapshot\ndata: {payload}\n\n".encode())
        while not broadcast.closing:
            update = await broadcast.after(revision, HEARTBEAT_SECONDS)
            if broadcast.closing:
                break
            if update is None:
                await response.write(b": still here\n\n")
                continue
            revision, payload = update
            await response.write(f"event: snapshot\ndata: {payload}\n\n".encode())
    except ConnectionResetError:
        pass  # the page went away
    return response


async def _follow(app: web.Application, interval: float) -> None:
    """Poll the chain on the worker thread and publish each change."""
    loop = asyncio.get_running_loop()
    tracker = app[TRACKER_KEY]
    worker = app[WORKER_KEY]
    published = -1
    while True:
        try:
            await loop.run_in_executor(worker, tracker.poll)
            if tracker.revision != published:
                data = await loop.run_in_executor(worker, tracker.snapshot)
                await app[BROADCAST_KEY].publish(json.dumps(data, separators=(",", ":")))
                published = tracker.revision
        except Exception:  # a bug must not stop the page: log it and try again
            logger.exception("dashboard: polling failed")
        await asyncio.sleep(interval)


def make_app(tracker: Tracker, *, poll_interval: float = 1.0) -> web.Application:
    """The dashboard's aiohttp application (with its poller).

    Raises
    ------
    ConfigError
        Chart.js is not installed (``tools/setup.sh`` installs it from package-lock.json).
    """
    if not CHART_JS.exists():
        raise ConfigError(
            f"Chart.js is not installed ({CHART_JS} is missing): run `bash tools/setup.sh`"
        )
    app = web.Application()
    app[TRACKER_KEY] = tracker
    app[WORKER_KEY] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dashboard-chain")
    app[BROADCAST_KEY] = Broadcast()
    app.router.add_get("/", index)
    app.router.add_get("/vendor/chart.umd.min.js", chart_library)
    app.router.add_get("/api/snapshot", snapshot)
    app.router.add_get("/api/stream", stream)
    app.router.add_static("/static/", STATIC_DIR)

    async def follow_in_background(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_follow(app, poll_interval))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        app[WORKER_KEY].shutdown(wait=True)

    async def end_streams(app: web.Application) -> None:
        await app[BROADCAST_KEY].close()

    app.cleanup_ctx.append(follow_in_background)
    app.on_shutdown.append(end_streams)
    return app


def serve(
    tracker: Tracker,
    *,
    host: str = "127.0.0.1",
    port: int,
    poll_interval: float = 1.0,
    banner: str | None = None,
) -> None:
    """Run the dashboard until interrupted (``banner``: printed once it accepts connections)."""
    run_until_interrupted(
        make_app(tracker, poll_interval=poll_interval),
        host=host,
        port=port,
        banner=banner,
        shutdown_timeout=2.0,
    )
