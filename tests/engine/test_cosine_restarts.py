"""``cosine_restarts`` (SGDR with equal cycles, the snapshot-ensemble schedule) against
torch's ``CosineAnnealingWarmRestarts``; the snapshot cycle bookkeeping and its checks."""

import pytest
import torch

from cvcraft.engine.schedules import cosine_restarts_factor
from cvcraft.engine.trainer import snapshot_cycle, snapshot_cycles
from cvcraft.errors import ConfigError
from cvcraft.tasks import task_config


@pytest.mark.parametrize("total,cycles,m", [(60, 3, 0.0), (50, 4, 0.05), (7, 1, 0.1)])
def test_equals_torch_warm_restarts(total, cycles, m):
    length = -(-total // cycles)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=length, eta_min=m)
    for step in range(total):
        want = opt.param_groups[0]["lr"]
        got = cosine_restarts_factor(step, total, cycles=cycles, min_factor=m)
        assert got == pytest.approx(want, abs=1e-12), step
        opt.step()
        sched.step()
    # restarts at each cycle start, holds the last value past the end
    if cycles > 1:
        assert cosine_restarts_factor(length, total, cycles=cycles, min_factor=m) == 1.0
    last = cosine_restarts_factor(total - 1, total, cycles=cycles, min_factor=m)
    assert cosine_restarts_factor(total + 5, total, cycles=cycles, min_factor=m) == last
    with pytest.raises(ConfigError, match="cycles=0"):
        cosine_restarts_factor(0, total, cycles=0)


def test_snapshot_cycles_end_on_epochs():
    cfg = task_config("classify", {"schedule": "cosine_restarts", "cycles": "3", "epochs": "6",
                                   "warmup_epochs": "0"})  # fmt: skip
    assert [snapshot_cycle(cfg, e) for e in range(6)] == [None, 0, None, 1, None, 2]
    assert snapshot_cycles(cfg) == 3
    cosine = task_config("classify", {"cycles": "3", "epochs": "6"})
    assert snapshot_cycle(cosine, 1) is None  # only cosine_restarts snapshots
    bad = task_config("classify", {"schedule": "cosine_restarts", "cycles": "4", "epochs": "6",
                                   "warmup_epochs": "0"})  # fmt: skip
    with pytest.raises(ConfigError, match="multiple of cycles"):
        snapshot_cycles(bad)
    warm = task_config("classify", {"schedule": "cosine_restarts", "cycles": "2", "epochs": "6"})
    with pytest.raises(ConfigError, match="warmup_epochs=0"):
        snapshot_cycles(warm)
