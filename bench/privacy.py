"""Privacy benchmark on MNIST 5k: accuracy against epsilon, and what the secure modes cost.

Run: ``.venv/bin/python -m bench.privacy`` (about 4 minutes on 2 cores; ``--quick``: about 1).
Writes ``bench/results/privacy.json``, ``privacy.md`` and ``privacy.png``.

- **Accuracy against epsilon** (client-side differential privacy): the chain-based federated run
  (:func:`~fl_client.simulation.run_simulation`, 5 clients x 10 rounds, IID, one anvil with
  instant mining) without DP, then with DP for each noise multiplier ``sigma``. Each client clips
  its update (trained minus global weights) to L2 norm ``C`` and adds N(0, (sigma C)^2) to every
  weight before quantization; its epsilon at ``delta`` after R rounds comes from the RDP
  accountant (:func:`fl_client.privacy.epsilon`). ``C`` is, unless ``--clip-norm`` fixes it, the
  median L2 norm of the five honest round-1 updates, measured before the runs: every update of
  round 1 keeps (nearly) its full length, and since the noise scales with ``C`` a larger ``C``
  only adds noise. Clip statistics (norms before clipping, updates clipped) are recorded from the
  clients' own calls to :func:`fl_client.privacy.privatize`.
- **Secure modes against direct submission**: the same setting (5 clients, a few rounds, no DP)
  in ``direct``, ``commit_reveal`` and ``secure_aggregation`` mode: gas of every transaction
  (read back from the blocks and grouped by contract function), per submission and per round,
  wall time per round and accuracy; the secure modes must end in the same models (hashes) as
  direct submission: masks cancel exactly, and commit-reveal only delays the same words.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
from tqdm import tqdm

import fl_client.client as client_module
from bench.common import SendWarnings, anvil_node, machine
from fl_client.chain import CONTRACT_NAME, Chain, connect, contract_at
from fl_client.codec import dequantize, encode, unpack
from fl_client.compile import get_contract
from fl_client.config import FLConfig, ProjectConfig, load_config
from fl_client.data import load_dataset, make_shards
from fl_client.model import build_model, get_flat_parameters, set_flat_parameters
from fl_client.privacy import DPConfig, PrivatizedUpdate, epsilon, privatize
from fl_client.simulation import SimulationResult, run_simulation
from fl_client.training import TrainConfig, client_seed, train_local

RESULTS = Path(__file__).resolve().parent / "results"
COMMAND = ".venv/bin/python -m bench.privacy"
DATASET = "mnist5k"
MODES = ("direct", "commit_reveal", "secure_aggregation")
DEFAULT_SIGMAS = (2.0, 0.3, 0.1, 0.03, 0.01)
QUICK_SIGMAS = (0.3, 0.01)
# Functions whose first argument is the round number.
ROUND_FUNCTIONS = frozenset({"submit", "commit", "reveal", "submitMasked"})


# ---------------------------------------------------------------- measurements


def train_config(fl: FLConfig) -> TrainConfig:
    """The local-training settings of ``fl``."""
    return TrainConfig(
        epochs=fl.epochs,
        batch_size=fl.batch_size,
        learning_rate=fl.learning_rate,
        algorithm=fl.algorithm,
    )


def round_one_norms(fl: FLConfig) -> list[float]:
    """L2 norms of the honest round-1 updates, computed as the participants compute them.

    Same initial (quantized) model, shards and training seeds as :func:`run_simulation`, so these
    are exactly the norms that the clients of every run see in round 1.
    """
    dataset = load_dataset(fl.dataset, test_fraction=fl.test_fraction, seed=fl.seed)
    shards = make_shards(
        dataset, fl.clients, scheme=fl.partition, alpha=fl.dirichlet_alpha, seed=fl.seed
    )
    model = build_model(dataset.num_features, dataset.num_classes, seed=fl.seed)
    flat = get_flat_parameters(model)
    words, _ = encode(flat, fl.fixed_point)
    initial = dequantize(unpack(words, flat.size), fl.fixed_point)
    norms = []
    for client in range(fl.clients):
        set_flat_parameters(model, initial)
        train_local(model, shards[client], train_config(fl), seed=client_seed(fl.seed, client, 1))
        update = get_flat_parameters(model).astype(np.float64) - initial.astype(np.float64)
        norms.append(float(np.linalg.norm(update)))
    return norms


@contextmanager
def recorded_privatize() -> Iterator[list[PrivatizedUpdate]]:
    """Record what every participant's call to ``privatize`` returned, in call order."""
    records: list[PrivatizedUpdate] = []

    def recording(
        global_weights: np.ndarray, trained: np.ndarray, config: DPConfig, *, seed: int
    ) -> PrivatizedUpdate:
        result = privatize(global_weights, trained, config, seed=seed)
        records.append(result)
        return result

    with mock.patch.object(client_module, "privatize", new=recording):
        yield records


def clip_statistics(
    records: Sequence[PrivatizedUpdate], clients: int, rounds: int, clip_norm: float
) -> dict[str, Any]:
    """Per-round and overall clipping figures (each client privatizes once per round, in order)."""
    if len(records) != clients * rounds:
        raise RuntimeError(
            f"expected {clients * rounds} privatized updates, recorded {len(records)}"
        )
    per_round = []
    for r in range(rounds):
        chunk = records[r * clients : (r + 1) * clients]
        norms = [u.update_norm for u in chunk]
        per_round.append(
            {
                "round": r + 1,
                "median_norm": statistics.median(norms),
                "min_norm": min(norms),
                "max_norm": max(norms),
                "clipped": sum(u.clipped for u in chunk),
            }
        )
    norms = [u.update_norm for u in records]
    return {
        "clip_norm": clip_norm,
        "updates": len(records),
        "clipped": sum(u.clipped for u in records),
        "clipped_fraction": sum(u.clipped for u in records) / len(records),
        "median_norm": statistics.median(norms),
        "norm_over_clip_median": statistics.median(norms) / clip_norm,
        "per_round": per_round,
    }


def transactions(
    chain: Chain, address: str, first_block: int, last_block: int
) -> list[dict[str, Any]]:
    """Every transaction to the coordinator at ``address`` in the blocks, with its gas.

    The function is read from the selector, the round from the first argument where it is one.
    """
    contract = contract_at(chain, address)
    target = contract.address.lower()
    out = []
    for number in range(first_block, last_block + 1):
        block = chain.w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            if isinstance(tx, bytes) or str(tx.get("to") or "").lower() != target:
                continue
            data = bytes(tx["input"])
            name = contract.get_function_by_selector(data[:4]).fn_name
            receipt = chain.w3.eth.get_transaction_receipt(tx["hash"])
            out.append(
                {
                    "function": name,
                    "round": int.from_bytes(data[4:36], "big") if name in ROUND_FUNCTIONS else None,
                    "sender": str(tx["from"]),
                    "gas": int(receipt["gasUsed"]),
                    "calldata_bytes": len(data),
                }
            )
    return out


def run_on(
    chain_factory: Callable[[], Chain],
    fl: FLConfig,
    project: ProjectConfig,
    progress: Callable[[str], None],
) -> tuple[SimulationResult, list[dict[str, Any]]]:
    """One chain-based run on a fresh connection; its result and its transactions."""
    chain = chain_factory()
    first = int(chain.w3.eth.block_number) + 1
    result = run_simulation(
        fl, project=project, chain=chain, check_accuracy=False, progress=progress
    )
    txs = transactions(chain, result.contract_address, first, int(chain.w3.eth.block_number))
    return result, txs


def dp_summary(
    result: SimulationResult,
    sigma: float | None,
    clip_norm: float,
    delta: float,
    records: Sequence[PrivatizedUpdate],
) -> dict[str, Any]:
    """What the report keeps of one run of the accuracy-against-epsilon sweep."""
    rounds = len(result.rounds)
    record: dict[str, Any] = {
        "noise_multiplier": sigma,
        "dp": sigma is not None,
        "noise_std_per_weight": None if sigma is None else sigma * clip_norm,
        "accuracy_chain": [r.accuracy_chain for r in result.rounds],
        "accuracy_plain_no_dp": [r.accuracy_plain for r in result.rounds],
        "final_accuracy": result.rounds[-1].accuracy_chain,
        "epsilon_per_round": [r.epsilon for r in result.rounds],
        "epsilon": None if sigma is None else result.rounds[-1].epsilon,
        # Any two datasets of one client: clipped updates differ by up to 2C in L2, i.e. the
        # mechanism with noise multiplier sigma / 2.
        "epsilon_replace": None if sigma is None else epsilon(sigma / 2, rounds, delta),
        "weights_saturated": sum(r.clipped for r in result.rounds),
        "exact_average": all(r.exact_average for r in result.rounds),
        "model_hashes": [r.model_hash for r in result.rounds],
        "seconds_per_round": [r.seconds for r in result.rounds],
        "seconds": result.seconds,
    }
    if sigma is not None:
        record["clipping"] = clip_statistics(records, result.clients, rounds, clip_norm)
    return record


def mode_summary(result: SimulationResult, txs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Gas, time and accuracy of one mode, from its result and its transactions."""
    setup_functions = {"loadInitialModel", "loadZeroModel"}
    rounds = len(result.rounds)
    by_function: dict[str, list[int]] = {}
    for tx in txs:
        by_function.setdefault(tx["function"], []).append(tx["gas"])
    per_round: list[int] = []
    for number in range(1, rounds + 1):
        per_round.append(sum(tx["gas"] for tx in txs if tx["round"] == number))
    registration = sum(by_function.get("registerKey", []))
    # Transactions that belong to no round and are no set-up (finalize; none in these runs).
    other = sum(
        tx["gas"]
        for tx in txs
        if tx["round"] is None and tx["function"] not in setup_functions | {"registerKey"}
    )
    submissions = sum(r.submissions for r in result.rounds)
    return {
        "mode": result.settings["mode"],
        "rounds": rounds,
        "clients": result.clients,
        "lane_bits": result.lane_bits,
        "deploy_gas": result.deploy_gas,
        "registration_gas": registration,
        "other_gas": other,
        "gas_per_round": per_round,
        "gas_per_round_mean": statistics.mean(per_round),
        "gas_per_submission_mean": sum(per_round) / submissions,
        "gas_per_submission_with_registration": (sum(per_round) + registration) / submissions,
        "transactions_per_submission": sum(1 for tx in txs if tx["round"] is not None)
        / submissions,
        "functions": {
            name: {
                "count": len(gas),
                "median": statistics.median(gas),
                "min": min(gas),
                "max": max(gas),
            }
            for name, gas in sorted(by_function.items())
        },
        "round_gas_reported": [r.gas_used for r in result.rounds],
        "seconds_per_round": [r.seconds for r in result.rounds],
        "seconds_per_round_mean": statistics.mean(r.seconds for r in result.rounds),
        "accuracy_chain": [r.accuracy_chain for r in result.rounds],
        "final_accuracy": result.rounds[-1].accuracy_chain,
        "model_hashes": [r.model_hash for r in result.rounds],
        "exact_average": all(r.exact_average for r in result.rounds),
        "submissions": submissions,
        "seconds": result.seconds,
    }


# ---------------------------------------------------------------- report


def _eps(value: float | None) -> str:
    if value is None:
        return "- (no DP)"
    if math.isinf(value):
        return "inf"
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def markdown(report: dict[str, Any]) -> str:
    """The tables the README quotes."""
    s = report["settings"]
    dp = report["dp"]
    ref = dp["runs"][0]
    lines = [
        f"Privacy on {s['dataset']} ({s['num_weights']:,} weights; {s['clients']} clients, IID, "
        f"E={s['epochs']}, B={s['batch_size']}, lr={s['learning_rate']}, seed {s['seed']}; anvil "
        f"with instant mining). Command: `{report['command']}`; wall time "
        f"{report['seconds'] / 60:.1f} min.",
        "",
        "### Accuracy against epsilon (client-side differential privacy)",
        "",
        f"Each client clips its update (trained minus global weights) to L2 norm C = "
        f"{dp['clip_norm']:.2f} and adds Gaussian noise of std sigma x C to each of the "
        f"{s['num_weights']:,} weights before quantization: local, client-level DP, every client "
        f"adds its own noise and every submission is public. C is {dp['clip_norm_source']}. "
        f"epsilon: each client's, at delta = {dp['delta']:g} after {dp['rounds']} rounds (RDP "
        "accountant, every client in every round, so no amplification by sampling). The "
        "accountant treats one round as a Gaussian mechanism of sensitivity C (the update against "
        "no update); between any two datasets of a client the clipped updates can differ by 2C, "
        "and that stricter local-DP epsilon is in the next column. Saturated: weights that hit "
        "the fixed-point bound (+-max_abs) over all submissions.",
        "",
        "| sigma | noise std / weight | epsilon | epsilon (2C) | final accuracy % | vs no DP (pp) "
        "| updates clipped | median update norm | saturated weights |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in dp["runs"]:
        sigma = run["noise_multiplier"]
        clip = run.get("clipping")
        noise = "-" if sigma is None else f"{run['noise_std_per_weight']:.3g}"
        clipped = "-" if clip is None else f"{clip['clipped']}/{clip['updates']}"
        median = "-" if clip is None else f"{clip['median_norm']:.2f}"
        lines.append(
            f"| {'none' if sigma is None else f'{sigma:g}'} | {noise} | "
            f"{_eps(run['epsilon'])} | {_eps(run['epsilon_replace'])} | "
            f"{100 * run['final_accuracy']:.2f} | "
            f"{100 * (run['final_accuracy'] - ref['final_accuracy']):+.2f} | "
            f"{clipped} | {median} | {run['weights_saturated']:,} |"
        )
    norms = ", ".join(f"{n:.2f}" for n in dp["round_one_norms"])
    lines += [
        "",
        f"Round-1 update norms of the {s['clients']} clients (no DP): {norms}. With C at the "
        "typical norm, one client's noise vector is about sigma x sqrt(weights) = "
        f"{math.sqrt(s['num_weights']):.0f} sigma times as long as its clipped update, so a "
        "useful model needs sigma far below 1 in this many dimensions with this few clients, "
        "where epsilon is far beyond any meaningful guarantee. Local DP in "
        f"{s['num_weights']:,} dimensions with {s['clients']} clients is expensive in accuracy.",
        "",
        "### Secure modes against direct submission",
        "",
        f"Same setting without DP, {report['modes']['rounds']} rounds. Gas read back from the "
        "blocks, per contract function; a submission is one client's transactions of one round "
        "(commit-reveal: commit + reveal). Secure aggregation also registers each client's "
        "X25519 key once (shown apart). Wall time per round: training of every client, the "
        "masks, the submissions one after the other from one process, and the evaluation.",
        "",
        "| mode | gas / submission | gas / round | key registration (once, all clients) "
        "| s / round | final accuracy % | same models as direct |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for run in report["modes"]["runs"]:
        lines.append(
            f"| {run['mode']} | {run['gas_per_submission_mean']:,.0f} | "
            f"{run['gas_per_round_mean']:,.0f} | "
            f"{run['registration_gas']:,} | {run['seconds_per_round_mean']:.2f} | "
            f"{100 * run['final_accuracy']:.2f} | "
            f"{'yes' if run['same_models_as_direct'] else '**no**'} |"
        )
    detail = []
    for run in report["modes"]["runs"]:
        parts = [
            f"{name} {f['median']:,.0f}"
            for name, f in run["functions"].items()
            if name in ROUND_FUNCTIONS | {"registerKey"}
        ]
        detail.append(f"{run['mode']}: " + ", ".join(parts))
    lines += [
        "",
        "Median gas per transaction: " + "; ".join(detail) + ". The closing submission of a "
        "round also averages the sums and stores the new model.",
    ]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], directory: Path) -> Path:
    """``privacy.png``: final accuracy against epsilon, and accuracy per round."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["dp"]["runs"]
    reference = runs[0]
    private = [r for r in runs if r["dp"]]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(
        [r["epsilon"] for r in private],
        [100 * r["final_accuracy"] for r in private],
        marker="o",
        label="client-side DP (epsilon, sensitivity C)",
    )
    for r in private:
        left.annotate(
            f"sigma={r['noise_multiplier']:g}",
            (r["epsilon"], 100 * r["final_accuracy"]),
            textcoords="offset points",
            xytext=(4, -10),
            fontsize=7,
        )
    left.axhline(100 * reference["final_accuracy"], color="black", linestyle="--", label="no DP")
    left.axhline(10.0, color="grey", linestyle=":", label="chance (10 classes)")
    left.set_xscale("log")
    left.set_xlabel(
        f"epsilon per client after {report['dp']['rounds']} rounds (delta = {report['dp']['delta']:g})"
    )
    left.set_ylabel("final test accuracy (%)")
    left.set_title("accuracy against epsilon")
    left.grid(True, alpha=0.3, which="both")
    left.legend(fontsize=7)
    for r in runs:
        label = "no DP" if not r["dp"] else f"sigma={r['noise_multiplier']:g}"
        right.plot(
            range(1, len(r["accuracy_chain"]) + 1),
            [100 * a for a in r["accuracy_chain"]],
            marker="o",
            markersize=3,
            label=label,
        )
    right.set_xlabel("round")
    right.set_ylabel("test accuracy (%)")
    right.set_title("accuracy per round")
    right.grid(True, alpha=0.3)
    right.legend(fontsize=7)
    figure.tight_layout()
    path = directory / "privacy.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


# ---------------------------------------------------------------- main


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=None, help="DP sweep rounds (10)")
    parser.add_argument(
        "--sigmas", type=float, nargs="+", default=None, help="noise multipliers (besides no DP)"
    )
    parser.add_argument(
        "--clip-norm",
        type=float,
        default=None,
        help="fixed C (default: the median norm of the honest round-1 updates)",
    )
    parser.add_argument("--mode-rounds", type=int, default=None, help="rounds per mode (3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--quick", action="store_true", help="a reduced run: 3 DP rounds, 2 sigmas, 2 mode rounds"
    )
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 3 if args.quick else 10
    if args.sigmas is None:
        args.sigmas = list(QUICK_SIGMAS if args.quick else DEFAULT_SIGMAS)
    if args.mode_rounds is None:
        args.mode_rounds = 2 if args.quick else 3
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and write its results; exit 1 when a secure mode changes the model."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(arguments)
    started = time.perf_counter()
    # The clients log every quantization clip (frequent under heavy noise): keep them off the
    # terminal; SendWarnings below still counts the chain's retries.
    logging.getLogger("fl_client").addHandler(logging.NullHandler())
    project = load_config()
    base = project.fl.with_overrides(
        dataset=DATASET, clients=args.clients, partition="iid", seed=args.seed
    )
    delta = base.privacy.delta
    get_contract(CONTRACT_NAME)  # compile (or read the build cache) before any timing

    fl_dp = base.with_overrides(rounds=args.rounds)
    norms = round_one_norms(fl_dp)
    if args.clip_norm is None:
        clip_norm = statistics.median(norms)
        clip_source = (
            f"the median L2 norm of the {args.clients} honest round-1 updates ({clip_norm:.2f}), "
            "measured before the runs"
        )
    else:
        clip_norm = args.clip_norm
        clip_source = f"fixed at {clip_norm:g} (--clip-norm)"
    settings: list[float | None] = [None, *sorted(args.sigmas, reverse=True)]
    total = args.clients * (args.rounds * len(settings) + args.mode_rounds * len(MODES))

    dp_runs: list[dict[str, Any]] = []
    mode_runs: list[dict[str, Any]] = []
    with (
        SendWarnings() as warnings,
        anvil_node(accounts=max(20, args.clients + 2)) as node,
        tqdm(total=total, desc="privacy", unit="submission") as bar,
    ):

        def tick(message: str) -> None:
            if "submitted" in message:
                bar.update(1)

        def fresh_chain() -> Chain:
            return connect("anvil", config=project, url=node.url)

        for sigma in settings:
            bar.set_postfix_str("no DP" if sigma is None else f"sigma {sigma:g}")
            privacy = replace(
                base.privacy,
                dp=sigma is not None,
                clip_norm=clip_norm,
                noise_multiplier=0.0 if sigma is None else sigma,
            )
            with recorded_privatize() as records:
                result, _ = run_on(fresh_chain, replace(fl_dp, privacy=privacy), project, tick)
            dp_runs.append(dp_summary(result, sigma, clip_norm, delta, records))
            num_weights = result.num_weights
        for mode in MODES:
            bar.set_postfix_str(mode)
            fl_mode = base.with_overrides(
                rounds=args.mode_rounds, contract=replace(base.contract, mode=mode)
            )
            result, txs = run_on(fresh_chain, fl_mode, project, tick)
            mode_runs.append(mode_summary(result, txs) | {"transactions": txs})

    direct = mode_runs[0]
    for run in mode_runs:
        run["same_models_as_direct"] = run["model_hashes"] == direct["model_hashes"]
        run["accuracy_minus_direct_pp"] = 100 * (run["final_accuracy"] - direct["final_accuracy"])
        run["gas_per_submission_vs_direct"] = (
            run["gas_per_submission_mean"] / direct["gas_per_submission_mean"]
        )
        run["seconds_per_round_vs_direct"] = (
            run["seconds_per_round_mean"] / direct["seconds_per_round_mean"]
        )
    # The direct mode run is the first rounds of the no-DP reference (same seeds throughout).
    reference_prefix = dp_runs[0]["model_hashes"][: args.mode_rounds]
    report: dict[str, Any] = {
        "command": " ".join([COMMAND, *arguments]),
        "seconds": 0.0,
        "quick": args.quick,
        "machine": machine(),
        "settings": {
            "dataset": DATASET,
            "num_weights": num_weights,
            "clients": args.clients,
            "partition": "iid",
            "epochs": base.epochs,
            "batch_size": base.batch_size,
            "learning_rate": base.learning_rate,
            "aggregation": base.contract.aggregation,
            "scale": base.fixed_point.scale,
            "max_abs": base.fixed_point.max_abs,
            "seed": base.seed,
            "chain": "anvil, instant mining (one node for every run, a fresh deployment per run)",
        },
        "dp": {
            "rounds": args.rounds,
            "delta": delta,
            "clip_norm": clip_norm,
            "clip_norm_source": clip_source,
            "round_one_norms": norms,
            "privacy_unit": (
                "client-level, local DP: each client clips and noises its own update; epsilon "
                "bounds what the client's public submissions over all rounds reveal about its "
                "whole dataset; 'epsilon' takes sensitivity C (update against no update, as the "
                "accountant in fl_client.privacy does), 'epsilon_replace' sensitivity 2C (any two "
                "datasets of the client)"
            ),
            "runs": dp_runs,
        },
        "modes": {
            "rounds": args.mode_rounds,
            "direct_matches_reference_prefix": direct["model_hashes"] == reference_prefix,
            "runs": mode_runs,
        },
        "send_retries": warnings.counts,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    report["plots"] = [plot(report, args.out).name]
    report["seconds"] = round(time.perf_counter() - started, 1)
    (args.out / "privacy.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    text = markdown(report)
    (args.out / "privacy.md").write_text(text, encoding="utf-8")
    print(text)
    ok = all(r["same_models_as_direct"] and r["exact_average"] for r in mode_runs) and all(
        r["exact_average"] for r in dp_runs
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
