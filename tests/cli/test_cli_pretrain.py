"""The pretrain command end to end on the CIFAR-10 subset: the run folder, resuming, and stopping (SIGTERM,
Ctrl-C, a device out of memory) with one line and its exit code."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from simclr.cli import main


def test_pretrain_writes_the_run_folder(env: dict) -> None:
    run = env["run"]
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 2 and saved["train"]["seed"] == 3
    assert saved["data"]["image_size"] == 32 and saved["model"]["cifar_stem"] is True
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in lines if "loss" in r]
    assert [r["step"] for r in train] == list(range(1, 11))  # 500 images / 100 = 5 steps x 2 epochs
    assert all({"epoch", "step", "loss", "lr", "views_per_s"} <= set(r) for r in train)
    assert [r["epoch"] for r in lines if "effective_rank_h" in r] == [1, 2]  # diagnostics every epoch
    assert (run / "last.pt").is_file() and (run / "skipped.txt").read_text() == ""


def test_resume_continues_the_run(env: dict, tmp_path: Path, capsys) -> None:
    run = env["run"]
    before = (run / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert main(["pretrain", "--out", str(run), "--resume", "--quiet"]) == 0  # --data: the saved config's
    assert (run / "metrics.jsonl").read_text() == before  # already complete: nothing added
    captured = capsys.readouterr()
    assert captured.out.startswith("done: ") and "nan" not in captured.out and ", last loss " in captured.out
    assert "is already finished (10/10 steps): nothing to do" in captured.err
    assert main(["pretrain", "--data", env["archive"], "--out", str(run), "--resume", "--epochs", "5",
                 "--quiet"]) == 0
    assert "saved config" in capsys.readouterr().err


def test_console_script_exit_code_and_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "simclr", "pretrain", "--data",  # noqa: PLW1510
                           str(tmp_path / "missing"), "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr


@pytest.mark.parametrize("loader", ["in memory", "worker processes"])
def test_sigterm_saves_the_run_and_exits_143(env: dict, tmp_path: Path, loader: str) -> None:
    """`kill` (SIGTERM) stops a run the way Ctrl-C does: last.pt saved, one line, exit 128 + 15. With
    data-loading workers the signal goes to the whole process group (as `timeout`, a scheduler or a terminal
    sends it): the workers leave the stop to the main process rather than die and fail it while it saves."""
    import os
    import signal
    import time

    from simclr.runtime.checkpoint import load_checkpoint

    run = tmp_path / "run"
    args = [sys.executable, "-m", "simclr", "pretrain", "--data", env["archive"], "--out", str(run),
            "--config", str(env["cfg"]), "--device", "cpu", "--quiet"]
    steps_per_epoch = 5
    if loader == "worker processes":  # 31 steps an epoch: the workers are alive when the signal comes
        args += ["--set", "data.in_memory=false", "--set", "data.workers=2", "--batch-size", "16"]
        steps_per_epoch = 500 // 16
    job = subprocess.Popen([*args, "--epochs", "500"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        metrics = run / "metrics.jsonl"
        while not (metrics.is_file() and metrics.read_text().count("\n") >= 3) and job.poll() is None:
            assert time.monotonic() < deadline, "no training steps logged in time"
            time.sleep(0.2)
        os.killpg(job.pid, signal.SIGTERM)
        _, err = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 143, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("simclr: terminated")
    saved = load_checkpoint(run)
    assert saved["step"] >= 3 and saved["position"] == saved["step"] - steps_per_epoch * saved["epoch"]
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    # the last step's loss is logged too
    assert [r["step"] for r in logged if "loss" in r][-1] == saved["step"]


def test_interrupt_messages_name_what_to_do(monkeypatch, capsys, tmp_path: Path) -> None:
    from simclr.cli import commands

    def stop(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "run_eval", stop)
    monkeypatch.setattr(commands, "run_pretrain", stop)
    assert main(["eval", "knn", "--checkpoint", "x", "--data", "y"]) == 130
    assert capsys.readouterr().err.strip() == "simclr: interrupted"
    out = tmp_path / "r"
    assert main(["pretrain", "--data", "y", "--out", str(out)]) == 130
    assert capsys.readouterr().err.strip() == "simclr: interrupted (before training began: nothing saved; " \
        "run the command again)"  # e.g. while the images were being decoded
    out.mkdir()
    (out / "last.pt").write_bytes(b"")
    assert main(["pretrain", "--data", "y", "--out", str(out)]) == 130
    assert f"(continue from last.pt with: simclr pretrain --out {out} --resume)" in capsys.readouterr().err


def test_a_device_out_of_memory_is_one_line_naming_what_to_lower(monkeypatch, capsys) -> None:
    import torch

    from simclr.cli import commands

    def oom(args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total "
                                     "capacity of 79.19 GiB of which 1.2 GiB is free. Including non-PyTorch "
                                     "memory, ...")

    def other(args):
        raise RuntimeError("something else")

    monkeypatch.setattr(commands, "run_pretrain", oom)
    monkeypatch.setattr(commands, "run_eval", oom)
    assert main(["pretrain", "--data", "y", "--out", "runs/r"]) == 1
    assert capsys.readouterr().err.strip() == "simclr: error: CUDA out of memory. Tried to allocate " \
        "2.00 GiB: lower --batch-size, or set train.grad_cache_chunk (gradient caching: the same " \
        "gradients, a chunk of views in memory at a time)"
    assert main(["eval", "knn", "--checkpoint", "x", "--data", "y"]) == 1
    assert capsys.readouterr().err.strip().endswith("2.00 GiB: lower --batch-size")
    monkeypatch.setattr(commands, "run_eval", other)
    with pytest.raises(RuntimeError, match="something else"):  # other errors are not dressed up as this one
        main(["eval", "knn", "--checkpoint", "x", "--data", "y"])
