"""Several training processes (one per pod or GPU) as one run: torch.distributed, started by torchrun.

torchrun (or Kubeflow Trainer, which runs torchrun) sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT; without them the run is a single process and nothing here talks to anyone. Rank 0 is the
leader: it alone talks to MLflow, judges the gate and registers; every rank trains its shard of each
epoch and DistributedDataParallel averages the gradients, so all ranks hold the same weights.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

# Set by the launcher (modelpilot.training.launch) so each worker can say how long joining took.
LAUNCHED_AT_ENV = "MODELPILOT_LAUNCHED_AT"
# The leader may spend minutes alone (MLflow retries, the champion's evaluation, logging the model) while
# the other ranks wait for it in a collective: the process group's timeout must cover that.
COLLECTIVE_TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class Workers:
    """This process's place among the training processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_leader(self) -> bool:
        """Rank 0 logs to MLflow, judges the gate and registers."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process trains."""
        return self.world_size > 1


SINGLE = Workers()


def workers_from_env(env: Mapping[str, str] | None = None) -> Workers:
    """The place torchrun gives this process, or SINGLE when it did not start it."""
    env = os.environ if env is None else env
    world_size = int(env.get("WORLD_SIZE") or 1)
    rank = int(env.get("RANK") or 0)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"RANK {rank} is not within WORLD_SIZE {world_size}")
    return Workers(rank=rank, world_size=world_size, local_rank=int(env.get("LOCAL_RANK") or 0))


def backend_for(device: torch.device) -> str:
    """nccl between GPUs, gloo between CPUs."""
    return "nccl" if device.type == "cuda" else "gloo"


def join(workers: Workers, device: torch.device) -> None:
    """Join the process group of all ranks (a no-op for a single process)."""
    if not workers.distributed or dist.is_initialized():
        return
    started = time.monotonic()
    if device.type == "cuda":
        torch.cuda.set_device(workers.local_rank)
    dist.init_process_group(backend_for(device), init_method="env://", timeout=COLLECTIVE_TIMEOUT)
    launched = os.environ.get(LAUNCHED_AT_ENV)
    since_launch = f", {time.time() - float(launched):.1f}s after the launcher started" if launched else ""
    log.info("joined the process group as rank %d of %d over %s in %.2fs%s", workers.rank, workers.world_size,
             backend_for(device), time.monotonic() - started, since_launch)  # fmt: skip


def leave() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def sum_across(workers: Workers, values: list[float]) -> list[float]:
    """Element-wise sums of `values` over all ranks (the values themselves for a single process)."""
    if not workers.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return [float(value) for value in tensor.cpu()]


def from_leader(workers: Workers, values: list[float]) -> list[float]:
    """Rank 0's `values` on every rank, so that decisions such as early stopping are the same everywhere."""
    if not workers.distributed:
        return values
    shared: list[list[float]] = [values]
    dist.broadcast_object_list(shared, src=0)
    return [float(value) for value in shared[0]]


def leader_exit_code(workers: Workers, code: int) -> int:
    """The leader's exit code on every rank: the pods of one run succeed or fail together, so a Job
    restarts all of them (an index that succeeded alone would never join a new rendezvous)."""
    if not workers.distributed or not dist.is_initialized():
        return code
    shared: list[int] = [code]
    dist.broadcast_object_list(shared, src=0)
    return int(shared[0])


class LeaderFailedError(Exception):
    """Rank 0 failed before training (MLflow unreachable, unusable data): the other ranks stop too."""


# What the leader tells the other ranks once its steps before training are done.
_SETUP_FAILED, _TRAIN, _NOTHING_TO_TRAIN = 0.0, 1.0, 2.0


@dataclass
class LeaderSetup:
    """The leader's verdict after its steps before training: train, or not (an earlier attempt of this run
    already registered its version)."""

    train: bool = True


@contextmanager
def leader_setup(workers: Workers) -> Iterator[LeaderSetup]:
    """The leader's steps before training, while the other ranks wait in `wait_for_leader`: they learn
    whether the steps succeeded and whether there is anything to train, so a leader that cannot reach MLflow
    stops them instead of leaving them waiting in the first training collective."""
    setup = LeaderSetup()
    try:
        yield setup
    except BaseException:
        from_leader(workers, [_SETUP_FAILED])
        raise
    from_leader(workers, [_TRAIN if setup.train else _NOTHING_TO_TRAIN])


def wait_for_leader(workers: Workers) -> bool:
    """A follower's side of `leader_setup`: whether to train; raises LeaderFailedError when the leader's steps
    failed."""
    verdict = from_leader(workers, [_SETUP_FAILED])
    if verdict == [_SETUP_FAILED]:
        raise LeaderFailedError("rank 0 failed before training; its exit code is the run's")
    return verdict == [_TRAIN]
