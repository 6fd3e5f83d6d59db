"""A federation's privacy settings turned into what the parts need: each client's trainer (DP-SGD
for sample-level privacy), the update-level noise a participant adds, each client's epsilon, and
the curve the contract's ledger charges.

Pure core: no web3.
"""

from __future__ import annotations

from dataclasses import dataclass

from fl_client.client_secret import derive
from fl_client.config import FLConfig
from fl_client.dpsgd import DPSGDConfig, DPSGDTrainer, Participation, epsilon_after, ledger_curve
from fl_client.privacy import DPConfig, LedgerCurve, epsilon
from fl_client.tasks import DataSpec, LoadedTask, make_trainer
from fl_client.trainer import LocalTrainer
from fl_client.training import TrainConfig


@dataclass(frozen=True)
class PrivacySetup:
    """What privacy asks of a federation's clients and of its deployment."""

    update: DPConfig | None  # update-level noise, added by the participant
    sample: DPSGDConfig | None  # DP-SGD, inside the trainer
    ledger: LedgerCurve | None  # the contract's per-participation charge (epsilon_budget > 0)

    def epsilon(
        self, participations: int, participation: Participation | None = None
    ) -> float | None:
        """A client's epsilon after ``participations`` (``None`` without DP); sample-level DP
        needs the client's ``participation`` (its steps and sampling rate)."""
        if self.update is not None:
            return epsilon(self.update.noise_multiplier, participations, self.update.delta)
        if self.sample is not None:
            if participation is None:
                raise ValueError("sample-level DP needs the client's participation")
            return epsilon_after(participations, participation, self.sample)
        return None


def privacy_setup(
    fl: FLConfig,
    *,
    data_sizes: list[int] | None = None,
    config: TrainConfig,
    with_ledger: bool = True,
) -> PrivacySetup:
    """The setup of ``fl.privacy``; ``data_sizes`` (every client's examples) are needed for the
    ledger of sample-level DP (the smallest client spends the most). ``with_ledger=False``: no
    ledger (a client's process trains and accounts; the deployment holds the ledger)."""
    privacy = fl.privacy
    if not privacy.dp:
        return PrivacySetup(None, None, None)
    if privacy.level == "update":
        update = DPConfig(privacy.clip_norm, privacy.noise_multiplier, privacy.delta)
        ledger = (
            LedgerCurve.of(
                noise_multiplier=privacy.noise_multiplier,
                delta=privacy.delta,
                epsilon_budget=privacy.epsilon_budget,
            )
            if privacy.epsilon_budget > 0 and with_ledger
            else None
        )
        return PrivacySetup(update, None, ledger)
    sample = DPSGDConfig(privacy.clip_norm, privacy.noise_multiplier, privacy.delta)
    ledger = None
    if privacy.epsilon_budget > 0 and with_ledger:
        if not data_sizes:
            raise ValueError("the ledger of sample-level DP needs every client's data size")
        ledger = ledger_curve(data_sizes, config, sample, epsilon_budget=privacy.epsilon_budget)
    return PrivacySetup(None, sample, ledger)


def client_trainer(
    setup: PrivacySetup,
    task: LoadedTask,
    *,
    client: int,
    spec: DataSpec,
    config: TrainConfig,
    seed: int,
    secret: bytes,
) -> LocalTrainer:
    """Client ``client``'s trainer: DP-SGD on the task's model and data for sample-level DP (its
    noise seeded by the client's secret), else the task's own training."""
    if setup.sample is None:
        return make_trainer(task, client=client, spec=spec, config=config, seed=seed)
    return DPSGDTrainer(
        model=task.model(seed=seed),
        data=task.client_data(client, spec),
        config=config,
        dp=setup.sample,
        noise_seed=int.from_bytes(derive(secret, "dpsgd")[:8], "big"),
    )
