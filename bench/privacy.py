"""Privacy benchmark: accuracy against epsilon, the on-chain privacy ledger, and secure aggregation
with dropouts.

Run: ``.venv/bin/python -m bench.privacy`` (``--quick``: 5 clients, 3 rounds, one noise level of
each kind, two dropout cases; ``--smoke``: the tests' run, under a minute). Writes ``bench/results/privacy.json``, ``privacy.md`` (the tables
the README quotes) and ``privacy.png`` (accuracy against epsilon). Run time: ``seconds`` in the
JSON and the md's first line, with the machine's load average at the start and the end.

Every figure is measured on one anvil (:func:`prague_anvil`: as ``bench.common.anvil_node``
starts it, on Prague rules like the contracts' ``evmVersion`` and the embedded chain), a fresh
``FLCoordinator`` per run. anvil rather than the embedded chain: a 5-client round of 7,850 weights
takes ~3 s on it against ~20 s on py-evm, whose ``eth_getLogs`` also slows as the chain grows.

**(a) Accuracy against epsilon** on MNIST 5k (softmax regression, 7,850 weights; 4,000 training
examples split IID; 1,000 test examples), 5 and 10 clients, 10 rounds, every client in every
round, E=2, B=32, lr 0.5, plain mean, through :func:`fl_client.simulation.run_simulation`:

- sample-level DP-SGD (``privacy.level: sample``: Opacus inside ``fl_client.dpsgd``, every
  example's gradient clipped to C=1 and N(0, (sigma C)^2) added to the batch sum, Poisson
  sampling at B/n) at sigma 0.7, 1.0, 1.2, 1.5, 2.0 (chosen beforehand from the accountant
  alone: epsilon spans 2.2..15 with 5 clients and 3.3..21 with 10; no tuning on the test set);
- update-level noise (``privacy.level: update``: the update clipped to C=1, N(0, (sigma C)^2) on
  every weight) at sigma 2.0 and 0.1;
- no DP.

epsilon is the largest client's at delta 1e-5 after the run (``SimulationResult.rounds[-1]``:
RDP accounting per client over all its participations; no amplification by client selection is
claimed). The float federated run that ``run_simulation`` runs beside the chain has no DP: it is
the no-DP reference of the same training settings. Goal of the issue: >= 85 % at epsilon <= 8.
Abadi et al. 2016 is quoted as a reference, not a bar.

**(c) The ledger.** Every DP-SGD run is deployed with ``privacy.epsilon_budget`` 100 (far above
what 10 rounds spend), so the contract charges each participation its RDP curve. After the run
``epsilonSpent(account)`` and ``participations(account)`` are read for every client and set
beside the Python side: the ledger curve (``LedgerCurve.epsilon_after``, which the contract must
equal exactly) and each client's own accountant (``fl_client.dpsgd.epsilon_after``: the chain
within (n+1) x 1e-6 above it, every per-order term being rounded up once). Then a short extra
deployment (5 clients, sigma 1) whose budget is the ledger's epsilon after k=2 participations:
both are admitted (the boundary), and every client's third submission is refused with
``CoordinatorPrivacyBudgetExceeded``.

**(b) Secure aggregation with dropouts.** 8 clients on MNIST 5k (same training, no DP),
``maxDropouts`` t=2, ``minSubmissions`` 6: three rounds each with 0, 1 and t dropouts per round
(which members: ``numpy.random.default_rng([seed, dropouts])``), and a round with t+1 dropouts
followed by one without. Each case runs three deployments, one after the other on the same anvil,
from the same initial model with the same trainers and secrets: ``secure_aggregation``
(``Federation.play_round(..., dropouts=)``: the dropped members register and post their shares,
then send nothing; the federation moves the clock past the deadline, ``finalize`` starts the
recovery, the survivors reveal their shares of the dropped keys, the contract removes the masks),
and ``plain`` with direct and with relayed submissions, both fed only the survivors. The models
are compared word for word after every round, and each path's ``modelHash`` is checked against
its words (it chains the hashes of the segments, and the masked deployment cuts the model in
other segments than the plain ones, so the hashes themselves differ). Gas per weight per client =
every transaction mined in a completed round, read back from its blocks, failed ones included
(registration, shares, masked submissions, finalize, share reveals, closes; direct: submissions
and closes; relayed: registration and closes) / (weights x survivors). Each path's largest
segment close is set beside the bound the planner sized the segments with
(``fl_client.limits.masked_close_cost`` / ``close_cost``), a finding rather than a check.

The federation sends as it always does (``send_all``: a pass's transactions concurrently, each
estimated on the state before the others). A share reveal estimated before the reveals ahead of
it can turn out to be the one that completes the threshold and rebuilds the key; it then fails
(status 0) and ``send`` estimates and sends it again. Such a failed transaction is paid for but
not in ``Chain.gas_used``, so every path's gas is read back from the blocks the round mined
(:func:`gas_of_blocks`: every transaction, failed ones included, which are also counted).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from web3.contract import Contract
from web3.types import TxData

from bench.common import command_line, contracts_fingerprint, isolated_records, machine, write_json
from fl_client.chain import (
    Chain,
    CoordinatorView,
    DeployParams,
    connect,
    contract_at,
    deploy,
    read_model_words,
    read_round,
    send,
    submit_calls,
)
from fl_client.client_secret import simulation_secret
from fl_client.codec import encode, vector_hash
from fl_client.compile import compile_contracts
from fl_client.config import ContractConfig, FLConfig, PrivacyConfig, ProjectConfig, load_config
from fl_client.dpsgd import DPSGDConfig, Participation, as_dataset, epsilon_after
from fl_client.errors import ContractRevertError
from fl_client.federation import Federation, Member
from fl_client.limits import ALIGNMENT_OFF, CloseWork, close_cost, masked_close_cost
from fl_client.model import get_flat_parameters
from fl_client.node import free_port, start_anvil, stop_process
from fl_client.privacy import MICRO, LedgerCurve
from fl_client.privacy_setup import privacy_setup
from fl_client.simulation import SimulationResult, data_spec, run_simulation, task_of, train_config
from fl_client.tasks import LoadedTask, make_trainer

RESULTS = Path(__file__).resolve().parent / "results"
MODULE = "bench.privacy"
DATASET = "mnist5k"
DELTA = 1e-5
GOAL_EPSILON = 8.0
GOAL_ACCURACY = 0.85
LEDGER_BUDGET = 100.0  # epsilon; far above 10 rounds of any row, so the ledger only charges
EPOCHS, BATCH_SIZE, LEARNING_RATE = 2, 32, 0.5
CLIP = 1.0  # per example (DP-SGD) and per update (update-level)
ABADI_2016 = (  # (epsilon, accuracy) at delta 1e-5: a reference, not a bar
    (2.0, 0.95),
    (8.0, 0.97),
)
ABADI_NOTE = (
    "Abadi et al. 2016 (Deep Learning with Differential Privacy), MNIST: about 95 % at epsilon 2 "
    "and 97 % at epsilon 8 (delta 1e-5), centrally on all 60,000 training examples, with a "
    "differentially private 60-dimensional PCA projection and a 1,000-unit hidden layer (their "
    "CNN was for CIFAR-10). A reference line, not a bar: this benchmark has 4,000 examples split "
    "over 5 or 10 clients, each accounting its own epsilon, and a linear model."
)


@dataclass(frozen=True)
class Grid:
    """What one run of the benchmark measures."""

    clients: tuple[int, ...] = (5, 10)
    rounds: int = 10
    sample_sigmas: tuple[float, ...] = (0.7, 1.0, 1.2, 1.5, 2.0)
    update_sigmas: tuple[float, ...] = (2.0, 0.1)
    refusal_clients: int = 5
    refusal_sigma: float = 1.0
    refusal_admits: int = 2  # the extra deployment's budget admits this many participations
    secagg_members: int = 8
    secagg_max_dropouts: int = 2
    secagg_rounds: int = 3
    secagg_cases: tuple[int, ...] = (0, 1, 2)  # dropouts per round (t is the last)
    no_dp: bool = True  # the no-DP row of each client count
    seed: int = 0

    @classmethod
    def quick(cls) -> Grid:
        """A few minutes: 5 clients, 3 rounds, one noise level of each kind, two dropout cases."""
        return cls(
            clients=(5,),
            rounds=3,
            sample_sigmas=(1.0,),
            update_sigmas=(2.0,),
            refusal_admits=1,
            secagg_rounds=1,
            secagg_cases=(0, 2),
        )

    @classmethod
    def smoke(cls) -> Grid:
        """Under a minute, for the tests: 4 clients, 1 round, DP-SGD only (no no-DP row); secure aggregation
        with 6 members and t=2, only the round with t+1 dropouts and the full round after it.
        (t=1 is not used: its planned segment's close exceeds the gas cap, see the report.)"""
        return cls(
            clients=(4,),
            rounds=1,
            no_dp=False,
            sample_sigmas=(1.0,),
            update_sigmas=(),
            refusal_clients=4,
            refusal_admits=1,
            secagg_members=6,
            secagg_max_dropouts=2,
            secagg_rounds=1,
            secagg_cases=(),
        )


# ---------------------------------------------------------------- pure helpers


def meets_goal(accuracy: float, epsilon: float | None) -> bool:
    """The issue's goal: at least 85 % at an epsilon of at most 8 (no DP never meets it)."""
    return epsilon is not None and epsilon <= GOAL_EPSILON and accuracy >= GOAL_ACCURACY


def within_ledger_step(difference: float, participations: int) -> bool:
    """Whether a ledger figure is within the fixed-point step of a float one: each of the
    ``participations`` per-order RDP terms and the conversion term are rounded up once, by
    less than 1e-6 each (a tiny margin for the float subtraction)."""
    return 0 <= difference <= (participations + 1) / MICRO + 1e-12


def dropout_schedule(seed: int, members: int, dropouts: int, rounds: int) -> list[list[int]]:
    """Which members drop out in each round: ``dropouts`` distinct ones, seeded per case."""
    rng = np.random.default_rng([seed, dropouts])
    return [
        sorted(int(i) for i in rng.choice(members, size=dropouts, replace=False))
        for _ in range(rounds)
    ]


def gas_per_weight(gas: int, weights: int, survivors: int) -> float | None:
    """Gas per weight per surviving client (``None`` when nobody survived)."""
    return gas / (weights * survivors) if survivors > 0 and weights > 0 else None


def micro_after(curve: LedgerCurve, participations: int) -> int:
    """What the contract's ``epsilonSpent`` is after ``participations`` (1e-6 units)."""
    if participations == 0:
        return 0
    return min(
        participations * r + c for r, c in zip(curve.rdp_micro, curve.conversion_micro, strict=True)
    )


def best_within_goal_epsilon(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The most accurate row with DP at an epsilon of at most the goal's (``None``: no such row)."""
    private = [r for r in rows if r["epsilon"] is not None and r["epsilon"] <= GOAL_EPSILON]
    return max(private, key=lambda r: (r["accuracy"], -r["epsilon"]), default=None)


LEVELS = {"none": "none", "sample": "DP-SGD (sample)", "update": "update-level"}


def _failed(row: dict[str, Any]) -> str:
    count = row.get("failed_transactions", 0)
    return f"{count}: {', '.join(row['failed_functions'])}" if count else "0"


def _int(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def close_within_bound(case: dict[str, Any]) -> bool:
    """Whether every path's largest close of a case stayed within the planner's bound."""
    return all(
        g is None or g <= case["close_gas_bound"][path]
        for path, g in case["largest_close_gas"].items()
    )


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _yes(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "NO")


# ---------------------------------------------------------------- (a) and (c): accuracy, ledger


def base_config(project: ProjectConfig, grid: Grid) -> FLConfig:
    """The federated-learning settings every run shares."""
    return replace(
        project.fl,
        dataset=DATASET,
        task=None,
        hidden_layers=(),
        partition="iid",
        fraction=1.0,
        relayed_clients=0,
        algorithm="fedavg",
        seed=grid.seed,
        rounds=grid.rounds,
        contract=replace(
            project.fl.contract,
            mode="plain",
            aggregation="mean",
            target_submissions=None,
            min_submissions=None,
        ),
        privacy=PrivacyConfig(),
        epochs=EPOCHS,
        batch_size=BATCH_SIZE,
        learning_rate=LEARNING_RATE,
    )


def run_config(
    base: FLConfig, *, clients: int, level: str, sigma: float | None, budget: float = 0.0
) -> FLConfig:
    """``base`` with ``clients`` and a privacy setting (``level`` none, sample or update)."""
    if level == "none":
        return replace(base, clients=clients, privacy=PrivacyConfig())
    assert sigma is not None
    privacy = PrivacyConfig(
        dp=True,
        level=level,
        clip_norm=CLIP,
        noise_multiplier=sigma,
        delta=DELTA,
        epsilon_budget=budget,
    )
    return replace(base, clients=clients, privacy=privacy)


def shard_sizes(task: LoadedTask, fl: FLConfig) -> list[int]:
    """Every client's number of training examples."""
    spec = data_spec(fl)
    return [len(as_dataset(task.client_data(i, spec))) for i in range(fl.clients)]  # type: ignore[arg-type]


def ledger_curve_of(fl: FLConfig, sizes: Sequence[int]) -> LedgerCurve:
    """The curve the deployment of ``fl`` charges (computed as the simulation computes it)."""
    ledger = privacy_setup(fl, config=train_config(fl), data_sizes=list(sizes)).ledger
    if ledger is None:
        raise ValueError("no ledger: privacy.epsilon_budget is 0")
    return ledger


def simulate(
    chain: Chain, project: ProjectConfig, fl: FLConfig, task: LoadedTask
) -> SimulationResult:
    """One chain-based run (and its float reference), no accuracy check."""
    return run_simulation(fl, project=project, chain=chain, check_accuracy=False, task=task)


def ledger_check(
    chain: Chain, fl: FLConfig, result: SimulationResult, sizes: Sequence[int]
) -> dict[str, Any]:
    """The chain's epsilon of every client against the ledger curve (exact), the Python
    accountant's figure (the largest client's at the same count: the curve charges every client
    the largest RDP at each order; within the fixed-point step) and the client's own accountant
    (never above the chain's: equal shards make the last two the same)."""
    contract = contract_at(chain, result.contract_address)
    curve = ledger_curve_of(fl, sizes)
    rdp, conversion, budget = contract.functions.privacyLedger().call()
    dp = DPSGDConfig(fl.privacy.clip_norm, fl.privacy.noise_multiplier, fl.privacy.delta)
    config = train_config(fl)
    clients: list[dict[str, Any]] = []
    for i, size in enumerate(sizes):
        account = chain.accounts[1 + i]
        count = int(contract.functions.participations(account).call())
        chain_micro = int(contract.functions.epsilonSpent(account).call())
        own = epsilon_after(count, Participation.of(size, config), dp)
        largest = max(epsilon_after(count, Participation.of(n, config), dp) for n in set(sizes))
        clients.append(
            {
                "client": i,
                "samples": size,
                "participations": count,
                "epsilon_chain": chain_micro / MICRO,
                "epsilon_ledger_curve": curve.epsilon_after(count),
                "epsilon_accountant": largest,
                "epsilon_own_accountant": own,
                "chain_minus_curve_micro": chain_micro - micro_after(curve, count),
                "chain_minus_accountant": chain_micro / MICRO - largest,
                "chain_minus_own": chain_micro / MICRO - own,
            }
        )
    rounds = fl.rounds
    worst = max(abs(c["chain_minus_accountant"]) for c in clients)
    return {
        "deployed_curve_matches_python": (
            tuple(int(v) for v in rdp) == curve.rdp_micro
            and tuple(int(v) for v in conversion) == curve.conversion_micro
            and int(budget) == curve.budget_micro
        ),
        "budget": curve.budget_micro / MICRO,
        "every_client_charged_every_round": all(c["participations"] == rounds for c in clients),
        "max_abs_chain_minus_curve_micro": max(abs(c["chain_minus_curve_micro"]) for c in clients),
        "max_abs_chain_minus_accountant": worst,
        "step_bound": (rounds + 1) / MICRO,
        "within_step": all(
            within_ledger_step(c["chain_minus_accountant"], c["participations"]) for c in clients
        ),
        "never_below_own_accountant": all(c["chain_minus_own"] >= 0 for c in clients),
        "clients": clients,
    }


def accuracy_row(
    chain: Chain,
    project: ProjectConfig,
    base: FLConfig,
    task: LoadedTask,
    *,
    clients: int,
    level: str,
    sigma: float | None,
) -> dict[str, Any]:
    """One row of the accuracy table (with its ledger check for DP-SGD)."""
    budget = LEDGER_BUDGET if level == "sample" else 0.0
    fl = run_config(base, clients=clients, level=level, sigma=sigma, budget=budget)
    sizes = shard_sizes(task, fl)
    if level == "sample" and ledger_curve_of(fl, sizes).participations_allowed() < fl.rounds:
        raise ValueError(f"a budget of {budget} does not admit {fl.rounds} rounds at sigma {sigma}")
    contracts = contracts_fingerprint()["contracts_sha256"]
    result = simulate(chain, project, fl, task)
    last = result.rounds[-1]
    row: dict[str, Any] = {
        "clients": clients,
        "level": level,
        "sigma": sigma,
        "clip": None if level == "none" else CLIP,
        "epsilon": last.epsilon,
        "accuracy": last.accuracy_chain,
        "accuracy_no_chain_no_dp": last.accuracy_plain,
        "meets_goal": meets_goal(last.accuracy_chain, last.epsilon),
        "seconds": round(result.seconds, 1),
        "samples_per_client": sizes,
        "accuracy_per_round": [r.accuracy_chain for r in result.rounds],
        "epsilon_per_round": [r.epsilon for r in result.rounds],
        "dp_clipped_per_round": [r.dp_clipped for r in result.rounds],
        "exact_average_every_round": all(r.exact_average for r in result.rounds),
        "gas_per_round": [r.gas_used for r in result.rounds],
        "contract": result.contract_address,
        # The sources changed while it ran: it may have compiled them (seconds) or mixed versions.
        "contracts_changed": contracts_fingerprint()["contracts_sha256"] != contracts,
    }
    if level == "sample":
        row["ledger"] = ledger_check(chain, fl, result, sizes)
    return row


def refusal(
    chain: Chain, project: ProjectConfig, base: FLConfig, task: LoadedTask, grid: Grid
) -> dict[str, Any]:
    """A DP-SGD deployment whose budget is exactly the ledger's epsilon after ``admits``
    participations: they all land, and every client's next submission is refused."""
    clients, sigma, admits = grid.refusal_clients, grid.refusal_sigma, grid.refusal_admits
    probe = run_config(base, clients=clients, level="sample", sigma=sigma, budget=LEDGER_BUDGET)
    sizes = shard_sizes(task, probe)
    budget = ledger_curve_of(probe, sizes).epsilon_after(admits)
    fl = replace(
        run_config(base, clients=clients, level="sample", sigma=sigma, budget=budget),
        rounds=admits,
    )
    curve = ledger_curve_of(fl, sizes)
    result = simulate(chain, project, fl, task)
    contract = contract_at(chain, result.contract_address)
    view = CoordinatorView.read(chain, contract)
    info = read_round(contract)
    words = read_model_words(contract)  # in range: the global model itself
    refused = []
    for i, size in enumerate(sizes):
        account = chain.accounts[1 + i]
        spent = int(contract.functions.epsilonSpent(account).call())
        count = int(contract.functions.participations(account).call())
        (call, *_) = submit_calls(
            contract,
            account,
            round_number=info.number,
            sample_count=size,
            words=words,
            words_per_segment=view.words_per_segment,
        )
        try:
            send(chain, call.function, account, what="submit beyond the budget")
            outcome: dict[str, Any] = {"refused": False}
        except ContractRevertError as error:
            outcome = {
                "refused": True,
                "error": error.name,
                "epsilon_micro": int(str(error.error_args.get("epsilon"))),
                "budget_micro": int(str(error.error_args.get("budget"))),
            }
        refused.append(
            {"client": i, "participations": count, "epsilon_spent_micro": spent, **outcome}
        )
    expected_next = micro_after(curve, admits + 1)
    return {
        "clients": clients,
        "sigma": sigma,
        "admits": admits,
        "budget_micro": curve.budget_micro,
        "epsilon_after_admits_micro": micro_after(curve, admits),
        "epsilon_after_next_micro": expected_next,
        "rounds_played": len(result.rounds),
        "open_round": info.number,
        "attempts": refused,
        "boundary_admitted": all(
            a["participations"] == admits and a["epsilon_spent_micro"] == curve.budget_micro
            for a in refused
        ),
        "next_refused_with_budget_error": all(
            a["refused"]
            and a["error"] == "CoordinatorPrivacyBudgetExceeded"
            and a["epsilon_micro"] == expected_next
            and a["budget_micro"] == curve.budget_micro
            for a in refused
        ),
        "seconds": round(result.seconds, 1),
    }


# ---------------------------------------------------------------- (b) secure aggregation


@dataclass(frozen=True)
class SecAggContext:
    """What every secure-aggregation deployment shares."""

    fl: FLConfig
    task: LoadedTask
    initial_words: list[int]
    num_weights: int


def secagg_context(base: FLConfig, grid: Grid) -> SecAggContext:
    """8 clients (default) on MNIST 5k, the initial model quantized."""
    fl = replace(base, clients=grid.secagg_members)
    task = task_of(fl)
    flat = get_flat_parameters(task.model(seed=fl.seed))
    words, _ = encode(flat, fl.fixed_point)
    return SecAggContext(fl, task, list(words), int(flat.size))


def deploy_path(chain: Chain, ctx: SecAggContext, path: str, grid: Grid) -> Contract:
    """A coordinator for ``path`` (masked, direct or relayed): target all members, minimum
    members - t, from the shared initial model."""
    members = grid.secagg_members
    contract_config = replace(
        ctx.fl.contract,
        mode="secure_aggregation" if path == "masked" else "plain",
        target_submissions=members,
        min_submissions=members - grid.secagg_max_dropouts,
        max_dropouts=grid.secagg_max_dropouts,
    )
    params = DeployParams.from_config(
        replace(ctx.fl, contract=contract_config),
        num_weights=ctx.num_weights,
        clients=members,
        tx_gas_cap=chain.tx_gas_cap,
    )
    return deploy(chain, params, initial_words=ctx.initial_words, pool_wei=ctx.fl.rewards.pool_wei)


def federation_of(chain: Chain, contract: Contract, ctx: SecAggContext, path: str) -> Federation:
    """The members (same trainers and secrets on every path) and the closer (account 0)."""
    fl = ctx.fl
    spec = data_spec(fl)
    config = train_config(fl)
    members = [
        Member(
            account=chain.accounts[1 + i],
            trainer=make_trainer(ctx.task, client=i, spec=spec, config=config, seed=fl.seed),
            secret=simulation_secret(fl.seed, i),
            relayed=path == "relayed",
        )
        for i in range(fl.clients)
    ]
    return Federation(
        chain=chain, contract=contract, members=members, closer_account=chain.accounts[0]
    )


@dataclass(frozen=True)
class Mined:
    """One transaction a round mined: the coordinator's function it called, its gas, success."""

    function: str
    gas: int
    ok: bool


def mined_between(chain: Chain, contract: Contract, first: int, last: int) -> list[Mined]:
    """Every transaction mined in blocks ``first..last``, failed ones included (they are paid
    for, but ``Chain.gas_used`` lists only the successful ones)."""
    found: list[Mined] = []
    for number in range(first, last + 1):
        block = chain.w3.eth.get_block(number, full_transactions=True)
        for tx in cast("list[TxData]", block.get("transactions", [])):
            receipt = chain.w3.eth.get_transaction_receipt(tx["hash"])
            function, _ = contract.decode_function_input(tx["input"])
            found.append(
                Mined(str(function.fn_name), int(receipt["gasUsed"]), int(receipt["status"]) == 1)
            )
    return found


def close_bound(view: CoordinatorView, contract: ContractConfig) -> int:
    """The planner's bound (``fl_client.limits``, the constructor's mirror) on the gas of one
    segment's close, for the deployment ``view`` reads (``contract``: its settings)."""
    work = CloseWork(  # as DeployParams.from_config builds it
        squared_l2=contract.distance == "squared_l2",
        aggregate=contract.reward_reference != "current",
        step=contract.max_step != 0,
        drift=contract.max_drift != 0,
    )
    if view.mode == "secure_aggregation":
        return masked_close_cost(
            words_per_segment=view.words_per_segment,
            target=view.target,
            lane_bits=view.lane_bits,
            max_dropouts=view.max_dropouts,
            work=work,
        ).gas
    return close_cost(
        words_per_segment=view.words_per_segment,
        target=view.target,
        max_weight=1,
        guard=contract.min_alignment_bps != ALIGNMENT_OFF,
        work=work,
    ).gas


def play_path(
    chain: Chain, ctx: SecAggContext, path: str, schedule: Sequence[Sequence[int]], grid: Grid
) -> list[dict[str, Any]]:
    """Deploy for ``path`` and play one round per entry of ``schedule`` (the dropped members):
    masked with ``dropouts=``, direct and relayed with the survivors only."""
    contract = deploy_path(chain, ctx, path, grid)
    federation = federation_of(chain, contract, ctx, path)
    bound = close_bound(federation.view, ctx.fl.contract)
    members = grid.secagg_members
    rows = []
    for number, dropped in enumerate(schedule, start=1):
        survivors = [i for i in range(members) if i not in dropped]
        version = int(contract.functions.modelVersion().call())
        credited = int(contract.functions.totalCredited().call())
        first_block = int(chain.w3.eth.block_number) + 1
        started = time.perf_counter()  # training included
        if path == "masked":
            federation.play_round(number, range(members), dropouts=dropped)
        else:
            federation.play_round(number, survivors)
        mined = mined_between(chain, contract, first_block, int(chain.w3.eth.block_number))
        gas = [m.gas for m in mined]
        failed = [m for m in mined if not m.ok]
        closes = [m.gas for m in mined if m.ok and m.function.startswith("close")]
        info = read_round(contract)
        words = read_model_words(contract)
        on_chain_hash = bytes(contract.functions.modelHash().call())
        completed = int(contract.functions.modelVersion().call()) == version + 1
        rows.append(
            {
                "round": number,
                "dropped": list(dropped),
                "survivors": len(survivors),
                "completed": completed,
                "next_round_open": info.number == number + 1,
                "next_phase": info.phase,
                "credited_wei": int(contract.functions.totalCredited().call()) - credited,
                # The on-chain modelHash chains the segments' hashes, and the masked deployment
                # cuts the model in other segments: the paths are compared on the words (their
                # hash as one segment), and each modelHash is checked against its words.
                "model_digest": "0x" + vector_hash(words, len(words)).hex(),
                "model_hash": "0x" + on_chain_hash.hex(),
                "model_hash_matches_words": on_chain_hash
                == vector_hash(words, federation.view.words_per_segment),
                "words_per_segment": federation.view.words_per_segment,
                "transactions": len(gas),
                "gas": sum(gas),  # failed transactions included: they are paid for
                "failed_transactions": len(failed),
                "failed_functions": sorted({m.function for m in failed}),
                "failed_gas": sum(m.gas for m in failed),
                "largest_close_gas": max(closes, default=None),
                "close_gas_bound": bound,
                "gas_per_weight_per_client": gas_per_weight(
                    sum(gas), ctx.num_weights, len(survivors)
                )
                if completed
                else None,
                "seconds": round(time.perf_counter() - started, 2),
            }
        )
    return rows


PATHS = ("masked", "direct", "relayed")


def secagg_case(
    chain: Chain, ctx: SecAggContext, name: str, schedule: list[list[int]], grid: Grid
) -> dict[str, Any]:
    """One dropout case on the three paths, and whether their models agree after every round."""
    by_path = {path: play_path(chain, ctx, path, schedule, grid) for path in PATHS}
    rounds: list[dict[str, Any]] = []
    for index, dropped in enumerate(schedule):
        rows = {path: by_path[path][index] for path in PATHS}
        digests = {rows[path]["model_digest"] for path in PATHS}
        rounds.append(
            {
                "round": index + 1,
                "dropped": dropped,
                "same_model": len(digests) == 1
                and all(rows[path]["model_hash_matches_words"] for path in PATHS),
                **{path: rows[path] for path in PATHS},
            }
        )
    completed = [r for r in rounds if r["masked"]["completed"]]

    def mean_gas(path: str) -> float | None:
        values = [r[path]["gas_per_weight_per_client"] for r in completed]
        found = [v for v in values if v is not None]
        return sum(found) / len(found) if found else None

    def largest_close(path: str) -> int | None:
        found = [r[path]["largest_close_gas"] for r in rounds]
        return max((g for g in found if g is not None), default=None)

    return {
        "case": name,
        "dropouts_per_round": [len(d) for d in schedule],
        "rounds": rounds,
        "rounds_completed": {path: sum(r[path]["completed"] for r in rounds) for path in PATHS},
        "same_model_every_round": all(r["same_model"] for r in rounds),
        "gas_per_weight_per_client": {path: mean_gas(path) for path in PATHS},
        "largest_close_gas": {path: largest_close(path) for path in PATHS},
        "close_gas_bound": {path: by_path[path][0]["close_gas_bound"] for path in PATHS},
        "failed_transactions": {
            path: sum(r[path]["failed_transactions"] for r in rounds) for path in PATHS
        },
    }


def secure_aggregation(chain: Chain, base: FLConfig, grid: Grid) -> dict[str, Any]:
    """Every dropout case, then the round with t+1 dropouts (and one without after it)."""
    ctx = secagg_context(base, grid)
    t = grid.secagg_max_dropouts
    members = grid.secagg_members
    cases = []
    for count in grid.secagg_cases:
        schedule = dropout_schedule(grid.seed, members, count, grid.secagg_rounds)
        name = f"{count} dropout{'s' if count != 1 else ''} per round" + (
            " (t)" if count == t else ""
        )
        _log(f"secure aggregation: {name}, dropped {schedule}")
        cases.append(secagg_case(chain, ctx, name, schedule, grid))
    over = dropout_schedule(grid.seed, members, t + 1, 1)[0]
    _log(f"secure aggregation: t+1 = {t + 1} dropouts {over}, then a full round")
    beyond = secagg_case(chain, ctx, f"t+1 = {t + 1} dropouts, then none", [over, []], grid)
    first = beyond["rounds"][0]["masked"]
    beyond["t_plus_one_round"] = {
        "ended_without_model": not first["completed"],
        "paid_nothing": first["credited_wei"] == 0,
        "next_round_open": first["next_round_open"],
        "next_phase": first["next_phase"],
        "next_round_completed": beyond["rounds"][1]["masked"]["completed"],
        "direct_credited_wei": beyond["rounds"][0]["direct"]["credited_wei"],
        "relayed_credited_wei": beyond["rounds"][0]["relayed"]["credited_wei"],
    }
    cases.append(beyond)
    return {
        "members": members,
        "max_dropouts": t,
        "min_submissions": members - t,
        "weights": ctx.num_weights,
        "tx_gas_cap": chain.tx_gas_cap,
        "cases": cases,
    }


# ---------------------------------------------------------------- output


def markdown(data: dict[str, Any]) -> str:
    """The tables the README quotes."""
    s = data["settings"]
    start_load = data["machine"]["load_average_at_start"][0]
    shared = max(start_load, data["load_average_at_end"][0]) > data["machine"]["cpus"]
    lines = [
        f"# Privacy on {DATASET} ({s['weights']:,} weights)",
        "",
        f"Command: `{data['command']}`; {data['seconds'] / 60:.1f} min on "
        f"{data['machine']['cpus']} cores ({data['cpu_seconds']['python'] / 60:.1f} min of CPU "
        f"in Python, {data['cpu_seconds']['children'] / 60:.1f} in child processes: anvil, and "
        f"the compiler if it ran), load average {start_load:.1f} at the start and "
        f"{data['load_average_at_end'][0]:.1f} at the end"
        + (" (a shared machine: the times are upper bounds)" if shared else "")
        + ". One anvil (instant mining, Prague rules); a fresh coordinator per run.",
        "",
    ]
    if data.get("contracts", {}).get("changed_during_run"):
        lines += [
            "**Warning: the contracts changed while this ran** (rows measured before and after "
            "differ in version; a row's time may include a compile). Run it again.",
            "",
        ]
    lines += [
        "## Accuracy against epsilon",
        "",
        f"{DATASET}, IID, E={s['epochs']}, B={s['batch_size']}, lr {s['learning_rate']}, "
        f"{s['rounds']} round{'s' if s['rounds'] != 1 else ''}, every client in every round, plain mean; clip C = {CLIP} "
        "(per example for DP-SGD, per update for update-level noise). epsilon: the largest "
        "client's at delta 1e-5 after the run (RDP, Opacus's analysis, no amplification by "
        "client selection). *no chain*: the float federated run beside it, which has no DP. "
        f"Goal: >= {100 * GOAL_ACCURACY:.0f} % at epsilon <= {GOAL_EPSILON:g}. The noise "
        "multipliers were chosen from the accountant before any run (no tuning on the test set).",
        "",
        "| clients | DP | sigma | clip | epsilon | accuracy % | no chain, no DP % | goal met | s |",
        "|---:|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in data["accuracy"]:
        level = LEVELS[r["level"]]
        lines.append(
            f"| {r['clients']} | {level} | {_fmt(r['sigma'], 1)} | {_fmt(r['clip'], 1)} | "
            f"{_fmt(r['epsilon'])} | {_pct(r['accuracy'])} | {_pct(r['accuracy_no_chain_no_dp'])} | "
            f"{'yes' if r['meets_goal'] else 'no'} | {r['seconds']:.0f} |"
        )
    met = [r for r in data["accuracy"] if r["meets_goal"]]
    best = best_within_goal_epsilon(data["accuracy"])
    lines += [
        "",
        "Goal met by: "
        + (
            ", ".join(
                f"{r['clients']} clients, {LEVELS[r['level']]} sigma {r['sigma']:g} "
                f"({_pct(r['accuracy'])} % at epsilon {_fmt(r['epsilon'])})"
                for r in met
            )
            if met
            else "no configuration"
        )
        + ". Best accuracy at epsilon <= "
        + f"{GOAL_EPSILON:g}: "
        + (
            f"{_pct(best['accuracy'])} % ({best['clients']} clients, {LEVELS[best['level']]} "
            f"sigma {best['sigma']:g}, epsilon {_fmt(best['epsilon'])})."
            if best is not None
            else "no run had an epsilon that small."
        ),
        "",
        f"Reference (not a bar): {ABADI_NOTE}",
        "",
        "## The on-chain privacy ledger",
        "",
        "Every DP-SGD run above was deployed with a ledger (budget "
        f"{LEDGER_BUDGET:g}). After the run, `epsilonSpent(account)` of every client against the "
        "ledger curve (`LedgerCurve.epsilon_after`, exact) and the Python accountant "
        "(`fl_client.dpsgd.epsilon_after`, the largest client's after as many participations: "
        "the chain must be at most (n+1) x 1e-6 above it, never below, after n participations; "
        "and never below any client's own figure).",
        "",
        "| clients | sigma | participations charged | epsilon on-chain (largest) | Python accountant | max chain - curve (1e-6) | max chain - accountant (1e-6) | bound n+1 (1e-6) | within | never below own | deployed curve = Python |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for r in data["accuracy"]:
        ledger = r.get("ledger")
        if ledger is None:
            continue
        largest = max(ledger["clients"], key=lambda c: c["epsilon_chain"])
        lines.append(
            f"| {r['clients']} | {r['sigma']:g} | "
            f"{'all ' + str(s['rounds']) if ledger['every_client_charged_every_round'] else 'NO'} | "
            f"{largest['epsilon_chain']:.6f} | {largest['epsilon_accountant']:.6f} | "
            f"{ledger['max_abs_chain_minus_curve_micro']} | "
            f"{ledger['max_abs_chain_minus_accountant'] * MICRO:.2f} | "
            f"{ledger['step_bound'] * MICRO:.0f} | {_yes(ledger['within_step'])} | "
            f"{_yes(ledger['never_below_own_accountant'])} | "
            f"{_yes(ledger['deployed_curve_matches_python'])} |"
        )
    ref = data["refusal"]
    first = ref["attempts"][0]
    lines += [
        "",
        f"Refusal: a deployment ({ref['clients']} clients, DP-SGD sigma {ref['sigma']:g}) whose "
        f"budget is the ledger's epsilon after {ref['admits']} participation(s), "
        f"{ref['budget_micro']:,} x 1e-6. Boundary (every client charged {ref['admits']} and "
        f"exactly at the budget): {_yes(ref['boundary_admitted'])}. Every client's next "
        f"submission refused with `CoordinatorPrivacyBudgetExceeded(client, "
        f"{first.get('epsilon_micro', '-')}, {first.get('budget_micro', '-')})`: "
        f"{_yes(ref['next_refused_with_budget_error'])}.",
        "",
        "## Secure aggregation with dropouts",
        "",
    ]
    sa = data["secure_aggregation"]
    lines += [
        f"{sa['members']} members, maxDropouts t = {sa['max_dropouts']}, minSubmissions "
        f"{sa['min_submissions']}, {sa['weights']:,} weights, same training. Each case: a masked "
        "deployment (dropped members register and post shares, then stop; the survivors reveal "
        "their shares of the dropped keys and the contract removes the masks), a direct and a "
        "relayed deployment fed the same survivors' updates. Same model: the three models equal "
        "word for word after every round (and each `modelHash` equal to the hash of its words; "
        "the hashes differ between modes because the masked deployment has other segments). Gas per "
        "weight per client: every transaction mined in a completed round, failed ones included "
        "(read from the blocks) / (weights x survivors), mean over the case's completed rounds. "
        "The federation sends each pass's transactions concurrently, as it always does.",
        "",
        "| case | rounds completed (masked / direct / relayed) | same model every round | masked gas/weight/client | direct | relayed |",
        "|---|---|---|---:|---:|---:|",
    ]
    for case in sa["cases"]:
        done = case["rounds_completed"]
        gas = case["gas_per_weight_per_client"]
        total = len(case["rounds"])
        lines.append(
            f"| {case['case']} | {done['masked']}/{total} / {done['direct']}/{total} / "
            f"{done['relayed']}/{total} | {_yes(case['same_model_every_round'])} | "
            f"{_fmt(gas['masked'], 1)} | {_fmt(gas['direct'], 1)} | {_fmt(gas['relayed'], 1)} |"
        )
    beyond = sa["cases"][-1].get("t_plus_one_round")
    if beyond is not None:
        lines += [
            "",
            f"t+1 dropouts: the round ended without a model: {_yes(beyond['ended_without_model'])}; "
            f"paid nothing: {_yes(beyond['paid_nothing'])}; the next round open "
            f"({beyond['next_phase']}): {_yes(beyond['next_round_open'])}; that round completed: "
            f"{_yes(beyond['next_round_completed'])}. In the same round the plain deployments "
            f"(below their minimum, ended by `finalize`) credited "
            f"{beyond['direct_credited_wei'] / 1e18:g} ETH (direct: rewards are credited at "
            f"submission) and {beyond['relayed_credited_wei'] / 1e18:g} ETH (relayed: paid by "
            "the close).",
        ]
    lines += [
        "",
        "Largest segment close against the planner's bound (`fl_client.limits.masked_close_cost` "
        "and `close_cost`, which the constructor mirrors and which sets the segment size; "
        f"transaction gas cap {sa.get('tx_gas_cap', 0):,}):",
        "",
        "| case | masked close gas | bound | direct close gas | bound | relayed close gas | bound | within every bound |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for case in sa["cases"]:
        largest, bound = case["largest_close_gas"], case["close_gas_bound"]
        cells = " | ".join(f"{_int(largest[p])} | {_int(bound[p])}" for p in PATHS)
        lines.append(f"| {case['case']} | {cells} | {_yes(close_within_bound(case))} |")
    lines += [
        "",
        "Per round: dropped members, the masked path's transactions (of them failed, and which "
        "functions: sent again after an estimate that went stale), gas (failed transactions "
        "included), seconds (training included).",
        "",
        "| case | round | dropped | masked txs (failed) | masked gas | direct gas | relayed gas | masked s | direct s | relayed s |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in sa["cases"]:
        for r in case["rounds"]:
            lines.append(
                f"| {case['case']} | {r['round']} | {r['dropped'] or '-'} | "
                f"{r['masked']['transactions']} ({_failed(r['masked'])}) | "
                f"{r['masked']['gas']:,} | {r['direct']['gas']:,} | "
                f"{r['relayed']['gas']:,} | {r['masked']['seconds']:.1f} | "
                f"{r['direct']['seconds']:.1f} | {r['relayed']['seconds']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def plot(data: dict[str, Any], path: Path) -> None:
    """Accuracy against epsilon (log scale), the goal and the reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    figure, axes = plt.subplots(figsize=(8, 5))
    rows = data["accuracy"]
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    epsilons = [r["epsilon"] for r in rows if r["epsilon"] is not None]
    for index, clients in enumerate(sorted({r["clients"] for r in rows})):
        color = colors[index % len(colors)]
        mine = [r for r in rows if r["clients"] == clients]
        sample = sorted((r["epsilon"], 100 * r["accuracy"]) for r in mine if r["level"] == "sample")
        if sample:
            axes.plot(
                [e for e, _ in sample],
                [a for _, a in sample],
                marker="o",
                color=color,
                label=f"DP-SGD (per example), {clients} clients",
            )
        update = [(r["epsilon"], 100 * r["accuracy"]) for r in mine if r["level"] == "update"]
        if update:
            axes.scatter(
                [e for e, _ in update],
                [a for _, a in update],
                marker="x",
                s=60,
                color=color,
                label=f"update-level noise, {clients} clients",
            )
        for r in mine:
            if r["level"] == "none":
                axes.axhline(
                    100 * r["accuracy"],
                    linestyle=":",
                    linewidth=1.2,
                    color=color,
                    label=f"no DP, {clients} clients",
                )
    axes.scatter(
        [e for e, _ in ABADI_2016],
        [100 * a for _, a in ABADI_2016],
        marker="*",
        s=110,
        color="tab:purple",
        label="Abadi et al. 2016 (reference: 60k examples, central)",
    )
    low = min([*epsilons, *(e for e, _ in ABADI_2016)]) / 1.3
    high = max([*epsilons, GOAL_EPSILON]) * 1.3
    axes.set_xscale("log")
    axes.set_xlim(low, high)
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.xaxis.set_minor_formatter(FuncFormatter(lambda value, _: ""))
    axes.fill_between(
        [low, GOAL_EPSILON],
        100 * GOAL_ACCURACY,
        100,
        color="green",
        alpha=0.08,
        label="goal: >= 85 % at epsilon <= 8",
    )
    axes.set_ylim(0, 100)
    axes.set_xlabel("epsilon (largest client, delta 1e-5, log scale)")
    axes.set_ylabel("test accuracy % (on-chain model)")
    axes.set_title(f"{DATASET}: accuracy against epsilon, {data['settings']['rounds']} rounds")
    axes.legend(fontsize=7, loc="lower right")
    axes.grid(True, which="major", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


@contextmanager
def prague_anvil(accounts: int) -> Iterator[Chain]:
    """An anvil as ``bench.common.anvil_node`` starts it (a free port, instant mining, the
    per-transaction gas cap on, records in a temporary folder, stopped by its process id), on
    Prague rules: the contracts' ``evmVersion`` and the embedded chain's (anvil's default, its
    latest fork, reprices MODEXP, which key recovery calls)."""
    project = load_config()
    network = project.network("anvil")
    with isolated_records():
        process, info = start_anvil(
            network,
            port=free_port(),
            block_time=0,
            accounts=accounts,
            record=False,
            extra_args=("--hardfork", "prague"),
        )
    try:
        yield connect("anvil", config=project, url=info.url)
    finally:
        stop_process(process.pid, timeout=10)
        process.poll()


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------- main


def benchmark(
    grid: Grid, project: ProjectConfig, log: Callable[[str], None] = _log
) -> dict[str, Any]:
    """Measure (a), (c) and (b) on one anvil."""
    base = base_config(project, grid)
    task = task_of(base)
    weights = int(get_flat_parameters(task.model(seed=grid.seed)).size)
    accounts = max(*grid.clients, grid.secagg_members, 5) + 2
    compile_contracts()  # compiled now (when the sources changed), not inside the first row's time
    with prague_anvil(accounts) as chain:
        accuracy = []
        for clients in grid.clients:
            runs: list[tuple[str, float | None]] = [
                *((("none", None),) if grid.no_dp else ()),
                *(("sample", s) for s in grid.sample_sigmas),
                *(("update", s) for s in grid.update_sigmas),
            ]
            for level, sigma in runs:
                row = accuracy_row(
                    chain, project, base, task, clients=clients, level=level, sigma=sigma
                )
                log(
                    f"{clients} clients, {level}, sigma {sigma}: {100 * row['accuracy']:.1f} % at "
                    f"epsilon {_fmt(row['epsilon'])} ({row['seconds']:.0f} s)"
                    + (
                        f"; ledger within step: {row['ledger']['within_step']}"
                        if "ledger" in row
                        else ""
                    )
                )
                accuracy.append(row)
        refused = refusal(chain, project, base, task, grid)
        log(
            f"refusal: boundary {refused['boundary_admitted']}, "
            f"refused {refused['next_refused_with_budget_error']}"
        )
        secagg = secure_aggregation(chain, base, grid)
    return {
        "settings": {
            "dataset": DATASET,
            "weights": weights,
            "partition": "iid",
            "rounds": grid.rounds,
            "epochs": EPOCHS,
            "batch_size": BATCH_SIZE,
            "learning_rate": LEARNING_RATE,
            "clip": CLIP,
            "delta": DELTA,
            "sample_sigmas": list(grid.sample_sigmas),
            "update_sigmas": list(grid.update_sigmas),
            "ledger_budget": LEDGER_BUDGET,
            "seed": grid.seed,
            "chain": "anvil (instant mining, tx gas cap on, Prague), one node for every run",
            "grid": asdict(grid),
        },
        "goal": {"accuracy": GOAL_ACCURACY, "epsilon": GOAL_EPSILON},
        "reference": {"abadi_2016": [list(p) for p in ABADI_2016], "note": ABADI_NOTE},
        "accuracy": accuracy,
        "refusal": refused,
        "secure_aggregation": secagg,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and write its results; exit 1 when a check fails (a ledger figure out
    of its step, a refusal missing, a secure-aggregation model that differs)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog=f"python -m {MODULE}", description=(__doc__ or "").splitlines()[0]
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="5 clients, 3 rounds, fewer cases")
    size.add_argument("--smoke", action="store_true", help="the tests' run of a few seconds")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for privacy.*")
    args = parser.parse_args(arguments)
    started = time.perf_counter()
    info = machine()
    _log(f"machine: {info}")
    grid = Grid.quick() if args.quick else Grid.smoke() if args.smoke else Grid()
    torch.set_num_threads(1)  # 2 shared cores; training and evaluation are tiny matrices
    contracts = contracts_fingerprint()
    data = {
        "command": command_line(MODULE, arguments),
        "machine": info,
        "contracts": contracts,
        **benchmark(grid, load_config()),
    }
    data["seconds"] = round(time.perf_counter() - started, 1)
    data["load_average_at_end"] = list(os.getloadavg())
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    data["cpu_seconds"] = {  # children: anvil (reaped at the end) and the compiler, if it ran
        "python": round(own.ru_utime + own.ru_stime, 1),
        "children": round(children.ru_utime + children.ru_stime, 1),
    }
    ledgers = [r["ledger"] for r in data["accuracy"] if "ledger" in r]
    cases = data["secure_aggregation"]["cases"]
    beyond = cases[-1]["t_plus_one_round"]
    checks = {
        "ledger_equals_curve": all(
            lg["max_abs_chain_minus_curve_micro"] == 0 and lg["deployed_curve_matches_python"]
            for lg in ledgers
        ),
        "ledger_within_step_of_accountant": all(lg["within_step"] for lg in ledgers),
        "ledger_never_below_any_client": all(lg["never_below_own_accountant"] for lg in ledgers),
        "budget_boundary_and_refusal": data["refusal"]["boundary_admitted"]
        and data["refusal"]["next_refused_with_budget_error"],
        "secagg_same_model_as_direct_and_relayed": all(c["same_model_every_round"] for c in cases),
        "secagg_up_to_t_dropouts_complete": all(
            c["rounds_completed"]["masked"] == len(c["rounds"]) for c in cases[:-1]
        ),
        "secagg_t_plus_one_ends_unpaid_and_moves_on": all(
            beyond[k]
            for k in (
                "ended_without_model",
                "paid_nothing",
                "next_round_open",
                "next_round_completed",
            )
        ),
    }
    data["checks"] = checks
    data["findings"] = {  # product properties measured on the way, not the benchmark's claims
        "closes_within_planner_bound": all(close_within_bound(c) for c in cases),
        "failed_transactions": sum(sum(c["failed_transactions"].values()) for c in cases),
    }
    best = best_within_goal_epsilon(data["accuracy"])
    data["best_within_goal_epsilon"] = (
        None
        if best is None
        else {k: best[k] for k in ("clients", "level", "sigma", "epsilon", "accuracy")}
    )
    data["goal_met_by"] = [
        {
            "clients": r["clients"],
            "sigma": r["sigma"],
            "epsilon": r["epsilon"],
            "accuracy": r["accuracy"],
        }
        for r in data["accuracy"]
        if r["meets_goal"]
    ]
    if contracts_fingerprint()["contracts_sha256"] != contracts["contracts_sha256"]:
        data["contracts"]["changed_during_run"] = True
        _log("warning: the contracts changed while the benchmark ran; run it again")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    write_json("privacy", data, out / "privacy.json")
    (out / "privacy.md").write_text(markdown(data), encoding="utf-8")
    plot(data, out / "privacy.png")
    _log(f"checks: {checks}; wrote {out}/privacy.json, privacy.md, privacy.png")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
