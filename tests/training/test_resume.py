"""The pretraining loop's checkpoints: exact resume, interrupts, --init, and damaged or foreign checkpoint
files."""

import math
import shutil
from pathlib import Path

import pytest
import torch

from simclr.errors import InputError
from simclr.runtime.checkpoint import load_checkpoint, save_checkpoint
from simclr.runtime.metrics import read_metrics
from simclr.training.loop import pretrain

from .test_pretrain import _config, _losses

DIAGNOSTICS = ("alignment", "uniformity", "effective_rank_h")


def _diagnostics(run: Path) -> dict[int, dict[str, float]]:
    """The diagnostics by step: measured on a fixed batch of views, so a resumed run measures what a whole one
    does."""
    return {r["step"]: {k: r[k] for k in DIAGNOSTICS}
            for r in read_metrics(run / "metrics.jsonl") if "alignment" in r}


def _same_diagnostics(expected: dict[int, dict[str, float]], got: dict[int, dict[str, float]]) -> None:
    assert sorted(got) == sorted(expected) and expected
    for step, values in expected.items():
        assert got[step] == pytest.approx(values, rel=1e-5, abs=1e-6), step


@pytest.mark.parametrize("stop", [30, 22])  # mid-epoch, and exactly at an epoch boundary
def test_resume_gives_the_same_next_losses(full_run: Path, tmp_path: Path, stop: int) -> None:
    first = pretrain(_config(), tmp_path, progress=False, stop_after_steps=stop)
    assert first.step == stop
    pretrain(_config(), tmp_path, resume=True, progress=False)
    expected, got = _losses(full_run), _losses(tmp_path)
    assert sorted(got) == sorted(expected)
    times = [r["time_s"] for r in read_metrics(tmp_path / "metrics.jsonl") if "loss" in r]
    assert times == sorted(times) and times[0] > 0  # the resumed part continues the first part's clock
    assert load_checkpoint(tmp_path)["time_s"] >= times[-1]
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-6, abs=1e-6), step
    _same_diagnostics(_diagnostics(full_run), _diagnostics(tmp_path))
    a = load_checkpoint(full_run)["model"]
    b = load_checkpoint(tmp_path)["model"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)


def test_resume_on_the_file_path_gives_the_same_next_losses(mini_archive: Path, tmp_path: Path) -> None:
    """Images decoded and augmented in DataLoader workers: a run stopped mid-epoch continues with the same
    views."""
    config = _config(data={"spec": str(mini_archive), "image_size": 16, "in_memory": "false", "workers": 2},
                     train={"epochs": 2, "batch_size": 100})
    pretrain(config, tmp_path / "whole", progress=False)
    assert pretrain(config, tmp_path / "parts", progress=False, stop_after_steps=7).step == 7  # mid-epoch 2
    pretrain(config, tmp_path / "parts", resume=True, progress=False)
    expected, got = _losses(tmp_path / "whole"), _losses(tmp_path / "parts")
    assert sorted(got) == sorted(expected) == list(range(1, 11))
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-6, abs=1e-6), step
    _same_diagnostics(_diagnostics(tmp_path / "whole"), _diagnostics(tmp_path / "parts"))


def test_a_run_from_before_the_heads_output_batch_norm_resumes_as_it_was_trained(tmp_path: Path) -> None:
    """A checkpoint whose config has no model.head.out_bn and loss.scale was written when z was the last
    linear layer's output and the gradient the paper's average's: it resumes (and evaluates) so."""
    old = _config(model={"head": {"out_bn": False}}, loss={"scale": 1.0}, train={"epochs": 1})
    pretrain(old, tmp_path, progress=False, stop_after_steps=5)
    state = load_checkpoint(tmp_path)
    del state["config"]["model"]["head"]["out_bn"], state["config"]["loss"]["scale"]
    save_checkpoint(state, tmp_path / "last.pt")
    done = pretrain(_config(train={"epochs": 1}), tmp_path, resume=True, progress=False)
    assert done.step == done.total_steps
    after = load_checkpoint(tmp_path)
    assert after["config"]["model"]["head"]["out_bn"] is False and after["config"]["loss"]["scale"] == 1.0
    # z = W2 ReLU(BN(W1 h)) + b
    assert "head.1.running_mean" in after["model"] and "head.3.bias" in after["model"]
    assert not any(k.startswith("head.4") for k in after["model"])
    new = pretrain(_config(train={"epochs": 1}), tmp_path / "new", progress=False, stop_after_steps=1)
    assert new.step == 1 and "head.4.weight" in load_checkpoint(tmp_path / "new")["model"]


def test_resuming_a_finished_run_reports_its_last_loss(full_run: Path, capsys) -> None:
    before = (full_run / "last.pt").read_bytes()
    result = pretrain(_config(), full_run, resume=True, progress=False)
    assert result.step == result.total_steps
    assert result.loss == _losses(full_run)[result.step]  # from its log: nothing ran
    assert "already finished" in capsys.readouterr().err
    assert (full_run / "last.pt").read_bytes() == before


def test_resume_without_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no checkpoint"):
        pretrain(_config(), tmp_path, resume=True, progress=False)


def test_checkpoint_is_atomic_and_loads_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"config": {}, "model": {"w": torch.ones(2)}, "step": 3}, path)
    assert load_checkpoint(tmp_path)["step"] == 3
    assert not list(tmp_path.glob(".*tmp"))

    class Evil:
        def __reduce__(self):
            return (exec, ("import os; os.environ['SIMCLR_PWNED'] = '1'",))

    torch.save({"format": "simclr-checkpoint-v1", "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(InputError,
                       match="cannot read checkpoint .*: it holds Python objects besides tensors"):
        load_checkpoint(tmp_path / "evil.pt")
    import os
    assert "SIMCLR_PWNED" not in os.environ
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read checkpoint .*: not a complete PyTorch file"):
        load_checkpoint(tmp_path / "junk.pt")
    whole = path.read_bytes()
    for cut in (10, len(whole) // 100 + 1, len(whole) // 2):  # truncated at any point: the same one line
        (tmp_path / "cut.pt").write_bytes(whole[:cut])
        with pytest.raises(InputError, match="not a complete PyTorch file .corrupt, truncated"):
            load_checkpoint(tmp_path / "cut.pt")
    torch.save({"a": 1}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="not a simclr checkpoint$"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save({"conv1.weight": torch.ones(2, 3, 1, 1)}, tmp_path / "torchvision.pt")  # e.g. simclr export's
    with pytest.raises(InputError, match=r"not a simclr checkpoint \(ResNet weights in torchvision's "
                                         r"layout\? simclr import makes a checkpoint of them\)"):
        load_checkpoint(tmp_path / "torchvision.pt")


def _on_fifth_loss(monkeypatch, action) -> dict[str, int]:
    """Run ``action()`` when the training step computes its fifth loss; returns the call counter."""
    import simclr.losses.objective as mod

    calls = {"n": 0}
    real = mod.nt_xent

    def patched(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            action()
        return real(*args, **kwargs)

    monkeypatch.setattr(mod, "nt_xent", patched)
    return calls


def test_interrupt_saves_a_checkpoint(tmp_path: Path, monkeypatch) -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    _on_fifth_loss(monkeypatch, interrupt)
    with pytest.raises(KeyboardInterrupt):
        pretrain(_config(), tmp_path, progress=False)
    assert load_checkpoint(tmp_path)["step"] == 4
    assert not math.isnan(_losses(tmp_path)[4])


def test_a_signal_during_a_step_stops_after_the_step(tmp_path: Path, monkeypatch) -> None:
    """SIGTERM arriving inside the loss is held until the update and the step counter agree, then saved."""
    import os
    import signal

    from simclr.interrupts import Terminated, terminate_as_interrupt

    calls = _on_fifth_loss(monkeypatch, lambda: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(Terminated), terminate_as_interrupt():
        pretrain(_config(), tmp_path, progress=False)
    # the fifth step completed, no sixth began
    assert calls["n"] == 5 and load_checkpoint(tmp_path)["step"] == 5
    logged = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "loss" in r]
    # and its loss was logged on the way out
    assert logged[-1]["step"] == 5 and not math.isnan(logged[-1]["loss"])


def test_an_evaluation_cut_short_is_done_on_resume(tmp_path: Path, knn_cut_once) -> None:
    with pytest.raises(KeyboardInterrupt):
        pretrain(_config(train={"epochs": 2, "knn_every": 1}), tmp_path, progress=False)
    assert load_checkpoint(tmp_path)["knn_pending"] is True
    pretrain(_config(), tmp_path, resume=True, progress=False)
    knn = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "knn_top1" in r]
    assert [(r["epoch"], r["step"]) for r in knn] == [(1, 1437 // 64), (2, 2 * (1437 // 64))]
    assert load_checkpoint(tmp_path)["knn_pending"] is False


def test_init_starts_from_a_checkpoints_weights_and_model(full_run: Path, tmp_path: Path, capsys) -> None:
    from simclr.cli import main

    trained = load_checkpoint(full_run)["model"]
    args = ["pretrain", "--data", "digits", "--out", str(tmp_path / "cont"),
            "--init", str(full_run), "--quiet", "--recipe", "paper",
            "--set", "data.image_size=16", "--set", "model.width=0.25", "--set", "model.head.out_dim=32",
            "--set", "optim.base_lr=1e-12", "--set", "train.precision=fp32", "--set", "train.device=cpu",
            "--set", "train.batch_size=64", "--set", "train.epochs=0.05", "--set", "train.knn_every=0",
            "--set", "model.arch=resnet18"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert (f"note: model settings from {full_run}: width 0.25 -> 0.125" in err
            and "head.out_dim 32 -> 16" in err)
    saved = load_checkpoint(tmp_path / "cont")
    model = saved["config"]["model"]
    assert (model["width"], model["head"]["out_dim"], model["init"]) == (0.125, 16, str(full_run))
    convs = [k for k in trained if k.endswith(("conv1.weight", "conv2.weight"))]
    assert len(convs) > 10
    for key in convs:  # a learning rate of 1e-12 leaves the starting weights as they were
        torch.testing.assert_close(saved["model"][key], trained[key], atol=1e-6, rtol=0)
    fresh = pretrain(_config(optim={"base_lr": 1e-12}, train={"epochs": 0.05, "knn_every": 0}),
                     tmp_path / "fresh", progress=False)
    assert fresh.step == 1
    assert not torch.allclose(load_checkpoint(tmp_path / "fresh")["model"][convs[0]], trained[convs[0]])


def test_init_from_an_imported_checkpoint_and_bad_init(tmp_path: Path, make_checkpoint) -> None:
    ckpt = make_checkpoint(tmp_path / "start.pt")
    result = pretrain(_config(model={"init": str(ckpt)}, train={"epochs": 0.05, "knn_every": 0}),
                      tmp_path / "run", progress=False)
    assert result.step == 1 and load_checkpoint(tmp_path / "run")["config"]["model"]["head"]["out_dim"] == 24
    with pytest.raises(InputError, match="no such checkpoint|not found"):
        pretrain(_config(model={"init": str(tmp_path / "missing.pt")}), tmp_path / "bad", progress=False)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(InputError, match="cannot read checkpoint"):
        pretrain(_config(model={"init": str(tmp_path / "junk.pt")}), tmp_path / "bad2", progress=False)


def test_damaged_checkpoints_are_one_line_errors(full_run: Path, tmp_path: Path) -> None:
    """A checkpoint that torch reads but whose content is wrong (what a bad copy, a hand edit or another tool
    leaves): one plain line naming it, for evaluation, --init and --resume alike; the run folder is left as it
    was."""
    from simclr.evaluation.learned import load_model

    good = torch.load(full_run / "last.pt", weights_only=True)
    del good["digest"]  # hand edits below: the checks behind the digest (which alone would refuse them all)
    first = next(iter(good["model"]))
    damaged = {
        "it has no config": {"config": None},
        "its config is a list, not a mapping": {"config": [1, 2]},
        "its model is a str, not named tensors": {"model": "weights"},
        "config key train.epochs: expected a finite number, got inf": {
            "config": {**good["config"], "train": {**good["config"]["train"], "epochs": math.inf}}},
        f"1 weights missing .e.g. {first}.": {
            "model": {k: v for k, v in good["model"].items() if k != first}},
        "of another shape": {"model": {**good["model"], first: torch.zeros(1)}},
    }
    for n, (why, change) in enumerate(damaged.items()):
        state = {k: v for k, v in {**good, **change}.items() if v is not None}
        run = tmp_path / f"run{n}"
        shutil.copytree(full_run, run)
        torch.save(state, run / "last.pt")
        before = (run / "last.pt").read_bytes()
        for attempt in (lambda run=run: load_model(run, torch.device("cpu")),
                        lambda run=run: pretrain(_config(), run, resume=True, progress=False),
                        lambda run=run: pretrain(_config(model={"init": str(run / "last.pt")}),
                                                 tmp_path / "new", progress=False)):
            with pytest.raises(InputError, match=why) as err:
                attempt()
            assert "\n" not in str(err.value)
        assert (run / "last.pt").read_bytes() == before and not (tmp_path / "new").exists()
    first_param = next(iter(good["optimizer"]["state"]))
    for change, why in (({"step": "x"}, "its step is 'x'"), ({"epoch": -3}, "its epoch is -3"),
                        ({"time_s": "x"}, "could not convert"),
                        ({"optimizer": {**good["optimizer"],
                                        "state": {first_param: {"momentum_buffer": torch.zeros(3)}}}},
                         r"its optimizer's momentum_buffer \(3,\) does not fit")):
        torch.save({**good, **change}, run / "last.pt")  # what only resuming reads
        with pytest.raises(InputError, match=rf"--resume: .* is damaged \({why}"):
            pretrain(_config(), run, resume=True, progress=False)
