"""``relay``: carries signed updates of gasless clients to the chain (an HTTP server on 127.0.0.1)."""

from __future__ import annotations

import argparse

from fl_client.cli.options import add_network, client_account, private_key, require_rpc
from fl_client.config import load_config
from fl_client.errors import ConfigError


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``relay`` to the command line."""
    relay = commands.add_parser(
        "relay", help="run a relay: clients hand it signed updates over HTTP"
    )
    add_network(relay)
    relay.add_argument("--port", type=int, default=8600, help="port on 127.0.0.1 (default 8600)")
    relay.add_argument(
        "--account",
        type=int,
        default=-1,
        help="node account index paying the gas (default: the deployer, -1)",
    )
    relay.add_argument("--key-env", help="environment variable holding the relay's private key")
    relay.add_argument("--poll", type=float, default=0.5, help="seconds between chain polls")
    relay.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Serve a relay for the deployment until interrupted."""
    from fl_client.chain import CoordinatorView, connect, open_deployment, read_record
    from fl_client.node import port_is_free
    from fl_client.relay import Relay
    from fl_client.relay.server import serve

    project = load_config()
    name = require_rpc(project, args.network, "relay")
    record = read_record(name)
    if not port_is_free(args.port):
        raise ConfigError(f"port {args.port} on 127.0.0.1 is in use: choose another with --port")
    chain = connect(name, config=project, private_key=private_key(args.key_env))
    account = (
        chain.accounts[0]
        if len(chain.accounts) == 1
        else client_account(chain.accounts, args.account)
    )
    contract = open_deployment(chain, record)
    relay = Relay(
        chain=chain, contract=contract, account=account, view=CoordinatorView.read(chain, contract)
    )
    banner = (
        f"relay for {record.address} on {name}, paying from {account}: http://127.0.0.1:{args.port}"
    )
    serve(relay, port=args.port, poll_interval=args.poll, banner=banner)
    return 0
