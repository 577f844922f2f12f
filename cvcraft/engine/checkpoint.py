"""Checkpoint I/O: atomic save with a SHA-256 sidecar, safe (``weights_only``) load, fallback.

Files: ``last.pt`` and its sidecar ``last.pt.sha256`` in ``sha256sum`` format
(``<hex>  last.pt``; ``sha256sum -c last.pt.sha256`` checks it). A checkpoint is valid when
its digest is *one of* the digests listed in its sidecar. Listing more than one digest is what
makes the pair crash-safe; ``save_checkpoint`` does, in order:

1. write the new bytes to a temp file in the same folder, flush + fsync, hash them (D_new);
2. (``keep_previous``) list the old file's digest in ``last.prev.pt.sha256``, then
   ``os.replace(last.pt, last.prev.pt)`` — now ``last.pt`` is briefly absent, and
   ``load_latest_valid`` falls back to the ``.prev`` pair, which is valid;
3. atomically rewrite ``last.pt.sha256`` to list D_new *and* the digest(s) of the file
   currently at ``last.pt`` (if any) — whichever of the two files a crash leaves, it matches;
4. ``os.replace(tmp, last.pt)`` and fsync the folder;
5. rewrite the sidecars to list only the current digest (tidy; a crash before this is harmless).

So at every instant each checkpoint that exists on disk matches its sidecar, and a truncated
or bit-flipped file (disk full, copy interrupted) never does. Loading uses
``torch.load(weights_only=True)`` only: a checkpoint is data, never code.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import random
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cvcraft.engine.optim import unwrap_model
from cvcraft.errors import CheckpointError

PathLike = str | os.PathLike


def sidecar_path(path: PathLike) -> Path:
    """``last.pt`` -> ``last.pt.sha256``."""
    return Path(str(path) + ".sha256")


def previous_path(path: PathLike) -> Path:
    """``last.pt`` -> ``last.prev.pt``: where ``keep_previous`` keeps the file it replaces."""
    p = Path(path)
    return p.with_name(f"{p.stem}.prev{p.suffix}")


def _fsync_dir(folder: Path) -> None:
    """Make renames in ``folder`` durable (POSIX); a no-op where directories can't be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write_bytes(
    path: Path, data: bytes, before_replace: Callable[[], None] | None = None
) -> None:
    """Write ``data`` to a synced temp file beside ``path``, run ``before_replace`` (the
    checkpoint's sidecar steps), then ``os.replace`` it onto ``path`` and sync the folder."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 -> the mode any other file gets
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_digests(path: Path) -> list[str] | None:
    """Digests listed in ``path``'s sidecar, or None when there is no sidecar."""
    side = sidecar_path(path)
    if not side.exists():
        return None
    return [line.split()[0].lower() for line in side.read_text().splitlines() if line.strip()]


def _write_sidecar(path: Path, digests: Sequence[str]) -> None:
    unique = list(dict.fromkeys(digests))  # keep order, drop repeats
    text = "".join(f"{d}  {path.name}\n" for d in unique)
    _atomic_write_bytes(sidecar_path(path), text.encode())


def _file_digests(path: Path) -> list[str]:
    """The digests a (possibly foreign, sidecar-less) existing file is accepted under."""
    listed = _read_digests(path)
    if listed is not None:
        return listed
    return [hashlib.sha256(path.read_bytes()).hexdigest()]


def save_checkpoint(path: PathLike, state: dict[str, Any], *, keep_previous: bool = False) -> str:
    """Atomically write ``state`` (tensors, numbers, strings, lists, dicts) to ``path`` and
    its ``.sha256`` sidecar; returns the SHA-256 hex digest. See the module doc for the order.

    ``keep_previous`` first moves the existing file to ``previous_path(path)`` (``last.prev.pt``)
    so one older good checkpoint survives even if the newest turns out bad.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()

    current: list[str] = []  # digests of the file being replaced

    def sidecar_steps() -> None:  # steps 2-3 of the module doc, run once the temp file is synced
        if keep_previous and path.exists():
            prev = previous_path(path)
            old = _file_digests(path)
            _write_sidecar(prev, old + (_read_digests(prev) or []))
            os.replace(path, prev)
            _write_sidecar(prev, old)
        current.extend(_file_digests(path) if path.exists() else [])
        _write_sidecar(path, [digest, *current])

    _atomic_write_bytes(path, data, sidecar_steps)  # step 1 and 4
    if current:
        _write_sidecar(path, [digest])  # step 5
    return digest


def load_checkpoint(
    path: PathLike, map_location: Any = "cpu", *, verify: bool = True
) -> dict[str, Any]:
    """Load a checkpoint dict with ``torch.load(weights_only=True)``.

    With ``verify`` the file's SHA-256 must be listed in its sidecar; a file without a sidecar
    (saved by another tool) is loaded with a warning. Raises ``CheckpointError`` naming the file
    when it is missing, truncated/corrupted, holds arbitrary Python objects, or is not a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist; check the path (runs keep last.pt and best.pt "
            f"in the run folder)"
        )
    data = path.read_bytes()
    if verify:
        listed = _read_digests(path)
        if listed is None:
            warnings.warn(
                f"{path} has no {sidecar_path(path).name} checksum file; loading unverified",
                stacklevel=2,
            )
        elif hashlib.sha256(data).hexdigest() not in listed:
            raise CheckpointError(
                f"checkpoint {path} ({len(data)} bytes) does not match its checksum in "
                f"{sidecar_path(path).name}: the file is truncated or corrupted (interrupted "
                f"copy, full disk). Use {previous_path(path).name} or best.pt if present, or "
                f"re-copy the file. Only if you changed it on purpose: delete "
                f"{sidecar_path(path).name} and it loads unverified, with a warning."
            )
    # torch.save writes a zip (PK..); legacy files start with a pickle opcode (0x80). Anything
    # else is not a checkpoint at all, and torch's own message would blame weights_only.
    if not data.startswith((b"PK", b"\x80")):
        raise CheckpointError(
            f"{path} is not a torch checkpoint (it is neither a zip archive nor a pickle); "
            "pass a .pt file written by cvcraft or torch.save"
        )
    try:
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"checkpoint {path} holds Python objects that weights_only loading refuses "
            f"({str(e).splitlines()[0][:200]}). cvcraft loads only tensors and plain "
            f"containers; if you trust the file, load it with torch.load(weights_only=False) "
            f"yourself and re-save its state_dicts."
        ) from None
    except Exception as e:  # zip/EOF/unpickling errors from a damaged file
        raise CheckpointError(
            f"checkpoint {path} ({len(data)} bytes) could not be read: "
            f"{type(e).__name__}: {str(e)[:200]}. The file is probably truncated or corrupted; "
            f"use {previous_path(path).name} or best.pt if present."
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(state).__name__}, expected a dict of state"
        )
    return state


def load_latest_valid(
    paths: Sequence[PathLike] | PathLike, map_location: Any = "cpu"
) -> tuple[Path, dict[str, Any], list[str]]:
    """Load the first loadable checkpoint of ``paths`` (newest first, e.g. ``[last.pt,
    last.prev.pt]``; a single path expands to itself and its ``.prev``).

    Returns ``(path_used, state, warnings)`` where ``warnings`` says why earlier candidates
    were skipped. Raises ``CheckpointError`` listing every failure when none loads.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [Path(paths), previous_path(paths)]
    notes: list[str] = []
    for p in map(Path, paths):
        skipped = bool(notes)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                state = load_checkpoint(p, map_location)
        except CheckpointError as e:
            notes.append(f"skipped {p}: {e}")
            continue
        notes.extend(str(w.message) for w in caught)
        if skipped:
            notes.append(f"using {p} instead")
        return p, state, notes
    raise CheckpointError("no valid checkpoint among:\n  " + "\n  ".join(notes))


# ----------------------------------------------------------------------------- model weights


def _strip_prefix(sd: dict[str, Any], prefix: str = "module.") -> dict[str, Any]:
    """Drop a DDP ``module.`` prefix when every key has it."""
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def load_model_weights(
    model: nn.Module,
    state_dict: dict[str, Any],
    *,
    strict: bool = True,
    source: str = "checkpoint",
    model_name: str | None = None,
) -> dict[str, list]:
    """Load weights after comparing keys and shapes, with an error that says what differs.

    ``state_dict`` is a model state dict or a whole checkpoint with ``"model"`` (and optionally
    ``"model_name"``; or pass ``model_name``, the checkpoint's architecture, explicitly).
    ``strict=True``: any missing/unexpected key or shape mismatch raises
    ``CheckpointError`` listing them (and the checkpoint's architecture). ``strict=False``:
    matching tensors load, the rest keep the model's init (e.g. a new classifier head).
    Returns ``{"missing": [...], "unexpected": [...], "mismatched": [(key, ckpt, model)]}``.
    """
    arch = model_name
    if isinstance(state_dict.get("model"), dict):
        arch = state_dict.get("model_name", arch)
        state_dict = state_dict["model"]
    sd = _strip_prefix(dict(state_dict))
    model = unwrap_model(model)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    mismatched = [
        (k, tuple(sd[k].shape), tuple(own[k].shape))
        for k in own
        if k in sd and hasattr(sd[k], "shape") and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    if strict and (missing or unexpected or mismatched):
        head_keys = [k for k in own if k.endswith((".weight", ".bias"))][-2:]
        lines = [f"weights from {source} do not fit {type(model).__name__}:"]
        if arch is not None:
            here = getattr(model, "model_name", None)
            lines.append(
                f"  the checkpoint was saved from architecture {arch!r}"
                + (f" (this model is {here!r})" if here and here != arch else "")
            )
        for k, a, b in mismatched:
            line = f"  {k}: checkpoint {a} vs model {b}"
            if k in head_keys and len(a) == len(b) and a[1:] == b[1:]:
                line += (
                    f" — the checkpoint was trained with {a[0]} classes; use data with "
                    f"{a[0]} classes, or train with weights= (a head of another size is "
                    f"re-initialised)"
                )
            lines.append(line)

        def _few(keys: list[str]) -> str:
            return ", ".join(keys[:10]) + (
                f" ... (+{len(keys) - 10} more)" if len(keys) > 10 else ""
            )

        if missing:
            lines.append(f"  missing in checkpoint ({len(missing)}): {_few(missing)}")
        if unexpected:
            lines.append(f"  unexpected in checkpoint ({len(unexpected)}): {_few(unexpected)}")
        lines.append(
            "  use the model= the checkpoint was trained with"
            + (f" (model={arch})" if arch is not None else "")
        )
        raise CheckpointError("\n".join(lines))
    bad = {k for k, _, _ in mismatched}
    model.load_state_dict({k: v for k, v in sd.items() if k in own and k not in bad}, strict=False)
    return {"missing": missing, "unexpected": unexpected, "mismatched": mismatched}


# ----------------------------------------------------------------------------- RNG state


def _plain(obj: Any) -> Any:
    """numpy arrays/scalars and tuples -> lists/ints/floats, so ``weights_only`` can load them."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def generator_state(gen: np.random.Generator) -> dict[str, Any]:
    """A ``numpy.random.Generator``'s bit-generator state in weights_only-loadable types."""
    # Python ints of any size (PCG64's 128-bit state) load fine with weights_only.
    return _plain(gen.bit_generator.state)


def _bitgen_state(state: dict[str, Any]) -> dict[str, Any]:
    """Undo ``_plain`` for a bit-generator state: MT19937's key back to a uint32 array."""
    st = dict(state)
    if st.get("bit_generator") == "MT19937":
        st["state"] = {**st["state"], "key": np.asarray(st["state"]["key"], dtype=np.uint32)}
    return st


def set_generator_state(gen: np.random.Generator, state: dict[str, Any]) -> None:
    """Restore a state from ``generator_state`` (same bit generator type)."""
    gen.bit_generator.state = _bitgen_state(state)


def rng_state(generators: dict[str, np.random.Generator] | None = None) -> dict[str, Any]:
    """Capture torch (CPU, and CUDA when available), Python ``random`` and numpy global RNG
    states (plus any named ``numpy.random.Generator``) as tensors/lists/ints/floats/strings,
    so they round-trip through ``save_checkpoint``/``load_checkpoint``."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": _plain(np.random.get_state(legacy=False)),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generators:
        state["generators"] = {k: generator_state(g) for k, g in generators.items()}
    return state


def set_rng_state(
    state: dict[str, Any], generators: dict[str, np.random.Generator] | None = None
) -> None:
    """Restore what ``rng_state`` captured (CUDA only when present on both sides)."""
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in state["cuda"]])
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    np.random.set_state(_bitgen_state(state["numpy"]))  # the legacy global RNG is an MT19937
    for name, gen in (generators or {}).items():
        if name not in state.get("generators", {}):
            raise CheckpointError(
                f"rng state has no generator {name!r}; saved: {sorted(state.get('generators', {}))}"
            )
        set_generator_state(gen, state["generators"][name])
