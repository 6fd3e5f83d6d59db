"""``withdraw``: a client pulls its credited rewards (a pull payment)."""

from __future__ import annotations

import argparse

from fl_client.cli.options import add_network, client_account, private_key, require_rpc
from fl_client.config import load_config


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``withdraw`` to the command line."""
    withdraw = commands.add_parser("withdraw", help="pull client I's credited rewards")
    add_network(withdraw)
    withdraw.add_argument("--account", type=int, required=True, help="client index I")
    withdraw.add_argument("--key-env", help="environment variable holding the private key")
    withdraw.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Pull the client's credit."""
    from fl_client.chain import connect, open_deployment, read_record, send

    project = load_config()
    name = require_rpc(project, args.network, "withdraw")
    record = read_record(name)
    chain = connect(name, config=project, private_key=private_key(args.key_env))
    account = client_account(chain.accounts, args.account)
    contract = open_deployment(chain, record)
    amount = int(contract.functions.credit(account).call())
    receipt = send(chain, contract.functions.withdraw(), account, what="withdraw")
    print(f"{account} withdrew {amount} wei (gas {int(receipt['gasUsed']):,})")
    return 0
