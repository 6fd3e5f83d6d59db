"""``query``: where a deployment is (round, phase, deadline), its global model (summary, hash, test
accuracy) and the credits of its accounts, from free calls and events."""

from __future__ import annotations

import argparse
import time

import numpy as np

from fl_client.cli.options import add_network, client_account, require_rpc
from fl_client.config import load_config


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``query`` to the command line."""
    query = commands.add_parser("query", help="round status, the global model and rewards")
    add_network(query)
    who = query.add_mutually_exclusive_group()
    who.add_argument("--account", type=int, help="rewards of client I")
    who.add_argument(
        "--all",
        action="store_true",
        help="credits of every account that submitted, relayed or closed",
    )
    query.add_argument("--no-eval", action="store_true", help="skip the test-accuracy evaluation")
    query.set_defaults(handler=run)


def _when(deadline: int, now: int) -> str:
    moment = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(deadline))
    return (
        f"{moment} (in {deadline - now} s)"
        if deadline >= now
        else f"{moment} (passed {now - deadline} s ago)"
    )


# Events that name an account the contract credits or may credit: submissions on every path
# (direct, relayed, revealed, masked) and closes.
_ACCOUNT_EVENTS = (
    ("SubmissionAccepted", "client"),
    ("UpdateRelayed", "client"),
    ("MaskedSubmitted", "client"),
    ("UpdateRelayed", "relayer"),
    ("SegmentClosed", "closer"),
)


def run(args: argparse.Namespace) -> int:
    """Print the deployment's round, model and credits."""
    from fl_client.chain import connect, open_deployment, read_model_words, read_record, read_round
    from fl_client.codec import dequantize, unpack, vector_hash
    from fl_client.config import FixedPointFormat
    from fl_client.evaluation import Evaluator

    project = load_config()
    name = require_rpc(project, args.network, "query")
    record = read_record(name)
    chain = connect(name, config=project)
    contract = open_deployment(chain, record)
    info = read_round(contract)
    functions = contract.functions
    print(f"coordinator {record.address} on {name} (chain id {record.chain_id})")
    print(
        f"round {info.number} ({info.phase}): {info.submissions}/{functions.targetSubmissions().call()} "
        f"submissions (min {functions.minSubmissions().call()}), deadline "
        f"{_when(info.deadline, chain.timestamp())}"
    )
    words = read_model_words(contract)
    version = int(functions.modelVersion().call())
    fmt = FixedPointFormat(int(functions.scale().call()), int(functions.maxAbsWeight().call()))
    weights = dequantize(unpack(words, record.num_weights), fmt)
    print(
        f"global model v{version}: {record.num_weights:,} weights, "
        f"min {weights.min():+.4f} max {weights.max():+.4f} mean |w| {np.abs(weights).mean():.4f}, "
        f"hash 0x{vector_hash(words, int(functions.wordsPerSegment().call())).hex()}"
    )
    if not args.no_eval:
        accuracy = Evaluator(record, fmt).accuracy(version, words)
        print(
            f"test accuracy of the global model on {record.task or record.dataset}: {100 * accuracy:.2f}%"
        )
    funded, credited, withdrawn = (
        int(functions.totalFunded().call()),
        int(functions.totalCredited().call()),
        int(functions.totalWithdrawn().call()),
    )
    print(
        f"pool: funded {funded} wei, credited {credited} wei, withdrawn {withdrawn} wei, "
        f"available {funded - credited} wei"
    )
    if args.account is not None:
        accounts = [client_account(chain.accounts, args.account)]
    elif args.all:
        found: set[str] = set()
        for event, field in _ACCOUNT_EVENTS:
            logs = getattr(contract.events, event)().get_logs(from_block=record.block_number)
            found.update(str(log["args"][field]) for log in logs)
        accounts = sorted(found)
    else:
        accounts = []
    _, _, budget = functions.privacyLedger().call()
    if budget:
        print(f"privacy ledger: epsilon budget {budget / 1e6:g} per client")
    for account in accounts:
        line = f"  {account}: credit {functions.credit(account).call()} wei"
        if budget:
            spent = int(functions.epsilonSpent(account).call())
            line += (
                f", epsilon spent {spent / 1e6:.3f} of {budget / 1e6:g} "
                f"({functions.participations(account).call()} participations)"
            )
        print(line)
    return 0
