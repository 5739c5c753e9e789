"""docs/search/service.md: its commands 2-5 run as written on a folder of 20 real photos (with a few seconds
of training instead of 30 minutes), and the page they serve finds a catalogue photo by itself."""

from __future__ import annotations

import re
import shlex
import signal
from pathlib import Path

import httpx

from simclr.cli import main
from tests.service.test_serve_command import _start

TUTORIAL = Path(__file__).resolve().parents[2] / "docs" / "search" / "service.md"


def tutorial_commands() -> list[list[str]]:
    """The simclr commands of the tutorial's first code block, as argument lists."""
    block = TUTORIAL.read_text().split("```bash\n", 1)[1].split("```", 1)[0]
    lines = block.replace("\\\n", " ").splitlines()
    return [shlex.split(line.split("#", 1)[0])[1:] for line in lines if line.startswith("simclr ")]


def test_tutorial_commands_run(photos: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    commands = tutorial_commands()
    assert [c[0] for c in commands] == ["pretrain", "embed", "index", "serve"]
    monkeypatch.chdir(tmp_path)
    swap = {"~/products": str(photos), "30": "0.05"}  # the photos here; 3 seconds of training
    pretrain, embed, index, serve = [[swap.get(a, a) for a in c] for c in commands]
    config = Path(__file__).resolve().parents[2] / "configs" / "cifar10_cpu.yaml"
    pretrain[pretrain.index("configs/cifar10_cpu.yaml")] = str(config)
    assert main([*pretrain, "--set", "train.batch_size=10", "--set", "train.device=cpu", "--quiet"]) == 0
    assert main([*embed, "--quiet", "--device", "cpu"]) == 0
    assert main([*index, "--quiet"]) == 0
    assert re.search(r"built the exact index of 20 images", capsys.readouterr().out)
    process, url = _start(tmp_path / serve[serve.index("--index") + 1])
    try:
        assert httpx.get(url + "api/health", timeout=30).json()["images"] == 20
        photo = next(photos.glob("*.jpg"))
        found = httpx.post(url + "api/search", params={"k": 3}, timeout=60,
                           files={"image": (photo.name, photo.read_bytes(), "image/jpeg")}).json()
        assert found["results"][0][0]["path"] == photo.name
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
