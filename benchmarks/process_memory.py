"""This process's resident memory for the benchmark scripts (Linux ``/proc``): the current RSS, and the peak over
one phase of the work (the kernel's high-water mark reset at the phase's start)."""
from __future__ import annotations

import resource

__all__ = ["status_mb", "reset_peak", "peak_mb"]


def status_mb(field: str) -> float:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``, ...) in MiB; NaN when the field is absent."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (the counter behind ``ru_maxrss`` / ``VmHWM``) to the current RSS; False
    where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_mb(resettable: bool) -> float:
    """The peak RSS in MiB: since :func:`reset_peak` when it worked, else since the process started
    (``ru_maxrss``, which over-states a phase if an earlier one, e.g. the imports, peaked higher)."""
    if resettable:
        return status_mb("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
