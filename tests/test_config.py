"""Settings the contract would refuse are refused when the configuration is read, naming them."""

from __future__ import annotations

from typing import Any

import pytest

from fl_client.config import ContractConfig
from fl_client.errors import ConfigError


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"min_reward_distance": 10}, "min_reward_distance"),
        ({"max_counted_distance": 10}, "max_counted_distance"),
        ({"min_alignment_bps": 0}, "min_alignment_bps"),
        ({"max_share_bps": 5_000}, "max_share_bps"),
        ({"reward_reference": "aggregate"}, "reward_reference"),
    ],
)
def test_rules_on_single_updates_are_refused_with_secure_aggregation(
    changes: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigError, match=f"secure_aggregation .*{named}"):
        ContractConfig(mode="secure_aggregation", **changes)


def test_the_same_rules_are_taken_in_the_clear_and_step_bounds_with_masks() -> None:
    plain = ContractConfig(max_share_bps=5_000, min_alignment_bps=0, reward_reference="aggregate")
    assert (plain.max_share_bps, plain.min_alignment_bps) == (5_000, 0)
    masked = ContractConfig(mode="secure_aggregation", max_step=40, max_drift=70, drift_window=2)
    assert (masked.max_step, masked.max_drift) == (40, 70)
