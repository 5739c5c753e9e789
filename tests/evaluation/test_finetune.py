"""Semi-supervised fine-tuning on a tiny colour task."""

import copy
import dataclasses

import pytest
import torch

from simclr.evaluation.finetune import (
    FinetuneSpec,
    evaluate_classifier,
    finetune,
    supervised_baseline,
    transfer_bn_momentum,
)
from simclr.models.resnet import EncoderSpec, build_encoder

TINY = EncoderSpec("resnet18", width=0.125, cifar_stem=True)
SPEC = FinetuneSpec(epochs=8, batch_size=16, lr=0.1, seed=3)


pytestmark = pytest.mark.usefixtures("one_thread")


def _colour_task(n_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three classes of 16x16 images: noisy red, green or blue dominant."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(3).repeat_interleave(n_per_class)
    x = torch.rand(len(labels), 3, 16, 16, generator=gen) * 0.5
    x[torch.arange(len(labels)), labels] += 0.5
    return (x * 255).round().to(torch.uint8), labels


def _encoder(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_encoder(TINY)


@pytest.fixture(scope="module")
def trained() -> dict:
    train, test = _colour_task(16, 0), _colour_task(8, 1)
    encoder = _encoder()
    before = copy.deepcopy(encoder.state_dict())
    model = finetune(encoder, encoder.num_features, 3, *train, SPEC)
    return {"model": model, "before": before, "train": train, "test": test}


def test_finetune_learns_and_trains_the_encoder(trained: dict) -> None:
    model = trained["model"]
    assert not model.training and isinstance(model[1], torch.nn.Linear) and model[1].out_features == 3
    for split in ("train", "test"):
        acc = evaluate_classifier(model, *trained[split])
        assert acc["top1"] > 0.9, (split, acc)
        assert acc["top1"] <= acc["top5"] == 1.0  # top-5 is top-3 with 3 classes
    after = model[0].state_dict()
    conv = [k for k in after if k.endswith("conv1.weight") or k.startswith("stem.0")]
    assert conv and all(not torch.equal(after[k], trained["before"][k]) for k in conv)


def test_finetune_is_deterministic(trained: dict) -> None:
    spec = FinetuneSpec(epochs=1, batch_size=16, seed=5)
    a = finetune(_encoder(), TINY_DIM, 3, *trained["train"], spec).state_dict()
    b = finetune(_encoder(), TINY_DIM, 3, *trained["train"], spec).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_supervised_baseline_runs_from_a_fresh_encoder(trained: dict) -> None:
    spec = FinetuneSpec(epochs=1, batch_size=16, seed=5, augment=False)
    calls = []

    def make() -> torch.nn.Module:
        calls.append(1)
        return build_encoder(TINY)

    a = supervised_baseline(make, TINY_DIM, 3, *trained["train"], spec)
    b = supervised_baseline(make, TINY_DIM, 3, *trained["train"], spec)
    assert len(calls) == 2
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    acc = evaluate_classifier(a, *trained["test"], batch_size=7)
    assert 0.0 <= acc["top1"] <= acc["top5"] <= 1.0


def test_frozen_trains_the_linear_layer_only(trained: dict) -> None:
    encoder = _encoder()
    before = copy.deepcopy(encoder.state_dict())
    # h standardised: its small scale does not slow it
    spec = dataclasses.replace(SPEC, frozen=True, epochs=2)
    model = finetune(encoder, encoder.num_features, 3, *trained["train"], spec)
    h = model[0](trained["train"][0].float() / 255)
    torch.testing.assert_close(model[1].mean, h.mean(0))
    torch.testing.assert_close(model[1].std, h.std(0))
    after = model[0].state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)  # weights and batch-norm statistics alike
    assert not any(p.requires_grad for p in model[0].parameters())
    acc = evaluate_classifier(model, *trained["test"])
    assert acc["top1"] > 0.9, acc  # colour is linearly readable from h of a random encoder (chance: 1/3)
    # the same recipe without freezing moves the encoder
    moved = finetune(_encoder(), TINY_DIM, 3, *trained["train"], SPEC)[0].state_dict()
    assert any(not torch.equal(moved[k], before[k]) for k in before if k.endswith("weight"))


def test_bf16_autocast_trains_and_keeps_fp32_weights(trained: dict) -> None:
    spec = dataclasses.replace(SPEC, precision="bf16", epochs=4)
    encoder, seen = _encoder(), []
    encoder.stages.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    model = finetune(encoder, TINY_DIM, 3, *trained["train"], spec)
    assert seen and set(seen) == {torch.bfloat16}  # the forward ran under bf16 autocast
    assert all(p.dtype == torch.float32 for p in model.parameters())
    acc = evaluate_classifier(model, *trained["test"], precision="bf16")
    fp32 = evaluate_classifier(model, *trained["test"])
    assert acc["top1"] > 0.8 and abs(acc["top1"] - fp32["top1"]) <= 1 / 24  # 24 test images: one may flip


def test_finetune_rejects_bad_input() -> None:
    images, labels = _colour_task(2, 0)
    with pytest.raises(ValueError, match="labels"):
        finetune(_encoder(), TINY_DIM, 2, images, labels, SPEC)
    with pytest.raises(ValueError, match="momentum"):
        finetune(_encoder(), TINY_DIM, 3, images, labels, FinetuneSpec(momentum=0.0))
    with pytest.raises(ValueError, match="steps"):
        finetune(_encoder(), TINY_DIM, 3, images, labels, FinetuneSpec(steps=-1))
    with pytest.raises(ValueError, match="bn_momentum"):
        finetune(_encoder(), TINY_DIM, 3, images, labels, FinetuneSpec(bn_momentum=0.0))


def test_steps_replace_epochs_and_the_batch_norm_momentum_is_set(trained: dict) -> None:
    images, labels = trained["train"]  # 48 images: 3 batches of 16 per epoch
    encoder, batches = _encoder(), []
    encoder.register_forward_hook(lambda module, args, out: batches.append(len(out)))
    spec = FinetuneSpec(epochs=1, steps=7, batch_size=16, augment=False, bn_momentum=0.03)
    finetune(encoder, TINY_DIM, 3, images, labels, spec)
    assert batches == [16] * 7  # two passes and one batch of a third, not the one epoch
    norms = [m for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.momentum == 0.03 for m in norms)
    encoder = _encoder()
    finetune(encoder, TINY_DIM, 3, images, labels, dataclasses.replace(spec, steps=0, bn_momentum=None))
    assert all(m.momentum == 0.1 for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_transfer_bn_momentum_is_the_papers() -> None:
    # TensorFlow's max(1 - 10/s, 0.9) with s steps per epoch, as PyTorch's 1 - that
    # s = 196: 0.949 in TensorFlow's sense
    assert transfer_bn_momentum(50_000, 256) == pytest.approx(10 / 196)
    assert transfer_bn_momentum(1_000, 256) == pytest.approx(0.1)  # s = 4: the 0.9 floor
    assert transfer_bn_momentum(25_600, 256) == pytest.approx(0.1)  # s = 100: both equal


TINY_DIM = build_encoder(TINY).num_features


@pytest.mark.parametrize("channels_last", [True, False])
def test_networks_from_scratch_take_the_layout_of_the_loaded_one(channels_last: bool, make_checkpoint,
                                                                  tmp_path) -> None:
    """Fine-tuning starts from the loaded f (channels-last when the run trained so); the from-scratch networks
    beside it are built the same way, so both train at the same speed."""
    from simclr.config_io import build_config
    from simclr.evaluation.learned import fresh_encoder, load_model

    config = build_config({"data": {"spec": "digits"}, "model": {"arch": "resnet18", "width": 0.125},
                           "train": {"channels_last": channels_last}})
    conv = next(m for m in fresh_encoder(config).modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) == channels_last
    loaded, _ = load_model(make_checkpoint(tmp_path / "m.pt"), torch.device("cpu"),
                           channels_last=channels_last)
    conv = next(m for m in loaded.encoder.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) == channels_last
