"""One run per folder: a second ``pretrain`` on a folder in use is refused naming the first's PID; what a
killed run left (temporary files, metrics rows logged after its last checkpoint) is cleaned up when it
resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from simclr.errors import InputError
from simclr.files import FolderLock, lock_folder, remove_temporaries
from simclr.runtime.metrics import drop_rows_after, read_metrics
from simclr.training.loop import pretrain

from .test_pretrain import _config, _losses

HOLD = """
import sys, time
from pathlib import Path
from simclr.files import lock_folder
lock_folder(Path(sys.argv[1]), "simclr pretrain")
print("held", flush=True)
time.sleep(60)
"""


def test_a_second_run_on_a_folder_in_use_is_refused_naming_the_first(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        refusal = rf"{run} is in use by another simclr pretrain \(PID {holder.pid}\)"
        with pytest.raises(InputError, match=refusal):
            pretrain(_config(), run, progress=False)
        assert not (run / "config.yaml").exists()  # nothing written by the refused run
    finally:
        holder.kill()
        holder.wait()
    result = pretrain(_config(train={"epochs": 0.2}), run, progress=False)  # the holder is gone: free again
    assert result.step > 0 and (run / "last.pt").is_file()
    assert pretrain(_config(train={"epochs": 0.2}), run, progress=False, resume=True).step == result.step


def test_the_lock_is_given_back_on_every_path(tmp_path: Path) -> None:
    lock = FolderLock(tmp_path, "test")
    lock.release()  # never acquired: nothing to do
    lock.acquire()
    with pytest.raises(InputError, match=f"PID {os.getpid()}"):
        lock_folder(tmp_path, "test")  # another descriptor, even of this process, waits its turn
    lock.release()
    os.close(lock_folder(tmp_path, "test"))


def test_a_resumed_run_drops_the_killed_runs_leftovers(tmp_path: Path) -> None:
    config = _config(train={"epochs": 2})
    whole = tmp_path / "whole"
    pretrain(config, whole, progress=False)
    run = tmp_path / "run"
    assert pretrain(config, run, progress=False, stop_after_steps=7).step == 7
    log = run / "metrics.jsonl"
    rows = log.read_text()
    # as a run killed after step 9, while writing a checkpoint, leaves its folder
    late = [json.dumps({"epoch": 1, "step": s, "loss": 9.0, "lr": 0.1}) for s in (8, 9)]
    log.write_text(rows + "\n".join(late) + "\n" + '{"epoch": 1, "st')
    (run / ".last.pt.k3j_x9a.tmp").write_bytes(b"half a checkpoint")
    (run / ".metrics.jsonl.ab12cd.tmp").write_bytes(b"")
    pretrain(config, run, progress=False, resume=True)
    assert sorted(p.name for p in run.iterdir() if p.name.endswith(".tmp")) == []
    steps = [r["step"] for r in read_metrics(log) if "loss" in r]
    assert steps == sorted(set(steps)) == list(range(1, max(steps) + 1))  # every step once
    assert _losses(run) == pytest.approx(_losses(whole), rel=1e-6, abs=1e-6)


def test_drop_rows_after_and_remove_temporaries(tmp_path: Path) -> None:
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1}\n{"note": "no step"}\n{"step": 2}\n{"step": 3}\n{"ste')
    assert drop_rows_after(log, 2) == 2
    assert log.read_text() == '{"step": 1}\n{"note": "no step"}\n{"step": 2}\n'
    assert drop_rows_after(log, 2) == 0 and drop_rows_after(tmp_path / "missing.jsonl", 1) == 0
    for name in (".last.pt.abc.tmp", "keep.tmp", ".hidden", "last.pt"):
        (tmp_path / name).write_text("x")
    (tmp_path / ".sub.x.tmp").mkdir()
    assert remove_temporaries(tmp_path) == [".last.pt.abc.tmp"]
    assert {"keep.tmp", ".hidden", "last.pt", ".sub.x.tmp"} <= {p.name for p in tmp_path.iterdir()}
