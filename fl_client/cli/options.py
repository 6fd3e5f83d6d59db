"""What several commands share: the federated-learning flags over brownie-config.yaml, the
network option, accounts and keys, and the settings a deployment record fixes for its clients."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from fl_client.chain import private_key_account
from fl_client.config import REWARD_REFERENCES, FLConfig, PrivacyConfig, ProjectConfig
from fl_client.errors import ConfigError

DEFAULT_OUT = Path("out")


def fl_overrides(project: ProjectConfig, args: argparse.Namespace) -> FLConfig:
    """The federated-learning settings of brownie-config.yaml with the command's flags over them."""
    fl = project.fl
    contract = {
        name: getattr(args, name)
        for name in ("mode", "reward_reference", "trim_each")
        if getattr(args, name, None) is not None
    }
    if contract:
        fl = replace(fl, contract=replace(fl.contract, **contract))
    dp_flags = ("noise_multiplier", "dp_level", "epsilon_budget")
    if getattr(args, "dp", False) or any(getattr(args, f, None) is not None for f in dp_flags):
        privacy = replace(fl.privacy, dp=True)
        if getattr(args, "dp_level", None) is not None:
            privacy = replace(privacy, level=args.dp_level)
        if getattr(args, "epsilon_budget", None) is not None:
            privacy = replace(privacy, epsilon_budget=args.epsilon_budget)
        if getattr(args, "noise_multiplier", None) is not None:
            privacy = replace(privacy, noise_multiplier=args.noise_multiplier)
        if getattr(args, "clip_norm", None) is not None:
            privacy = replace(privacy, clip_norm=args.clip_norm)
        fl = replace(fl, privacy=privacy)
    hidden = getattr(args, "hidden", None)
    return fl.with_overrides(
        dataset=getattr(args, "dataset", None),
        task=getattr(args, "task", None),
        hidden_layers=None if hidden is None else tuple(hidden),
        relayed_clients=getattr(args, "relayed", None),
        clients=getattr(args, "clients", None),
        rounds=getattr(args, "rounds", None),
        epochs=getattr(args, "epochs", None),
        batch_size=getattr(args, "batch_size", None),
        learning_rate=getattr(args, "lr", None),
        partition=getattr(args, "partition", None),
        dirichlet_alpha=getattr(args, "alpha", None),
        fraction=getattr(args, "fraction", None),
        seed=getattr(args, "seed", None),
    )


def add_fl_options(parser: argparse.ArgumentParser) -> None:
    """The federated-learning flags (each overrides its setting in brownie-config.yaml)."""
    group = parser.add_argument_group("federated learning (defaults from brownie-config.yaml)")
    group.add_argument("--dataset", choices=["digits", "mnist5k"])
    group.add_argument(
        "--task",
        help="your own model and data: a task module (mypackage.task) or file "
        "(examples/mnist_cnn/task.py); default: the built-in task of --dataset",
    )
    group.add_argument(
        "--hidden",
        type=int,
        nargs="*",
        metavar="WIDTH",
        help="hidden layer widths of an MLP (none: softmax regression)",
    )
    group.add_argument("--clients", type=int, help="number of participants N")
    group.add_argument(
        "--relayed", type=int, help="of them, how many hand signed updates to a relay (plain mode)"
    )
    group.add_argument("--rounds", type=int, help="number of rounds R")
    group.add_argument("--epochs", type=int, help="local epochs E")
    group.add_argument("--batch-size", type=int, help="local batch size B (0: full batch)")
    group.add_argument("--lr", type=float, help="learning rate")
    group.add_argument("--partition", choices=["iid", "dirichlet"])
    group.add_argument("--alpha", type=float, help="Dirichlet concentration for non-IID shards")
    group.add_argument("--fraction", type=float, help="fraction C of clients per round")
    group.add_argument("--seed", type=int)
    group.add_argument(
        "--mode",
        choices=["plain", "commit_reveal", "secure_aggregation"],
        help="submission mode of the contract",
    )
    group.add_argument(
        "--reward-reference",
        choices=list(REWARD_REFERENCES),
        help="what a reward is measured from: the current model, the new one, or the progress "
        "along the round's step",
    )
    group.add_argument(
        "--trim-each",
        type=int,
        help="aggregation mean: values of each weight the average leaves out at each end "
        "(coordinate-wise trimmed mean; 0: the plain mean)",
    )
    group.add_argument("--dp", action="store_true", help="client-side differential privacy on")
    group.add_argument(
        "--dp-level",
        choices=["update", "sample"],
        help="DP on the whole update, or per example with DP-SGD (implies --dp)",
    )
    group.add_argument(
        "--epsilon-budget",
        type=float,
        help="the contract refuses a client's participation beyond this epsilon (implies --dp)",
    )
    group.add_argument(
        "--noise-multiplier", type=float, help="DP noise multiplier sigma (implies --dp)"
    )
    group.add_argument("--clip-norm", type=float, help="DP clipping norm C of an update")


def add_network(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    """The ``--network`` option."""
    parser.add_argument(
        "--network",
        default=default,
        help="a network from brownie-config.yaml (default: its `networks.default`)",
    )


def private_key(variable: str | None) -> str | None:
    """The private key held in environment variable ``variable`` (``--key-env``), if one is named."""
    if variable is None:
        return None
    key = os.environ.get(variable)
    if not key:
        raise ConfigError(f"environment variable {variable} (--key-env) is not set")
    private_key_account(key, source=f"environment variable {variable} (--key-env)")  # checked early
    return key


def client_account(accounts: Sequence[str], index: int) -> str:
    """The account of client ``index``: the only one when a private key was given, else the
    node's account ``1 + index`` (account 0 deploys; index -1 names it)."""
    if len(accounts) == 1:
        return accounts[0]
    if index < -1:
        raise ConfigError(
            f"--account must be -1 (the deployer) or a client index from 0 (got {index})"
        )
    if not index < len(accounts) - 1:
        raise ConfigError(
            f"client {index} needs the node's account {1 + index}, but it manages {len(accounts)}: "
            "start the node with more accounts (--accounts) or give a key with --key-env"
        )
    return accounts[1 + index]


def require_rpc(project: ProjectConfig, network: str | None, command: str) -> str:
    """The name of ``network``, which must be a node: ``command`` needs a chain that outlives the
    process."""
    settings = project.network(network)
    if settings.is_embedded:
        raise ConfigError(
            f"`{command}` needs a chain that outlives this process; the embedded chain lives inside "
            "one process. Start a node with `python -m fl_client node` and pass `--network anvil`, "
            "or run everything in one process with `python -m fl_client simulate`."
        )
    return settings.name


def deployment_settings(
    project: ProjectConfig, args: argparse.Namespace, command: str
) -> tuple[Any, Any, FLConfig]:
    """The deployment record of ``--network`` and the federated-learning settings it fixes: every
    client process must split the data and build the model the same way."""
    from fl_client.chain import read_record

    name = require_rpc(project, args.network, command)
    record = read_record(name)
    fl = fl_overrides(project, args)
    fixed = {
        "clients": record.clients,
        "partition": record.partition,
        "dirichlet_alpha": record.dirichlet_alpha,
        "seed": record.seed,
        "test_fraction": record.test_fraction,
        "dataset": record.dataset,
        "hidden_layers": tuple(record.hidden_layers),
        "task": record.task or record.dataset,
    }
    flags = {"dirichlet_alpha": "alpha", "hidden_layers": "hidden"}
    for key, value in fixed.items():
        given = getattr(args, flags.get(key, key), None)
        if given is not None and (tuple(given) if key == "hidden_layers" else given) != value:
            raise ConfigError(
                f"--{flags.get(key, key).replace('_', '-')} {given} differs from the deployment's "
                f"{value}: every client must use the deployment's data split and model"
            )
    fl = fl.with_overrides(rounds=args.rounds or record.rounds or None, **fixed)
    training_flags = {"epochs": "epochs", "batch_size": "batch_size", "learning_rate": "lr"}
    for key, value in record.training.items():
        given = getattr(args, training_flags.get(key, key), None)
        if given is not None and given != value:
            raise ConfigError(
                f"--{training_flags.get(key, key).replace('_', '-')} {given} differs from the "
                f"deployment's {value}: every client trains with the deployment's settings"
            )
    if record.training:
        fl = replace(fl, **record.training)
    if record.privacy:
        fl = replace(fl, privacy=PrivacyConfig(**record.privacy))
    return name, record, fl
