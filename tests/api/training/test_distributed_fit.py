"""fit() as two gloo ranks on loopback: real processes, real collectives."""

from __future__ import annotations

import multiprocessing
import os
from multiprocessing.connection import Connection

import numpy as np

from modelpilot.training.data import generate_flows
from modelpilot.training.distributed import workers_from_env
from modelpilot.training.fit import Split, Splits, TrainConfig, TrainingDivergedError, fit, split_frame
from tests.support.processes import free_port


def _small_splits(poison: bool) -> Splits:
    splits = split_frame(generate_flows(1200, seed=3), 0.15, 0.2, seed=3)
    if not poison:
        return splits
    features = splits.train.features.copy()
    features[:] = np.inf  # every row this rank trains on makes the loss non-finite
    return Splits(Split(features, splits.train.labels), splits.validation, splits.test)


def _rank(rank: int, port: int, poison_rank: int | None, results: Connection) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    workers = workers_from_env()
    try:
        result = fit(_small_splits(rank == poison_rank), TrainConfig(epochs=3, patience=10), "cpu", workers=workers)
        results.send(("trained", len(result.history), [t.numpy() for t in result.model.state_dict().values()]))
    except TrainingDivergedError as error:
        results.send(("diverged", str(error), []))


def _run_two_ranks(poison_rank: int | None) -> list[tuple[str, object, list[np.ndarray]]]:
    context = multiprocessing.get_context("spawn")
    port = free_port()
    pipes = [context.Pipe(duplex=False) for _ in range(2)]
    processes = [context.Process(target=_rank, args=(rank, port, poison_rank, pipes[rank][1])) for rank in range(2)]
    for process in processes:
        process.start()
    try:
        # A hang here (a rank waiting for one that stopped) is the failure this guards against.
        assert all(receive.poll(240) for receive, _ in pipes), "a rank did not finish within 240 s"
        return [receive.recv() for receive, _ in pipes]
    finally:
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()


def test_two_ranks_train_the_same_epochs_and_end_with_identical_weights() -> None:
    (kind_0, epochs_0, weights_0), (kind_1, epochs_1, weights_1) = _run_two_ranks(poison_rank=None)
    assert kind_0 == kind_1 == "trained"
    assert epochs_0 == epochs_1 == 3
    assert len(weights_0) == len(weights_1) > 0
    for left, right in zip(weights_0, weights_1, strict=True):
        np.testing.assert_array_equal(left, right)


def test_a_non_finite_loss_on_one_rank_stops_both_instead_of_leaving_one_waiting() -> None:
    outcomes = _run_two_ranks(poison_rank=1)
    assert [kind for kind, _, _ in outcomes] == ["diverged", "diverged"]
    assert all("loss became" in str(message) for _, message, _ in outcomes)
