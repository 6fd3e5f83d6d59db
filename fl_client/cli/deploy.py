"""``deploy``: a coordinator for the configured task on a node, and its deployment record (the
data split, model, training and privacy settings every client of it shares)."""

from __future__ import annotations

import argparse
import sys

from fl_client.cli.options import add_fl_options, add_network, fl_overrides, require_rpc
from fl_client.config import load_config


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``deploy`` to the command line."""
    deploy = commands.add_parser(
        "deploy", help="deploy a coordinator and write the deployment record"
    )
    add_network(deploy)
    add_fl_options(deploy)
    deploy.add_argument("--zero-model", action="store_true", help="start from a zero model")
    deploy.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Deploy a coordinator and write its record."""
    from dataclasses import asdict

    from fl_client.chain import DeploymentRecord, DeployParams, connect, deploy, write_record
    from fl_client.codec import encode
    from fl_client.model import get_flat_parameters
    from fl_client.privacy_setup import privacy_setup
    from fl_client.simulation import data_spec, task_of, train_config

    project = load_config()
    name = require_rpc(project, args.network, "deploy")
    fl = fl_overrides(project, args)
    task = task_of(fl)  # checked before anything is sent
    chain = connect(name, config=project)
    model = task.model(seed=fl.seed)
    words, _ = encode(get_flat_parameters(model), fl.fixed_point)
    sizes = None
    if fl.privacy.dp and fl.privacy.level == "sample" and fl.privacy.epsilon_budget > 0:
        spec = data_spec(fl)  # the ledger charges what the most spending client spends
        sizes = [len(task.client_data(i, spec)) for i in range(fl.clients)]
    setup = privacy_setup(fl, config=train_config(fl), data_sizes=sizes)
    params = DeployParams.from_config(
        fl,
        num_weights=get_flat_parameters(model).size,
        clients=fl.clients,
        tx_gas_cap=chain.tx_gas_cap,
        ledger=setup.ledger,
    )
    contract = deploy(
        chain,
        params,
        initial_words=None if args.zero_model else words,
        pool_wei=fl.rewards.pool_wei,
    )
    block = chain.w3.eth.get_block("latest")
    record = DeploymentRecord(
        network=name,
        chain_id=chain.chain_id(),
        address=str(contract.address),
        block_number=int(block["number"]),
        block_hash="0x" + bytes(block["hash"]).hex(),
        num_weights=params.num_weights,
        dataset=fl.dataset,
        deployer=chain.accounts[0],
        clients=fl.clients,
        rounds=fl.rounds,
        partition=fl.partition,
        dirichlet_alpha=fl.dirichlet_alpha,
        seed=fl.seed,
        test_fraction=fl.test_fraction,
        hidden_layers=list(fl.hidden_layers),
        task=task.reference,
        training={
            "epochs": fl.epochs,
            "batch_size": fl.batch_size,
            "learning_rate": fl.learning_rate,
            "algorithm": fl.algorithm,
        },
        privacy=asdict(fl.privacy),
    )
    path = write_record(record)
    print(contract.address)
    print(
        f"deployed FLCoordinator for {task.name} ({params.num_weights:,} weights in "
        f"{-(-params.num_weights // 16 // params.words_per_segment) or 1} segment(s), "
        f"{params.target_submissions} submissions per round, {params.mode} mode) on {name}; "
        f"record written to {path}",
        file=sys.stderr,
    )
    return 0
