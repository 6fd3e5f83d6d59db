"""Deploying a coordinator: its units, the coordinator itself, and the initial model."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address
from web3.contract import Contract
from web3.exceptions import BlockNotFound, ContractLogicError, Web3ValueError

from fl_client.chain.connection import Chain, call_with_retry
from fl_client.chain.records import DeploymentRecord
from fl_client.chain.reverts import translate
from fl_client.chain.transactions import MAX_CALLDATA_BYTES, send
from fl_client.compile import CompiledContract, compile_contracts, get_contract
from fl_client.config import ALIGNMENT_OFF, FLConfig
from fl_client.errors import ChainError, ConfigError, DeploymentNotFoundError, NodeUnreachableError
from fl_client.limits import CloseWork, masked_lane_bits, plan_words_per_segment
from fl_client.privacy import LedgerCurve

logger = logging.getLogger(__name__)

CONTRACT_NAME = "FLCoordinator"
# The units, in the order of `CoordinatorTypes.Units`.
UNIT_NAMES = ("DirectUnit", "RelayUnit", "ClosingUnit", "CommitRevealUnit", "SecureAggregationUnit")
GAS_HEADROOM = 1.2  # estimate x this, capped at the per-transaction cap

AGGREGATION_CODES = {"mean": 0, "sample_weighted": 1}
DISTANCE_CODES = {"l1": 0, "squared_l2": 1}
MODE_CODES = {"plain": 0, "commit_reveal": 1, "secure_aggregation": 2}
REFERENCE_CODES = {"current": 0, "aggregate": 1, "progress": 2}


@dataclass(frozen=True)
class DeployParams:
    """The coordinator's constructor parameters, in Python terms."""

    num_weights: int
    scale: int
    max_abs_weight: int
    target_submissions: int
    min_submissions: int
    round_duration: int
    aggregation: str
    max_sample_count: int
    distance: str
    allowlist_enabled: bool
    min_reward_distance: int
    max_counted_distance: int
    words_per_segment: int
    tier_thresholds: tuple[int, ...]
    tier_rewards: tuple[int, ...]
    mode: str = "plain"
    reveal_duration: int = 0
    min_alignment_bps: int = ALIGNMENT_OFF
    close_window: int = 300
    close_fee: int = 0
    relay_fee: int = 0
    commit_bond: int = 0
    tx_gas_cap: int = 16_777_216
    reward_reference: str = "current"
    max_share_bps: int = 0
    max_step: int = 0
    max_drift: int = 0
    drift_window: int = 0
    rdp_per_participation: tuple[int, ...] = ()
    rdp_conversion: tuple[int, ...] = ()
    epsilon_budget: int = 0
    max_dropouts: int = 0
    setup_duration: int = 0
    recovery_duration: int = 0
    trim_each: int = 0

    def as_tuple(self) -> tuple[Any, ...]:
        """The ABI tuple for the constructor."""
        try:
            aggregation = AGGREGATION_CODES[self.aggregation]
            distance = DISTANCE_CODES[self.distance]
            mode = MODE_CODES[self.mode]
            reference = REFERENCE_CODES[self.reward_reference]
        except KeyError as exc:
            raise ConfigError(
                f"unknown aggregation, distance, mode or reward reference: {exc}"
            ) from None
        return (
            self.num_weights,
            self.scale,
            self.max_abs_weight,
            self.target_submissions,
            self.min_submissions,
            self.round_duration,
            aggregation,
            self.max_sample_count,
            distance,
            self.allowlist_enabled,
            self.min_reward_distance,
            self.max_counted_distance,
            self.words_per_segment,
            list(self.tier_thresholds),
            list(self.tier_rewards),
            mode,
            self.reveal_duration,
            self.min_alignment_bps,
            self.close_window,
            self.close_fee,
            self.relay_fee,
            self.commit_bond,
            self.tx_gas_cap,
            reference,
            self.max_share_bps,
            self.max_step,
            self.max_drift,
            self.drift_window,
            list(self.rdp_per_participation),
            list(self.rdp_conversion),
            self.epsilon_budget,
            self.max_dropouts,
            self.setup_duration,
            self.recovery_duration,
            self.trim_each,
        )

    @classmethod
    def from_config(
        cls,
        fl: FLConfig,
        *,
        num_weights: int,
        clients: int | None = None,
        tx_gas_cap: int = 16_777_216,
        ledger: LedgerCurve | None = None,
    ) -> DeployParams:
        """Parameters from the ``federated_learning`` section for a model of ``num_weights``;
        ``ledger``: the privacy ledger's curve (``privacy.epsilon_budget``), computed by the caller
        from the training and noise settings.

        Raises
        ------
        ConfigError
            No segment size fits the transaction limits (too large a target).
        """
        contract = fl.contract
        participants = clients or fl.clients
        target = contract.target_submissions or max(1, round(participants * fl.fraction))
        sample_weighted = contract.aggregation == "sample_weighted"
        max_weight = contract.max_sample_count if sample_weighted else 1
        masked = contract.mode == "secure_aggregation"
        if 2 * contract.trim_each >= target:
            raise ConfigError(
                f"contract.trim_each {contract.trim_each} leaves no update of a round of {target} "
                "in play: it must stay below half the target"
            )
        words_per_segment = plan_words_per_segment(
            num_weights,
            target=target,
            max_weight=max_weight,
            guard=contract.min_alignment_bps != ALIGNMENT_OFF,
            gas_cap=tx_gas_cap,
            limit=contract.segment_limit,
            masked=(
                masked_lane_bits(target, max_weight, fl.fixed_point.max_abs),
                contract.max_dropouts,
            )
            if masked
            else None,
            work=CloseWork(
                squared_l2=contract.distance == "squared_l2",
                aggregate=contract.reward_reference != "current",
                trim=contract.trim_each,
                progress=contract.reward_reference == "progress",
                step=contract.max_step != 0,
                drift=contract.max_drift != 0,
            ),
        )
        return cls(
            num_weights=num_weights,
            scale=fl.fixed_point.scale,
            max_abs_weight=fl.fixed_point.max_abs,
            target_submissions=target,
            min_submissions=contract.min_submissions or target,
            round_duration=contract.round_duration,
            aggregation=contract.aggregation,
            max_sample_count=contract.max_sample_count,
            distance=contract.distance,
            allowlist_enabled=contract.allowlist,
            min_reward_distance=contract.min_reward_distance,
            max_counted_distance=contract.max_counted_distance,
            words_per_segment=words_per_segment,
            tier_thresholds=fl.rewards.thresholds(num_weights, contract.reward_reference),
            tier_rewards=fl.rewards.amounts_wei,
            mode=contract.mode,
            reveal_duration=contract.reveal_duration,
            min_alignment_bps=contract.min_alignment_bps,
            close_window=contract.close_window,
            close_fee=contract.close_fee_wei,
            relay_fee=contract.relay_fee_wei,
            commit_bond=contract.commit_bond_wei if contract.mode == "commit_reveal" else 0,
            tx_gas_cap=tx_gas_cap,
            reward_reference=contract.reward_reference,
            max_share_bps=contract.max_share_bps,
            max_step=contract.max_step,
            max_drift=contract.max_drift,
            drift_window=contract.drift_window,
            max_dropouts=contract.max_dropouts if masked else 0,
            setup_duration=contract.setup_duration if masked else 0,
            recovery_duration=contract.recovery_duration if masked else 0,
            trim_each=contract.trim_each,
            rdp_per_participation=ledger.rdp_micro if ledger is not None else (),
            rdp_conversion=ledger.conversion_micro if ledger is not None else (),
            epsilon_budget=ledger.budget_micro if ledger is not None else 0,
        )


def contract_at(chain: Chain, address: str, compiled: CompiledContract | None = None) -> Contract:
    """A handle on a deployed coordinator."""
    artifact = compiled or get_contract(CONTRACT_NAME)
    return chain.w3.eth.contract(address=to_checksum_address(address), abi=artifact.abi)


def open_deployment(chain: Chain, record: DeploymentRecord) -> Contract:
    """The coordinator ``record`` describes, checked on ``chain`` before anything is sent: a
    contract is there, it answers as a coordinator of the recorded size, and (records that hold
    it) the deployment block is the recorded one, so that a record left from a node that was
    restarted, which may now hold someone else's deployment at the same address, is refused.

    Raises
    ------
    DeploymentNotFoundError
        The record does not match what the chain holds.
    NodeUnreachableError
        The node does not answer.
    """
    address = to_checksum_address(record.address)
    stale = f"the deployment record of {record.network!r} is stale"
    hint = f"(a node restarted without its state?): deploy again (`python -m fl_client deploy --network {record.network}`)"
    code = call_with_retry(lambda: chain.w3.eth.get_code(address))
    if not code:
        raise DeploymentNotFoundError(f"{stale}: there is no contract at {address} {hint}")
    if record.block_hash is not None:
        try:
            block = call_with_retry(lambda: chain.w3.eth.get_block(record.block_number))
        except BlockNotFound:
            block = None
        if block is None or "0x" + bytes(block["hash"]).hex() != record.block_hash.lower():
            raise DeploymentNotFoundError(
                f"{stale}: block {record.block_number} of this chain is not the one it was "
                f"deployed in {hint}"
            )
    contract = contract_at(chain, address)
    try:
        weights = int(call_with_retry(contract.functions.numWeights().call))
    except NodeUnreachableError:
        raise
    except (ChainError, ContractLogicError, Web3ValueError) as exc:
        raise DeploymentNotFoundError(
            f"{stale}: the contract at {address} does not answer as a coordinator {hint}"
        ) from exc
    if weights != record.num_weights:
        raise DeploymentNotFoundError(
            f"{stale}: the coordinator at {address} holds {weights:,} weights, the record "
            f"{record.num_weights:,} {hint}"
        )
    return contract


def _deploy_contract(
    chain: Chain, artifact: CompiledContract, args: Sequence[Any], *, sender: str, value: int = 0
) -> str:
    factory = chain.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    constructor = factory.constructor(*args)
    tx: dict[str, Any] = {"from": sender, "value": value}
    label = f"deploy {artifact.name}"
    try:
        estimate = constructor.estimate_gas(tx)
        tx["gas"] = min(int(estimate * GAS_HEADROOM), chain.tx_gas_cap)
        tx_hash = constructor.transact(tx)
        receipt = chain.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120, poll_latency=0.05)
    except Exception as exc:
        raise translate(exc, artifact.abi, label) from exc
    if receipt["status"] != 1 or receipt["contractAddress"] is None:
        raise ChainError(f"{label} failed")
    chain.gas_used.append(int(receipt["gasUsed"]))
    return str(receipt["contractAddress"])


def deploy_units(chain: Chain, *, sender: str) -> list[str]:
    """The units' addresses on this chain, deployed once and reused (they hold no state)."""
    compiled = compile_contracts()
    if chain.units and all(chain.w3.eth.get_code(address) for address in chain.units):  # type: ignore[arg-type]
        return chain.units
    chain.units = [
        _deploy_contract(chain, compiled[name], (), sender=sender) for name in UNIT_NAMES
    ]
    return chain.units


def deploy(
    chain: Chain,
    params: DeployParams,
    *,
    initial_words: Sequence[int] | None = None,
    pool_wei: int = 0,
    deployer: str | None = None,
) -> Contract:
    """Deploy a coordinator (and its units, once per chain), load its initial model (zeros when
    ``None``) and open round 1."""
    owner = deployer or chain.accounts[0]
    units = deploy_units(chain, sender=owner)
    artifact = get_contract(CONTRACT_NAME)
    address = _deploy_contract(
        chain, artifact, (params.as_tuple(), tuple(units)), sender=owner, value=pool_wei
    )
    contract = contract_at(chain, address, artifact)
    load_initial_model(chain, contract, initial_words, owner=owner)
    logger.info("deployed %s at %s", CONTRACT_NAME, contract.address)
    return contract


# Loading a segment of w words: an SSTORE2 chunk (200 gas a byte of code, 32,000 to create), the
# range check and the hash, and the calldata.
_LOAD_GAS_PER_WORD = 200 * 32 + 900
_LOAD_GAS_PER_SEGMENT = 60_000


def load_initial_model(
    chain: Chain, contract: Contract, words: Sequence[int] | None, *, owner: str
) -> None:
    """Load the initial model, as many segments per transaction as fit the gas cap and 128 KiB."""
    functions = contract.functions
    total = int(functions.numWords().call())
    if words is not None and len(words) != total:
        raise ConfigError(f"the initial model has {len(words)} words; the contract expects {total}")
    per_segment = int(functions.wordsPerSegment().call())
    segments = int(functions.numSegments().call())
    guard = int(functions.minAlignment().call()) != ALIGNMENT_OFF
    per_segment_words = per_segment + ((per_segment + 7) // 8 if guard else 0)
    segment_gas = per_segment_words * _LOAD_GAS_PER_WORD + _LOAD_GAS_PER_SEGMENT
    by_gas = max(1, int(chain.tx_gas_cap * 0.9) // segment_gas)
    by_size = max(1, (MAX_CALLDATA_BYTES - 200) // (per_segment * 32))
    batch = min(by_gas, by_size if words is not None else by_gas)
    start = 0
    while start < segments:
        count = min(batch, segments - start)
        if words is None:
            function = functions.loadZeroModel(start, count)
        else:
            part = [int(w) for w in words[start * per_segment : (start + count) * per_segment]]
            function = functions.loadInitialModel(start, part)
        send(
            chain, function, owner, what=f"load initial model segments {start}..{start + count - 1}"
        )
        start += count
