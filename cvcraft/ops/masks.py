"""Instance-mask operations: polygon rasterization, COCO run-length encoding, mask boxes.

COCO stores an object's mask either as polygons ``[[x1, y1, x2, y2, ...], ...]`` in
continuous pixel coordinates (pixel ``(i, j)`` covers ``[j, j+1) x [i, i+1)``) or as a
run-length encoding (RLE) ``{"size": [h, w], "counts": ...}``:

- the mask is flattened **column-major** (Fortran order, down each column first);
- ``counts`` alternates run lengths of 0s and 1s, always starting with a run of 0s (which
  is 0 long when the first pixel is set);
- the *compressed* form is a string: each count (from the 4th on, minus the count two
  places earlier, so it is usually small) is written as a signed little-endian base-32
  varint, 5 bits per character, bit 0x20 = "more characters follow", bit 0x10 of the last
  character = sign, each character offset by 48 so it is printable ASCII.

Everything here is vectorized with numpy (no Python loop over pixels, runs or characters)
and checked against ``pycocotools.mask`` in the tests: ``rle_encode``/``rle_decode``/
``rle_area`` match it exactly. ``polygons_to_mask`` sets the pixels whose centre is inside
the polygon, which differs from pycocotools' rasterizer only along the boundary
(pycocotools up-samples the polygon 5x and decides boundary pixels by its own rounding):
on real COCO polygons the two agree with IoU > 0.95 on every object above ~200 px.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np


def _fill_part(xy: np.ndarray, height: int, width: int) -> np.ndarray:
    """Even-odd fill of one closed polygon (V, 2): pixels whose centre lies inside."""
    x0, y0 = xy[:, 0], xy[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    # only rows whose centre (r + 0.5) can meet the polygon
    r_lo = int(np.clip(np.ceil(y0.min() - 0.5), 0, height))
    r_hi = int(np.clip(np.ceil(y0.max() - 0.5), 0, height))
    out = np.zeros((height, width), bool)
    if r_hi <= r_lo:
        return out
    yc = np.arange(r_lo, r_hi, dtype=np.float64)[:, None] + 0.5  # (R, 1)
    # an edge crosses a row if the centre line is in [min y, max y): half-open so a vertex
    # shared by two edges is counted once, and horizontal edges never count
    crosses = (yc >= np.minimum(y0, y1)) & (yc < np.maximum(y0, y1))  # (R, E)
    rows, edges = np.nonzero(crosses)
    dy = (y1 - y0)[edges]
    t = (yc[rows, 0] - y0[edges]) / dy
    xc = x0[edges] + t * (x1 - x0)[edges]
    # first pixel whose centre is right of the crossing: ceil(x - 0.5)
    cols = np.clip(np.ceil(xc - 0.5), 0, width).astype(np.int64)
    toggles = np.zeros((r_hi - r_lo, width + 1), np.int32)
    np.add.at(toggles, (rows, cols), 1)
    out[r_lo:r_hi] = (np.cumsum(toggles, axis=1)[:, :width] & 1).astype(bool)
    return out


def polygons_to_mask(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """Rasterize COCO polygons (one object, possibly several parts) -> bool (H, W).

    A pixel is set when its centre ``(j + 0.5, i + 0.5)`` is inside the polygon (even-odd
    rule, scan-line crossings computed for all rows and edges at once); parts are OR-ed as
    in COCO. Why not ``cv2.fillPoly``: OpenCV also sets every pixel the outline touches, which
    on coco128 makes masks ~7% larger than pycocotools' (median IoU 0.94); the centre rule
    gives median IoU 0.995 and > 0.95 on every object above ~200 px.
    """
    mask = np.zeros((height, width), bool)
    for poly in polygons:
        xy = np.asarray(poly, np.float64).reshape(-1, 2)
        if len(xy) >= 3:  # a point or a segment has no interior
            mask |= _fill_part(xy, height, width)
    return mask


def polygon_area(polygon: Sequence[float]) -> float:
    """Area enclosed by one polygon ``[x1, y1, x2, y2, ...]`` by the shoelace formula.

    ``A = |sum_i (x_i * y_{i+1} - x_{i+1} * y_i)| / 2``.
    """
    xy = np.asarray(polygon, np.float64).reshape(-1, 2)
    x, y = xy[:, 0], xy[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)) / 2.0)


# --------------------------------------------------------------------------- RLE counts


def mask_to_counts(mask: np.ndarray) -> np.ndarray:
    """bool (H, W) -> uncompressed COCO counts (int64), column-major, starting with 0s."""
    flat = np.asarray(mask, bool).ravel(order="F")
    if flat.size == 0:
        return np.zeros(0, np.int64)
    # run boundaries are where the value changes; a leading True needs an empty 0-run
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(edges).astype(np.int64)
    if flat[0]:
        counts = np.concatenate([[0], counts])
    return counts


def counts_to_mask(counts: Sequence[int] | np.ndarray, height: int, width: int) -> np.ndarray:
    """Uncompressed COCO counts -> bool (H, W); raises ValueError if they don't cover H*W."""
    c = np.asarray(counts, np.int64).reshape(-1)
    if (c < 0).any():
        raise ValueError("RLE counts must be non-negative")
    if int(c.sum()) != height * width:
        raise ValueError(f"RLE counts sum to {int(c.sum())}, expected {height} * {width}")
    values = np.arange(len(c)) % 2 == 1  # runs alternate 0, 1, 0, 1, ...
    flat = np.repeat(values, c)
    return flat.reshape(width, height).T.copy()  # column-major -> (H, W)


# ----------------------------------------------------------------- compressed counts string

_MAX_CHARS = 13  # ceil(64 / 5): enough 5-bit groups for any int64


def counts_to_string(counts: Sequence[int] | np.ndarray) -> str:
    """Compress COCO counts into the printable string form (see the module docstring).

    Each value ``x`` (delta-coded: ``x_i - x_{i-2}`` for ``i > 2``) is emitted 5 bits at a
    time, low bits first; a character gets bit 0x20 while the remaining (arithmetically
    shifted) value is not just the sign extension of the bits already written.
    """
    c = np.asarray(counts, np.int64).reshape(-1)
    if c.size == 0:
        return ""
    d = c.copy()
    d[3:] -= c[1:-2]
    shifts = 5 * np.arange(_MAX_CHARS, dtype=np.int64)
    groups = (d[:, None] >> shifts) & 0x1F  # (N, 13) 5-bit groups, low first
    rest = d[:, None] >> (shifts + 5)  # value left after each group (arithmetic shift)
    sign = (groups & 0x10) != 0
    more = np.where(sign, rest != -1, rest != 0)
    n_chars = np.argmin(more, axis=1) + 1  # first group after which nothing more is needed
    chars = groups | np.where(more, 0x20, 0)
    keep = np.arange(_MAX_CHARS)[None, :] < n_chars[:, None]
    return (chars[keep] + 48).astype(np.uint8).tobytes().decode("ascii")


def string_to_counts(s: str | bytes) -> np.ndarray:
    """Decompress a COCO counts string -> int64 counts; raises ValueError if malformed."""
    raw = s.encode("ascii") if isinstance(s, str) else bytes(s)
    if not raw:
        return np.zeros(0, np.int64)
    b = np.frombuffer(raw, np.uint8).astype(np.int64) - 48
    if (b < 0).any() or (b > 63).any():
        raise ValueError("RLE string has characters outside the COCO alphabet ('0'..'o')")
    last = (b & 0x20) == 0  # a character without the continuation bit ends a value
    if not last[-1]:
        raise ValueError("RLE string ends in the middle of a value")
    value_id = np.concatenate([[0], np.cumsum(last)[:-1]])  # which value each char belongs to
    starts = np.flatnonzero(np.concatenate([[True], last[:-1]]))
    k = np.arange(len(b)) - starts[value_id]  # position of the char inside its value
    if k.max() >= _MAX_CHARS:
        raise ValueError("RLE string has a value longer than 64 bits")
    n_values = int(last.sum())
    parts = (b & 0x1F) << (5 * k)
    vals = np.zeros(n_values, np.int64)
    np.add.at(vals, value_id, parts)
    # sign-extend values whose last character has bit 0x10 set
    end_k = k[last] + 1
    neg = (b[last] & 0x10) != 0
    vals = np.where(neg, vals - (np.int64(1) << np.minimum(5 * end_k, 63)), vals)
    # undo the delta coding x_i += x_{i-2} (i > 2): two interleaved cumulative sums
    out = vals.copy()
    out[1::2] = np.cumsum(vals[1::2])
    if n_values > 2:
        out[2::2] = np.cumsum(vals[2::2])
    return out


# ----------------------------------------------------------------------------- RLE dicts


def rle_encode(mask: np.ndarray, *, compress: bool = True) -> dict[str, Any]:
    """bool (H, W) -> COCO RLE ``{"size": [H, W], "counts": str | list[int]}``.

    ``compress=True`` gives the string form pycocotools' ``encode`` returns (as ``str``;
    pycocotools returns ``bytes``), ``False`` the plain list of run lengths (iscrowd JSON).
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"rle_encode takes one (H, W) mask, got shape {m.shape}")
    counts = mask_to_counts(m)
    h, w = m.shape
    return {
        "size": [int(h), int(w)],
        "counts": counts_to_string(counts) if compress else counts.tolist(),
    }


def rle_counts(rle: dict[str, Any]) -> tuple[np.ndarray, int, int]:
    """(counts int64, H, W) of an RLE dict in either form; ValueError if malformed."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError("an RLE must be a dict with 'size' and 'counts'")
    size = rle["size"]
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in size)
    ):
        raise ValueError(f"RLE 'size' must be [height, width] integers, got {size!r}")
    h, w = int(size[0]), int(size[1])
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        c = string_to_counts(counts)
    elif isinstance(counts, (list, tuple, np.ndarray)):
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in counts):
            raise ValueError("RLE 'counts' list must hold integers")
        c = np.asarray(counts, np.int64).reshape(-1)
    else:
        raise ValueError(f"RLE 'counts' must be a string or a list, got {type(counts).__name__}")
    if (c < 0).any():
        raise ValueError("RLE counts must be non-negative")
    if int(c.sum()) != h * w:
        raise ValueError(f"RLE counts sum to {int(c.sum())}, expected {h} * {w} = {h * w}")
    return c, h, w


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """COCO RLE (string or list counts) -> bool (H, W); equals ``pycocotools.mask.decode``."""
    c, h, w = rle_counts(rle)
    return counts_to_mask(c, h, w)


def rle_area(rle: dict[str, Any]) -> int:
    """Number of set pixels of an RLE: the sum of the odd-position (1s) runs."""
    c, _, _ = rle_counts(rle)
    return int(c[1::2].sum())


def segment_to_mask(segment: Any, height: int, width: int) -> np.ndarray:
    """A COCO ``segmentation`` value (polygon list or RLE dict) -> bool (H, W).

    Raises ValueError if the RLE's size is not (height, width).
    """
    if isinstance(segment, dict):
        c, h, w = rle_counts(segment)
        if (h, w) != (height, width):
            raise ValueError(f"RLE size {h}x{w} differs from the image size {height}x{width}")
        return counts_to_mask(c, h, w)
    return polygons_to_mask(segment, height, width)


# ------------------------------------------------------------------------------ boxes


def masks_to_boxes(masks: Any) -> Any:
    """Tight xyxy boxes of instance masks (N, H, W) -> (N, 4) float32, pixel-edge convention.

    ``x2``/``y2`` are one past the last set column/row (a single set pixel at (i, j) gives
    ``[j, i, j+1, i+1]``), matching COCO boxes; torchvision's ``masks_to_boxes`` returns the
    last index itself (ours minus 1). Empty masks give all-zero boxes. Accepts numpy
    (returns numpy) or torch (returns torch).
    """
    # a torch tensor means torch is loaded: look it up rather than import it (check/convert
    # read masks with numpy alone)
    torch = sys.modules.get("torch")
    is_torch = torch is not None and isinstance(masks, torch.Tensor)
    m = masks.detach().cpu().numpy() if is_torch else np.asarray(masks)
    m = m.astype(bool, copy=False)
    if m.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {m.shape}")
    n, h, w = m.shape
    rows, cols = m.any(axis=2), m.any(axis=1)  # (N, H), (N, W)
    y1, y2 = rows.argmax(1), h - rows[:, ::-1].argmax(1)
    x1, x2 = cols.argmax(1), w - cols[:, ::-1].argmax(1)
    boxes = np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)
    boxes[~rows.any(1)] = 0.0
    return torch.from_numpy(boxes).to(masks.device) if is_torch else boxes


# ------------------------------------------------------------------ runs (COCO-exact polygons)
# A mask as *runs*: sorted, disjoint half-open intervals ``[start, end)`` of the column-major
# flat index (the ones-runs of its RLE). Runs are what segm evaluation works on: an object
# covers a few hundred runs instead of H*W pixels.


def counts_to_runs(counts: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Uncompressed COCO counts -> (starts, ends) int64 of the non-empty ones-runs."""
    c = np.asarray(counts, np.int64).reshape(-1)
    edges = np.cumsum(c)
    starts, ends = edges[0::2][: len(c) // 2], edges[1::2]
    keep = ends > starts
    return starts[keep], ends[keep]


def mask_to_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """bool (H, W) -> (starts, ends) of its ones-runs in column-major order."""
    flat = np.asarray(mask, bool).ravel(order="F")
    step = np.diff(flat.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
    return np.flatnonzero(step == 1), np.flatnonzero(step == -1)


def runs_to_mask(starts: np.ndarray, ends: np.ndarray, height: int, width: int) -> np.ndarray:
    """(starts, ends) runs -> bool (H, W) (column-major flat index)."""
    delta = np.zeros(height * width + 1, np.int32)
    np.add.at(delta, np.asarray(starts, np.int64), 1)
    np.add.at(delta, np.asarray(ends, np.int64), -1)
    flat = np.cumsum(delta[:-1]) > 0
    return flat.reshape(width, height).T.copy()


def runs_union(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of possibly overlapping runs -> sorted disjoint runs (touching runs merge).

    Coverage is +1 at each start and -1 at each end; a run of the union begins where the
    coverage leaves 0 and ends where it returns to 0.
    """
    pos = np.concatenate([starts, ends]).astype(np.int64)
    step = np.concatenate([np.ones(len(starts), np.int64), -np.ones(len(ends), np.int64)])
    order = np.lexsort((-step, pos))  # at one position, starts before ends: touching merge
    pos, step = pos[order], step[order]
    cover = np.cumsum(step)
    before = cover - step
    s, e = pos[(before == 0) & (step == 1)], pos[(cover == 0) & (step == -1)]
    keep = e > s
    return s[keep], e[keep]


def _poly_boundary(
    xy: np.ndarray, nxt: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer points along polygon outlines at 5x resolution, edge by edge -> (u, v, edge).

    Vertices are rounded as ``int(5 * v + 0.5)`` (C truncation). Each edge (vertex k to
    ``nxt[k]``, default the next one cyclically) is walked along its major axis one unit at a
    time, from the end with the smaller major coordinate, the minor coordinate rounded the
    same way; points come out in the edge's own direction.
    """
    scale = 5.0
    p = np.trunc(scale * xy + 0.5).astype(np.int64)  # (K, 2)
    if nxt is None:
        nxt = np.roll(np.arange(len(p)), -1)
    xs, ys = p[:, 0], p[:, 1]
    xe, ye = xs[nxt], ys[nxt]
    dx, dy = np.abs(xe - xs), np.abs(ye - ys)
    major_x = dx >= dy
    flip = (major_x & (xs > xe)) | (~major_x & (ys > ye))
    x0, x1 = np.where(flip, xe, xs), np.where(flip, xs, xe)
    y0, y1 = np.where(flip, ye, ys), np.where(flip, ys, ye)
    n = np.where(major_x, dx, dy)  # steps along the major axis
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(major_x, (y1 - y0) / n, (x1 - x0) / n)
    slope = np.where(n > 0, slope, 0.0)  # a repeated vertex: one point, slope unused
    edge = np.repeat(np.arange(len(xy)), n + 1)
    first = np.cumsum(n + 1) - (n + 1)
    d = np.arange(len(edge)) - first[edge]
    t = np.where(flip[edge], n[edge] - d, d)
    minor = np.where(major_x[edge], y0[edge], x0[edge]) + slope[edge] * t
    minor = np.trunc(minor + 0.5).astype(np.int64)
    along = np.where(major_x[edge], x0[edge], y0[edge]) + t
    u = np.where(major_x[edge], along, minor)
    v = np.where(major_x[edge], minor, along)
    return u, v, edge


def polygon_to_runs(
    polygon: Sequence[float], height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """One COCO polygon ``[x1, y1, ...]`` (>= 3 points) -> runs, exactly as pycocotools.

    pycocotools' rasterizer (``rleFrPoly``): walk the outline at 5x resolution; wherever it
    crosses the centre line of a pixel column (upsampled x = 5j + 2), toggle the column at
    row ``ceil((5-scale y + 0.5) / 5 - 0.5)`` (the lower y of the crossing step, clipped to
    [0, H]); the mask is the parity of toggles down each column (column-major flat order).
    """
    starts, ends, _ = polygons_to_runs_many(
        [np.asarray(polygon, np.float64).reshape(-1)], np.zeros(1, np.int64), [(height, width)]
    )
    return starts, ends


def polygons_to_runs_many(
    polygons: Sequence[np.ndarray], owner: np.ndarray, sizes: Sequence[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Many objects' polygons at once, each object the union of its parts (as pycocotools).

    ``polygons[k]`` (flat ``[x1, y1, ...]``, >= 3 points) belongs to object ``owner[k]``;
    object o is ``sizes[o] = (height, width)``. Returns all objects' runs, object-major
    (``starts``, ``ends``) and the number of runs per object (O,). Every polygon's toggles
    live on one number line, polygon k's flat index x at ``k * big + x``, so parity, pairing
    and the union per object are each one sorted pass.
    """
    n_obj = len(sizes)
    hw = np.asarray(sizes, np.int64).reshape(-1, 2)
    owner = np.asarray(owner, np.int64)
    big = int((hw[:, 0] * hw[:, 1]).max(initial=0)) + 1
    if not len(polygons):
        z = np.zeros(0, np.int64)
        return z, z, np.zeros(n_obj, np.int64)
    xy = np.concatenate([np.asarray(p, np.float64).reshape(-1, 2) for p in polygons])
    n_vert = np.array([len(p) // 2 for p in polygons], np.int64)
    first = np.cumsum(n_vert) - n_vert
    poly = np.repeat(np.arange(len(polygons)), n_vert)  # (V,)
    nxt = np.arange(len(xy)) + 1
    nxt[first + n_vert - 1] = first  # each outline closes on itself
    u, v, edge = _poly_boundary(xy, nxt)
    pid = poly[edge]  # polygon of each outline point
    moved = np.flatnonzero((u[1:] != u[:-1]) & (pid[1:] == pid[:-1])) + 1  # column changes
    pid = pid[moved]
    h, w = hw[owner[pid], 0], hw[owner[pid], 1]
    uj, up = u[moved], u[moved - 1]
    xd = np.where(uj < up, uj, uj - 1).astype(np.float64)
    xd = (xd + 0.5) / 5.0 - 0.5
    ok = (np.floor(xd) == xd) & (xd >= 0) & (xd <= w - 1)
    yd = np.minimum(v[moved], v[moved - 1]).astype(np.float64)
    yd = np.ceil(np.clip((yd + 0.5) / 5.0 - 0.5, 0, h))
    pos = xd[ok].astype(np.int64) * h[ok] + yd[ok].astype(np.int64)
    pid, h, w = pid[ok], h[ok], w[ok]
    inside = pos < h * w  # a toggle at the very end changes no pixel
    key = pid[inside] * big + pos[inside]
    # Toggles at one position cancel in pairs; the rest alternate start, end, start, ...
    uniq, mult = np.unique(key, return_counts=True)
    edges = uniq[mult % 2 == 1]
    odd = np.flatnonzero(np.bincount(edges // big, minlength=len(polygons)) % 2 == 1)
    if len(odd):  # an odd count runs to the end of the image
        area = hw[owner[odd], 0] * hw[owner[odd], 1]
        edges = np.sort(np.concatenate([edges, odd * big + area]))
    s, e = edges[0::2], edges[1::2]
    # Union per object: re-key polygon k's runs to its object's line.
    obj = owner[s // big]
    shift = obj * big - (s // big) * big
    s, e = runs_union(s + shift, e + shift)
    obj = s // big
    return s - obj * big, e - obj * big, np.bincount(obj, minlength=n_obj)


def polygons_to_runs(
    polygons: Sequence[Sequence[float]], height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """A COCO polygon list (one object, several parts) -> the union of their runs, as
    pycocotools' ``merge(frPyObjects(polygons, h, w))``."""
    polys = [np.asarray(p, np.float64).reshape(-1) for p in polygons]
    starts, ends, _ = polygons_to_runs_many(
        polys, np.zeros(len(polys), np.int64), [(height, width)]
    )
    return starts, ends


def polygons_to_mask_coco(
    polygons: Sequence[Sequence[float]], height: int, width: int
) -> np.ndarray:
    """COCO polygons -> bool (H, W) pixel-identical to pycocotools (see ``polygon_to_runs``);
    ``polygons_to_mask`` is the centre-in-polygon rule used for training targets."""
    s, e = polygons_to_runs(polygons, height, width)
    return runs_to_mask(s, e, height, width)


# ------------------------------------------------------------------------ pasting


def paste_masks(masks: Any, boxes: Any, image_size: tuple[int, int], padding: int = 1) -> Any:
    """Paste per-box mask probabilities (N, M, M) into the image -> (N, H, W), as torchvision.

    Each mask is zero-padded by ``padding`` and its box enlarged by ``(M + 2p) / M`` about its
    centre (so the border interpolates towards 0), the box cut to integers, and the mask
    resized bilinearly (half-pixel centres) to the box's ``x2 - x1 + 1`` by ``y2 - y1 + 1``
    pixels. Both resizes are separable, so all masks are pasted at once as
    ``R_y (N, H, M') @ mask (N, M', M') @ R_x^T (N, M', W)`` with two-tap rows in R.
    """
    torch = sys.modules["torch"]  # masks is a tensor, so torch is loaded (no import here)
    m = masks.float()
    n, size = m.shape[0], m.shape[-1]
    h_img, w_img = int(image_size[0]), int(image_size[1])
    if n == 0:
        return m.new_zeros((0, h_img, w_img))
    m = torch.nn.functional.pad(m, (padding,) * 4)  # (N, M', M')
    mp = size + 2 * padding
    scale = float(mp) / size
    b = boxes.float()
    half_w, half_h = (b[:, 2] - b[:, 0]) * 0.5 * scale, (b[:, 3] - b[:, 1]) * 0.5 * scale
    cx, cy = (b[:, 2] + b[:, 0]) * 0.5, (b[:, 3] + b[:, 1]) * 0.5
    x0, x1 = (cx - half_w).long(), (cx + half_w).long()  # truncation, as torchvision
    y0, y1 = (cy - half_h).long(), (cy + half_h).long()

    def weights(lo: Any, hi: Any, length: int) -> Any:  # (N,), (N,) -> (N, L, M')
        out_len = (hi - lo + 1).clamp(min=1)  # the resized mask's side
        pos = torch.arange(length, device=m.device)[None, :] - lo[:, None]  # (N, L)
        inside = (pos >= 0) & (pos < out_len[:, None])
        step = mp / out_len.float()  # float32, as the bilinear kernel's scale
        src = ((pos.float() + 0.5) * step[:, None] - 0.5).clamp(min=0)
        i0 = src.floor().long().clamp(max=mp - 1)
        frac = src - i0.float()
        i1 = (i0 + 1).clamp(max=mp - 1)
        r = m.new_zeros((n, length, mp))
        r.scatter_add_(2, i0[..., None], (1 - frac)[..., None])
        r.scatter_add_(2, i1[..., None], frac[..., None])
        return r * inside[..., None]

    ry, rx = weights(y0, y1, h_img), weights(x0, x1, w_img)
    return ry @ m @ rx.transpose(1, 2)
