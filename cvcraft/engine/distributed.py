"""Distributed data-parallel (DDP) helpers: process group, rank queries, collectives, launch.

One process per device; each holds a full model replica and a shard of every batch.
``DistributedDataParallel`` all-reduces (averages) gradients during ``backward``, so with
equal per-rank batches the update equals one process training on the concatenated batch:
``grad = mean_r (1/B) sum_{i in shard r} dL_i = (1/(R B)) sum_i dL_i``.

Backends: NCCL when the run uses CUDA, gloo on the CPU. ``torchrun`` (or ``cvcraft train
... devices=N``, which runs torchrun itself) sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``;
without them everything here degrades to the single-process answer (rank 0 of 1), so the
trainer and the evaluators call these functions unconditionally.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from cvcraft.errors import ConfigError, TrainingError

# Where rank 0 writes the run folder of a run started by ``launch`` (so launch can return
# the run's metrics to its caller).
RESULT_ENV = "CVCRAFT_LAUNCH_RESULT"


def env_world_size() -> int:
    """WORLD_SIZE set by torchrun (1 when not launched by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_initialized() -> bool:
    """True when a process group is up (a DDP run)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's global rank (0 without DDP)."""
    return dist.get_rank() if is_initialized() else 0


def local_rank() -> int:
    """This process's rank on its machine (selects the CUDA device)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def world_size() -> int:
    """Number of processes in the run (1 without DDP)."""
    return dist.get_world_size() if is_initialized() else 1


def is_main_process() -> bool:
    """Rank 0: the one process that prints, logs and writes checkpoints and plots."""
    return rank() == 0


def elastic_restart_count() -> int:
    """How many times torchrun has restarted this worker group (0 on the first attempt)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def init_distributed(device: torch.device, timeout_s: float = 1800.0) -> bool:
    """Join the process group torchrun describes; returns True when this is a DDP run.

    NCCL for CUDA devices (each rank on ``cuda:LOCAL_RANK``), gloo otherwise. A no-op when
    WORLD_SIZE is 1 or the group already exists.
    """
    if env_world_size() <= 1:
        return False
    if is_initialized():
        return True
    if not dist.is_available():
        raise TrainingError("devices>1 needs torch.distributed, which this torch build lacks")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local_rank())
    timeout = timedelta(seconds=timeout_s)
    # torchrun keeps one store across elastic restarts (same MASTER_PORT), so the restarted
    # workers would read the dead attempt's gloo addresses from it and fail with "connection
    # refused" (torch 2.14, reproduced with a plain torchrun script). Each attempt gets its
    # own key prefix in that store instead.
    store, rank_, world = next(dist.rendezvous("env://", timeout=timeout))
    store = dist.PrefixStore(f"/cvcraft/attempt_{elastic_restart_count()}", store)
    dist.init_process_group(
        backend=backend, store=store, rank=rank_, world_size=world, timeout=timeout
    )
    return True


def distributed_device(device: torch.device) -> torch.device:
    """Under DDP on CUDA each rank owns ``cuda:LOCAL_RANK``; other devices are unchanged."""
    if env_world_size() > 1 and device.type == "cuda":
        return torch.device("cuda", local_rank())
    return device


def cleanup() -> None:
    """Leave the process group (at the end of a run)."""
    if is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (e.g. until rank 0 has written best.pt)."""
    if is_initialized():
        dist.barrier()


class DDP(nn.parallel.DistributedDataParallel):
    """``DistributedDataParallel`` that also exposes the wrapped model's own attributes.

    Task code calls model-specific methods (``model.loss(outputs, targets)``,
    ``model.postprocess``) on whatever the Trainer hands it; gradients only need the
    *forward* to go through the wrapper, so forwarding other attribute lookups to the bare
    model lets the same task code run with and without DDP.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("module"), name)


def wrap_model(model: nn.Module, sync_bn: bool, device: torch.device) -> nn.Module:
    """The model as DDP (SyncBatchNorm first when ``sync_bn``); unchanged without DDP.

    SyncBN computes batch statistics over the global batch (all ranks), so BN behaves as in
    one process with the global batch; without it each rank normalizes by its own shard.
    """
    if not is_initialized() or world_size() == 1:
        return model
    if sync_bn:
        if device.type != "cuda":  # torch's SyncBatchNorm kernels exist for CUDA only
            raise ConfigError(
                "sync_bn=true needs CUDA devices; on the CPU use sync_bn=false (each rank "
                "normalizes by its own shard) or a model without BatchNorm"
            )
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index if device.index is not None else local_rank()]
    return DDP(model, device_ids=ids if device.type == "cuda" else None)


def all_reduce_sum(x: torch.Tensor | float | int) -> Any:
    """Sum a tensor (any shape) or a number over all ranks; returns the same kind.

    Used for confusion matrices (C, C) and loss sums/counts. Integers stay exact (int64).
    """
    if not is_initialized():
        return x
    is_tensor = isinstance(x, torch.Tensor)
    is_int = isinstance(x, int)
    if is_tensor:
        t = x.detach().clone()
    else:
        t = torch.tensor(x, dtype=torch.int64 if is_int else torch.float64)
    if dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        device = torch.device("cpu")
    orig = t.device
    t = t.to(device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t = t.to(orig)
    if is_tensor:
        return t
    return int(t.item()) if is_int else float(t.item())


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable: e.g. COCO prediction lists), in rank order."""
    if not is_initialized():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (e.g. the run folder rank 0 chose)."""
    if not is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def write_launch_result(out_dir: Path) -> None:
    """Rank 0 tells ``launch`` (its parent) which run folder it wrote."""
    target = os.environ.get(RESULT_ENV)
    if target and is_main_process():
        Path(target).write_text(str(out_dir))


def torchrun_command(argv: Sequence[str], nproc: int, max_restarts: int = 0) -> list[str]:
    """The command that re-runs ``cvcraft <argv>`` under torchrun with ``nproc`` processes.

    ``--standalone`` picks a free rendezvous port on this machine, so two runs never clash.
    """
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        f"--max_restarts={max_restarts}",
        "-m",
        "cvcraft",
        *argv,
    ]


def launch(argv: Sequence[str], devices: int, *, max_restarts: int | None = None) -> Any:
    """Run ``cvcraft <argv>`` as ``devices`` DDP processes under torchrun and wait.

    Returns the run's ``metrics.json`` (as the single-process CLI returns its metrics).
    ``max_restarts`` (default: env ``CVCRAFT_MAX_RESTARTS`` or 0) lets torchrun restart the
    worker group after a crash; restarted workers resume from the run's ``last.pt``.
    Raises ``TrainingError`` with the exit status when the workers fail.
    """
    if devices < 1:
        raise ConfigError(f"devices={devices}: must be >= 1")
    if max_restarts is None:
        max_restarts = int(os.environ.get("CVCRAFT_MAX_RESTARTS", "0"))
    with tempfile.TemporaryDirectory(prefix="cvcraft-launch-") as tmp:
        result = Path(tmp) / "run_dir.txt"
        env = {**os.environ, RESULT_ENV: str(result)}
        env.setdefault("OMP_NUM_THREADS", "1")  # torchrun's default too; say it explicitly
        cmd = torchrun_command(argv, devices, max_restarts)
        print(f"launching {devices} processes: {' '.join(cmd[1:])}")
        code = subprocess.call(cmd, env=env)
        if code != 0:
            raise TrainingError(
                f"the {devices} DDP worker processes exited with status {code}; their "
                "messages are above (rerun with devices=1 to debug in one process)"
            )
        if not result.exists():
            return {}
        out = Path(result.read_text())
    metrics_file = out / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    metrics["run_dir"] = str(out)
    return metrics
