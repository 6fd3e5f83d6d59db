"""Gas benchmark of the coordinator (round pipeline v2): two rounds of 10 clients per path.

Run: ``.venv/bin/python -m bench.gas`` (about 6.5 minutes of CPU in one process, and 18 minutes
of wall time on a 2-core machine with a load average of ~7 from other work; the two
101,770-weight rows take half of it and the secure-aggregation row a sixth; ``--quick`` skips the
101,770-weight and the informational rows: about 2 minutes of CPU). Writes
``bench/results/gas.json`` and ``bench/results/gas.md`` (the table the README quotes, with the
command); exits 1 when a bar is missed, a transaction breaks a limit, or an on-chain model
differs from the exact average.

Workload (as before): 10 clients, plain mean, L1, each client's int16 quantized update drawn
uniformly from [-3000, 3000] (random per client and per round), two rounds on the embedded chain
(eth-tester + py-evm, Prague rules) from a zero model, each row on a fresh chain. Rows:

- 7,850 weights (mnist5k's softmax regression): ``direct`` (every client ``submit``\\s),
  ``relayed`` (every client signs an EIP-712 update, one account registers them with
  ``submitRelayed`` and carries their words into the closes), ``mixed`` (3 direct + 7 relayed),
  ``commit-reveal`` (``commit`` with the bond, then ``reveal``), ``secure aggregation`` (each
  member's ``MaskedPath``: ``registerKey``, ``postShares``, ``submitMasked``; the closes by
  ``MaskedRoundCloser``, ``closeMasked`` per segment; no dropouts);
- ``direct`` and ``relayed`` for 650 weights (digits) and for the 101,770-weight MLP
  (784 -> 128 -> 10): its direct submissions take two transactions (128 KiB each at most), its
  relayed updates register in batches that fit the gas cap;
- for information, 7,850 weights: sample-weighted FedAvg (direct), the direction guard on
  (``minAlignment`` -9,999 basis points: the guard measures every update, and every random update
  passes, so that each is averaged as an honest one would be) and reward reference ``aggregate``
  (the close measures every update against the new model), direct and relayed.

Every deployment comes from ``DeployParams.from_config`` (``brownie-config.yaml``'s
``federated_learning``, 10 clients) with the row's contract settings replaced, so the segment size
is the planner's (``words_per_segment: auto``). The closes are sent by an account that takes no
part (the relayer in relayed rows), segment by segment, with the words of every entry in
``entries()`` order.

Figures per row: the first submission (round 1's first client, all its transactions; commit-reveal:
commit + reveal), the typical one (median over round 2's clients), the registration batches and
the gas per relayed update, each close of round 2 and their total, the largest transaction of the
rounds and of the whole run (units, deployment and model load included: every block of the fresh
chain is read back) in gas and in bytes, and the figure the bars are set on:
``gas_per_weight_per_client`` = all gas of round 2 (submissions, registrations and closes) /
clients / weights. Bytes are the calldata (or init code) plus a conservative 150
bytes for the rest of an EIP-1559 envelope (nonce, fees, gas, recipient, value, signature: ~120
bytes); limits: 16,777,216 gas (EIP-7825) and 128 KiB (``MAX_CALLDATA_BYTES`` =
131,072 - 1,024 of calldata). Bars: direct <= 200, relayed <= 120 gas per weight per client at
7,850 weights.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from hexbytes import HexBytes
from web3.contract import Contract
from web3.types import TxReceipt

from bench.common import contracts_fingerprint
from fl_client.aggregation import integer_average, trimmed_average
from fl_client.chain import (
    MAX_CALLDATA_BYTES,
    Chain,
    CoordinatorView,
    DeployParams,
    SignedUpdate,
    close_function,
    commitment,
    connect,
    deploy,
    read_cohort,
    read_entries,
    read_model_words,
    read_round,
    relay_function,
    reveal_calls,
    send,
    sign_update,
    submit_calls,
    update_typed_data,
)
from fl_client.client_secret import simulation_secret
from fl_client.closer import MaskedRoundCloser
from fl_client.codec import pack, segment_hashes, split_segments, unpack, vector_hash
from fl_client.config import ALIGNMENT_OFF, FLConfig, load_config
from fl_client.model import build_model, num_parameters
from fl_client.paths import MaskedPath, PathContext, Update

RESULTS = Path(__file__).resolve().parent / "results"
COMMAND = ".venv/bin/python -m bench.gas"
TX_GAS_CAP = 16_777_216
TX_BYTES_LIMIT = 131_072  # 128 KiB encoded, what geth-style pools accept
ENVELOPE_BYTES = 150  # conservative: an EIP-1559 transaction's fields besides its calldata
CLIENTS = 10
MIXED_DIRECT = 3
BARS = {"direct": 200, "relayed": 120}  # gas / weight / client of round 2, 7,850 weights
BAR_WEIGHTS = 7_850
GUARD_ON = -9_999  # the direction guard measures, and every update passes
TRIM_EACH = 3  # the trimmed rows: values cut at each end, as bench.incentives recommends
# Registering a relayed update, an upper bound (fl_client.relay uses the same): the signature and
# the books, plus a fresh slot per segment hash. Batches are sized with it and checked against
# the measured gas (``relay_registration_gas``).
REGISTER_GAS = 90_000
REGISTER_GAS_PER_SEGMENT = 25_000
REGISTER_BYTES = 32 * 8  # an update's tuple in the calldata, without its hashes
BATCH_GAS_SHARE = 0.8  # of the cap a registration batch may plan for
# The transactions of a round (the rest: the units, the deployment and the model load).
ROUND_FUNCTIONS = frozenset(
    {
        "submit",
        "submitRelayed",
        "closeSegment",
        "commit",
        "reveal",
        "registerKey",
        "postShares",
        "submitMasked",
        "revealShares",
        "closeMasked",
    }
)
MASKED_PASSES = 4  # a masked round asks each member for registerKey, postShares, submitMasked


def mlp_weights() -> int:
    """The MLP 784 -> 128 -> 10 (mnist5k with one hidden layer): 101,770 weights."""
    return num_parameters(build_model(784, 10, seed=0, hidden=(128,)))


@dataclass(frozen=True)
class Row:
    """One measured configuration."""

    name: str
    weights: int
    relayed: int  # clients whose updates a relayer registers (the others submit themselves)
    mode: str = "plain"
    aggregation: str = "mean"
    min_alignment_bps: int = ALIGNMENT_OFF
    reward_reference: str = "current"
    trim_each: int = 0
    bar: int | None = None
    informational: bool = False

    @property
    def path(self) -> str:
        """direct, relayed, mixed, commit-reveal or secure aggregation."""
        if self.mode == "commit_reveal":
            return "commit-reveal"
        if self.mode == "secure_aggregation":
            return "secure aggregation"
        if self.relayed == 0:
            return "direct"
        return "relayed" if self.relayed == CLIENTS else "mixed"


def rows(*, quick: bool) -> list[Row]:
    """The rows of a run (``quick``: the 7,850- and 650-weight paths only)."""
    big = mlp_weights()
    main = [
        Row("direct", BAR_WEIGHTS, 0, bar=BARS["direct"]),
        Row("relayed", BAR_WEIGHTS, CLIENTS, bar=BARS["relayed"]),
        Row("mixed (3 direct + 7 relayed)", BAR_WEIGHTS, CLIENTS - MIXED_DIRECT),
        Row("commit-reveal", BAR_WEIGHTS, 0, mode="commit_reveal"),
        Row("secure aggregation", BAR_WEIGHTS, 0, mode="secure_aggregation"),
        Row("direct", 650, 0),
        Row("relayed", 650, CLIENTS),
    ]
    if quick:
        return main
    return [
        *main,
        Row("direct", big, 0),
        Row("relayed", big, CLIENTS),
        Row(
            "direct, sample-weighted",
            BAR_WEIGHTS,
            0,
            aggregation="sample_weighted",
            informational=True,
        ),
        Row(
            "direct, direction guard on",
            BAR_WEIGHTS,
            0,
            min_alignment_bps=GUARD_ON,
            informational=True,
        ),
        Row(
            "relayed, direction guard on",
            BAR_WEIGHTS,
            CLIENTS,
            min_alignment_bps=GUARD_ON,
            informational=True,
        ),
        Row(
            "direct, reward reference aggregate",
            BAR_WEIGHTS,
            0,
            reward_reference="aggregate",
            informational=True,
        ),
        Row(
            "relayed, reward reference aggregate",
            BAR_WEIGHTS,
            CLIENTS,
            reward_reference="aggregate",
            informational=True,
        ),
        Row(
            "direct, trimmed mean (3 each end) and reward reference progress",
            BAR_WEIGHTS,
            0,
            reward_reference="progress",
            trim_each=TRIM_EACH,
            informational=True,
        ),
        Row(
            "relayed, trimmed mean (3 each end) and reward reference progress",
            BAR_WEIGHTS,
            CLIENTS,
            reward_reference="progress",
            trim_each=TRIM_EACH,
            informational=True,
        ),
    ]


def deploy_params(fl: FLConfig, row: Row) -> DeployParams:
    """The row's deployment: the configured contract with the row's settings, for 10 clients."""
    contract = replace(
        fl.contract,
        mode=row.mode,
        aggregation=row.aggregation,
        min_alignment_bps=row.min_alignment_bps,
        reward_reference=row.reward_reference,
        trim_each=row.trim_each,
        target_submissions=None,
        min_submissions=None,
    )
    configured = replace(fl, contract=contract)
    return DeployParams.from_config(configured, num_weights=row.weights, clients=CLIENTS)


@dataclass
class RoundGas:
    """The gas of one round, by kind of transaction."""

    submissions: dict[int, int] = field(default_factory=dict)  # client -> its own transactions
    commits: dict[int, int] = field(default_factory=dict)
    submit_transactions: dict[int, int] = field(default_factory=dict)  # client -> how many
    registrations: list[int] = field(default_factory=list)  # one per submitRelayed batch
    batch_sizes: list[int] = field(default_factory=list)
    closes: list[int] = field(default_factory=list)  # one per segment

    def total(self) -> int:
        """All gas of the round."""
        return sum(self.submissions.values()) + sum(self.registrations) + sum(self.closes)


def gas_of(receipts: Sequence[TxReceipt]) -> int:
    """Summed gas of ``receipts``."""
    return sum(int(r["gasUsed"]) for r in receipts)


def signed_update(
    chain: Chain,
    contract: Contract,
    client: str,
    words: Sequence[int],
    *,
    round_number: int,
    sample_count: int,
    words_per_segment: int,
    segments: int,
) -> SignedUpdate:
    """``client``'s update signed with its own key for a relayer (EIP-712)."""
    typed = update_typed_data(
        chain_id=chain.chain_id(),
        contract=str(contract.address),
        round_number=round_number,
        segments=segments,
        sample_count=sample_count,
        words_hash=vector_hash(words, words_per_segment),
    )
    return SignedUpdate(
        round_number=round_number,
        client=client,
        sample_count=sample_count,
        segment_hashes=tuple(segment_hashes(words, words_per_segment)),
        signature=sign_update(chain.signer(client), typed),
        words=tuple(words),
    )


def registration_batches(
    updates: Sequence[SignedUpdate], segments: int
) -> list[list[SignedUpdate]]:
    """The updates cut into ``submitRelayed`` batches that fit the gas cap and 128 KiB."""
    per_gas = REGISTER_GAS + REGISTER_GAS_PER_SEGMENT * segments
    per_bytes = REGISTER_BYTES + 32 * segments
    size = max(
        1,
        min(int(TX_GAS_CAP * BATCH_GAS_SHARE) // per_gas, (MAX_CALLDATA_BYTES - 200) // per_bytes),
    )
    return [list(updates[i : i + size]) for i in range(0, len(updates), size)]


def play_masked_round(
    chain: Chain,
    contract: Contract,
    *,
    round_number: int,
    vectors: Sequence[np.ndarray],
    sample_counts: Sequence[int],
    seed: int,
) -> RoundGas:
    """One secure-aggregation round: every member acts through its masked path
    (``fl_client.paths.MaskedPath``: ``registerKey``, ``postShares``, ``submitMasked``) until the
    cohort has submitted, then :class:`MaskedRoundCloser` closes it (``closeMasked`` per segment)."""
    clients = chain.accounts[1 : 1 + CLIENTS]
    closer = chain.accounts[1 + CLIENTS]
    view = CoordinatorView.read(chain, contract)
    paths = [
        MaskedPath(PathContext(chain, contract, client, view, simulation_secret(seed, index)))
        for index, client in enumerate(clients)
    ]
    updates = [
        Update(round_number, tuple(pack(v)), np.asarray(v, dtype=np.int64), sample_counts[i])
        for i, v in enumerate(vectors)
    ]
    gas = RoundGas()
    for _ in range(MASKED_PASSES):
        for index, path in enumerate(paths):
            info = read_round(contract)
            calls = path.act(info, partial(updates.__getitem__, index), now=chain.timestamp())
            receipts = [send(chain, c.function, c.sender, what=c.label) for c in calls]
            gas.submissions[index] = gas.submissions.get(index, 0) + gas_of(receipts)
            gas.submit_transactions[index] = gas.submit_transactions.get(index, 0) + len(receipts)
        members = read_cohort(contract).members
        if len(members) == CLIENTS and all(m.submitted for m in members):
            break
    else:
        raise RuntimeError(
            f"round {round_number}: the cohort did not submit: {read_round(contract)}"
        )
    masked = MaskedRoundCloser(chain=chain, contract=contract, account=closer, view=view)
    gas.closes.extend(int(r["gasUsed"]) for r in masked.close(now=chain.timestamp()))
    if read_round(contract).number != round_number + 1:
        raise RuntimeError(f"round {round_number} did not close")
    return gas


def play_round(
    chain: Chain,
    contract: Contract,
    params: DeployParams,
    row: Row,
    *,
    round_number: int,
    vectors: Sequence[np.ndarray],
    sample_counts: Sequence[int],
    rng: np.random.Generator,
) -> RoundGas:
    """One round: every client's update by the row's path, then the closes."""
    clients = chain.accounts[1 : 1 + CLIENTS]
    closer = chain.accounts[1 + CLIENTS]  # takes no part; relays in the relayed rows
    per_segment = params.words_per_segment
    segments = int(contract.functions.numSegments().call())
    words = [pack(v) for v in vectors]
    gas = RoundGas()
    direct = range(CLIENTS - row.relayed)
    if row.mode == "commit_reveal":
        salts = [bytes(rng.integers(0, 256, 32, dtype=np.uint8)) for _ in clients]
        for index, client in enumerate(clients):
            digest = commitment(
                chain_id=chain.chain_id(),
                contract_address=str(contract.address),
                round_number=round_number,
                client=client,
                sample_count=sample_counts[index],
                salt=salts[index],
                vector_hash=vector_hash(words[index], per_segment),
            )
            function = contract.functions.commit(round_number, digest)
            receipt = send(chain, function, client, value=params.commit_bond, what="commit")
            gas.commits[index] = int(receipt["gasUsed"])
        if read_round(contract).phase != "Reveal":
            raise RuntimeError(f"round {round_number}: the reveals did not open")
        for index, client in enumerate(clients):
            calls = reveal_calls(
                contract,
                client,
                round_number=round_number,
                sample_count=sample_counts[index],
                words=words[index],
                words_per_segment=per_segment,
                salt=salts[index],
            )
            receipts = [send(chain, c.function, c.sender, what=c.label) for c in calls]
            gas.submissions[index] = gas.commits[index] + gas_of(receipts)
            gas.submit_transactions[index] = len(receipts) + 1
    else:
        for index in direct:
            calls = submit_calls(
                contract,
                clients[index],
                round_number=round_number,
                sample_count=sample_counts[index],
                words=words[index],
                words_per_segment=per_segment,
            )
            receipts = [send(chain, c.function, c.sender, what=c.label) for c in calls]
            gas.submissions[index] = gas_of(receipts)
            gas.submit_transactions[index] = len(receipts)
        updates = [
            signed_update(
                chain,
                contract,
                clients[index],
                words[index],
                round_number=round_number,
                sample_count=sample_counts[index],
                words_per_segment=per_segment,
                segments=segments,
            )
            for index in range(CLIENTS - row.relayed, CLIENTS)
        ]
        for batch in registration_batches(updates, segments) if updates else []:
            receipt = send(
                chain,
                relay_function(contract, round_number, batch),
                closer,
                what=f"submitRelayed round {round_number}",
            )
            gas.registrations.append(int(receipt["gasUsed"]))
            gas.batch_sizes.append(len(batch))
    info = read_round(contract)
    if info.number != round_number or info.submissions != CLIENTS:
        raise RuntimeError(f"round {round_number}: {info} after the submissions")
    by_client = {client: index for index, client in enumerate(clients)}
    entries = read_entries(contract)
    for segment in range(segments):
        data = [
            w
            for entry in entries
            if not entry.dropped
            for w in split_segments(words[by_client[entry.client]], per_segment)[segment]
        ]
        function = close_function(contract, round_number=round_number, segment=segment, words=data)
        receipt = send(
            chain, function, closer, what=f"close round {round_number} segment {segment}"
        )
        gas.closes.append(int(receipt["gasUsed"]))
    if read_round(contract).number != round_number + 1:
        raise RuntimeError(f"round {round_number} did not close")
    return gas


@dataclass(frozen=True)
class Transaction:
    """One transaction of a run, as mined."""

    label: str
    gas: int
    calldata_bytes: int

    @property
    def encoded_bytes(self) -> int:
        """Calldata plus the conservative envelope."""
        return self.calldata_bytes + ENVELOPE_BYTES


def every_transaction(chain: Chain, contract: Contract) -> list[Transaction]:
    """Every transaction mined on the (fresh, embedded) chain: units, deployment, model load,
    submissions, registrations, closes."""
    found = []
    w3 = chain.w3
    for number in range(1, int(w3.eth.block_number) + 1):
        block = w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            assert not isinstance(tx, bytes)
            data = bytes(HexBytes(tx["input"] if "input" in tx else tx["data"]))  # eth-tester: data
            receipt = w3.eth.get_transaction_receipt(tx["hash"])
            if not tx.get("to"):  # a contract creation
                label = "deploy"
            elif tx["to"] == contract.address and len(data) >= 4:
                try:
                    function, _ = contract.decode_function_input(data)
                    label = str(function.fn_name)
                except ValueError:
                    label = "0x" + data[:4].hex()
            else:
                label = "other"
            found.append(Transaction(label, int(receipt["gasUsed"]), len(data)))
    return found


def measure(row: Row, *, seed: int, progress: bool = True) -> dict[str, Any]:
    """Deploy on a fresh embedded chain, play two rounds, and return the row's figures."""
    started = time.perf_counter()
    fl = load_config().fl
    params = deploy_params(fl, row)
    chain = connect("embedded", num_accounts=CLIENTS + 2)
    contract = deploy(chain, params, pool_wei=fl.rewards.pool_wei)
    fmt = fl.fixed_point
    rng = np.random.default_rng(seed)
    sample_counts = [100 + c for c in range(CLIENTS)]
    weights = sample_counts if row.aggregation == "sample_weighted" else None
    rounds: list[RoundGas] = []
    exact: list[bool] = []
    for round_number in (1, 2):
        vectors = [rng.integers(-fmt.max_abs, fmt.max_abs + 1, row.weights) for _ in range(CLIENTS)]
        if row.mode == "secure_aggregation":
            gas = play_masked_round(
                chain,
                contract,
                round_number=round_number,
                vectors=vectors,
                sample_counts=sample_counts,
                seed=seed,
            )
        else:
            gas = play_round(
                chain,
                contract,
                params,
                row,
                round_number=round_number,
                vectors=vectors,
                sample_counts=sample_counts,
                rng=rng,
            )
        rounds.append(gas)
        model = unpack(read_model_words(contract), row.weights)
        expected = (
            trimmed_average(vectors, row.trim_each)
            if row.trim_each
            else integer_average(vectors, weights)
        )
        exact.append(bool(np.array_equal(model, expected)))
        if progress:
            print(
                f"  round {round_number}: {gas.total():,} gas, exact average {exact[-1]} "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    transactions = every_transaction(chain, contract)
    first, second = rounds
    largest_gas = max(transactions, key=lambda t: t.gas)
    largest_bytes = max(transactions, key=lambda t: t.calldata_bytes)
    pipeline = [t for t in transactions if t.label in ROUND_FUNCTIONS]
    round_gas = max(pipeline, key=lambda t: t.gas)
    round_bytes = max(pipeline, key=lambda t: t.calldata_bytes)
    round2 = second.total()
    per_weight = round(round2 / CLIENTS / row.weights, 1)
    segments = int(contract.functions.numSegments().call())
    registered = sum(second.batch_sizes)
    relay_each = round(sum(second.registrations) / registered) if registered else None
    relay_bound = REGISTER_GAS + REGISTER_GAS_PER_SEGMENT * segments
    fits_gas = largest_gas.gas <= TX_GAS_CAP
    fits_bytes = (
        largest_bytes.calldata_bytes <= MAX_CALLDATA_BYTES
        and largest_bytes.encoded_bytes <= TX_BYTES_LIMIT
    )
    own = list(second.submissions.values())
    deployments = [t for t in transactions if t.label == "deploy"]
    result: dict[str, Any] = {
        "row": row.name,
        "path": row.path,
        "weights": row.weights,
        "words": -(-row.weights // 16),
        "clients": CLIENTS,
        "direct_clients": CLIENTS - row.relayed if row.mode == "plain" else 0,
        "relayed_clients": row.relayed,
        "mode": row.mode,
        "aggregation": row.aggregation,
        "direction_guard": row.min_alignment_bps != ALIGNMENT_OFF,
        "min_alignment_bps": row.min_alignment_bps,
        "reward_reference": row.reward_reference,
        "trim_each": row.trim_each,
        "informational": row.informational,
        "segments": segments,
        "words_per_segment": params.words_per_segment,
        "units_deploy_gas": [t.gas for t in deployments[:-1]],
        "deploy_gas": deployments[-1].gas,
        "model_load_gas": [
            t.gas for t in transactions if t.label in ("loadZeroModel", "loadInitialModel")
        ],
        "first_submission_gas": first.submissions.get(0),
        "first_submission_transactions": first.submit_transactions.get(0),
        "typical_submission_gas": int(statistics.median(own)) if own else None,
        "commit_gas": int(statistics.median(second.commits.values())) if second.commits else None,
        "relay_registration_batches": second.registrations,
        "relay_batch_sizes": second.batch_sizes,
        "relay_registration_gas": relay_each,
        "relay_registration_bound": relay_bound if registered else None,
        "first_round_relay_registration_gas": first.registrations,
        "close_gas": second.closes,
        "closing_gas": sum(second.closes),
        "first_round_closing_gas": sum(first.closes),
        "round1_total_gas": first.total(),
        "round2_total_gas": round2,
        "gas_per_weight_per_client": per_weight,
        "max_round_tx_gas": round_gas.gas,
        "max_round_tx_gas_what": round_gas.label,
        "max_round_tx_calldata_bytes": round_bytes.calldata_bytes,
        "max_round_tx_bytes": round_bytes.encoded_bytes,
        "max_round_tx_bytes_what": round_bytes.label,
        "max_tx_gas": largest_gas.gas,
        "max_tx_gas_what": largest_gas.label,
        "max_tx_calldata_bytes": largest_bytes.calldata_bytes,
        "max_tx_bytes": largest_bytes.encoded_bytes,
        "max_tx_bytes_what": largest_bytes.label,
        "transactions": len(transactions),
        "fits_tx_gas_cap": fits_gas,
        "fits_tx_size": fits_bytes,
        "on_chain_average_exact": exact,
        "bar": row.bar,
        "bar_holds": None if row.bar is None else per_weight <= row.bar,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return result


def _closes(r: dict[str, Any]) -> str:
    closes: list[int] = r["close_gas"]
    if len(closes) <= 2:
        return " + ".join(f"{g:,}" for g in closes)
    return f"{len(closes)} closes, {min(closes):,}-{max(closes):,}"


def _maybe(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _relay(r: dict[str, Any]) -> str:
    each = r["relay_registration_gas"]
    if each is None:
        return "-"
    first = r["first_round_relay_registration_gas"]
    sizes = r["relay_batch_sizes"]
    batches = f", {len(sizes)} batches" if len(sizes) > 1 else ""
    return f"{each:,} (round 1: {round(sum(first) / sum(sizes)):,}){batches}"


def markdown(results: Sequence[dict[str, Any]], *, command: str | None = None) -> str:
    """The table the README quotes, and what it leaves out (setup transactions, limits)."""
    lines = [
        "| path | weights | segments | first submission | typical submission | relay registration per update | closes (round 2) | largest round tx: gas | largest round tx: bytes | gas / weight / client (round 2) | exact average |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for r in results:
        submitted = r["first_submission_transactions"]
        first = _maybe(r["first_submission_gas"])
        if submitted and submitted > 1:
            first += f" ({submitted} txs)"
        bar = (
            ""
            if r["bar"] is None
            else f" (bar {r['bar']}: {'holds' if r['bar_holds'] else 'MISSED'})"
        )
        typical = _maybe(r["typical_submission_gas"])
        if r["commit_gas"] is not None:
            typical += f" (commit {r['commit_gas']:,} + reveal)"
        if r["mode"] == "secure_aggregation":
            typical += " (registerKey + postShares + submitMasked)"
        lines.append(
            f"| {r['row']} | {r['weights']:,} | {r['segments']} | {first} | "
            f"{typical} | {_relay(r)} | "
            f"{_closes(r)} | {r['max_round_tx_gas']:,} ({r['max_round_tx_gas_what']}) | "
            f"{r['max_round_tx_bytes']:,} ({r['max_round_tx_bytes_what']}) | "
            f"**{r['gas_per_weight_per_client']:,}**{bar} | "
            f"{'yes' if all(r['on_chain_average_exact']) else 'NO'} |"
        )
    heaviest = max(results, key=lambda r: r["max_tx_gas"])
    largest = max(results, key=lambda r: r["max_tx_bytes"])
    within = all(r["fits_tx_gas_cap"] and r["fits_tx_size"] for r in results)
    lines += [
        "",
        f"Figure: all gas of round 2 (submissions, relay registrations, closes) / {CLIENTS} "
        "clients / weights; bars at 7,850 weights: "
        + ", ".join(f"{path} <= {bar}" for path, bar in BARS.items())
        + ". Two rounds on the embedded chain (Prague rules), a zero initial model, int16 "
        "updates uniform in [-3000, 3000]. Relay registration: round 2 (the client's segment-hash "
        "slots already hold a value), round 1 in brackets (fresh slots).",
        "",
        f"Every transaction of every row, the setup included (the units, the coordinator, the "
        f"model load), within {TX_GAS_CAP:,} gas and 128 KiB: {'yes' if within else 'NO'}; the "
        f"heaviest {heaviest['max_tx_gas']:,} gas ({heaviest['max_tx_gas_what']}), the largest "
        f"{largest['max_tx_bytes']:,} bytes ({largest['max_tx_bytes_what']}). Bytes: calldata "
        f"(or init code) + {ENVELOPE_BYTES} for the rest of the envelope, a conservative figure.",
    ]
    bars = [r for r in results if r["bar"] is not None]
    if bars:
        lines += [
            "",
            "Bars: "
            + "; ".join(
                f"{r['path']} {r['gas_per_weight_per_client']:,} <= {r['bar']}: "
                f"{'holds' if r['bar_holds'] else 'MISSED'}"
                for r in bars
            )
            + ".",
        ]
    if any(r["mode"] == "secure_aggregation" for r in results):
        lines += [
            "",
            "Secure aggregation: every member acts through its masked path "
            "(`fl_client.paths.MaskedPath`: `registerKey`, `postShares`, `submitMasked`, no "
            "dropouts) and `MaskedRoundCloser` sends the `closeMasked`s; its submissions are the "
            "three transactions together.",
        ]
    if command is not None:
        lines += ["", f"Command: `{command}`"]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and write its results; exit 1 when a bar or a limit is missed."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m bench.gas", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="the 7,850- and 650-weight paths only")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for gas.json and gas.md")
    args = parser.parse_args(arguments)
    started = time.perf_counter()
    contracts = contracts_fingerprint()
    results = []
    chosen = rows(quick=args.quick)
    for number, row in enumerate(chosen, start=1):
        print(f"[{number}/{len(chosen)}] {row.name}, {row.weights:,} weights", flush=True)
        result = measure(row, seed=args.seed)
        results.append(result)
        print(
            f"  -> {result['gas_per_weight_per_client']} gas/weight/client, largest round tx "
            f"{result['max_round_tx_gas']:,} gas / {result['max_round_tx_bytes']:,} bytes, "
            f"{result['segments']} segment(s), {result['seconds']} s",
            flush=True,
        )
    bars: dict[str, dict[str, Any]] = {}
    for path, bar in BARS.items():
        figure = next(
            (
                float(r["gas_per_weight_per_client"])
                for r in results
                if r["weights"] == BAR_WEIGHTS and r["path"] == path and not r["informational"]
            ),
            None,
        )
        bars[path] = {"bar": bar, "figure": figure, "holds": figure is not None and figure <= bar}
    changed = contracts_fingerprint()["contracts_sha256"] != contracts["contracts_sha256"]
    if changed:
        print("warning: the contracts changed while the benchmark ran; run it again", flush=True)
    limits_hold = all(r["fits_tx_gas_cap"] and r["fits_tx_size"] for r in results)
    exact = all(all(r["on_chain_average_exact"]) for r in results)
    report = {
        "command": " ".join([COMMAND, *arguments]),
        "chain": "embedded (eth-tester + py-evm, Prague rules), a fresh chain per row",
        "contracts": {**contracts, "changed_during_run": changed},
        "workload": (
            f"{CLIENTS} clients x 2 rounds from a zero model, int16 q uniform in "
            "[-3000, 3000] per client and round; plain mean, L1 unless the row says otherwise"
        ),
        "tx_gas_cap": TX_GAS_CAP,
        "max_calldata_bytes": MAX_CALLDATA_BYTES,
        "tx_bytes_limit": TX_BYTES_LIMIT,
        "envelope_bytes": ENVELOPE_BYTES,
        "bytes_note": (
            "largest tx bytes = calldata (or init code) + a conservative 150-byte EIP-1559 "
            "envelope; the limit is 128 KiB encoded, MAX_CALLDATA_BYTES of calldata"
        ),
        "figure": "gas_per_weight_per_client = all gas of round 2 / clients / weights",
        "bars": bars,
        "bars_hold": all(b["holds"] for b in bars.values()),
        "every_transaction_within_limits": limits_hold,
        "every_average_exact": exact,
        "seconds": round(time.perf_counter() - started, 1),
        "rows": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gas.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = markdown(results, command=str(report["command"]))
    (args.out / "gas.md").write_text(table, encoding="utf-8")
    print(table)
    for path, entry in bars.items():
        print(
            f"bar {path}: {entry['figure']} <= {entry['bar']}: {'holds' if entry['holds'] else 'MISSED'}"
        )
    print(f"every transaction within {TX_GAS_CAP:,} gas and 128 KiB: {limits_hold}")
    print(
        f"on-chain model == the contract's average (reference) in both rounds of every row: {exact}"
    )
    print(f"wrote {args.out / 'gas.json'} and {args.out / 'gas.md'} in {report['seconds']} s")
    return 0 if report["bars_hold"] and limits_hold and exact else 1


if __name__ == "__main__":
    sys.exit(main())
