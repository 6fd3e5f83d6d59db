"""Read ``brownie-config.yaml``: compiler settings, networks and federated-learning defaults.

The file is in Brownie's format; this module is the only reader. ``${VAR}`` in a string value is
replaced by the environment variable ``VAR`` when the value is used, so a remote network's URL and
key never sit in the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from fl_client.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_PATH = PROJECT_ROOT / "brownie-config.yaml"

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class CompilerSettings:
    """Solidity compiler settings (Brownie's ``compiler`` section)."""

    version: str
    evm_version: str
    optimizer_enabled: bool
    optimizer_runs: int
    via_ir: bool
    remappings: tuple[str, ...] = ()


@dataclass(frozen=True)
class NetworkConfig:
    """One entry of ``networks``; ``host`` is ``None`` for the embedded chain."""

    name: str
    host: str | None
    chain_id: int | str | None
    port: int | None = None
    gas_limit: int = 60_000_000
    tx_gas_cap: int = 16_777_216
    block_time: int = 0
    accounts: int = 20
    balance_eth: int = 10_000
    mnemonic: str | None = None

    @property
    def is_embedded(self) -> bool:
        """Whether this is the in-process eth-tester chain."""
        return self.host is None

    @property
    def url(self) -> str:
        """The JSON-RPC URL (host plus port when a port is set), ``${ENV}`` expanded."""
        if self.host is None:
            raise ConfigError(f"network {self.name!r} is embedded and has no URL")
        host = expand_env(self.host)
        return host if self.port is None else f"{host}:{self.port}"

    def expected_chain_id(self) -> int | None:
        """The configured chain id (``${ENV}`` expanded), or ``None`` when not configured."""
        if self.chain_id is None or isinstance(self.chain_id, int):
            return self.chain_id
        text = expand_env(self.chain_id)
        try:
            return int(text)
        except ValueError:
            raise ConfigError(
                f"chain id of network {self.name!r} is not an integer: {text!r}"
            ) from None


@dataclass(frozen=True)
class FixedPointFormat:
    """Quantization: ``q = round(w * scale)`` with ``|q| <= max_abs``."""

    scale: int
    max_abs: int

    def __post_init__(self) -> None:
        if self.scale < 1:
            raise ConfigError(f"fixed_point.scale must be >= 1, got {self.scale}")
        if not 1 <= self.max_abs <= 16383:
            raise ConfigError(f"fixed_point.max_abs must be in 1..16383, got {self.max_abs}")

    @property
    def step(self) -> float:
        """The value of one quantization step."""
        return 1.0 / self.scale


@dataclass(frozen=True)
class RewardConfig:
    """Reward tiers and the pool funded at deployment."""

    thresholds_per_weight: tuple[int, ...]
    amounts_wei: tuple[int, ...]
    pool_wei: int
    # RewardReference progress: tiers by shortfall, in basis points of the round's step.
    thresholds_bps: tuple[int, ...] = (9000, 12000, 15000)

    def thresholds(self, num_weights: int, reference: str = "current") -> tuple[int, ...]:
        """The contract's tier thresholds: distances for a model of ``num_weights`` weights, or
        under the ``progress`` reference shortfalls in basis points."""
        if reference == "progress":
            return self.thresholds_bps
        return tuple(t * num_weights for t in self.thresholds_per_weight)


# The direction guard's setting that lets every update through: alignment is never below -1.
ALIGNMENT_OFF = -10_000


MODES = ("plain", "commit_reveal", "secure_aggregation")
_CONTRACT_INTEGERS = (
    "target_submissions",
    "min_submissions",
    "round_duration",
    "max_sample_count",
    "min_reward_distance",
    "max_counted_distance",
    "reveal_duration",
    "close_window",
    "close_fee_wei",
    "relay_fee_wei",
    "commit_bond_wei",
    "max_share_bps",
    "max_step",
    "max_drift",
    "drift_window",
    "max_dropouts",
    "setup_duration",
    "recovery_duration",
    "trim_each",
)
REWARD_REFERENCES = ("current", "aggregate", "progress")


@dataclass(frozen=True)
class ContractConfig:
    """Round rules and options of the coordinator contract."""

    aggregation: str = "mean"
    distance: str = "l1"
    target_submissions: int | None = None
    min_submissions: int | None = None
    round_duration: int = 3600
    max_sample_count: int = 65535
    allowlist: bool = False
    min_reward_distance: int = 0
    max_counted_distance: int = 0
    words_per_segment: int | str = "auto"
    mode: str = "plain"
    reveal_duration: int = 600
    min_alignment_bps: int = ALIGNMENT_OFF
    close_window: int = 300
    close_fee_wei: int = 10**14
    relay_fee_wei: int = 10**13
    commit_bond_wei: int = 10**15
    reward_reference: str = "current"
    max_share_bps: int = 0
    max_step: int = 0
    max_drift: int = 0
    drift_window: int = 0
    max_dropouts: int = 1
    setup_duration: int = 600
    recovery_duration: int = 600
    trim_each: int = 0

    def __post_init__(self) -> None:
        for name in _CONTRACT_INTEGERS:
            value = getattr(self, name)
            if value is None and name in ("target_submissions", "min_submissions"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(
                    f"contract.{name} must be an integer >= 0, got {value!r}"
                    + (" (or null: the number of clients)" if name.endswith("_submissions") else "")
                )
        if not isinstance(self.allowlist, bool):
            raise ConfigError(f"contract.allowlist must be true or false, got {self.allowlist!r}")
        if (
            isinstance(self.min_alignment_bps, bool)
            or not isinstance(self.min_alignment_bps, int)
            or not ALIGNMENT_OFF <= self.min_alignment_bps <= 10_000
        ):
            raise ConfigError(
                "contract.min_alignment_bps must be an integer from -10000 (off) to 10000, "
                f"got {self.min_alignment_bps!r}"
            )
        if self.mode not in MODES:
            raise ConfigError(f"contract.mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.aggregation not in ("mean", "sample_weighted"):
            raise ConfigError(
                f"contract.aggregation must be mean or sample_weighted, got {self.aggregation!r}"
            )
        if self.distance not in ("l1", "squared_l2"):
            raise ConfigError(f"contract.distance must be l1 or squared_l2, got {self.distance!r}")
        if self.reward_reference not in REWARD_REFERENCES:
            raise ConfigError(
                f"contract.reward_reference must be one of {', '.join(REWARD_REFERENCES)}, "
                f"got {self.reward_reference!r}"
            )
        if self.trim_each > 255:
            raise ConfigError(f"contract.trim_each must be at most 255, got {self.trim_each}")
        if self.trim_each and self.aggregation != "mean":
            raise ConfigError(
                "contract.trim_each needs aggregation mean: the trimmed mean weighs every update 1"
            )
        if self.words_per_segment != "auto" and (
            isinstance(self.words_per_segment, bool)
            or not isinstance(self.words_per_segment, int)
            or self.words_per_segment < 1
        ):
            raise ConfigError(
                "contract.words_per_segment must be auto or a positive integer, "
                f"got {self.words_per_segment!r}"
            )

        if self.mode == "secure_aggregation":
            self._check_secure_aggregation()

    def _check_secure_aggregation(self) -> None:
        """What masked updates cannot have (the contract refuses the same): a rule on a single
        update (its distance, direction or share of the weight) or a reward by the new model."""
        per_update = {
            "min_reward_distance": self.min_reward_distance != 0,
            "max_counted_distance": self.max_counted_distance != 0,
            "min_alignment_bps": self.min_alignment_bps != ALIGNMENT_OFF,
            "max_share_bps": self.max_share_bps != 0,
            "reward_reference": self.reward_reference != "current",
            "trim_each": self.trim_each != 0,
        }
        named = [name for name, set_ in per_update.items() if set_]
        if named:
            raise ConfigError(
                f"contract.mode secure_aggregation masks every update, so {', '.join(named)} "
                "cannot apply (leave them at their defaults; max_step and max_drift bound the "
                "masked mean)"
            )

    @property
    def segment_limit(self) -> int | None:
        """The configured words per segment, or ``None`` for auto."""
        return None if self.words_per_segment == "auto" else int(self.words_per_segment)


@dataclass(frozen=True)
class PrivacyConfig:
    """Client-side differential privacy (the ``privacy`` section); off unless ``dp`` is true.

    ``level`` ``update``: the whole update is clipped to ``clip_norm`` and noised; ``sample``:
    DP-SGD (Opacus), every example's gradient clipped to ``clip_norm`` and the sum noised.
    ``epsilon_budget`` > 0 turns on the contract's privacy ledger.
    """

    dp: bool = False
    level: str = "update"
    clip_norm: float = 1.0
    noise_multiplier: float = 1.0
    delta: float = 1e-5
    epsilon_budget: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.dp, bool):
            raise ConfigError(f"privacy.dp must be true or false, got {self.dp!r}")
        if self.level not in ("update", "sample"):
            raise ConfigError(f"privacy.level must be update or sample, got {self.level!r}")
        for name in ("clip_norm", "noise_multiplier", "delta", "epsilon_budget"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"privacy.{name} must be a number, got {value!r}")
        if self.epsilon_budget < 0:
            raise ConfigError(
                f"privacy.epsilon_budget must be >= 0 (0: no ledger), got {self.epsilon_budget}"
            )
        if self.epsilon_budget > 0 and not self.dp:
            raise ConfigError(
                "privacy.epsilon_budget needs privacy.dp: true (the ledger charges DP participations)"
            )


# federated_learning's plain settings and what they accept (checked when the file is read, so
# that a typo is one clear line, not a traceback later).
_INTEGERS = {
    "clients": 1,
    "relayed_clients": 0,
    "rounds": 1,
    "epochs": 1,
    "batch_size": 0,
    "seed": 0,
}
_NUMBERS = {
    "learning_rate": (0.0, float("inf")),
    "fraction": (0.0, 1.0),
    "test_fraction": (0.0, 0.9),
    "dirichlet_alpha": (0.0, float("inf")),
}
_CHOICES = {
    "dataset": ("digits", "mnist5k"),
    "partition": ("iid", "dirichlet"),
    "algorithm": ("fedavg", "fedsgd"),
}


@dataclass(frozen=True)
class FLConfig:
    """Federated-learning defaults (the ``federated_learning`` section)."""

    dataset: str = "digits"
    # The task (model, data, train, test): a built-in (digits, mnist5k), a module or a .py file;
    # None: the built-in task of ``dataset`` (fl_client.tasks).
    task: str | None = None
    hidden_layers: tuple[
        int, ...
    ] = ()  # widths of an MLP's hidden layers; none: softmax regression
    test_fraction: float = 0.2
    partition: str = "iid"
    dirichlet_alpha: float = 0.5
    clients: int = 5
    relayed_clients: int = 0  # of them, how many hand their updates to a relay (plain mode)
    rounds: int = 5
    fraction: float = 1.0
    epochs: int = 5
    batch_size: int = 10
    learning_rate: float = 0.1
    algorithm: str = "fedavg"
    seed: int = 0
    fixed_point: FixedPointFormat = field(default_factory=lambda: FixedPointFormat(1024, 3000))
    contract: ContractConfig = field(default_factory=ContractConfig)
    rewards: RewardConfig = field(
        default_factory=lambda: RewardConfig((32, 64, 128), (10**15, 5 * 10**14, 10**14), 10**18)
    )
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)

    def __post_init__(self) -> None:
        if self.task is not None and (not isinstance(self.task, str) or not self.task.strip()):
            raise ConfigError(
                "task must name a task (a built-in, a module or a .py file) or be null, "
                f"got {self.task!r}"
            )
        for name, low in _INTEGERS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(
                    f"federated_learning.{name} must be an integer >= {low}, got {value!r}"
                )
        for name, (lower, upper) in _NUMBERS.items():
            number = getattr(self, name)
            if (
                isinstance(number, bool)
                or not isinstance(number, int | float)
                or not lower < number <= upper
            ):
                raise ConfigError(
                    f"federated_learning.{name} must be a number in ({lower}, {upper}], got {number!r}"
                )
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise ConfigError(
                    f"federated_learning.{name} must be one of {', '.join(choices)}, "
                    f"got {getattr(self, name)!r}"
                )
        if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in self.hidden_layers):
            raise ConfigError(
                f"federated_learning.hidden_layers must be positive integers, got {list(self.hidden_layers)}"
            )

    @property
    def task_reference(self) -> str:
        """The task to load: ``task``, or the built-in task of ``dataset``."""
        return self.task or self.dataset

    def with_overrides(self, **changes: Any) -> FLConfig:
        """A copy with the given fields replaced (``None`` values are ignored)."""
        return replace(self, **{key: value for key, value in changes.items() if value is not None})


@dataclass(frozen=True)
class ProjectConfig:
    """Everything ``brownie-config.yaml`` holds."""

    compiler: CompilerSettings
    networks: Mapping[str, NetworkConfig]
    default_network: str
    fl: FLConfig
    private_key_template: str | None

    def network(self, name: str | None = None) -> NetworkConfig:
        """The network called ``name`` (the default one when ``None``)."""
        key = name or self.default_network
        try:
            return self.networks[key]
        except KeyError:
            known = ", ".join(sorted(self.networks))
            raise ConfigError(
                f"unknown network {key!r}; brownie-config.yaml defines: {known}"
            ) from None

    def private_key(self) -> str | None:
        """The deployer's private key for RPC networks, from the environment."""
        if self.private_key_template is None:
            return None
        value = expand_env(self.private_key_template, required=False)
        return value or None


def expand_env(value: str, *, required: bool = True) -> str:
    """Replace ``${VAR}`` with the environment's value; raise when a required one is unset."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        found = os.environ.get(name)
        if found is None:
            if required:
                raise ConfigError(
                    f"environment variable {name} is not set (needed by brownie-config.yaml)"
                )
            return ""
        return found

    return _ENV_PATTERN.sub(substitute, value)


def _section(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key!r} in brownie-config.yaml must be a mapping")
    return value


def _network(name: str, raw: Mapping[str, Any]) -> NetworkConfig:
    settings = _section(raw, "cmd_settings")
    host = raw.get("host")
    chain_id = raw.get("chainid")
    return NetworkConfig(
        name=name,
        host=None if host is None else str(host),
        chain_id=chain_id if chain_id is None or isinstance(chain_id, int) else str(chain_id),
        port=settings.get("port"),
        gas_limit=int(settings.get("gas_limit", raw.get("gas_limit", 60_000_000))),
        tx_gas_cap=int(raw.get("tx_gas_cap", 16_777_216)),
        block_time=int(settings.get("block_time", 0)),
        accounts=int(settings.get("accounts", 20)),
        balance_eth=int(settings.get("balance", 10_000)),
        mnemonic=settings.get("mnemonic"),
    )


def _fl(raw: Mapping[str, Any]) -> FLConfig:
    fixed = _section(raw, "fixed_point")
    contract = _section(raw, "contract")
    rewards = _section(raw, "rewards")
    privacy = _section(raw, "privacy")
    sections = {"fixed_point", "contract", "rewards", "privacy"}
    known = set(FLConfig.__dataclass_fields__) - sections
    unknown = set(raw) - known - sections
    if unknown:
        raise ConfigError(f"unknown federated_learning keys: {', '.join(sorted(unknown))}")
    for name, section, cls in (
        ("contract", contract, ContractConfig),
        ("privacy", privacy, PrivacyConfig),
    ):
        extra = set(section) - set(cls.__dataclass_fields__)
        if extra:
            raise ConfigError(f"unknown {name} keys: {', '.join(sorted(extra))}")
    thresholds = tuple(int(v) for v in rewards.get("thresholds_per_weight", ()))
    amounts = tuple(int(v) for v in rewards.get("amounts_wei", ()))
    if len(thresholds) != len(amounts) or not thresholds:
        raise ConfigError(
            "rewards.thresholds_per_weight and rewards.amounts_wei must be non-empty and of equal length"
        )
    bps = tuple(int(v) for v in rewards.get("thresholds_bps", RewardConfig.thresholds_bps))
    if len(bps) != len(amounts) or list(bps) != sorted(bps) or any(v < 0 for v in bps):
        raise ConfigError(
            "rewards.thresholds_bps must be ascending, non-negative and as many as rewards.amounts_wei"
        )
    values = {key: raw[key] for key in known if key in raw}
    if "hidden_layers" in values:
        layers = values["hidden_layers"] or ()
        if not isinstance(layers, list | tuple):
            raise ConfigError(f"hidden_layers must be a list of widths, got {layers!r}")
        values["hidden_layers"] = tuple(layers)
    return FLConfig(
        **values,
        fixed_point=FixedPointFormat(
            int(fixed.get("scale", 1024)), int(fixed.get("max_abs", 3000))
        ),
        contract=ContractConfig(**dict(contract)),
        rewards=RewardConfig(thresholds, amounts, int(rewards.get("pool_wei", 0)), bps),
        privacy=PrivacyConfig(**dict(privacy)),
    )


def load_config(path: Path | str | None = None) -> ProjectConfig:
    """Parse ``brownie-config.yaml`` (or ``path``) into a :class:`ProjectConfig`."""
    return _load_cached(str(Path(path) if path is not None else CONFIG_PATH))


@lru_cache(maxsize=8)
def _load_cached(path: str) -> ProjectConfig:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse {path}: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    compiler = _section(data, "compiler")
    solc = _section(compiler, "solc")
    optimizer = _section(solc, "optimizer")
    settings = CompilerSettings(
        version=str(solc.get("version", "0.8.28")),
        evm_version=str(compiler.get("evm_version", "prague")),
        optimizer_enabled=bool(optimizer.get("enabled", True)),
        optimizer_runs=int(optimizer.get("runs", 200)),
        via_ir=bool(solc.get("via_ir", False)),
        remappings=tuple(str(item) for item in solc.get("remappings") or ()),
    )
    raw_networks = _section(data, "networks")
    default = str(raw_networks.get("default", "embedded"))
    networks: dict[str, NetworkConfig] = {}
    for name, raw in raw_networks.items():
        if name == "default":
            continue
        if not isinstance(raw, Mapping):
            raise ConfigError(f"network {name!r} must be a mapping")
        networks[name] = _network(name, raw)
    if default not in networks:
        raise ConfigError(f"default network {default!r} is not defined under networks")
    wallets = _section(data, "wallets")
    key = wallets.get("from_key")
    return ProjectConfig(
        compiler=settings,
        networks=networks,
        default_network=default,
        fl=_fl(_section(data, "federated_learning")),
        private_key_template=None if key is None else str(key),
    )
