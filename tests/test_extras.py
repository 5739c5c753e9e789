"""Optional dependencies (pyproject's extras): without them, the commands that need them stop with one line
naming the extra (exit code 2), Python raises an ImportError that names it, and everything else still works.
Each test runs Python in a subprocess where the extra's modules cannot be imported (``sys.modules[name] =
None``, as if not installed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

BLOCKED = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None
from simclr.cli import main
sys.exit(main({argv!r}))
"""


def _simclr(argv: list[str], blocked: tuple[str, ...], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``simclr ARGV`` in a fresh interpreter in which the modules ``blocked`` cannot be imported."""
    code = BLOCKED.format(blocked=blocked, argv=[str(a) for a in argv])
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, check=False, capture_output=True, text=True,
                          timeout=300)


def _refused(done: subprocess.CompletedProcess[str], extra: str, what: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    last = done.stderr.splitlines()[-1]  # after a progress bar, if any
    assert last == f"simclr: error: {what} needs the '{extra}' extra: pip install 'simclr-kit[{extra}]'", last


def test_serve_without_fastapi_names_the_serve_extra(tmp_path: Path) -> None:
    for blocked in (("fastapi",), ("uvicorn",), ("multipart", "python_multipart")):
        _refused(_simclr(["serve", "--index", tmp_path / "shop"], blocked, tmp_path), "serve", "simclr serve")
    code = ("import sys; sys.modules['fastapi'] = None\n"
            "try:\n    import simclr.service.app\n"
            "except ImportError as exc:\n    print(type(exc).__name__, exc)\n")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                         timeout=120).stdout
    assert out == "MissingExtra simclr.service needs the 'serve' extra: pip install 'simclr-kit[serve]'\n"


def _collection(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    npz = tmp_path / "shop.npz"
    np.savez(npz, features=rng.random((300, 16), np.float32), labels=np.arange(300) % 3,
             paths=np.array([f"img/{i}.png" for i in range(300)]))
    return npz


def test_exact_search_without_faiss_and_the_approximate_indexes_name_the_index_extra(tmp_path: Path) -> None:
    npz = _collection(tmp_path)
    shop = tmp_path / "shop"
    done = _simclr(["index", "convert", npz, "--out", shop], ("faiss",), tmp_path)
    assert done.returncode == 0, done.stderr
    build = ["index", "build", "--embeddings", shop, "--kind"]
    done = _simclr([*build, "exact", "--json"], ("faiss",), tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["kind"] == "exact"
    done = _simclr(["search", "--index", shop, "--query", npz, "--k", "3", "--json"], ("faiss",), tmp_path)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["queries"] == 300 and len(found["results"]) == 300
    for kind in ("hnsw", "ivfpq", "auto"):
        done = _simclr([*build, kind], ("faiss",), tmp_path)
        if kind == "auto":  # 300 images: auto chooses exact search, which needs no faiss
            assert done.returncode == 0, done.stderr
        else:
            _refused(done, "index", "an HNSW or IVF-PQ index (faiss)")


def test_ablate_without_matplotlib_names_the_plots_extra_before_training(tmp_path: Path) -> None:
    argv = ["ablate", "color-strength", "--data", "digits", "--epochs", "0.1", "--out", tmp_path / "ab"]
    done = _simclr(argv, ("matplotlib",), tmp_path)
    _refused(done, "plots", "simclr ablate (its report's figure)")
    assert not (tmp_path / "ab" / "cells").exists()


def test_pretraining_without_tensorboard_writes_metrics_and_says_so_once(tmp_path: Path) -> None:
    run = tmp_path / "run"
    done = _simclr(["pretrain", "--data", "digits", "--out", run, "--recipe", "paper", "--arch", "resnet18",
                    "--epochs", "0.5",
                    "--batch-size", "64", "--device", "cpu", "--set", "model.width=0.125", "--set",
                    "data.image_size=16", "--set", "train.precision=fp32", "--set", "train.log_every=1",
                    "--set", "train.knn_every=0", "--quiet"], ("tensorboard",), tmp_path)
    assert done.returncode == 0, done.stderr
    note = ("simclr: note: tensorboard is not installed, so the run writes metrics.jsonl only "
            "(pip install 'simclr-kit[tensorboard]' for TensorBoard events)")
    assert done.stderr.count(note) == 1, done.stderr
    assert (run / "last.pt").is_file() and not (run / "tensorboard").exists()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) >= 5 and "loss" in json.loads(lines[0])


def test_a_timm_backbone_without_timm_names_the_timm_extra_before_writing(tmp_path: Path) -> None:
    argv = ["pretrain", "--data", "digits", "--out", tmp_path / "run", "--arch", "timm:test_vit",
            "--epochs", "0.1", "--batch-size", "4096", "--device", "cpu"]  # said before the data is read
    done = _simclr(argv, ("timm",), tmp_path)
    _refused(done, "timm", "model.arch timm:NAME")
    assert not (tmp_path / "run").exists()


def test_onnx_export_without_onnx_names_the_onnx_extra(tmp_path: Path, make_checkpoint) -> None:
    ckpt = make_checkpoint(tmp_path / "c.pt")
    done = _simclr(["export", "--checkpoint", ckpt, "--format", "onnx", "--out", tmp_path / "f.onnx"],
                   ("onnx",), tmp_path)
    _refused(done, "onnx", "--format onnx")
    assert not (tmp_path / "f.onnx").exists()
