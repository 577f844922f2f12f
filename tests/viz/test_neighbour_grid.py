"""The nearest-neighbour grid: each cell holds its image at the expected place with the
expected frame colour; `predict embed` writes it from its own neighbour ranking."""

import json

import numpy as np
import pytest

from cvcraft.viz.neighbours import GREEN, GREY, RED, neighbour_grid


def test_cells_and_frames():
    rng = np.random.default_rng(0)
    q = rng.integers(0, 256, (2, 6, 5, 3), dtype=np.uint8)
    nb = rng.integers(0, 256, (2, 3, 6, 5, 3), dtype=np.uint8)
    ok = np.array([[True, False, True], [False, False, True]])
    grid = neighbour_grid(q, nb, ok, frame=2, pad=4)
    ch, cw = 6 + 4, 5 + 4  # framed cell
    assert grid.shape == (2 * (ch + 4) + 4, 4 * (cw + 4) + 4, 3)
    for i in range(2):
        for j in range(4):
            y, x = 4 + i * (ch + 4), 4 + j * (cw + 4)
            cell = grid[y : y + ch, x : x + cw]
            want = q[i] if j == 0 else nb[i, j - 1]
            np.testing.assert_array_equal(cell[2:-2, 2:-2], want)
            colour = GREY if j == 0 else (GREEN if ok[i, j - 1] else RED)
            assert tuple(cell[0, 0]) == colour and tuple(cell[-1, -1]) == colour
    plain = neighbour_grid(q, nb)  # no identities known: white frames
    assert tuple(plain[4, 4 + (cw + 4)]) == (255, 255, 255)
    with pytest.raises(ValueError, match=r"\(Q, k, H, W, 3\)"):
        neighbour_grid(q, nb[0])


def test_predict_embed_writes_the_grid(tmp_path):
    from cvcraft.cli import run
    from cvcraft.data.io import read_image, write_image
    from cvcraft.data.shapes import make_shapes

    out = tmp_path / "run"
    run(["train", "embed", "data=shapes:60", "imgsz=32", "model=mlp", "epochs=1", "p=3", "k=2",
         "workers=0", "progress=false", "lr=0.01", "optimizer=adam", "warmup_epochs=0",
         "dim=8", "plots=false", f"out={out}"])  # fmt: skip
    val = make_shapes(7, 32, 0, "val")
    imgs = tmp_path / "imgs"
    for i in range(len(val)):
        write_image(imgs / f"{i:02d}.png", val.load_image(i))
    run(["predict", "embed", f"weights={out / 'best.pt'}", f"source={imgs}", "batch=4",
         f"out={tmp_path / 'pred'}"])  # fmt: skip
    res = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    emb = np.load(tmp_path / "pred" / "embeddings.npy").astype(np.float64)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    order = np.argsort(-sim, axis=1, kind="stable")[:, :5]
    files = sorted(imgs.iterdir())
    assert [r["neighbours"] for r in res] == [[str(files[j]) for j in row] for row in order]
    grid = read_image(tmp_path / "pred" / "plots" / "neighbours.png")
    cell = 32 + 6  # 32 px image in a 3 px frame
    assert grid.shape[:2] == (7 * (cell + 4) + 4, 6 * (cell + 4) + 4)
    # row 2: query 2, then its nearest image (32 px shapes pass the val transform unchanged)
    for col, idx in ((0, 2), (1, int(order[2, 0]))):
        y, x = 4 + 2 * (cell + 4) + 3, 4 + col * (cell + 4) + 3
        np.testing.assert_array_equal(grid[y : y + 32, x : x + 32], read_image(files[idx]))
