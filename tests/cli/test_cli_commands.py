"""The embed command, bad input (one line, exit code 2) and the parser: --help without torch, argument errors
in one line."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from simclr.cli import main


def test_embed_npz(env: dict, tmp_path: Path) -> None:
    out = tmp_path / "emb" / "test.npz"
    assert main(["embed", "--checkpoint", str(env["run"]), "--data", env["archive"], "--split", "test",
                 "--out", str(out), "--z", "--quiet", "--cache-dir", env["cache"]]) == 0
    with np.load(out) as f:
        assert f["features"].shape == (200, 64) and f["features"].dtype == np.float32
        assert f["z"].shape == (200, 32)
        assert f["labels"].shape == (200,) and set(f["labels"]) == set(range(10))
        assert f["paths"][0].startswith("test/")
        meta = json.loads(str(f["meta"]))
    assert meta["checkpoint"] == str((env["run"] / "last.pt").resolve()) and meta["split"] == "test"
    assert meta["image_size"] == 32 and meta["data"] == str(Path(env["archive"]).resolve()) and meta["z"]


def test_embed_unlabeled_folder_gives_minus_one(env: dict, tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "flat"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), (i * 40, 10, 10)).save(folder / f"{i}.png")
    out = tmp_path / "flat.npz"
    assert main(["embed", "--checkpoint", str(env["run"]), "--data", str(folder), "--out", str(out),
                 "--quiet"]) == 0
    with np.load(out) as f:
        assert list(f["labels"]) == [-1, -1, -1] and len(f["paths"]) == 3


def _bad(args: list[str], capsys) -> str:
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("simclr: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_bad_inputs_one_line_exit_2(env: dict, tmp_path: Path, capsys, make_checkpoint) -> None:
    run, data = str(env["run"]), env["archive"]
    out = str(tmp_path / "r")
    assert "no such dataset" in _bad(["pretrain", "--data", str(tmp_path / "nope"), "--out", out], capsys)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no images" in _bad(["pretrain", "--data", str(empty), "--out", out], capsys)
    assert "unknown config key" in _bad(["pretrain", "--data", data, "--out", out, "--set", "optim.lrr=1"],
                                        capsys)
    assert "expected a number" in _bad(["pretrain", "--data", data, "--out", out, "--set", "optim.base_lr=x"],
                                       capsys)
    assert "must be > 0" in _bad(["pretrain", "--data", data, "--out", out, "--epochs", "0"], capsys)
    assert "config file not found" in _bad(["pretrain", "--data", data, "--out", out, "--config", "x.yaml"],
                                           capsys)
    assert "is a folder: name a YAML file" in _bad(["pretrain", "--data", data, "--out", out, "--config",
                                                    str(empty)], capsys)
    assert "larger than the dataset" in _bad(["pretrain", "--data", data, "--out", out, "--config",
                                              str(env["cfg"]), "--batch-size", "4096", "--quiet"], capsys)
    assert "already holds a run" in _bad(["pretrain", "--data", data, "--out", run], capsys)
    assert "needs --data" in _bad(["pretrain", "--out", out], capsys)
    assert not Path(out).exists()  # a refused run leaves no folder behind
    assert "is a file, not a run folder" in _bad(["pretrain", "--data", data, "--out", str(env["cfg"])],
                                                 capsys)
    last = env["run"] / "last.pt"
    before = last.read_bytes()
    for command in (["embed", "--checkpoint", run, "--data", data, "--quiet"],
                    ["export", "--checkpoint", run, "--format", "simclr"],
                    ["import", str(last)]):
        assert "is the file being read" in _bad([*command, "--out", str(last)], capsys)
    other = make_checkpoint(tmp_path / "other.pt")
    assert "is a run's checkpoint" in _bad(["export", "--checkpoint", str(other), "--out", str(last)], capsys)
    assert "is a run's checkpoint" in _bad(["search", "--index", str(tmp_path / "any.npz"), "--query",
                                            "q.jpg", "--out", str(last)], capsys)
    assert last.read_bytes() == before  # the checkpoint survives every attempt
    assert "is a folder" in _bad(["embed", "--checkpoint", run, "--data", data, "--out", str(tmp_path)],
                                 capsys)
    assert "checkpoint not found" in _bad(["eval", "knn", "--checkpoint", str(tmp_path / "x.pt"),
                                           "--data", data], capsys)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")
    assert "cannot read checkpoint" in _bad(["eval", "knn", "--checkpoint", str(junk), "--data", data],
                                            capsys)
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.png").write_bytes((Path(data)).read_bytes()[:0] or b"\x89PNG broken")
    assert "no readable images" in _bad(["embed", "--checkpoint", run, "--data", str(flat), "--out",
                                         str(tmp_path / "e.npz"), "--quiet"], capsys)
    assert not (tmp_path / "e.npz").exists()
    corrupt = tmp_path / "bad.tar.gz"
    corrupt.write_bytes(b"\x1f\x8b not really gzip")
    assert "archive" in _bad(["eval", "knn", "--checkpoint", run, "--data", str(corrupt),
                              "--cache-dir", env["cache"]], capsys)


def test_unlabeled_eval_is_refused(env: dict, tmp_path: Path, capsys) -> None:
    from PIL import Image

    flat = tmp_path / "unl"
    (flat / "train").mkdir(parents=True)
    (flat / "test").mkdir()
    for part in ("train", "test"):
        Image.new("RGB", (32, 32)).save(flat / part / "a.png")
    assert "needs labels" in _bad(["eval", "knn", "--checkpoint", str(env["run"]), "--data", str(flat)],
                                  capsys)


def test_help_does_not_load_torch() -> None:
    """`simclr --help` and every command's --help answer in a moment: parsing arguments never imports torch
    (the names it needs from torch-importing modules are repeated in the CLI and checked here)."""
    from simclr.ablation import STUDIES
    from simclr.cli.parser import STUDY_NAMES
    from simclr.cli.search import DUPLICATES_THRESHOLD, DUPLICATES_Z_THRESHOLD
    from simclr.retrieval.duplicates import DEFAULT_THRESHOLD, DEFAULT_Z_THRESHOLD

    assert STUDY_NAMES == tuple(STUDIES) and DUPLICATES_THRESHOLD == DEFAULT_THRESHOLD
    assert DUPLICATES_Z_THRESHOLD == DEFAULT_Z_THRESHOLD
    code = ("import sys; from simclr.cli import build_parser; build_parser().parse_args(['ablate', 'head', "
            "'--data', 'x', '--out', 'y']); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_argument_errors_are_one_line(capsys) -> None:
    for argv in (["pretrainn"], ["eval", "knn", "--checkpoint", "x"],
                 ["eval", "finetune", "--in-memory", "maybe"]):
        with pytest.raises(SystemExit) as refused:
            main(argv)
        err = capsys.readouterr().err.strip()
        assert (refused.value.code == 2 and "\n" not in err and "error: " in err
                and err.endswith("--help)")), err
