import hashlib
import random

import numpy as np
import pytest
import torch
from torch import nn

from cvcraft.engine.checkpoint import (
    load_checkpoint,
    load_latest_valid,
    load_model_weights,
    previous_path,
    rng_state,
    save_checkpoint,
    set_rng_state,
    sidecar_path,
)
from cvcraft.errors import CheckpointError


class Arbitrary:  # not an allowed weights_only type
    def __init__(self):
        self.x = 1


def _state(v=1.0):
    return {"model": {"w": torch.full((3, 2), v)}, "epoch": 3, "name": "r", "lst": [1, 2.5]}


def test_round_trip_and_sidecar(tmp_path):
    p = tmp_path / "sub" / "last.pt"
    digest = save_checkpoint(p, _state())
    assert digest == hashlib.sha256(p.read_bytes()).hexdigest()
    assert sidecar_path(p).read_text() == f"{digest}  last.pt\n"  # sha256sum -c format
    s = load_checkpoint(p)
    assert torch.equal(s["model"]["w"], torch.ones(3, 2)) and s["epoch"] == 3
    assert s["lst"] == [1, 2.5]
    assert [f.name for f in p.parent.iterdir() if f.name.endswith(".tmp")] == []


def test_truncated_file_detected(tmp_path):
    p = tmp_path / "last.pt"
    save_checkpoint(p, _state())
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"last\.pt .*truncated or corrupted"):
        load_checkpoint(p)
    # without the checksum, the damaged zip is still refused with a clear error
    with pytest.raises(CheckpointError, match="could not be read.*truncated"):
        load_checkpoint(p, verify=False)


def test_corrupted_byte_detected(tmp_path):
    p = tmp_path / "last.pt"
    save_checkpoint(p, _state())
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its checksum"):
        load_checkpoint(p)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_arbitrary_object_refused(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"x": Arbitrary()}, p)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(p, verify=False)


def test_sidecarless_file_loads_with_warning(tmp_path):
    p = tmp_path / "foreign.pt"
    torch.save({"a": torch.ones(2)}, p)
    with pytest.warns(UserWarning, match="no foreign.pt.sha256"):
        assert torch.equal(load_checkpoint(p)["a"], torch.ones(2))


def test_keep_previous_and_fallback(tmp_path):
    p = tmp_path / "last.pt"
    save_checkpoint(p, _state(1.0), keep_previous=True)
    assert not previous_path(p).exists()
    save_checkpoint(p, _state(2.0), keep_previous=True)
    save_checkpoint(p, _state(3.0), keep_previous=True)
    prev = previous_path(p)
    assert prev.name == "last.prev.pt"
    assert load_checkpoint(prev)["model"]["w"][0, 0] == 2.0
    assert len(sidecar_path(p).read_text().splitlines()) == 1
    used, state, notes = load_latest_valid([p, prev])
    assert used == p and state["model"]["w"][0, 0] == 3.0 and notes == []
    p.write_bytes(p.read_bytes()[:100])  # newest damaged
    used, state, notes = load_latest_valid(p)  # single path expands to [last, last.prev]
    assert used == prev and state["model"]["w"][0, 0] == 2.0
    assert "skipped" in notes[0] and "last.pt" in notes[0] and "using" in notes[-1]
    prev.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no valid checkpoint"):
        load_latest_valid([p, prev])


def test_crash_window_states_are_valid(tmp_path):
    # Simulate the moment between writing the sidecar listing old+new and the rename:
    # the old file must still verify, and so must the new one once it lands.
    p = tmp_path / "last.pt"
    d_old = save_checkpoint(p, _state(1.0))
    tmp = tmp_path / "new.pt"
    d_new = save_checkpoint(tmp, _state(2.0))
    sidecar_path(p).write_text(f"{d_new}  last.pt\n{d_old}  last.pt\n")
    assert load_checkpoint(p)["model"]["w"][0, 0] == 1.0
    p.write_bytes(tmp.read_bytes())
    assert load_checkpoint(p)["model"]["w"][0, 0] == 2.0


def test_shape_mismatch_message():
    src = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 10))
    dst = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 100))
    ckpt = {"model": src.state_dict(), "model_name": "tiny10"}
    with pytest.raises(CheckpointError, match=r"weights from best\.pt do not fit Sequential") as e:
        load_model_weights(dst, ckpt, source="best.pt")
    msg = str(e.value)
    assert "2.weight: checkpoint (10, 4) vs model (100, 4)" in msg
    assert "trained with 10 classes; use data with 10 classes, or train with weights=" in msg
    assert "strict=False" not in msg and "num_classes=" not in msg
    assert "'tiny10'" in msg and "best.pt" in msg
    report = load_model_weights(dst, ckpt, strict=False)
    assert [k for k, _, _ in report["mismatched"]] == ["2.weight", "2.bias"]
    assert torch.equal(dst[0].weight, src[0].weight)  # body loaded, head kept
    # missing / unexpected keys, and a DDP "module." prefix is stripped
    sd = {"module." + k: v for k, v in src.state_dict().items() if not k.startswith("0.")}
    sd["module.extra"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"missing in checkpoint \(2\): 0.weight, 0.bias"):
        load_model_weights(src, sd)
    with pytest.raises(CheckpointError, match=r"unexpected in checkpoint \(1\): extra"):
        load_model_weights(src, sd)
    fresh = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 10))
    load_model_weights(fresh, src.state_dict())
    assert all(
        torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), src.state_dict().values())
    )


def test_rng_state_round_trip(tmp_path):
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    gen = np.random.default_rng(123)  # PCG64: 128-bit ints in its state
    gen.random(3)
    mt = np.random.Generator(np.random.MT19937(7))  # uint32 array in its state
    gens = {"data": gen, "mt": mt}
    save_checkpoint(tmp_path / "rng.pt", {"rng": rng_state(gens)})
    want = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)], gen.random(4))
    want_mt = mt.random(4)
    # scramble everything, then restore from the weights_only-loaded file
    torch.rand(10)
    np.random.rand(10)
    random.random()
    gen2 = np.random.default_rng(999)
    mt2 = np.random.Generator(np.random.MT19937(0))
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"], {"data": gen2, "mt": mt2})
    np.testing.assert_array_equal(mt2.random(4), want_mt)
    got = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)], gen2.random(4))
    assert torch.equal(want[0], got[0])
    np.testing.assert_array_equal(want[1], got[1])
    assert want[2] == got[2]
    np.testing.assert_array_equal(want[3], got[3])


def test_non_checkpoint_file_is_named(tmp_path):
    from cvcraft.engine.checkpoint import load_checkpoint as _load
    from cvcraft.errors import CheckpointError as _CkptError

    f = tmp_path / "notes.json"
    f.write_text('{"images": []}')
    with pytest.raises(_CkptError, match="notes.json is not a torch checkpoint"):
        _load(f, verify=False)
