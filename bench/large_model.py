"""The 101,770-weight MLP through the chain, beside plain PyTorch FedAvg (issue 12, item 8).

Run: ``.venv/bin/python -m bench.large_model`` (2.5 to 4.5 minutes on 2 cores, depending on the
machine's load; about 72 s of CPU). Writes
``bench/results/large_model.json`` and ``large_model.md`` (the table the README quotes).

The built-in ``mnist5k`` task with ``hidden_layers: [128]``: an MLP 784 -> 128 -> 10 (101,770
weights, 6,361 words: 9 segments of up to 707 words at 5 clients) on 5 IID clients x 5 rounds
with the project's ``federated_learning`` settings otherwise (E=5, B=10, lr 0.3, FedAvg, plain
mean, L1, fixed point 1/1024: the MLP trains well with them, so they are kept; the JSON lists
them), through :func:`fl_client.simulation.run_simulation` on an anvil with instant mining and
mainnet's per-transaction gas cap (or ``--network embedded``). Beside it, the simulation's plain
run: the same task, seeds, shards and quantized initial model, with the float average in place of
the contract. Per round: the test accuracy of the on-chain model and of the plain run and their
gap, the gas of the round, and every transaction of the round (each client's two ``submit``
transactions, each segment close), its gas used and its calldata bytes, read back from the
blocks. The largest transaction of the whole run (units, deployment and model load included) in
gas and in bytes is held against the two limits: 16,777,216 gas (EIP-7825) and 128 KiB encoded
(``MAX_CALLDATA_BYTES`` = 131,072 - 1,024 of calldata; the encoded size is the signed raw
transaction when the node returns it, else the calldata plus a conservative 150 bytes). Exit 1
when the final accuracies differ by more than 0.5 pp, a transaction breaks a limit, or an
on-chain model is not the exact integer average of the submissions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hexbytes import HexBytes
from tqdm import tqdm
from web3.contract import Contract

from bench.common import RESULTS, anvil_node, contracts_fingerprint, machine, write_json
from fl_client.chain import MAX_CALLDATA_BYTES, Chain, connect, contract_at
from fl_client.config import FLConfig, load_config
from fl_client.simulation import SimulationResult, run_simulation

COMMAND = ".venv/bin/python -m bench.large_model"
HIDDEN_LAYERS = (128,)
TOLERANCE_PP = 0.5
TX_GAS_CAP = 16_777_216  # EIP-7825
TX_BYTES_LIMIT = 131_072  # 128 KiB encoded, what geth-style pools accept
ENVELOPE_BYTES = 150  # conservative: an EIP-1559 transaction's fields besides its calldata
# The coordinator's functions whose first argument is the round.
ROUND_FUNCTIONS = frozenset(
    {"submit", "submitRelayed", "closeSegment", "commit", "reveal", "submitMasked"}
)


@dataclass(frozen=True)
class Transaction:
    """One mined transaction, as its block and receipt give it."""

    block: int
    function: str  # the coordinator's function, or "create" for a deployment
    round_number: int | None  # the round its first argument names (None: not a round's)
    segment: int | None  # closeSegment's segment, submit's first segment
    gas: int
    calldata_bytes: int
    encoded_bytes: int  # the signed raw transaction (or calldata + ENVELOPE_BYTES)
    sender: str

    @property
    def label(self) -> str:
        """What it was, for the tables."""
        where = "" if self.round_number is None else f" round {self.round_number}"
        part = "" if self.segment is None else f" segment {self.segment}"
        return f"{self.function}{where}{part} (block {self.block})"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {
            "block": self.block,
            "function": self.function,
            "round": self.round_number,
            "segment": self.segment,
            "gas": self.gas,
            "calldata_bytes": self.calldata_bytes,
            "encoded_bytes": self.encoded_bytes,
            "sender": self.sender,
        }


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The benchmark's options (the defaults are the README's figures; ``None``: the project's)."""
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=None, help="E (default: the project's)")
    parser.add_argument("--batch-size", type=int, default=None, help="B (default: the project's)")
    parser.add_argument("--lr", type=float, default=None, help="lr (default: the project's)")
    parser.add_argument("--seed", type=int, default=None, help="default: the project's")
    parser.add_argument(
        "--network",
        choices=["anvil", "embedded"],
        default="anvil",
        help="anvil (started and stopped here) or the in-process chain (much slower: pure Python)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results")
    return parser.parse_args(list(argv))


def settings(
    *,
    clients: int,
    rounds: int,
    epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    seed: int | None = None,
) -> FLConfig:
    """The project's federated-learning settings with the MLP on mnist5k (``None``: keep)."""
    return load_config().fl.with_overrides(
        dataset="mnist5k",
        hidden_layers=HIDDEN_LAYERS,
        clients=clients,
        rounds=rounds,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
    )


def raw_size(chain: Chain, tx_hash: HexBytes, calldata_bytes: int) -> int:
    """The signed transaction's encoded size (anvil's ``eth_getRawTransactionByHash``), or the
    calldata plus :data:`ENVELOPE_BYTES` when the node does not give it."""
    try:
        response = chain.w3.provider.make_request(
            "eth_getRawTransactionByHash",  # type: ignore[arg-type]
            [tx_hash.to_0x_hex()],
        )
    except Exception:  # the embedded chain has no such method
        return calldata_bytes + ENVELOPE_BYTES
    result = response.get("result") if isinstance(response, dict) else None
    if not isinstance(result, str) or len(result) < 4:
        return calldata_bytes + ENVELOPE_BYTES
    return len(HexBytes(result))


def transactions_since(chain: Chain, first_block: int, contract: Contract) -> list[Transaction]:
    """Every transaction mined from ``first_block`` on, labelled from the coordinator's ABI."""
    found: list[Transaction] = []
    coordinator = str(contract.address).lower()
    for number in range(first_block, chain.w3.eth.block_number + 1):
        block = chain.w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            assert not isinstance(tx, bytes)
            receipt = chain.w3.eth.get_transaction_receipt(tx["hash"])
            data = HexBytes(tx.get("input", tx.get("data", b"")))
            function, round_number, segment = "create", None, None
            to = tx.get("to")
            if to is not None:
                function = "call"
                if str(to).lower() == coordinator:
                    decoded, args = contract.decode_function_input(data)
                    function = str(decoded.fn_name)
                    if function in ROUND_FUNCTIONS:
                        round_number = int(args["round"])
                    if "segment" in args:
                        segment = int(args["segment"])
                    elif "firstSegment" in args:
                        segment = int(args["firstSegment"])
            found.append(
                Transaction(
                    block=number,
                    function=function,
                    round_number=round_number,
                    segment=segment,
                    gas=int(receipt["gasUsed"]),
                    calldata_bytes=len(data),
                    encoded_bytes=raw_size(chain, HexBytes(tx["hash"]), len(data)),
                    sender=str(tx["from"]),
                )
            )
    return found


def within_limits(transaction: Transaction) -> bool:
    """Under the gas cap and 128 KiB (the calldata limit and the encoded limit)."""
    return (
        transaction.gas <= TX_GAS_CAP
        and transaction.calldata_bytes <= MAX_CALLDATA_BYTES
        and transaction.encoded_bytes <= TX_BYTES_LIMIT
    )


def summary(
    result: SimulationResult,
    chain: Chain,
    fl: FLConfig,
    transactions: Sequence[Transaction],
    network: str,
    seconds: float,
) -> dict[str, Any]:
    """The JSON record of a run."""
    contract = contract_at(chain, result.contract_address)
    words_per_segment = int(contract.functions.wordsPerSegment().call())
    num_words = int(contract.functions.numWords().call())
    rounds = []
    for report in result.rounds:
        own = [t for t in transactions if t.round_number == report.round_number]
        submissions = [t for t in own if t.function != "closeSegment"]
        closes = [t for t in own if t.function == "closeSegment"]
        rounds.append(
            {
                "round": report.round_number,
                "accuracy_chain": report.accuracy_chain,
                "accuracy_plain": report.accuracy_plain,
                "gap_pp": report.gap_pp,
                "gas_used": report.gas_used,
                "gas_of_its_transactions": sum(t.gas for t in own),
                "gas_per_weight_per_client": report.gas_used
                / max(1, report.submissions)
                / result.num_weights,
                "submissions": report.submissions,
                "submission_transactions": len(submissions),
                "close_transactions": len(closes),
                "max_tx_gas": max(t.gas for t in own),
                "max_tx_gas_what": max(own, key=lambda t: t.gas).label,
                "max_tx_calldata_bytes": max(t.calldata_bytes for t in own),
                "max_tx_encoded_bytes": max(t.encoded_bytes for t in own),
                "max_tx_bytes_what": max(own, key=lambda t: t.encoded_bytes).label,
                "exact_average": report.exact_average,
                "seconds": report.seconds,
                "transactions": [t.to_json() for t in own],
            }
        )
    heaviest = max(transactions, key=lambda t: t.gas)
    largest = max(transactions, key=lambda t: t.encoded_bytes)
    round_gas = [report.gas_used for report in result.rounds]
    return {
        "command": COMMAND,
        "network": network,
        "model": "MLP 784 -> 128 -> 10 (mnist5k, hidden_layers [128])",
        "settings": {
            "dataset": fl.dataset,
            "hidden_layers": list(fl.hidden_layers),
            "clients": fl.clients,
            "rounds": fl.rounds,
            "epochs": fl.epochs,
            "batch_size": fl.batch_size,
            "learning_rate": fl.learning_rate,
            "algorithm": fl.algorithm,
            "partition": fl.partition,
            "fraction": fl.fraction,
            "seed": fl.seed,
            "aggregation": fl.contract.aggregation,
            "distance": fl.contract.distance,
            "scale": fl.fixed_point.scale,
            "max_abs": fl.fixed_point.max_abs,
            "mode": fl.contract.mode,
        },
        "num_weights": result.num_weights,
        "num_words": num_words,
        "num_segments": result.num_segments,
        "words_per_segment": words_per_segment,
        "deploy_gas": result.deploy_gas,
        "initial_accuracy": result.initial_accuracy,
        "rounds": rounds,
        "final_accuracy_chain": result.rounds[-1].accuracy_chain,
        "final_accuracy_plain": result.rounds[-1].accuracy_plain,
        "final_gap_pp": result.final_gap_pp,
        "tolerance_pp": TOLERANCE_PP,
        "gas_per_round_median": statistics.median(round_gas),
        "gas_per_round_max": max(round_gas),
        "transactions": len(transactions),
        "max_tx_gas": heaviest.gas,
        "max_tx_gas_what": heaviest.label,
        "max_tx_calldata_bytes": max(t.calldata_bytes for t in transactions),
        "max_tx_encoded_bytes": largest.encoded_bytes,
        "max_tx_bytes_what": largest.label,
        "tx_gas_cap": TX_GAS_CAP,
        "max_calldata_bytes": MAX_CALLDATA_BYTES,
        "tx_bytes_limit": TX_BYTES_LIMIT,
        "encoded_bytes_measured": network == "anvil",
        "every_transaction_within_limits": all(within_limits(t) for t in transactions),
        "every_average_exact": all(report.exact_average for report in result.rounds),
        "seconds": seconds,
        "simulation_seconds": result.seconds,
        "machine": machine(),
        "contracts": contracts_fingerprint(),
    }


def markdown(record: dict[str, Any]) -> str:
    """The README's table."""
    s = record["settings"]
    lines = [
        f"`{record['command']}`: {record['model']}, {record['num_weights']:,} weights "
        f"({record['num_words']:,} words in {record['num_segments']} segments of up to "
        f"{record['words_per_segment']} words), {s['clients']} "
        f"{s['partition'].upper() if s['partition'] == 'iid' else s['partition']} clients x "
        f"{s['rounds']} rounds, E={s['epochs']} B={s['batch_size']} lr={s['learning_rate']}, "
        f"{s['aggregation']} aggregation, fixed point 1/{s['scale']}, on {record['network']}:",
        "",
        "| round | chain % | plain % | gap (pp) | gas of the round | gas / weight / client |"
        " submit txs | segment closes | largest tx: gas | largest tx: bytes | exact average |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in record["rounds"]:
        lines.append(
            f"| {row['round']} | {100 * row['accuracy_chain']:.2f} | "
            f"{100 * row['accuracy_plain']:.2f} | {row['gap_pp']:+.2f} | {row['gas_used']:,} | "
            f"{row['gas_per_weight_per_client']:.0f} | {row['submission_transactions']} | "
            f"{row['close_transactions']} | {row['max_tx_gas']:,} | "
            f"{row['max_tx_encoded_bytes']:,} | {'yes' if row['exact_average'] else 'no'} |"
        )
    bytes_kind = "encoded" if record["encoded_bytes_measured"] else "calldata + 150"
    lines += [
        "",
        f"Final: chain {100 * record['final_accuracy_chain']:.2f} %, plain "
        f"{100 * record['final_accuracy_plain']:.2f} % ({record['final_gap_pp']:+.2f} pp; bar "
        f"{record['tolerance_pp']} pp); initial model {100 * record['initial_accuracy']:.2f} %. "
        f"Over all {record['transactions']} transactions (deployment and model load included): "
        f"the heaviest {record['max_tx_gas']:,} gas ({record['max_tx_gas_what']}; cap "
        f"{record['tx_gas_cap']:,}), the largest {record['max_tx_encoded_bytes']:,} bytes "
        f"{bytes_kind} ({record['max_tx_bytes_what']}; limit {record['tx_bytes_limit']:,}), "
        f"{record['max_tx_calldata_bytes']:,} bytes of calldata at most (limit "
        f"{record['max_calldata_bytes']:,}). Gas per round median "
        f"{record['gas_per_round_median']:,.0f}; deployment {record['deploy_gas']:,}; "
        f"{record['seconds']:.0f} s in all.",
        "",
    ]
    return "\n".join(lines)


def measure(fl: FLConfig, network: str, progress: tqdm[Any] | None = None) -> dict[str, Any]:
    """Run ``fl`` through the chain (an anvil started and stopped here, or the embedded chain)
    and return its record."""
    project = load_config()
    started = time.perf_counter()

    def tick(message: str) -> None:
        if progress is not None and "submitted" in message:
            progress.update(1)

    def on(chain: Chain) -> dict[str, Any]:
        first_block = chain.w3.eth.block_number + 1
        result = run_simulation(fl, chain=chain, check_accuracy=False, progress=tick)
        contract = contract_at(chain, result.contract_address)
        transactions = transactions_since(chain, first_block, contract)
        record = summary(
            result, chain, fl, transactions, network, seconds=time.perf_counter() - started
        )
        return record

    accounts = max(20, fl.clients + 2)
    if network == "anvil":
        with anvil_node(accounts=accounts) as node:
            return on(connect("anvil", config=project, url=node.url))
    return on(connect("embedded", config=project, num_accounts=accounts))


def passed(record: dict[str, Any]) -> bool:
    """The bars: the final gap, every transaction within both limits, every average exact."""
    return bool(
        abs(record["final_gap_pp"]) <= TOLERANCE_PP
        and record["every_transaction_within_limits"]
        and record["every_average_exact"]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the MLP through the chain and write its figures; 1 when it misses a bar."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    fl = settings(
        clients=args.clients,
        rounds=args.rounds,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=args.seed,
    )
    with tqdm(total=fl.clients * fl.rounds, desc="large model", unit="submission") as bar:
        record = measure(fl, args.network, bar)
    record["command"] = " ".join([COMMAND, *(sys.argv[1:] if argv is None else argv)])
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = write_json("large_model", record, args.out / "large_model.json")
    md_path = args.out / "large_model.md"
    md_path.write_text(markdown(record), encoding="utf-8")
    print(markdown(record))
    print(f"wrote {json_path} and {md_path}")
    if not passed(record):
        print(
            "error: the chain misses the plain run by more than "
            f"{TOLERANCE_PP} pp, a transaction breaks a limit, or an average is not exact",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
