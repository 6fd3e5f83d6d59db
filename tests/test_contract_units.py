"""The coordinator's units: they run only through the coordinator (DELEGATECALL), share its storage
layout exactly, and every contract deploys under EIP-170's code-size limit.

A unit called directly would act on its own empty storage; a unit whose layout differed from the
coordinator's would write its variables over the coordinator's under DELEGATECALL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from web3.contract import Contract

from fl_client.chain import UNIT_NAMES, Chain, send
from fl_client.compile import CompiledContract
from tests.pipeline_helpers import ZERO_ADDRESS, module_deployments, reverts

EIP170_LIMIT = 24_576  # bytes of runtime code a contract may have
COORDINATOR = "FLCoordinator"


@pytest.fixture(scope="module")
def deployed(chain: Chain) -> Iterator[dict[str, Contract]]:
    """One coordinator (and so the units), deployed once for the module."""
    yield from module_deployments(chain, {"default": {}})


@pytest.fixture
def unit_addresses(isolated: Chain, deployed: dict[str, Contract]) -> dict[str, str]:
    """The units the coordinator delegates to, by name."""
    addresses = deployed["default"].functions.units().call()
    return dict(zip(UNIT_NAMES, addresses, strict=True))


def sample_argument(abi_input: dict[str, Any]) -> Any:
    """A well-formed value of an ABI input (what the call carries does not matter: a unit refuses
    it before reading it)."""
    kind = str(abi_input["type"])
    if kind.endswith("]"):
        return []
    if kind == "tuple":
        return tuple(sample_argument(component) for component in abi_input["components"])
    if kind.startswith(("uint", "int")):
        return 1
    if kind == "address":
        return ZERO_ADDRESS
    if kind == "bool":
        return False
    if kind == "string":
        return ""
    if kind == "bytes":
        return b""
    if kind.startswith("bytes"):
        return b"\x01" * int(kind[5:])
    raise AssertionError(f"no sample for ABI type {kind}")


def state_changing_functions(artifact: CompiledContract) -> list[dict[str, Any]]:
    """The unit's external functions that are not views."""
    return [
        entry
        for entry in artifact.abi
        if entry.get("type") == "function" and entry.get("stateMutability") not in ("view", "pure")
    ]


def signature(entry: dict[str, Any]) -> str:
    """``name(type,...)`` of an ABI entry (tuples spelled out)."""

    def kind(item: dict[str, Any]) -> str:
        base = str(item["type"])
        if base.startswith("tuple"):
            return "(" + ",".join(kind(c) for c in item["components"]) + ")" + base[5:]
        return base

    return f"{entry['name']}({','.join(kind(i) for i in entry['inputs'])})"


# ---------------------------------------------------------------- direct calls


@pytest.mark.parametrize("unit", UNIT_NAMES)
def test_every_unit_function_refuses_a_direct_call(
    isolated: Chain,
    compiled: dict[str, CompiledContract],
    unit_addresses: dict[str, str],
    outsider: str,
    unit: str,
) -> None:
    # Prepare
    artifact = compiled[unit]
    contract = isolated.w3.eth.contract(address=unit_addresses[unit], abi=artifact.abi)  # type: ignore[call-overload]
    functions = state_changing_functions(artifact)
    assert functions, f"{unit} has no function"
    # Execute / Assert: each one, called on the unit itself
    for entry in functions:
        function = contract.get_function_by_signature(signature(entry))
        args = [sample_argument(item) for item in entry["inputs"]]
        with reverts("CoordinatorUnitCalledDirectly"):
            send(isolated, function(*args), outsider, what=f"{unit}.{entry['name']}")


def test_the_units_deployed_are_the_compiled_units(
    isolated: Chain, compiled: dict[str, CompiledContract], unit_addresses: dict[str, str]
) -> None:
    for name, address in unit_addresses.items():
        code = isolated.w3.eth.get_code(address)  # type: ignore[arg-type]
        assert len(code) == compiled[name].deployed_size, name


def test_the_coordinator_exposes_every_unit_function(compiled: dict[str, CompiledContract]) -> None:
    """A unit runs on the coordinator's calldata: the coordinator must have a function of the very
    same signature (and so selector) for each of the unit's."""
    coordinator = {signature(e) for e in compiled[COORDINATOR].abi if e.get("type") == "function"}
    for unit in UNIT_NAMES:
        missing = {signature(e) for e in state_changing_functions(compiled[unit])} - coordinator
        assert not missing, f"{unit}: {sorted(missing)}"


def test_the_coordinator_abi_lists_every_error_and_event_of_the_units(
    compiled: dict[str, CompiledContract],
) -> None:
    """A unit's revert or event surfaces at the coordinator's address: clients decode it with the
    coordinator's ABI."""
    coordinator = {
        (e["type"], signature(e))
        for e in compiled[COORDINATOR].abi
        if e["type"] in ("error", "event")
    }
    for unit in UNIT_NAMES:
        listed = {
            (e["type"], signature(e)) for e in compiled[unit].abi if e["type"] in ("error", "event")
        }
        assert listed <= coordinator, f"{unit}: {sorted(listed - coordinator)}"


# ---------------------------------------------------------------- storage layout


def layout(artifact: CompiledContract) -> list[tuple[str, int, str, str]]:
    """(slot, offset, label, type) of every storage variable, in declaration order."""
    assert artifact.storage_layout is not None, f"{artifact.name}: no storage layout compiled"
    return [
        (str(entry["slot"]), int(entry["offset"]), str(entry["label"]), str(entry["type"]))
        for entry in artifact.storage_layout
    ]


@pytest.mark.parametrize("unit", UNIT_NAMES)
def test_every_unit_has_the_coordinators_storage_layout(
    compiled: dict[str, CompiledContract], unit: str
) -> None:
    expected = layout(compiled[COORDINATOR])
    assert expected, "the coordinator declares no storage"
    actual = layout(compiled[unit])
    differences = [
        (index, a, b) for index, (a, b) in enumerate(zip(expected, actual, strict=False)) if a != b
    ]
    assert not differences, f"{unit} differs from {COORDINATOR}: {differences[:3]}"
    assert len(actual) == len(expected), (
        f"{unit} declares {len(actual)} storage variables, {COORDINATOR} {len(expected)}"
    )


# ---------------------------------------------------------------- code size


@pytest.mark.parametrize("name", [COORDINATOR, *UNIT_NAMES])
def test_runtime_code_fits_eip170(compiled: dict[str, CompiledContract], name: str) -> None:
    size = compiled[name].deployed_size
    margin = EIP170_LIMIT - size
    assert size > 100, f"{name}: {size} bytes of runtime code (not compiled?)"
    assert margin > 0, (
        f"{name}: {size:,} bytes of runtime code, {-margin:,} over EIP-170's {EIP170_LIMIT:,}"
    )
    print(f"{name}: {size:,} bytes, {margin:,} bytes of margin under EIP-170")


def test_the_largest_model_chunk_fits_eip170(
    isolated: Chain, deployed: dict[str, Contract]
) -> None:
    """An SSTORE2 chunk is a STOP byte and its words: 767 words fit, 768 would not."""
    chunk_words = int(deployed["default"].functions.MAX_CHUNK_WORDS().call())
    assert 1 + 32 * chunk_words <= EIP170_LIMIT < 1 + 32 * (chunk_words + 1)
