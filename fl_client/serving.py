"""Running an aiohttp application (the relay, the dashboard) in the foreground."""

from __future__ import annotations

from typing import Any

from aiohttp import web


def run_until_interrupted(
    app: web.Application, *, host: str, port: int, banner: str | None = None, **options: Any
) -> None:
    """``web.run_app`` until Ctrl-C or SIGTERM; ``banner`` is printed (and flushed) once the site
    accepts connections, so that a URL in it answers as soon as it is read."""

    def announce(_aiohttp_banner: str) -> None:
        print(banner, flush=True)

    web.run_app(app, host=host, port=port, print=None if banner is None else announce, **options)
