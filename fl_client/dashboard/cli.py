"""The ``dashboard`` command: ``python -m fl_client dashboard --network NAME [--port PORT]``.

``add_parser`` adds it to the project's command line; ``main`` runs it alone
(``python -m fl_client.dashboard --network NAME``). Like the rest of the command line, this is the
only part of the dashboard that prints.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from collections.abc import Sequence

from fl_client.errors import ConfigError, FLError

DEFAULT_PORT = 8700
HOST = "127.0.0.1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options."""
    parser.add_argument(
        "--network",
        help="the network of the deployment, from brownie-config.yaml (a node: anvil, remote)",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port on {HOST} (default {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--poll", type=float, default=1.0, help="seconds between reads of the chain (default 1)"
    )
    parser.add_argument(
        "--rpc-url",
        help="the node's JSON-RPC URL (default: the node `python -m fl_client node` started for "
        "the network, else the configured URL)",
    )
    parser.add_argument(
        "--no-eval", action="store_true", help="do not evaluate the models' test accuracy"
    )


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``dashboard`` to the project's command line (its handler is :func:`cmd_dashboard`)."""
    parser = subparsers.add_parser(
        "dashboard",
        help="serve a live page of the federation (rounds, model, rewards, pool) on 127.0.0.1",
    )
    add_arguments(parser)
    parser.set_defaults(handler=cmd_dashboard)


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Serve the dashboard of ``--network``'s deployment until interrupted.

    Raises
    ------
    ConfigError
        The network has no node (embedded), the port is not one, or it is in use.
    DeploymentNotFoundError
        The network has no deployment record.
    """
    from fl_client.chain import read_record
    from fl_client.compile import get_contract
    from fl_client.config import load_config
    from fl_client.dashboard.server import serve
    from fl_client.dashboard.tracker import Tracker
    from fl_client.node import port_is_free, read_node_record

    project = load_config()
    settings = project.network(args.network)
    if settings.is_embedded:
        raise ConfigError(
            "the dashboard reads a chain that outlives its process; the embedded chain lives "
            "inside one. Start a node with `python -m fl_client node`, deploy with "
            "`--network anvil`, and pass `--network anvil`."
        )
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be in 1..65535, got {args.port}")
    if args.poll <= 0:
        raise ConfigError(f"--poll must be positive, got {args.poll}")
    busy = ConfigError(
        f"port {args.port} on {HOST} is in use (another dashboard, a relay or a node?): "
        "choose another with --port"
    )
    if not port_is_free(args.port):
        raise busy
    record = read_record(settings.name)
    started = read_node_record(settings.name)
    url = args.rpc_url or (started.url if started is not None else settings.url)
    tracker = Tracker(
        record=record,
        url=url,
        abi=get_contract("FLCoordinator").abi,
        network=settings.name,
        evaluate=not args.no_eval,
    )
    banner = (
        f"dashboard of the coordinator {record.address} on {settings.name} (node {url}): "
        f"http://{HOST}:{args.port}/  (Ctrl-C stops it)"
    )
    try:
        serve(tracker, host=HOST, port=args.port, poll_interval=args.poll, banner=banner)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise busy from exc
        raise
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fl_client.dashboard``: run the command alone; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m fl_client.dashboard", description=__doc__.splitlines()[0]
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the dashboard does")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        return cmd_dashboard(args)
    except FLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
