"""``rarepheno export MODEL --bioimageio OUT.zip``, run in-process: the package is written only
after bioimage.io's test passed on it; bad input is one line naming the file, exit code 2,
nothing written."""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest

from napari_rarepheno.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def test_export_writes_a_package_that_passed_bioimageio_test(tmp_path, models, deepyeast_model, capsys):
    out = tmp_path / "pkg" / "wscnn.zip"
    assert main(["export", str(models["wscnn"]), "--bioimageio", str(out), "--name", "tiny WSCNN",
                 "--authors", "A. Biologist, B. Coder", "--quiet"]) == 0
    assert "bioimageio test: passed" in capsys.readouterr().out
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
        rdf = z.read("rdf.yaml").decode()
    assert {"rdf.yaml", "weights.pt", "rarepheno_net.py", "test_input.npy", "cover.png", "README.md"} <= names
    assert "name: tiny WSCNN" in rdf and "A. Biologist" in rdf and "B. Coder" in rdf
    assert _tree(tmp_path) == {"pkg", "pkg/wscnn.zip"}  # nothing else: no staging, no temporaries

    # DeepYeast, without the check; an existing package is replaced only with --overwrite
    assert main(["export", str(deepyeast_model), "--bioimageio", str(out), "--no-check", "--overwrite",
                 "--quiet"]) == 0
    assert "not tested (--no-check)" in capsys.readouterr().out
    with zipfile.ZipFile(out) as z:
        assert "kind: deepyeast" in z.read("rdf.yaml").decode()


@pytest.mark.parametrize("case", ["missing model", "not a model", "not a zip", "exists", "folder", "licence",
                                  "sample channels"])
def test_bad_input_is_one_line_naming_the_file(case, tmp_path, models, capsys):
    from helpers import noise, png

    model, out, extra = str(models["wscnn"]), tmp_path / "out.zip", []
    named: Path = out
    if case == "missing model":
        named = tmp_path / "nope.safetensors"
        model = str(named)
    elif case == "not a model":
        named = png(tmp_path / "image.png").rename(tmp_path / "image.safetensors")
        model = str(named)
    elif case == "not a zip":
        out = named = tmp_path / "out.tar"
    elif case == "exists":
        out.write_bytes(b"old")
    elif case == "folder":
        out.mkdir()
    elif case == "licence":
        extra, named = ["--license", "my-own"], Path("my-own")
    elif case == "sample channels":
        named = png(tmp_path / "rgb.png", noise(2, (64, 64, 3)))
        extra = ["--sample", str(named)]
    before = _tree(tmp_path)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["export", model, "--bioimageio", str(out), *extra])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("rarepheno: error: "), err
    assert str(named) in err, err
    assert re.search(r"not found|metadata|not a|\.zip|exists already|folder|licence|channel", err), err
    assert _tree(tmp_path) == before
    if case == "exists":
        assert out.read_bytes() == b"old"
