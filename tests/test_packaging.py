"""The distribution: the wheel built from this tree (as pip builds it) holds the package, its data files and
the command, under the name simclr-kit with the version of ``simclr.__version__`` and the declared extras;
``simclr --version`` prints that version."""

from __future__ import annotations

import email.parser
import importlib.metadata
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import simclr

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = {"serve", "index", "plots", "tensorboard", "timm", "onnx", "all", "docs", "test", "bench", "lint"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel pip builds from a copy of the tree (so that no build files land in it), with this
    environment's setuptools."""
    tree = tmp_path_factory.mktemp("tree")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out)]
    done = subprocess.run([*pip, str(tree)], check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (built,) = out.glob("*.whl")
    assert built.name == f"simclr_kit-{simclr.__version__}-py3-none-any.whl"
    return zipfile.ZipFile(built)


def _dist_info(wheel: zipfile.ZipFile, name: str) -> str:
    return wheel.read(f"simclr_kit-{simclr.__version__}.dist-info/{name}").decode()


def test_the_wheel_holds_the_package_and_its_data(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    modules = {str(p.relative_to(ROOT / "src")) for p in (ROOT / "src" / "simclr").rglob("*.py")}
    assert modules and modules <= names, sorted(modules - names)
    static = {str(p.relative_to(ROOT / "src")) for p in (ROOT / "src/simclr/service/static").iterdir()}
    assert static and static <= names, sorted(static - names)
    assert {"simclr/py.typed", "simclr/cli/app.py", "simclr/__main__.py"} <= names
    assert not any(n.startswith(("tests/", "benchmarks/", "docs/")) for n in names)


def test_the_wheel_names_the_command_the_distribution_its_version_and_extras(wheel: zipfile.ZipFile) -> None:
    entry_points = _dist_info(wheel, "entry_points.txt")
    command = re.search(r"^\[console_scripts\]\nsimclr = simclr\.cli:main$", entry_points, re.MULTILINE)
    assert command, entry_points
    meta = email.parser.Parser().parsestr(_dist_info(wheel, "METADATA"))
    assert meta["Name"] == "simclr-kit" and meta["Version"] == simclr.__version__ == "0.2.0"
    assert set(meta.get_all("Provides-Extra")) == EXTRAS
    requires = meta.get_all("Requires-Dist")
    for wanted in ("torch>=2.1", "safetensors>=0.4", "scikit-learn>=1.2", 'fastapi>=0.110; extra == "serve"',
                   'faiss-cpu>=1.8; extra == "index"', 'matplotlib>=3.6; extra == "plots"',
                   'tensorboard>=2.12; extra == "tensorboard"', 'timm>=0.9; extra == "timm"',
                   'onnxruntime>=1.18; extra == "onnx"', 'simclr-kit[all,docs]; extra == "test"'):
        assert wanted in requires, (wanted, requires)
    core = [r for r in requires if "extra ==" not in r]
    assert not any(r.startswith(("fastapi", "faiss", "matplotlib", "tensorboard", "uvicorn")) for r in core)


def test_version_flag_and_installed_metadata_agree() -> None:
    done = subprocess.run([sys.executable, "-m", "simclr", "--version"], check=False, capture_output=True,
                          text=True, timeout=120)
    assert (done.returncode, done.stdout) == (0, f"simclr {simclr.__version__}\n")
    assert importlib.metadata.version("simclr-kit") == simclr.__version__
