"""The model tools through the `cvcraft` command: the positional word is the method/format."""

from cvcraft.cli import main


def test_export_and_explain_through_the_cli(ckpt, images, tmp_path, capsys):
    out = tmp_path / "m.ts"
    assert main(["export", "torchscript", f"weights={ckpt}", f"out={out}"]) == 0
    assert out.is_file() and "parity vs PyTorch" in capsys.readouterr().out
    outdir = tmp_path / "cams"
    code = main(["explain", "gradcam", f"weights={ckpt}", f"source={images}", f"out={outdir}"])
    assert code == 0, capsys.readouterr().err
    assert list(outdir.rglob("*.png"))
    assert main(["export", "tflite", f"weights={ckpt}"]) == 2
    assert "format='tflite'" in capsys.readouterr().err
