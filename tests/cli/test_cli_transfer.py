"""eval transfer and fine-tuning on the digits dataset: the labelled images, the crops trained and scored on,
and the learning-rate and weight-decay grid."""

import json
from pathlib import Path

import pytest

from simclr.cli import main
from simclr.config_io import build_config
from simclr.data.sources import load_source


def test_eval_transfer(env: dict, capsys, monkeypatch) -> None:
    from simclr import build

    decoded: list[int] = []
    real = build.decode_cached
    monkeypatch.setattr(build, "decode_cached", lambda source, *a, **k: decoded.append(len(source))
                        or real(source, *a, **k))
    from simclr.evaluation import frozen

    fitted: list[tuple[int, int]] = []
    real_linear = frozen.linear_eval
    monkeypatch.setattr(frozen, "linear_eval", lambda x, y, *a, **k: fitted.append((len(x),
                                                                                    int(y.bincount().min())))
                        or real_linear(x, y, *a, **k))
    capsys.readouterr()
    assert main(["eval", "transfer", "--checkpoint", str(env["run"]), "--data", "digits", "--json", "--quiet",
                 "--cache-dir", env["cache"], "--epochs", "1", "--label-fraction", "0.2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["data"] == "digits" and out["test_images"] == 360 and out["train_images"] == 1437
    # the linear classifier learns from the fine-tuned networks' labelled fifth, class-balanced
    assert fitted[0][0] == out["labelled_images"] and 0.19 < out["labelled_images"] / 1437 < 0.22
    assert fitted[0][1] >= 25  # every class ~a fifth of its ~145 train images
    assert (out["validation"] == "a tenth of each class"
            and 0.09 < out["validation_images"] / fitted[0][0] < 0.12)
    assert all(0.0 <= out[k] <= 1.0 for k in ("linear_top1", "finetune_top1", "scratch_top1"))
    assert sorted(decoded) == [360, 1437]  # each split decoded once for linear evaluation and fine-tuning


def test_fine_tuning_trains_on_the_whole_side_and_transfer_linear_sees_it(env: dict, tmp_path: Path, capsys,
                                                                          monkeypatch) -> None:
    """With a centre crop for evaluation (data.eval_crop 0.5 in the checkpoint), fine-tuning's random crops
    draw from the whole shorter side and its test images are the centre crops; transfer's linear evaluation
    sees the whole side, as the paper's Appendix B.8, unless --eval-crop says otherwise."""
    import torch

    from simclr import build
    from simclr.evaluation import protocols, transfer

    state = torch.load(env["run"] / "last.pt", weights_only=True)
    del state["digest"]  # edited by hand: as a checkpoint from before digests
    state["config"]["data"]["eval_crop"] = 0.5
    ckpt = tmp_path / "centre.pt"
    torch.save(state, ckpt)
    decoded: list[tuple[int, float]] = []
    real = build.decode_cached
    monkeypatch.setattr(build, "decode_cached", lambda source, *a, **k: decoded.append((len(source),
                                                                                        k["crop"]))
                        or real(source, *a, **k))
    trained: list[torch.Tensor] = []
    tested: list[torch.Tensor] = []
    for module in (protocols, transfer):
        real_finetune, real_score = module.finetune, module.evaluate_classifier
        monkeypatch.setattr(module, "finetune", lambda encoder, dim, c, x, y, spec, f=real_finetune, **k:
                            trained.append(x) or f(encoder, dim, c, x, y, spec, **k))
        monkeypatch.setattr(module, "evaluate_classifier", lambda model, x, *a, f=real_score, **k:
                            tested.append(x) or f(model, x, *a, **k))
    base = ["--checkpoint", str(ckpt), "--data", "digits", "--json", "--quiet", "--cache-dir", env["cache"]]
    assert main(["eval", "finetune", *base, "--epochs", "1", "--label-fraction", "0.1", "--no-baseline"]) == 0
    labelled = json.loads(capsys.readouterr().out)["labelled_images"]
    assert 130 < labelled < 160  # a tenth of 1,437, class by class
    assert sorted(decoded) == [(labelled, 1.0), (360, 0.5)]  # only the labelled train images are decoded
    whole = build.decode(build_config({"data": {"spec": "digits", "image_size": 32}}),
                         load_source("digits", "train"), 32).images
    centre = build.decode(build_config({"data": {"spec": "digits", "image_size": 32}}),
                          load_source("digits", "test"), 32, crop=0.5).images
    assert any(torch.equal(trained[0][0], whole[i]) for i in range(len(whole)))  # a whole-side training image
    assert torch.equal(tested[0], centre)  # scored on the centre crops
    decoded.clear()
    trained.clear()
    tested.clear()
    assert main(["eval", "transfer", *base, "--steps", "1", "--label-fraction", "0.2"]) == 0
    # the test split whole for the linear fit too
    assert sorted(decoded) == [(360, 0.5), (360, 1.0), (1437, 1.0)]
    assert len(trained) == len(tested) == 2  # fine-tuned and from scratch: both trained on whole sides ...
    assert all(any(torch.equal(x[0], whole[i]) for i in range(len(whole))) for x in trained)
    assert all(torch.equal(x, centre) for x in tested)  # ... and scored on the centre crops
    decoded.clear()
    assert main(["eval", "transfer", *base, "--steps", "1", "--label-fraction", "0.2", "--eval-crop",
                 "0.5"]) == 0
    assert sorted(decoded) == [(360, 0.5), (1437, 0.5), (1437, 1.0)]  # the linear fit as asked
    capsys.readouterr()


def test_eval_transfer_searches_a_grid_and_trains_scratch_longer(env: dict, capsys, monkeypatch) -> None:
    from simclr.evaluation import transfer

    runs: list[tuple] = []
    real = transfer.finetune
    monkeypatch.setattr(transfer, "finetune", lambda encoder, dim, c, x, y, spec, **k: runs.append(
        (len(x), spec.epochs, spec.lr, spec.weight_decay, spec.bn_momentum))
        or real(encoder, dim, c, x, y, spec, **k))
    capsys.readouterr()
    assert main(["eval", "transfer", "--checkpoint", str(env["run"]), "--data", "digits", "--json", "--quiet",
                 "--cache-dir", env["cache"], "--epochs", "1", "--label-fraction", "0.2",
                 "--finetune-grid", "0.02,0.2/0,1e-3"]) == 0
    out = json.loads(capsys.readouterr().out)
    labelled, held = runs[-1][0], out["validation_images"]
    assert 0 < held < labelled and [r[0] for r in runs] == [labelled - held] * 4 + [labelled] + \
        [labelled - held] * 4 + [labelled]  # four cells on the rest, then the chosen one on all, twice
    assert [r[1] for r in runs] == [1] * 5 + [2] * 5  # from scratch: twice the epochs
    for name in ("finetune", "scratch"):
        rows = out[f"{name}_grid"]
        assert [(r["lr"], r["weight_decay"]) for r in rows] == [(0.02, 0.0), (0.02, 1e-3), (0.2, 0.0),
                                                                (0.2, 1e-3)]
        best = max(rows, key=lambda r: r["val"])  # max returns the first of equals, as the search
        assert (out[f"{name}_lr"], out[f"{name}_weight_decay"]) == pytest.approx((best["lr"],
                                                                                  best["weight_decay"]))
    assert runs[1][3] == pytest.approx(1e-3 / 0.02)  # the paper's weight decay divided by the learning rate
    # a few steps per epoch: the 0.9 floor, TensorFlow's sense
    assert all(r[4] == pytest.approx(0.1) for r in runs)
    assert main(["eval", "transfer", "--checkpoint", str(env["run"]), "--data", "digits", "--quiet",
                 "--cache-dir", env["cache"], "--epochs", "1", "--label-fraction", "0.05",
                 "--finetune-grid", "0.1/0"]) == 0
    assert "; picked on held-out images: fine-tuning lr 0.1 weight decay 0, from scratch lr 0.1 weight " \
        "decay 0" in capsys.readouterr().out
    assert main(["eval", "transfer", "--checkpoint", str(env["run"]), "--data", "digits", "--quiet",
                 "--finetune-grid", "0.1"]) == 2
    assert "fine-tuning grid: none, paper or LRS/WDS" in capsys.readouterr().err
