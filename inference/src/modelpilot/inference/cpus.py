"""How many CPUs this process may really use: the cgroup quota, the affinity mask, the machine."""

from __future__ import annotations

import math
import os
from pathlib import Path

_CGROUP_V2 = Path("/sys/fs/cgroup/cpu.max")
_CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
_CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def cgroup_cpu_limit(
    v2: Path = _CGROUP_V2, v1_quota: Path = _CGROUP_V1_QUOTA, v1_period: Path = _CGROUP_V1_PERIOD
) -> float | None:
    """The container's CPU limit in CPUs (quota / period), or None when there is no limit."""
    try:
        quota_text, period_text = v2.read_text().split()[:2]
        if quota_text == "max":
            return None
        return int(quota_text) / int(period_text)
    except (OSError, ValueError):
        pass
    try:
        quota = int(v1_quota.read_text())
        period = int(v1_period.read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def usable_cpus() -> int:
    """Whole CPUs to plan threads for: the smaller of the affinity mask and the rounded-up cgroup limit."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        affinity = min(affinity, max(1, math.ceil(limit)))
    return max(1, affinity)
