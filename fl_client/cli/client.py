"""``client``: one participant (one account, one process) of a deployment for its rounds: train,
submit on the deployment's path, close when it is the designated closer, print each outcome."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from fl_client.cli.options import (
    add_fl_options,
    add_network,
    client_account,
    deployment_settings,
    private_key,
)
from fl_client.config import load_config
from fl_client.errors import ConfigError

if TYPE_CHECKING:  # the chain side is imported when a command runs
    from fl_client.chain import DeploymentRecord


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``client`` to the command line."""
    client = commands.add_parser("client", help="run one participant (one account) for R rounds")
    add_network(client)
    add_fl_options(client)
    client.add_argument(
        "--account", type=int, required=True, help="client index I (its shard and account)"
    )
    client.add_argument("--poll", type=float, default=0.5, help="seconds between round polls")
    client.add_argument(
        "--key-env",
        help="environment variable holding this client's private key (one key per process on a "
        "remote network; default: the node's accounts, or wallets.from_key)",
    )
    client.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for a round")
    client.add_argument(
        "--relay-url",
        help="hand signed updates to the relay at this URL (gasless; plain mode) instead of submitting",
    )
    client.add_argument(
        "--fallback-margin",
        type=int,
        default=60,
        help="seconds before the deadline at which a relayed client submits directly if the relay "
        "has not registered its update",
    )
    client.set_defaults(handler=run)


def secret_name(network: str, record: DeploymentRecord, account: str) -> str:
    """The file name of a client's secret: named by the deployment, not only its address, since a
    node restarted without its state can put a new deployment at the same address, and masking
    keys and salts must not repeat across deployments."""
    deployment = record.address + (f"-{record.block_hash[2:18]}" if record.block_hash else "")
    return f"{network}-{deployment}-{account}.key"


def run(args: argparse.Namespace) -> int:
    """Run one participant of the deployment for its rounds."""
    from fl_client.chain import CoordinatorView, connect, open_deployment
    from fl_client.client_secret import load_secret
    from fl_client.closer import closer_for
    from fl_client.node import state_dir
    from fl_client.participant import Participant, RoundOutcome
    from fl_client.paths import PathContext, RelayedPath, own_words_first, path_for
    from fl_client.privacy_setup import client_trainer, privacy_setup
    from fl_client.relay import RelayClient
    from fl_client.runner import ParticipantLoop
    from fl_client.simulation import data_spec, task_of, tier_label, train_config

    project = load_config()
    name, record, fl = deployment_settings(project, args, "client")
    if not 0 <= args.account < fl.clients:
        raise ConfigError(
            f"--account must be in 0..{fl.clients - 1} (the deployment has {fl.clients} clients)"
        )
    chain = connect(name, config=project, private_key=private_key(args.key_env))
    if chain.chain_id() != record.chain_id:
        raise ConfigError(
            f"the deployment record is for chain {record.chain_id}, the node is {chain.chain_id()}"
        )
    account = client_account(chain.accounts, args.account)
    contract = open_deployment(chain, record)
    view = CoordinatorView.read(chain, contract)
    task = task_of(fl)
    # A random secret kept beside the node records: salts, masks and DP noise come from it, and a
    # restarted process reads the same one back.
    secret = load_secret(state_dir() / "secrets" / secret_name(name, record, account))
    setup = privacy_setup(fl, config=train_config(fl), with_ledger=False)
    trainer = client_trainer(
        setup,
        task,
        client=args.account,
        spec=data_spec(fl),
        config=train_config(fl),
        seed=fl.seed,
        secret=secret,
    )
    context = PathContext(chain, contract, account, view, secret)
    relay = RelayClient(args.relay_url) if args.relay_url else None
    path = path_for(context, relay, fallback_margin=args.fallback_margin)
    participant = Participant(
        chain=chain,
        contract=contract,
        account=account,
        client_id=args.account,
        trainer=trainer,
        path=path,
        view=view,
        secret=secret,
        privacy=setup.update,
    )
    prefix = f"[client {args.account} {account[:10]}]"
    print(
        f"{prefix} task {task.name}, {trainer.num_weights:,} weights, {path.name} path on {name}"
        + (
            f", {fl.privacy.level}-level DP (C={fl.privacy.clip_norm}, "
            f"sigma={fl.privacy.noise_multiplier})"
            if fl.privacy.dp
            else ""
        )
    )

    def show(outcome: RoundOutcome) -> None:
        print(
            f"{prefix} round {outcome.round_number}: distance {outcome.distance:,}, tier "
            f"{tier_label(outcome.tier)}, reward {outcome.reward_wei} wei, gas {outcome.gas_used:,}"
        )
        sys.stdout.flush()

    def closed(round_number: int, gas: int) -> None:
        print(f"{prefix} closed round {round_number} (gas {gas:,})")
        sys.stdout.flush()

    closer = closer_for(
        chain=chain,
        contract=contract,
        account=account,
        view=view,
        relayed_words=own_words_first(path.words, relay.words)
        if isinstance(path, RelayedPath) and relay is not None
        else None,
    )
    loop = ParticipantLoop(
        participant,
        closer,
        clients=fl.clients,
        poll_interval=args.poll,
        timeout=args.timeout,
        on_outcome=show,
        on_close=closed,
    )
    loop.run(fl.rounds)
    print(f"{prefix} done after round {fl.rounds}")
    return 0
