"""`python -m modelpilot.training.launch <torchrun arguments>`: torchrun that keeps the worker's exit code.

torchrun itself exits 1 whenever a worker fails, whatever the worker's code was; the training Job needs
the entrypoint's code (3: the quality gate failed, do not retry). This runs torchrun in this process and
exits with the code of the lowest failed rank on this node (rank 0's, when it failed). Rendezvous settings
come from the arguments or, as torchrun reads them, from PET_* variables (Kubeflow Trainer sets those); in
an Indexed Job with c10d rendezvous the pod of index 0 hosts the rendezvous store.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence

from modelpilot.training.distributed import LAUNCHED_AT_ENV

# A worker killed by a signal has a negative exit code; the shell convention is 128 + the signal.
SIGNAL_EXIT_BASE = 128
# Set by Kubernetes in each pod of an Indexed Job.
JOB_INDEX_ENV = "JOB_COMPLETION_INDEX"


def exit_code_of(failures: dict[int, int]) -> int:
    """The code to exit with, from each failed rank's exit code: the lowest rank's own exit code, else the
    lowest rank's signal as 128 + n. A rank that exited by itself comes first because torchrun stops the
    other ranks on this node with SIGTERM as soon as one fails, even when they were about to exit the same way.
    """
    exited = {rank: code for rank, code in failures.items() if code > 0}
    if exited:
        return exited[min(exited)]
    signalled = {rank: code for rank, code in failures.items() if code < 0}
    if signalled:
        return SIGNAL_EXIT_BASE - signalled[min(signalled)]
    return 1


def with_store_host(rdzv_conf: str, job_index: str | None) -> str:
    """torchrun's rendezvous settings with `is_host` decided by the pod's index in an Indexed Job: index 0 hosts
    the c10d store. torchrun would guess by comparing host names and addresses, and a pod's own name is not
    the Service DNS name its peers use (nor does that name resolve before the pod's address is published)."""
    if job_index is None or "is_host=" in rdzv_conf:
        return rdzv_conf
    setting = f"is_host={'true' if job_index == '0' else 'false'}"
    return f"{rdzv_conf},{setting}" if rdzv_conf else setting


def main(argv: Sequence[str] | None = None) -> int:
    """Run torchrun with `argv` (default: the command line); the exit code of the training."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    os.environ[LAUNCHED_AT_ENV] = f"{time.time():.3f}"
    # torch's launcher has no type annotations.
    args = parse_args(list(sys.argv[1:] if argv is None else argv))  # type: ignore[no-untyped-call]
    if args.rdzv_backend == "c10d":
        args.rdzv_conf = with_store_host(args.rdzv_conf, os.environ.get(JOB_INDEX_ENV))
    try:
        run(args)  # type: ignore[no-untyped-call]
    except ChildFailedError as error:
        return exit_code_of({rank: failure.exitcode for rank, failure in error.failures.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
