"""The command line: ``python -m fl_client <command>`` (also ``scripts/*.py``).

Commands, one module each: ``simulate`` (the main job), ``node`` (a local anvil), ``deploy``,
``client`` (one participant per account and process), ``relay`` (carries signed updates for
gasless clients), ``dashboard`` (one live page for a deployment), ``query`` (rounds, model,
rewards) and ``withdraw``. Each module has ``add_parser`` (its options) and ``run`` (the command);
every command takes ``--network``. ``main(argv)`` returns the exit code, so it is testable without
a shell; the command line is the only part of the package that prints.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import requests

from fl_client import __version__
from fl_client.cli import client, deploy, node, query, relay, simulate, withdraw
from fl_client.cli.options import client_account, deployment_settings, fl_overrides
from fl_client.errors import FLError

__all__ = [
    "build_parser",
    "client_account",
    "deployment_settings",
    "entrypoint",
    "fl_overrides",
    "main",
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    from fl_client.dashboard.cli import add_parser as add_dashboard_parser

    parser = argparse.ArgumentParser(
        prog="python -m fl_client", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--version", action="version", version=f"fl_client {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the package does")
    commands = parser.add_subparsers(dest="command", required=True)
    for module in (simulate, node, deploy, client, relay, withdraw):
        module.add_parser(commands)
    add_dashboard_parser(commands)
    query.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; return its exit code (0 success, 1 failure, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        return int(args.handler(args))
    except FLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (requests.ConnectionError, requests.Timeout) as exc:
        # A node that went away between two calls that do not retry.
        print(f"error: the node stopped answering ({type(exc).__name__})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Nothing is lost: a restarted client reads its progress from the chain.
        print("interrupted: run the command again to resume", file=sys.stderr)
        return 130


def entrypoint() -> None:
    """Console-script entry point."""
    sys.exit(main())
