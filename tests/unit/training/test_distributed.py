"""Ranks and the launcher's exit code."""

from __future__ import annotations

import pytest
import torch

from modelpilot.training.distributed import SINGLE, Workers, backend_for, workers_from_env
from modelpilot.training.launch import exit_code_of, with_store_host


def test_without_torchrun_variables_the_run_is_a_single_leader() -> None:
    assert workers_from_env({}) == SINGLE
    assert SINGLE.is_leader
    assert not SINGLE.distributed


def test_torchrun_variables_give_the_rank_and_only_rank_0_leads() -> None:
    workers = workers_from_env({"RANK": "1", "WORLD_SIZE": "3", "LOCAL_RANK": "0"})
    assert workers == Workers(rank=1, world_size=3, local_rank=0)
    assert workers.distributed
    assert not workers.is_leader


def test_a_rank_outside_the_world_is_refused() -> None:
    with pytest.raises(ValueError, match="RANK 2 is not within WORLD_SIZE 2"):
        workers_from_env({"RANK": "2", "WORLD_SIZE": "2"})


def test_gloo_between_cpus_and_nccl_between_gpus() -> None:
    assert backend_for(torch.device("cpu")) == "gloo"
    assert backend_for(torch.device("cuda")) == "nccl"


def test_the_launcher_exits_with_the_lowest_failed_ranks_code() -> None:
    assert exit_code_of({1: 1, 0: 3}) == 3
    assert exit_code_of({2: 6}) == 6


def test_a_rank_that_exited_by_itself_wins_over_one_torchrun_stopped() -> None:
    # Rank 1 failed the gate first; torchrun then sent rank 0 SIGTERM.
    assert exit_code_of({0: -15, 1: 3}) == 3


def test_a_rank_killed_by_a_signal_exits_128_plus_the_signal() -> None:
    assert exit_code_of({0: -9}) == 137


def test_a_failure_without_a_code_is_still_a_failure() -> None:
    assert exit_code_of({}) == 1
    assert exit_code_of({0: 0}) == 1


def test_the_pod_of_index_0_hosts_the_rendezvous_store_and_the_others_join_it() -> None:
    assert with_store_host("join_timeout=900", "0") == "join_timeout=900,is_host=true"
    assert with_store_host("join_timeout=900", "3") == "join_timeout=900,is_host=false"
    assert with_store_host("", "1") == "is_host=false"


def test_outside_an_indexed_job_or_when_set_torchrun_decides_who_hosts() -> None:
    assert with_store_host("join_timeout=900", None) == "join_timeout=900"
    assert with_store_host("is_host=false", "0") == "is_host=false"
