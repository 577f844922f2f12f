"""DDP over tar shards: each rank of a training loader reads whole shards of its own.

Oracles: which shard an item lives in is read back from the tar files themselves (member
names), and the per-rank order is recomputed from the spec (shard permutation of
``default_rng([seed, epoch])``, rank r takes ``perm[r::R]``, items shuffled by
``default_rng([seed, epoch, r])``, cyclic wrap/truncate to ``ceil(N / R)``) with plain
Python lists — not with the sampler's numpy code.
"""

from __future__ import annotations

import os
import socket
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from cvcraft.data import ClassifyDataset, build_loader, load_classification
from cvcraft.data.collate import collate_detect, collate_segment
from cvcraft.data.detection_dataset import DetectAugment, detection_dataset, load_detection_splits
from cvcraft.data.loader import EpochSampler, ShardSampler, set_epoch
from cvcraft.data.segmentation import load_segmentation, segment_dataset
from cvcraft.data.webdataset import read_meta
from cvcraft.errors import DataError
from cvcraft.tasks.tools import run_pack

SEED = 3


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """One packed folder per task; train shards of 7/7/7/7/2 (classify) or 4/4/4/4/2 items."""
    root = tmp_path_factory.mktemp("packed")
    run_pack({"data": "shapes:30", "out": str(root / "classify"), "max_count": "7"})
    for task in ("detect", "segment"):
        run_pack(
            {"data": "shapes:18", "out": str(root / task), "max_count": "4", "task": task,
             "imgsz": "32"}
        )  # fmt: skip
    return root


def _train_dataset(task: str, folder: Path):
    """The training torch Dataset each task builds (engine/classify|detect|segment.py)."""
    if task == "classify":
        data = load_classification(folder).train
        return ClassifyDataset(data, seed=SEED), data, None
    if task == "detect":
        data = load_detection_splits(str(folder), imgsz=32).train
        ds = detection_dataset(data, 32, DetectAugment(mosaic=1.0), seed=SEED)
        return ds, data, collate_detect
    data = load_segmentation(folder).train
    return segment_dataset(data, seed=SEED), data, collate_segment


def _tar_oracle(folder: Path) -> dict[str, int]:
    """Sample key -> shard number, read from the tar files' member names."""
    out = {}
    for k, s in enumerate(read_meta(folder)["shards"]):
        with tarfile.open(folder / s["name"]) as tar:
            for name in tar.getnames():
                out[name.partition(".")[0]] = k
    return out


def _item_shards(data, folder: Path) -> list[int]:
    """Shard of every item of ``data`` per the tar oracle (the key is the text after ':')."""
    where = _tar_oracle(folder)
    desc = [
        data.images[i].path if hasattr(data, "images") else data.describe(i)
        for i in range(len(data))
    ]
    return [where[d.rsplit(":", 1)[1]] for d in desc]


def _reference(shards: list[int], seed: int, epoch: int, world: int, rank: int) -> list[int]:
    """The spec, with lists: shard permutation, this rank's shards, shuffle, wrap/truncate."""
    present = sorted(set(shards))
    perm = np.random.default_rng([seed, epoch]).permutation(len(present))
    mine = {present[p] for p in perm[rank::world]}
    items = [i for i, s in enumerate(shards) if s in mine]
    items = [items[j] for j in np.random.default_rng([seed, epoch, rank]).permutation(len(items))]
    quota = -(-len(shards) // world)
    return [items[k % len(items)] for k in range(quota)]


def _rank_orders(ds, collate, epoch: int, world: int = 2) -> list[list[int]]:
    """Item indices each rank's loader yields for ``epoch`` (read from the batches)."""
    out = []
    for r in range(world):
        kw = {"collate_fn": collate} if collate else {}
        loader = build_loader(ds, 4, shuffle=True, seed=SEED, num_replicas=world, rank=r, **kw)
        assert isinstance(loader.batch_sampler.sampler, ShardSampler)
        set_epoch(loader, epoch)
        out.append(list(loader.batch_sampler.sampler.indices()))
    return out


# ----------------------------------------------------------------------------- per task
@pytest.mark.parametrize("task", ["classify", "detect", "segment"])
def test_ranks_read_disjoint_whole_shards(packed, task):
    folder = packed / task
    ds, data, collate = _train_dataset(task, folder)
    shards = _item_shards(data, folder / "train")
    assert list(ds.shard_ids()) == shards  # forwarded through every wrapper, oracle = tars
    n, world = len(ds), 2
    orders = {}
    for epoch in (0, 1, 2):
        parts = _rank_orders(ds, collate, epoch)
        assert parts == _rank_orders(ds, collate, epoch)  # two builds: same order
        orders[epoch] = parts
        assert len(parts[0]) == len(parts[1]) == -(-n // world)
        owned = [{shards[i] for i in p} for p in parts]
        assert not owned[0] & owned[1]  # no shard read by both ranks
        for r, p in enumerate(parts):
            assert p == _reference(shards, SEED, epoch, world, r)
            whole = [i for i in range(n) if shards[i] in owned[r]]
            if len(whole) <= len(p):  # short rank: all its items, some twice
                assert set(p) == set(whole)
            else:  # long rank: distinct items, the surplus dropped this epoch
                assert len(set(p)) == len(p) and set(p) < set(whole)
        covered = set(parts[0]) | set(parts[1])
        surplus = sum(max(0, sum(s in o for s in shards) - len(parts[0])) for o in owned)
        assert len(covered) == n - surplus
    assert orders[0] != orders[1] != orders[2]


def test_subset_keeps_item_to_shard_map(packed):
    """A split/fraction= subset maps its indices; the ranks still own disjoint shards."""
    folder = packed / "classify"
    full = load_classification(folder).train
    rows = np.arange(3, 26, 2)
    sub = full.subset(rows)
    shards = _item_shards(sub, folder / "train")
    ds = ClassifyDataset(sub, seed=SEED)
    assert list(ds.shard_ids()) == shards
    for r, p in enumerate(_rank_orders(ds, None, 4)):
        assert p == _reference(shards, SEED, 4, 2, r)


def test_detection_fraction_on_shards(packed):
    """fraction= subsets detection shards (dataclasses.replace used to fail on the reader's
    own __init__); the subset reads the right pixels and keeps the shard map."""
    from cvcraft.data.detection_dataset import make_shapes_detection

    folder = packed / "detect"
    sub = load_detection_splits(str(folder), imgsz=32, fraction=0.5).train
    assert len(sub) == 9
    assert list(sub.shard_ids()) == _item_shards(sub, folder / "train")
    src = make_shapes_detection(18, 32, 0, "train")  # what was packed, in the same order
    for i in range(len(sub)):
        key = int(sub.images[i].path.rsplit(":", 1)[1])  # write_shards keys = source index
        assert np.array_equal(sub.sample(i).image, src.sample(key).image)
        assert sub.sample(i).meta["index"] == i


def test_loader_yields_epoch_index_keys_with_per_item_augmentation(packed):
    """Batches are exactly ds[(epoch, i)] in the sampler's order: the (epoch, index)
    contract and the per-item seeding are those of EpochSampler."""

    def shift(s, rng):  # a random transform: the result depends on the item's generator
        return s.replace(image=np.roll(s.image, int(rng.integers(0, 16)), axis=1))

    ds = ClassifyDataset(load_classification(packed / "classify").train, shift, seed=SEED)
    loader = build_loader(ds, 5, shuffle=True, seed=SEED, num_replicas=2, rank=1)
    set_epoch(loader, 3)
    assert all(k[0] == 3 for k in loader.batch_sampler.sampler)
    order = loader.batch_sampler.sampler.indices()
    got = torch.cat([b["images"] for b in loader])
    want = np.stack([ds[(3, int(i))].image for i in order])
    assert torch.equal(got, torch.from_numpy(want).permute(0, 3, 1, 2))


# ----------------------------------------------------------------------------- sampler
def test_state_is_a_function_of_seed_and_epoch():
    """Exact resume: a fresh sampler set to epoch e = one that iterated epochs 0..e-1."""
    ids = np.repeat(np.arange(6), [5, 3, 8, 1, 4, 6])
    run = ShardSampler(ids, 9, num_replicas=3, rank=2)
    seen = []
    for e in range(4):
        run.set_epoch(e)
        seen.append(list(run))
        assert list(run) == seen[-1]  # iterating twice changes nothing
    fresh = ShardSampler(ids, 9, num_replicas=3, rank=2)
    fresh.set_epoch(2)
    assert fresh.epoch == 2 and list(fresh) == seen[2]
    assert all(k[0] == 2 for k in seen[2]) and len(fresh) == len(seen[2]) == 9
    other = ShardSampler(ids, 10, num_replicas=3, rank=2)
    other.set_epoch(2)
    assert list(other) != seen[2]


def test_fewer_shards_than_ranks_is_an_error(packed):
    ds = ClassifyDataset(load_classification(packed / "classify").train)
    with pytest.raises(DataError, match=r"5 tar shard\(s\) for 6 DDP ranks.*max_count=5"):
        build_loader(ds, 6, shuffle=True, num_replicas=6, rank=0)


def test_other_loaders_keep_the_epoch_sampler(packed):
    from cvcraft.data import make_shapes
    from cvcraft.data.sampling import build_sampler

    ds = ClassifyDataset(load_classification(packed / "classify").train)
    eval_loader = build_loader(ds, 4, shuffle=False, num_replicas=2, rank=0, pad=False)
    single = build_loader(ds, 4, shuffle=True)
    plain = build_loader(ClassifyDataset(make_shapes(8, 16)), 4, shuffle=True, num_replicas=2)
    for loader in (eval_loader, single, plain):
        assert type(loader.batch_sampler.sampler) is EpochSampler
    custom = build_sampler("weighted", ds.data.labels, num_replicas=2, rank=0)
    assert build_loader(ds, 4, shuffle=True, sampler=custom).batch_sampler.sampler is custom


# ----------------------------------------------------------------------------- 2 processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_rank(rank: int, port: int, data: str, out: str, q) -> None:
    """One DDP rank of `cvcraft train classify devices=2`, recording the train shards whose
    pixels it read (ShardData.load_image is the only pixel read with normalize=none)."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
        LOCAL_RANK=str(rank), OMP_NUM_THREADS="1",
    )  # fmt: skip
    torch.set_num_threads(1)
    from cvcraft.cli import main
    from cvcraft.data.webdataset import ShardData

    read: set[str] = set()
    load = ShardData.load_image

    def spy(self, i):
        read.add(self.where(i).rsplit(":", 1)[0])
        return load(self, i)

    ShardData.load_image = spy
    args = ["train", "classify", f"data={data}", f"out={out}", "model=lenet5", "batch=8",
            "epochs=1", "workers=0", "progress=false", "plots=false", "normalize=none",
            "devices=2"]  # fmt: skip
    code = main(args)
    q.put((rank, code, sorted(p for p in read if f"{os.sep}train{os.sep}" in p)))


@pytest.mark.slow  # spawning two torch processes takes 20-80 s on a busy 2-core machine
def test_two_process_training_reads_own_shards(packed, tmp_path):
    folder = packed / "classify"
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = _free_port()
    out = tmp_path / "run"
    procs = [
        ctx.Process(target=_train_rank, args=(r, port, str(folder), str(out), q)) for r in range(2)
    ]
    for p in procs:
        p.start()
    res = sorted(q.get(timeout=300) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert [r[1] for r in res] == [0, 0]
    assert (out / "last.pt").exists() and len((out / "metrics.csv").read_text().splitlines()) == 2
    names = [s["name"] for s in read_meta(folder / "train")["shards"]]
    perm = np.random.default_rng([0, 0]).permutation(len(names))  # seed 0, epoch 0
    for rank, _, files in res:
        assert files == sorted(str(folder / "train" / names[k]) for k in perm[rank::2])
