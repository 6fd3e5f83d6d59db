"""The command line: ``python -m fl_client <command>`` (also ``scripts/*.py``).

Commands: ``simulate`` (the main job), ``node`` (start a local anvil), ``deploy``, ``client`` (one
participant per account and process), ``relay`` (carries signed updates for gasless clients),
``dashboard`` (one live page for a deployment), ``query`` (rounds, model, rewards), ``withdraw``.
Every command takes
``--network``. ``main(argv)`` returns the exit code, so it is testable without a shell; this is
the only module that prints.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from fl_client import __version__
from fl_client.config import FLConfig, PrivacyConfig, ProjectConfig, load_config
from fl_client.errors import ConfigError, FLError

logger = logging.getLogger("fl_client")

DEFAULT_OUT = Path("out")


# ---------------------------------------------------------------- helpers


def _fl_overrides(project: ProjectConfig, args: argparse.Namespace) -> FLConfig:
    fl = project.fl
    mode = getattr(args, "mode", None)
    if mode is not None:
        fl = replace(fl, contract=replace(fl.contract, mode=mode))
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


def _add_fl_options(parser: argparse.ArgumentParser) -> None:
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


def _add_network(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    parser.add_argument(
        "--network",
        default=default,
        help="a network from brownie-config.yaml (default: its `networks.default`)",
    )


def _private_key(variable: str | None) -> str | None:
    """The private key held in environment variable ``variable`` (``--key-env``), if one is named."""
    if variable is None:
        return None
    key = os.environ.get(variable)
    if not key:
        raise ConfigError(f"environment variable {variable} (--key-env) is not set")
    return key


def client_account(accounts: Sequence[str], index: int) -> str:
    """The account of client ``index``: the only one when a private key was given, else the
    node's account ``1 + index`` (account 0 deploys; index -1 names it)."""
    if len(accounts) == 1:
        return accounts[0]
    if index < -1:
        raise ConfigError(f"--account must be a client index, 0 or more (got {index})")
    if not index < len(accounts) - 1:
        raise ConfigError(
            f"client {index} needs the node's account {1 + index}, but it manages {len(accounts)}: "
            "start the node with more accounts (--accounts) or give a key with --key-env"
        )
    return accounts[1 + index]


def _require_rpc(project: ProjectConfig, network: str | None, command: str) -> str:
    settings = project.network(network)
    if settings.is_embedded:
        raise ConfigError(
            f"`{command}` needs a chain that outlives this process; the embedded chain lives inside "
            "one process. Start a node with `python -m fl_client node` and pass `--network anvil`, "
            "or run everything in one process with `python -m fl_client simulate`."
        )
    return settings.name


# ---------------------------------------------------------------- simulate


def cmd_simulate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from fl_client.report import format_table, table_rows, write_outputs
    from fl_client.simulation import run_simulation, task_of

    project = load_config()
    fl = _fl_overrides(project, args)
    task = task_of(fl)  # a task that misses a piece fails here, before the run
    selected = max(1, round(fl.clients * fl.fraction))
    total = fl.rounds * selected
    print(
        f"Federated run on the {args.network or project.default_network} chain: {fl.task_reference}, "
        f"{fl.clients} clients x {fl.rounds} rounds, E={fl.epochs} B={fl.batch_size} lr={fl.learning_rate}, "
        f"{fl.partition} shards, {fl.contract.mode} mode"
        + (f", {fl.relayed_clients} relayed" if fl.relayed_clients else "")
        + (
            f", DP (C={fl.privacy.clip_norm}, sigma={fl.privacy.noise_multiplier})"
            if fl.privacy.dp
            else ""
        )
    )
    # No bar when the output goes to a file: a redirected log would fill with its redraws.
    quiet = args.quiet or not sys.stderr.isatty()
    with tqdm(total=total, unit="submission", disable=quiet, dynamic_ncols=True) as bar:

        def progress(message: str) -> None:
            if "submitted" in message:
                bar.update(1)
            bar.set_postfix_str(message)

        result = run_simulation(
            fl,
            project=project,
            network=args.network or project.default_network,
            tolerance_pp=args.tolerance,
            check_accuracy=False,
            progress=progress,
            task=task,
        )
    header, rows = table_rows(result)
    print()
    print(format_table(header, rows))
    last = result.rounds[-1]
    print(
        f"\nfinal test accuracy: chain {100 * last.accuracy_chain:.2f}%  plain {100 * last.accuracy_plain:.2f}%"
        f"  gap {last.gap_pp:+.2f} pp (tolerance {args.tolerance} pp)"
    )
    if last.epsilon is not None:
        print(
            f"differential privacy: each client is ({last.epsilon:.2f}, {fl.privacy.delta:g})-DP after "
            f"{fl.rounds} rounds; the plain run is the non-private baseline, so the gap is the cost "
            "of privacy and is not held to the tolerance"
        )
    exact = all(r.exact_average for r in result.rounds)
    print(f"on-chain model == integer average of the submitted vectors in every round: {exact}")
    print(
        f"{result.num_weights:,} weights in {result.num_segments} segment(s), deployment gas "
        f"{result.deploy_gas:,}, {result.seconds:.1f} s in all; contract {result.contract_address}"
    )
    out = Path(args.out)
    paths = write_outputs(result, out)
    print("wrote " + ", ".join(str(p) for p in paths))
    if not fl.privacy.dp and abs(result.final_gap_pp) > args.tolerance:
        print(
            f"error: the chain-based and plain runs differ by {result.final_gap_pp:+.2f} pp, "
            f"more than {args.tolerance} pp",
            file=sys.stderr,
        )
        return 1
    if not exact:
        print("error: the on-chain model differs from the reference average", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------- node


def cmd_node(args: argparse.Namespace) -> int:
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


# ---------------------------------------------------------------- deploy


def cmd_deploy(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from fl_client.chain import DeploymentRecord, DeployParams, connect, deploy, write_record
    from fl_client.codec import encode
    from fl_client.model import get_flat_parameters
    from fl_client.privacy_setup import privacy_setup
    from fl_client.simulation import data_spec, task_of, train_config

    project = load_config()
    name = _require_rpc(project, args.network, "deploy")
    fl = _fl_overrides(project, args)
    task = task_of(fl)  # checked before anything is sent
    chain = connect(name, config=project)
    model = task.model(seed=fl.seed)
    words, _ = encode(get_flat_parameters(model), fl.fixed_point)
    sizes = None
    if fl.privacy.dp and fl.privacy.level == "sample" and fl.privacy.epsilon_budget > 0:
        spec = data_spec(fl)  # the ledger charges what the smallest client spends
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
    record = DeploymentRecord(
        network=name,
        chain_id=chain.chain_id(),
        address=str(contract.address),
        block_number=int(chain.w3.eth.block_number),
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


# ---------------------------------------------------------------- client


def _deployment(
    project: ProjectConfig, args: argparse.Namespace, command: str
) -> tuple[Any, Any, FLConfig]:
    """The deployment record of ``--network`` and the federated-learning settings it fixes: every
    client process must split the data and build the model the same way."""
    from fl_client.chain import read_record

    name = _require_rpc(project, args.network, command)
    record = read_record(name)
    fl = _fl_overrides(project, args)
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


def cmd_client(args: argparse.Namespace) -> int:
    from fl_client.chain import CoordinatorView, connect, contract_at
    from fl_client.client_secret import load_secret
    from fl_client.closer import closer_for
    from fl_client.node import state_dir
    from fl_client.participant import Participant, RoundOutcome
    from fl_client.paths import CommitRevealPath, DirectPath, MaskedPath, PathContext, RelayedPath
    from fl_client.privacy_setup import client_trainer, privacy_setup
    from fl_client.relay import RelayClient
    from fl_client.runner import ParticipantLoop
    from fl_client.simulation import data_spec, task_of, tier_label, train_config

    project = load_config()
    name, record, fl = _deployment(project, args, "client")
    if not 0 <= args.account < fl.clients:
        raise ConfigError(
            f"--account must be in 0..{fl.clients - 1} (the deployment has {fl.clients} clients)"
        )
    chain = connect(name, config=project, private_key=_private_key(args.key_env))
    if chain.chain_id() != record.chain_id:
        raise ConfigError(
            f"the deployment record is for chain {record.chain_id}, the node is {chain.chain_id()}"
        )
    account = client_account(chain.accounts, args.account)
    contract = contract_at(chain, record.address)
    view = CoordinatorView.read(chain, contract)
    task = task_of(fl)
    # A random secret kept beside the node records: salts, masks and DP noise come from it, and a
    # restarted process reads the same one back.
    secret = load_secret(state_dir() / "secrets" / f"{name}-{record.address}-{account}.key")
    setup = privacy_setup(fl, config=train_config(fl))
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
    if view.mode == "commit_reveal":
        path: Any = CommitRevealPath(context)
    elif view.mode == "secure_aggregation":
        path = MaskedPath(context)
    elif relay is not None:
        path = RelayedPath(context, relay, fallback_margin=args.fallback_margin)
    else:
        path = DirectPath(context)
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
        relayed_words=relay.words if relay is not None else None,
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


# ---------------------------------------------------------------- relay


def cmd_relay(args: argparse.Namespace) -> int:
    from fl_client.chain import CoordinatorView, connect, contract_at, read_record
    from fl_client.node import port_is_free
    from fl_client.relay import Relay
    from fl_client.relay.server import serve

    project = load_config()
    name = _require_rpc(project, args.network, "relay")
    record = read_record(name)
    if not port_is_free(args.port):
        raise ConfigError(f"port {args.port} on 127.0.0.1 is in use: choose another with --port")
    chain = connect(name, config=project, private_key=_private_key(args.key_env))
    account = (
        chain.accounts[0]
        if len(chain.accounts) == 1
        else client_account(chain.accounts, args.account)
    )
    contract = contract_at(chain, record.address)
    relay = Relay(
        chain=chain, contract=contract, account=account, view=CoordinatorView.read(chain, contract)
    )
    print(
        f"relay for {record.address} on {name}, paying from {account}: http://127.0.0.1:{args.port}"
    )
    sys.stdout.flush()
    serve(relay, port=args.port, poll_interval=args.poll)
    return 0


# ---------------------------------------------------------------- query


def _when(deadline: int, now: int) -> str:
    moment = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(deadline))
    return (
        f"{moment} (in {deadline - now} s)"
        if deadline >= now
        else f"{moment} (passed {now - deadline} s ago)"
    )


def cmd_query(args: argparse.Namespace) -> int:
    from fl_client.chain import connect, contract_at, read_model_words, read_record, read_round
    from fl_client.codec import dequantize, unpack, vector_hash
    from fl_client.config import FixedPointFormat
    from fl_client.model import set_flat_parameters
    from fl_client.tasks import DataSpec, load_task

    project = load_config()
    name = _require_rpc(project, args.network, "query")
    record = read_record(name)
    chain = connect(name, config=project)
    contract = contract_at(chain, record.address)
    info = read_round(contract)
    functions = contract.functions
    print(f"coordinator {record.address} on {name} (chain id {record.chain_id})")
    print(
        f"round {info.number} ({info.phase}): {info.submissions}/{functions.targetSubmissions().call()} "
        f"submissions (min {functions.minSubmissions().call()}), deadline "
        f"{_when(info.deadline, chain.timestamp())}"
    )
    words = read_model_words(contract)
    fmt = FixedPointFormat(int(functions.scale().call()), int(functions.maxAbsWeight().call()))
    weights = dequantize(unpack(words, record.num_weights), fmt)
    print(
        f"global model v{functions.modelVersion().call()}: {record.num_weights:,} weights, "
        f"min {weights.min():+.4f} max {weights.max():+.4f} mean |w| {np.abs(weights).mean():.4f}, "
        f"hash 0x{vector_hash(words, int(functions.wordsPerSegment().call())).hex()}"
    )
    if not args.no_eval:
        task = load_task(record.task or record.dataset, hidden_layers=record.hidden_layers)
        spec = DataSpec(
            num_clients=max(1, record.clients),
            partition=record.partition,
            dirichlet_alpha=record.dirichlet_alpha,
            seed=record.seed,
            test_fraction=record.test_fraction,
        )
        model = task.model(seed=record.seed)
        set_flat_parameters(model, weights)
        evaluation = task.evaluate(model, task.test_data(spec))
        print(f"test accuracy of the global model on {task.name}: {100 * evaluation.accuracy:.2f}%")
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
        events = contract.events.SubmissionAccepted().get_logs(from_block=record.block_number)
        accounts = sorted({str(e["args"]["client"]) for e in events})
    else:
        accounts = []
    for account in accounts:
        print(f"  {account}: credit {functions.credit(account).call()} wei")
    return 0


# ---------------------------------------------------------------- withdraw


def cmd_withdraw(args: argparse.Namespace) -> int:
    from fl_client.chain import connect, contract_at, read_record, send

    project = load_config()
    name = _require_rpc(project, args.network, "withdraw")
    record = read_record(name)
    chain = connect(name, config=project, private_key=_private_key(args.key_env))
    account = client_account(chain.accounts, args.account)
    contract = contract_at(chain, record.address)
    amount = int(contract.functions.credit(account).call())
    receipt = send(chain, contract.functions.withdraw(), account, what="withdraw")
    print(f"{account} withdrew {amount} wei (gas {int(receipt['gasUsed']):,})")
    return 0


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="python -m fl_client", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--version", action="version", version=f"fl_client {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the package does")
    commands = parser.add_subparsers(dest="command", required=True)

    simulate = commands.add_parser(
        "simulate", help="the main job: N clients x R rounds in one process"
    )
    _add_network(simulate)
    _add_fl_options(simulate)
    simulate.add_argument(
        "--out", default=str(DEFAULT_OUT / "simulation"), help="folder for JSON, CSV and plots"
    )
    simulate.add_argument("--tolerance", type=float, default=1.0, help="allowed accuracy gap in pp")
    simulate.add_argument("--quiet", action="store_true", help="no progress bar")
    simulate.set_defaults(handler=cmd_simulate)

    node = commands.add_parser("node", help="start a local anvil node (Ctrl-C stops it)")
    _add_network(node, "anvil")
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
    node.set_defaults(handler=cmd_node)

    deploy = commands.add_parser(
        "deploy", help="deploy a coordinator and write the deployment record"
    )
    _add_network(deploy)
    _add_fl_options(deploy)
    deploy.add_argument("--zero-model", action="store_true", help="start from a zero model")
    deploy.set_defaults(handler=cmd_deploy)

    client = commands.add_parser("client", help="run one participant (one account) for R rounds")
    _add_network(client)
    _add_fl_options(client)
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
    client.set_defaults(handler=cmd_client)

    relay = commands.add_parser(
        "relay", help="run a relay: clients hand it signed updates over HTTP"
    )
    _add_network(relay)
    relay.add_argument("--port", type=int, default=8600, help="port on 127.0.0.1 (default 8600)")
    relay.add_argument(
        "--account",
        type=int,
        default=-1,
        help="node account index paying the gas (default: the deployer, -1)",
    )
    relay.add_argument("--key-env", help="environment variable holding the relay's private key")
    relay.add_argument("--poll", type=float, default=0.5, help="seconds between chain polls")
    relay.set_defaults(handler=cmd_relay)

    withdraw = commands.add_parser("withdraw", help="pull client I's credited rewards")
    _add_network(withdraw)
    withdraw.add_argument("--account", type=int, required=True, help="client index I")
    withdraw.add_argument("--key-env", help="environment variable holding the private key")
    withdraw.set_defaults(handler=cmd_withdraw)

    from fl_client.dashboard.cli import add_parser as add_dashboard_parser

    add_dashboard_parser(commands)

    query = commands.add_parser("query", help="round status, the global model and rewards")
    _add_network(query)
    who = query.add_mutually_exclusive_group()
    who.add_argument("--account", type=int, help="rewards of client I")
    who.add_argument("--all", action="store_true", help="rewards of every client that submitted")
    query.add_argument("--no-eval", action="store_true", help="skip the test-accuracy evaluation")
    query.set_defaults(handler=cmd_query)
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


def entrypoint() -> None:
    """Console-script entry point."""
    sys.exit(main())
