"""Fine-tuning and the augmented linear protocol on images streamed from their files (a split too large for
memory)."""

import copy
import dataclasses
from pathlib import Path

import pytest
import torch
from PIL import Image

from simclr.data.decode import decode_source
from simclr.data.image_source import ImageSource
from simclr.data.sources import load_source
from simclr.data.streamed import StreamedImages
from simclr.errors import InputError
from simclr.evaluation.finetune import FinetuneSpec, evaluate_classifier, finetune
from simclr.models.resnet import EncoderSpec, build_encoder

TINY = EncoderSpec("resnet18", width=0.125, cifar_stem=True)
SPEC = FinetuneSpec(epochs=8, batch_size=16, lr=0.1, seed=3)

pytestmark = pytest.mark.usefixtures("one_thread")


def _colour_folder(root: Path, n_per_class: int, seed: int) -> ImageSource:
    """Three classes of 16x16 PNGs, noisy red, green or blue dominant (as test_finetune's colour task)."""
    gen = torch.Generator().manual_seed(seed)
    for name in ("blue", "green", "red"):  # labels 0, 1, 2 (sorted folder names)
        folder = root / name
        folder.mkdir(parents=True)
        for k in range(n_per_class):
            x = torch.rand(3, 16, 16, generator=gen) * 0.5
            x[("red", "green", "blue").index(name)] += 0.5
            Image.fromarray((x * 255).round().byte().permute(1, 2, 0).numpy()).save(folder / f"{k:02d}.png")
    return load_source(str(root), "all")


def _encoder() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_encoder(TINY)


@pytest.fixture(scope="module")
def splits(tmp_path_factory) -> dict:
    train = _colour_folder(tmp_path_factory.mktemp("train"), 16, 0)
    test = _colour_folder(tmp_path_factory.mktemp("test"), 8, 1)
    return {"train": train, "test": test, "decoded": decode_source(train, 16, progress=False),
            "test_decoded": decode_source(test, 16, progress=False)}


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_streamed_images_train_as_the_same_images_in_memory(splits: dict) -> None:
    """Without random crops a stream gives the very pixels of the in-memory decode, in the same order: the
    same network comes out."""
    spec = dataclasses.replace(SPEC, epochs=2, augment=False)
    memory = finetune(_encoder(), 64, 3, splits["decoded"].images, splits["decoded"].labels, spec)
    streamed = finetune(_encoder(), 64, 3, StreamedImages(splits["train"], 16, workers=0), None, spec)
    assert _same(memory, streamed)
    test = StreamedImages(splits["test"], 16, workers=0)
    assert evaluate_classifier(streamed, test, None) == \
        evaluate_classifier(memory, splits["test_decoded"].images, splits["test_decoded"].labels)


def test_streamed_fine_tuning_learns_and_is_seeded(splits: dict) -> None:
    stream = StreamedImages(splits["train"], 16, workers=0)
    model = finetune(_encoder(), 64, 3, stream, None, SPEC)
    acc = evaluate_classifier(model, StreamedImages(splits["test"], 16, workers=0), None)
    assert acc["top1"] > 0.9, acc  # colour survives any crop (chance: 1/3)
    spec = dataclasses.replace(SPEC, epochs=2)
    once = finetune(_encoder(), 64, 3, stream, None, spec)
    assert _same(once, finetune(_encoder(), 64, 3, StreamedImages(splits["train"], 16, workers=2), None,
                                spec))
    assert not _same(once, finetune(_encoder(), 64, 3, stream, None, dataclasses.replace(spec, seed=4)))


def test_streamed_frozen_linear_leaves_the_encoder_alone(splits: dict) -> None:
    encoder = _encoder()
    before = copy.deepcopy(encoder.state_dict())
    spec = dataclasses.replace(SPEC, frozen=True, epochs=2)
    model = finetune(encoder, 64, 3, StreamedImages(splits["train"], 16, workers=0), None, spec)
    assert all(torch.equal(model[0].state_dict()[k], before[k]) for k in before)
    memory = finetune(_encoder(), 64, 3, splits["decoded"].images, splits["decoded"].labels, spec)
    torch.testing.assert_close(model[1].mean, memory[1].mean)  # standardised over the same (uncropped) images
    torch.testing.assert_close(model[1].std, memory[1].std)


def test_a_stream_of_unreadable_files_is_an_error_not_a_hang(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for k in range(3):
            (tmp_path / name / f"{k}.jpg").write_bytes(b"not an image")
    stream = StreamedImages(load_source(str(tmp_path), "all"), 16, workers=0)
    with pytest.raises(InputError, match="no readable training images"):
        finetune(_encoder(), 64, 2, stream, None, SPEC)
    assert len(stream.skipped) == 6
    with pytest.raises(ValueError, match="train_labels"):
        finetune(_encoder(), 64, 2, torch.zeros(2, 3, 16, 16, dtype=torch.uint8), None, SPEC)


def test_too_few_images_for_batch_norm_is_said_so(splits: dict, tmp_path: Path) -> None:
    from simclr.evaluation.subsets import load_subset

    one = splits["decoded"].images[:1], splits["decoded"].labels[:1]
    with pytest.raises(InputError, match="at least 2 images, got 1 labelled image"):
        finetune(_encoder(), 64, 3, *one, SPEC)
    with pytest.raises(InputError, match="batch size 1"):
        finetune(_encoder(), 64, 3, splits["decoded"].images, splits["decoded"].labels,
                 dataclasses.replace(SPEC, batch_size=1))
    # no batch-norm trained
    finetune(_encoder(), 64, 3, *one, dataclasses.replace(SPEC, frozen=True, epochs=1))
    empty = tmp_path / "empty.json"
    empty.write_text('{"format": "simclr-subset-v1", "num_images": 48, "indices": []}')
    with pytest.raises(InputError, match="selects no images"):
        load_subset(empty, 48)
