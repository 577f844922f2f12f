"""The CPU thread policy: training that does not collapse when another process is busy.

OpenMP threads that finish a parallel region spin (busy-wait) for the next one. On a
machine where another process holds a core, the spinning threads and the busy process
take turns on the cores, and every parallel region waits for the thread that was
descheduled: ResNet-20 fwd+bwd fell from ~200 to 39 images/s beside one busy process
(issue 26). Passive waiting (``OMP_WAIT_POLICY=PASSIVE``: idle threads sleep) removes the
collapse at a small cost when the machine is quiet. OpenMP reads the variable once, when
the runtime loads with torch, so ``passive_waiting`` must run before ``import torch`` --
the CLI entry point calls it first; a value the user set is kept.

``threads=N`` fixes torch's intra-op threads; ``threads=0`` (auto) is torch's default
capped at the cores this process may run on (``sched_getaffinity``: a container or
``taskset`` may allow fewer than the machine has). Data workers use one thread each
(``data.loader``), so they add processes, not thread pools.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

WAIT_ENV = "OMP_WAIT_POLICY"


def passive_waiting(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a policy; returns whether it
    takes effect in this process (False when torch is already imported)."""
    if WAIT_ENV in environ:
        return False
    environ[WAIT_ENV] = "PASSIVE"
    return "torch" not in sys.modules


def usable_cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def set_threads(threads: int) -> int:
    """Set torch's intra-op threads (``threads=0``: its default capped at the usable
    cores) and return the number in use."""
    import torch

    n = threads if threads > 0 else max(1, min(torch.get_num_threads(), usable_cores()))
    if n != torch.get_num_threads():
        torch.set_num_threads(n)
    return n
