"""A practitioner's folder of photos, end to end: pretrain (DataLoader path, ImageNet stem and augmentation),
embed, search, export and load from Python, on 20 real 512-pixel ImageNet JPEGs."""

import json
from pathlib import Path

import numpy as np
import torch

import simclr
from simclr.cli import main
from simclr.runtime.checkpoint import load_checkpoint


def test_folder_of_photos_end_to_end(photos: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["pretrain", "--data", str(photos), "--out", str(run), "--recipe", "paper",
                 "--arch", "resnet18", "--epochs", "2",
                 "--batch-size", "10", "--device", "cpu", "--quiet", "--set", "model.width=0.125",
                 "--set", "data.image_size=96", "--set", "data.workers=0", "--set",
                 "train.precision=fp32"]) == 0
    config = load_checkpoint(run)["config"]
    # large images: decoded per image by a DataLoader, the paper's ImageNet stem and full augmentation
    assert config["data"]["in_memory"] == "false" and config["model"]["cifar_stem"] is False
    assert config["augment"]["blur_p"] == 0.5
    assert (run / "views.png").is_file() and (run / "skipped.txt").read_text() == ""

    index = tmp_path / "photos.npz"
    assert main(["embed", "--checkpoint", str(run), "--data", str(photos), "--split", "all", "--out",
                 str(index), "--quiet"]) == 0
    with np.load(index) as f:
        paths, h = list(f["paths"]), f["features"]
    assert len(paths) == 20 and h.shape == (20, 64)

    query = photos / "imagenet_10_541.jpg"  # the one 1024x683 photo: resized and centre-cropped like the rest
    capsys.readouterr()
    assert main(["search", "--index", str(index), "--query", str(query), "--k", "3", "--json",
                 "--quiet"]) == 0
    hits = json.loads(capsys.readouterr().out)["results"][0]["results"]
    assert hits[0]["path"] == "imagenet_10_541.jpg" and hits[0]["score"] > 0.9999

    slim = tmp_path / "model.pt"
    assert main(["export", "--checkpoint", str(run), "--out", str(slim), "--format", "simclr"]) == 0
    enc = simclr.load_encoder(slim, device="cpu")
    torch.testing.assert_close(enc(query)[0], torch.from_numpy(h[paths.index("imagenet_10_541.jpg")]),
                               rtol=1e-4, atol=1e-5)
