"""``node``: a local anvil, in the foreground (Ctrl-C stops it) or detached (``--background``,
``--stop``)."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

from fl_client.cli.options import add_network
from fl_client.config import load_config
from fl_client.errors import ConfigError


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``node`` to the command line."""
    node = commands.add_parser("node", help="start a local anvil node (Ctrl-C stops it)")
    add_network(node, "anvil")
    node.add_argument("--port", type=int, help="port on 127.0.0.1 (default: from the config)")
    node.add_argument("--block-time", type=int, help="seconds per block (default: instant mining)")
    node.add_argument("--accounts", type=int, help="funded accounts (default: from the config)")
    node.add_argument(
        "--state", type=Path, help="load the chain from this file and save it there on exit"
    )
    lifetime = node.add_mutually_exclusive_group()
    lifetime.add_argument(
        "--background",
        action="store_true",
        help="start the node detached, return once it answers (stop it with --stop)",
    )
    lifetime.add_argument(
        "--stop", action="store_true", help="stop the node started with --background"
    )
    node.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Start (or stop) the configured anvil."""
    from fl_client.node import start_anvil, stop_node

    project = load_config()
    network = project.network(args.network or "anvil")
    if network.is_embedded:
        raise ConfigError(
            "the embedded chain needs no node; choose a network with cmd_settings (anvil)"
        )

    if args.stop:
        from fl_client.node import stop_recorded_node

        stopped = stop_recorded_node(network.name)
        print(
            f"stopped the {network.name} node (pid {stopped.pid})"
            if stopped
            else f"no {network.name} node was running"
        )
        return 0
    if args.background:
        _, info = start_anvil(
            network,
            port=args.port,
            block_time=args.block_time,
            accounts=args.accounts,
            state=args.state,
            detach=True,
        )
        print(
            f"anvil running on {info.url} (pid {info.pid}, chain id {network.expected_chain_id()}); "
            f"stop it with `python -m fl_client node --stop`"
        )
        return 0

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # Installed before anvil starts: a shell that runs `... node &` starts it ignoring SIGINT,
    # and a signal during the start must not orphan anvil.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    process, info = start_anvil(
        network,
        port=args.port,
        block_time=args.block_time,
        accounts=args.accounts,
        state=args.state,
    )
    try:
        print(
            f"anvil running on {info.url} (pid {info.pid}, chain id {network.expected_chain_id()}, "
            f"block time {info.block_time or 'instant'}); Ctrl-C stops it"
        )
        sys.stdout.flush()
        while process.poll() is None:
            time.sleep(0.2)
        print(f"anvil exited with code {process.returncode}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        stop_node(process, info)
        print("anvil stopped")
        return 0
