"""Splitting, training with early stopping and class weights, and prediction.

CUDA with automatic mixed precision when a GPU is there; otherwise CPU with deterministic
algorithms, so the same seed gives the same model. With several ranks (torchrun), each trains on its
DistributedSampler shard of every epoch, DistributedDataParallel averages the gradients, and the
early-stopping decision is rank 0's, so all ranks stop at the same epoch with the same weights.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler, TensorDataset

from modelpilot.training.data import FEATURES, LABEL
from modelpilot.training.distributed import SINGLE, Workers, from_leader, join, sum_across
from modelpilot.training.metrics import roc_auc
from modelpilot.training.model import MixtureOfExperts

log = logging.getLogger(__name__)


class TrainingDivergedError(Exception):
    """The loss became NaN or infinite; the model is unusable."""


@dataclass(frozen=True)
class Split:
    """Raw features (float32, FEATURES order) and labels of one part of the data."""

    features: NDArray[np.float32]
    labels: NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.labels.size)


@dataclass(frozen=True)
class Splits:
    """Train, validation (early stopping) and test (final metrics and the quality gate) parts."""

    train: Split
    validation: Split
    test: Split


def split_frame(frame: pd.DataFrame, validation_fraction: float, test_fraction: float, seed: int) -> Splits:
    """A stratified split: each part keeps the class balance of the whole. Same frame and seed, same split."""
    rng = np.random.default_rng(seed)
    labels = frame[LABEL].to_numpy(dtype=np.int64)
    features = frame[FEATURES].to_numpy(dtype=np.float32)
    parts: dict[str, list[NDArray[np.int64]]] = {"train": [], "validation": [], "test": []}
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        n_test = round(rows.size * test_fraction)
        n_validation = round(rows.size * validation_fraction)
        parts["test"].append(rows[:n_test])
        parts["validation"].append(rows[n_test : n_test + n_validation])
        parts["train"].append(rows[n_test + n_validation :])

    def take(name: str) -> Split:
        rows = np.sort(np.concatenate(parts[name]))
        return Split(features[rows], labels[rows])

    return Splits(take("train"), take("validation"), take("test"))


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run."""

    epochs: int = 30
    batch_size: int = 256
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 5
    n_experts: int = 4
    hidden_units: int = 32
    dropout: float = 0.1
    seed: int = 0
    cpu_threads: int = 1


@dataclass(frozen=True)
class EpochRecord:
    """Metrics after one epoch."""

    epoch: int
    train_loss: float
    validation_loss: float
    validation_auc: float
    seconds: float


@dataclass
class FitResult:
    """The trained model (best validation epoch, on the CPU) and how training went."""

    model: MixtureOfExperts
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    device: str = "cpu"
    mixed_precision: bool = False
    seconds: float = 0.0


def choose_device(requested: str = "auto") -> torch.device:
    """CUDA when asked for or available under "auto", else the CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def seed_everything(seed: int, device: torch.device, cpu_threads: int = 1) -> None:
    """Seed torch and make CPU kernels deterministic (CUDA keeps its fast, non-deterministic kernels).

    On the CPU the thread count is fixed too: it fixes the order of reductions, and the model is so small
    that extra threads mostly add synchronisation (on a busy node they made an epoch 20 times slower).
    """
    torch.manual_seed(seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(cpu_threads)


def class_weights(labels: NDArray[np.int64], n_classes: int = 2) -> torch.Tensor:
    """Inverse-frequency weights, so the rare attack class counts as much as the benign one in the loss."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    weights = labels.size / (n_classes * np.maximum(counts, 1.0))
    return torch.tensor(weights, dtype=torch.float32)


def predict_proba(model: nn.Module, features: NDArray[np.float32], batch_size: int = 4096) -> NDArray[np.float64]:
    """Class probabilities [N, classes] of any module that maps raw features to logits, computed on the CPU."""
    # A torch.export program (a loaded pt2 model) keeps the mode it was exported in and refuses eval().
    with contextlib.suppress(NotImplementedError):
        model.eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(features), batch_size):
            logits = model(torch.from_numpy(np.ascontiguousarray(features[start : start + batch_size])))
            outputs.append(torch.softmax(logits.float(), dim=-1).numpy().astype(np.float64))
    return np.concatenate(outputs) if outputs else np.zeros((0, 2))


class EpochRunner:
    """The optimisation state of one training run on one device, one epoch at a time."""

    def __init__(
        self,
        model: MixtureOfExperts,
        splits: Splits,
        config: TrainConfig,
        device: torch.device,
        workers: Workers = SINGLE,
    ) -> None:
        self.module = model.to(device)
        self.workers = workers
        # DDP averages the gradients over the ranks after each backward pass and starts every rank from
        # rank 0's weights; the normalisation buffers are fixed before training, so they are not re-sent.
        self.model: nn.Module = (
            DistributedDataParallel(
                model,
                device_ids=[workers.local_rank] if device.type == "cuda" else None,
                forward_sync_buffers=False,
            )
            if workers.distributed
            else model
        )
        self.config = config
        self.device = device
        self.use_amp = device.type == "cuda"
        self.train_x = torch.from_numpy(splits.train.features).to(device)
        self.train_y = torch.from_numpy(splits.train.labels).to(device)
        self.validation_x = torch.from_numpy(splits.validation.features).to(device)
        self.validation_y = torch.from_numpy(splits.validation.labels).to(device)
        self.validation_labels = splits.validation.labels
        self.loss_fn = nn.CrossEntropyLoss(weight=class_weights(splits.train.labels).to(device))
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.shuffle = torch.Generator().manual_seed(config.seed)
        # Each rank takes its shard of a permutation all ranks agree on (seed + epoch); the global batch stays
        # `batch_size` rows, split over the ranks.
        self.sampler: DistributedSampler[tuple[torch.Tensor, ...]] | None = (
            DistributedSampler(
                TensorDataset(self.train_y), num_replicas=workers.world_size, rank=workers.rank, seed=config.seed
            )
            if workers.distributed
            else None
        )
        self.batch_size = max(1, math.ceil(config.batch_size / workers.world_size))

    def autocast(self) -> torch.autocast:
        """Mixed precision on CUDA, a no-op elsewhere."""
        return torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.use_amp)

    def train_epoch(self, epoch: int) -> float:
        """One pass over the shuffled training rows; the mean training loss."""
        self.model.train()
        order = self._order(epoch)
        total_loss, total_rows = 0.0, 0
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            self.optimizer.zero_grad(set_to_none=True)
            with self.autocast():
                loss = self.loss_fn(self.model(self.train_x[batch]), self.train_y[batch])
            # Every rank learns of a non-finite loss on any rank before the next collective, so all stop.
            weighted, rows, diverged = sum_across(
                self.workers, [loss.item() * len(batch), float(len(batch)), float(not torch.isfinite(loss))]
            )
            if diverged or not math.isfinite(weighted):
                raise TrainingDivergedError(
                    f"loss became {weighted / rows} in epoch {epoch}; lower the learning rate "
                    f"(now {self.config.learning_rate}) or check the data for extreme values"
                )
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            total_loss, total_rows = total_loss + weighted, total_rows + int(rows)
        return total_loss / total_rows

    def _order(self, epoch: int) -> torch.Tensor:
        """This rank's training rows of the epoch, shuffled."""
        if self.sampler is None:
            return torch.randperm(len(self.train_y), generator=self.shuffle).to(self.device)
        self.sampler.set_epoch(epoch)
        return torch.tensor(list(self.sampler), dtype=torch.int64, device=self.device)

    def validate(self, epoch: int) -> tuple[float, float]:
        """Validation loss and AUC of the current weights (rank 0's on every rank)."""
        self.module.eval()
        with torch.no_grad(), self.autocast():
            logits = self.module(self.validation_x).float()
            loss = self.loss_fn(logits, self.validation_y).item()
        auc = roc_auc(self.validation_labels, torch.softmax(logits, dim=-1)[:, 1].cpu().numpy())
        loss, auc = from_leader(self.workers, [loss, auc])
        if not math.isfinite(loss):
            raise TrainingDivergedError(f"validation loss became {loss} in epoch {epoch}")
        return loss, auc


def fit(
    splits: Splits,
    config: TrainConfig,
    device_name: str = "auto",
    on_epoch: Callable[[EpochRecord], None] | None = None,
    workers: Workers = SINGLE,
) -> FitResult:
    """Train a MixtureOfExperts on `splits.train`, stop early on validation loss, return the best epoch's model.

    `on_epoch` sees each epoch's record as soon as it is done. Raises TrainingDivergedError as soon as a
    loss is not finite. With several `workers` every rank calls this with the same splits and config and
    gets the same model back.
    """
    started = time.monotonic()
    device = choose_device(device_name)
    join(workers, device)
    seed_everything(config.seed, device, config.cpu_threads)
    model = MixtureOfExperts(
        n_features=splits.train.features.shape[1],
        n_experts=config.n_experts,
        hidden_units=config.hidden_units,
        dropout=config.dropout,
    )
    model.fit_normalisation(torch.from_numpy(splits.train.features))
    runner = EpochRunner(model, splits, config, device, workers)
    result = FitResult(model=model, device=device.type, mixed_precision=runner.use_amp)
    best_loss, best_state, epochs_without_gain = math.inf, copy.deepcopy(model.state_dict()), 0
    for epoch in range(1, config.epochs + 1):
        epoch_started = time.monotonic()
        train_loss = runner.train_epoch(epoch)
        validation_loss, validation_auc = runner.validate(epoch)
        record = EpochRecord(epoch, train_loss, validation_loss, validation_auc, time.monotonic() - epoch_started)
        result.history.append(record)
        log.info(
            "epoch %d/%d train_loss=%.4f val_loss=%.4f val_auc=%.4f (%.2fs)",
            epoch, config.epochs, train_loss, validation_loss, validation_auc, record.seconds,
        )  # fmt: skip
        if on_epoch is not None:
            on_epoch(record)

        if validation_loss < best_loss - 1e-4:
            best_loss, best_state, epochs_without_gain = validation_loss, copy.deepcopy(model.state_dict()), 0
            result.best_epoch = epoch
        else:
            epochs_without_gain += 1
            if epochs_without_gain >= config.patience:
                result.stopped_early = True
                log.info("early stop after epoch %d: no validation gain for %d epochs", epoch, config.patience)
                break

    model.load_state_dict(best_state)
    result.model = model.cpu().eval()
    result.seconds = time.monotonic() - started
    return result
