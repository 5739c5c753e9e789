"""``simclr pretrain`` under torchrun: two "nodes" on loopback, a killed worker, elastic restart from
last.pt."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from simclr.runtime.checkpoint import load_checkpoint
from simclr.runtime.metrics import read_metrics

TINY = {
    "data": {"spec": "digits", "image_size": 16},
    "model": {"arch": "resnet18", "width": 0.125, "head": {"out_dim": 16}},
    "augment": {"preset": "cifar10", "crop_scale": [0.3, 1.0]},
    "loss": {"temperature": 0.5},
    "optim": {"base_lr": 4.0, "warmup_epochs": 1},
    "train": {"batch_size": 128, "log_every": 1, "device": "cpu", "precision": "fp32", "save_minutes": 0},
}
STEPS_PER_EPOCH = 1437 // 128


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp_path: Path, epochs: int) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, "train": {**TINY["train"], "epochs": epochs}}))
    return path


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args]


def _pretrain_args(tmp_path: Path, epochs: int) -> list[str]:
    return ["-m", "simclr", "pretrain", "--data", "digits", "--config", str(_config(tmp_path, epochs)),
            "--out", str(tmp_path / "run"), "--quiet"]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _workers(rank: int) -> list[int]:
    """PIDs of simclr pretrain worker processes with LOCAL_RANK == rank (torchrun's children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"simclr" in cmd and b"pretrain" in cmd and b"torch.distributed.run" not in cmd \
                and f"LOCAL_RANK={rank}".encode() in env:
            found.append(int(entry.name))
    return found


def _wait_for(predicate, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_two_nodes_on_loopback_train_together(tmp_path: Path) -> None:
    port = _free_port()
    nodes = [subprocess.Popen(_torchrun("--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(rank),
                                        "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
                                        "--rdzv-id", "simclr-test", *_pretrain_args(tmp_path, 1)),
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in (0, 1)]
    outputs = [node.communicate(timeout=240)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    state = load_checkpoint(tmp_path / "run")
    assert state["world_size"] == 2 and state["step"] == STEPS_PER_EPOCH and len(state["ranks"]) == 2
    records = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in records] == list(range(1, STEPS_PER_EPOCH + 1))  # one writer: rank 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killed_worker_is_restarted_and_resumes_from_last_checkpoint(tmp_path: Path) -> None:
    epochs = 6
    job = subprocess.Popen(_torchrun("--standalone", "--nproc-per-node", "2", "--max-restarts", "1",
                                     *_pretrain_args(tmp_path, epochs)),
                           env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: (tmp_path / "run" / "last.pt").is_file() or job.poll() is not None, 180)
        assert job.poll() is None, "the job ended before a checkpoint could be interrupted"
        victims = _workers(1)
        assert victims, "no worker with LOCAL_RANK=1 found"
        os.kill(victims[0], signal.SIGKILL)
        out = job.communicate(timeout=300)[0]
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 0, out
    assert "resuming" in out
    state = load_checkpoint(tmp_path / "run")
    assert state["step"] == epochs * STEPS_PER_EPOCH and state["epoch"] == epochs


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_dead_worker_ends_the_job_instead_of_hanging(tmp_path: Path) -> None:
    job = subprocess.Popen(_torchrun("--standalone", "--nproc-per-node", "2", "--max-restarts", "0",
                                     *_pretrain_args(tmp_path, 50)),
                           env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: (tmp_path / "run" / "metrics.jsonl").is_file() or job.poll() is not None, 180)
        victims = _workers(1)
        assert victims, "no worker with LOCAL_RANK=1 found"
        os.kill(victims[0], signal.SIGKILL)
        t0 = time.monotonic()
        job.communicate(timeout=120)
        assert time.monotonic() - t0 < 120
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode != 0


def test_a_planned_run_is_planned_by_rank_0_and_trained_by_both(tmp_path: Path) -> None:
    run = tmp_path / "run"
    job = subprocess.run(_torchrun("--standalone", "--nproc-per-node", "2", "-m", "simclr", "pretrain",
                                   "--data", "digits", "--out", str(run), "--time-budget", "0.3",
                                   "--device", "cpu", "--set", "train.precision=fp32"),
                         check=False, env=_env(), capture_output=True, text=True, timeout=300)
    assert job.returncode == 0, job.stdout[-2000:] + job.stderr[-2000:]
    assert job.stderr.count("plan (--recipe auto)") == 1 and job.stderr.count("planning: timing") == 1
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["width"] == 0.25 and 0 < saved["train"]["time_budget"] < 0.3
    steps = [r["step"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    state = load_checkpoint(run / "last.pt")
    assert steps and state["step"] == steps[-1] and state["world_size"] == 2 and len(state["ranks"]) == 2
