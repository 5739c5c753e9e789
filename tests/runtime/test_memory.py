"""The memory of a training step, known before the run: a lower bound of the real peak; runs that cannot fit
refused."""

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from simclr.build import build_model
from simclr.config_io import build_config
from simclr.errors import InputError
from simclr.runtime import memory
from simclr.runtime.memory import StepMemory, check_finetune_fits, check_step_fits, step_memory

SMALL = {"model": {"arch": "resnet18", "width": 0.25, "cifar_stem": True}, "data": {"image_size": 32}}


def _real_saved_bytes(net: torch.nn.Module, batch: int, side: int) -> int:
    """What autograd saves for a real forward pass on the CPU, each storage once."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net(torch.rand(batch, 3, side, side))
    return sum(storages.values())


@pytest.mark.parametrize("settings", [SMALL, {"model": {"arch": "resnet50", "cifar_stem": False},
                                              "data": {"image_size": 64}}])
def test_the_meta_device_count_is_what_a_real_pass_saves(settings: dict) -> None:
    config = build_config(settings)
    side = config.data.image_size
    torch.manual_seed(0)
    net = build_model(config).train()
    real = (_real_saved_bytes(net, 6, side) - _real_saved_bytes(net, 2, side)) // 4
    estimate = step_memory(lambda: build_model(config), side, half=False)
    assert estimate.per_view == real
    assert estimate.fixed == 3 * 4 * sum(p.numel() for p in net.parameters())  # weights, gradients, momenta
    assert step_memory(lambda: build_model(config), side, half=True).per_view == real // 2


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(),
                    reason="needs Linux's /proc peak-memory counters")
def test_the_estimate_is_below_a_real_steps_peak(tmp_path: Path) -> None:
    """Measured in a fresh process (VmHWM after a reset), one forward and backward pass of 512 views."""
    code = textwrap.dedent(f"""
        import re, torch
        from simclr.build import build_model
        from simclr.config_io import build_config
        from simclr.runtime.memory import step_memory
        def rss(key):
            return int(re.search(key + r':\\s+(\\d+)', open('/proc/self/status').read()).group(1)) * 1024
        torch.set_num_threads(1)
        config = build_config({SMALL!r})
        estimate = step_memory(lambda: build_model(config), 32, half=False)
        net = build_model(config).train()
        x = torch.rand(512, 3, 32, 32)
        open('/proc/self/clear_refs', 'w').write('5')
        base = rss('VmRSS')
        out = net(x)
        z = torch.nn.functional.normalize(out.z, dim=1)
        torch.logsumexp(z @ z.T / 0.1, 1).mean().backward()
        print(rss("VmHWM") - base, estimate.per_view * 512 + estimate.fixed // 3)
    """)
    peak, lower = map(int, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                          check=True).stdout.split())
    assert lower <= peak < 2.5 * lower, (lower, peak)  # a lower bound, and not a loose one


def test_a_step_that_cannot_fit_is_refused_with_what_fits() -> None:
    mem = StepMemory(per_view=100 * 2**20, fixed=2**30)
    free = 8 * 2**30
    kw = {"side": 224, "arch": "resnet50", "device": "cpu"}

    def fits(views: int, chunk: int = 0) -> bool:
        try:
            check_step_fits(mem, free, views=views, chunk=chunk, batch=views // 2, **kw)
        except InputError:
            return False
        return True

    check_step_fits(mem, None, views=8192, chunk=0, batch=4096, **kw)  # unknown memory: nothing refused
    assert fits(64)  # 6.25 GiB of activations, 1 GiB of weights and 37 MiB of views
    with pytest.raises(InputError) as refused:
        check_step_fits(mem, free, views=8192, chunk=0, batch=4096, **kw)
    message = str(refused.value)
    assert message.startswith("a training step of 8,192 views (batch 4096) of 224x224 through resnet50 "
                              "keeps about 805.6 GiB for the backward pass, and cpu has 8.0 GiB available: "
                              "lower --batch-size to about ")
    batch = int(re.search(r"--batch-size to about (\d+), or", message).group(1))
    chunk = int(re.search(r"train.grad_cache_chunk=(\d+) \(gradient caching", message).group(1))
    assert fits(2 * batch) and fits(8192, chunk)  # the advice fits ...
    twice = StepMemory(2 * mem.per_view, mem.fixed)  # ... even were the activations twice the lower bound
    check_step_fits(twice, free, views=2 * batch, chunk=0, batch=batch, **kw)
    check_step_fits(twice, free, views=8192, chunk=chunk, batch=4096, **kw)
    assert not fits(4 * batch + 4)  # and is not far below what fits
    with pytest.raises(InputError, match=r"\(4,096 views at a time\).*set a smaller train.grad_cache_chunk"):
        check_step_fits(mem, free, views=8192, chunk=4096, batch=4096, **kw)
    with pytest.raises(InputError, match=r"\(batch 4096, 512 per process\)"):
        check_step_fits(mem, free, views=1024, chunk=0, batch=4096, **kw)  # 8 processes
    with pytest.raises(InputError, match="keeps about 21.6 GiB"):  # the workers' batches prepared ahead count
        check_step_fits(mem, free, views=64, chunk=0, batch=32, batches_held=400, **kw)
    with pytest.raises(InputError, match="available: use a smaller network or image side"):
        check_step_fits(mem, 2**30, views=8, chunk=0, batch=4, **kw)


def test_pretrain_refuses_before_writing_anything(photos: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    from simclr.cli import main
    from simclr.training import setup

    monkeypatch.setattr(setup, "available", lambda device: 2**30)  # a machine with 1 GiB free
    out = tmp_path / "run"
    assert main(["pretrain", "--data", str(photos), "--out", str(out), "--arch", "resnet50",
                 "--recipe", "paper", "--batch-size", "16", "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("simclr: error: a training step of 32 views (batch 16) of 224x224 through "
                          "resnet50 keeps about ") and "\n" not in err and "cpu has 1.0 GiB available" in err
    assert not out.exists()
    assert memory.available(torch.device("cpu")) is None or memory.available(torch.device("cpu")) > 0


def test_fine_tuning_that_cannot_fit_is_refused_before_it_starts(monkeypatch) -> None:
    from simclr.evaluation import finetune as finetune_mod
    from simclr.evaluation.finetune import FinetuneSpec, finetune
    from simclr.models.resnet import EncoderSpec, build_encoder

    mem = StepMemory(per_view=100 * 2**20, fixed=2**30)
    check_finetune_fits(mem, 4 * 2**30, batch=16, side=224, device="cpu")  # 1.6 + 1 GiB + 9 MiB of images
    with pytest.raises(InputError) as refused:
        check_finetune_fits(mem, 4 * 2**30, batch=256, side=224, device="cpu")
    assert str(refused.value).startswith("fine-tuning on batches of 256 images of 224x224 keeps about "
                                         "26.1 GiB for the backward pass, and cpu has 4.0 GiB available: "
                                         "lower --batch-size to about ")
    fits = int(re.search(r"--batch-size to about (\d+)", str(refused.value)).group(1))
    check_finetune_fits(StepMemory(2 * mem.per_view, mem.fixed), 4 * 2**30, batch=fits, side=224,
                        device="cpu")
    with pytest.raises(InputError):
        check_finetune_fits(mem, 4 * 2**30, batch=2 * fits + 2, side=224, device="cpu")
    check_finetune_fits(mem, 2 * 2**30, batch=8, side=224, device="cuda:0")  # 1.8 GiB fit in 2 GiB ...
    # ... not with 256 MiB of images to move there
    with pytest.raises(InputError, match="keeps about 2.0 GiB"):
        check_finetune_fits(mem, 2 * 2**30, batch=8, side=224, device="cuda:0", extra=2**28)

    monkeypatch.setattr(finetune_mod, "available", lambda device: 2**20)  # 1 MiB free
    encoder = build_encoder(EncoderSpec("resnet18", width=0.125, cifar_stem=True))
    images, labels = torch.zeros(8, 3, 16, 16, dtype=torch.uint8), torch.arange(8) % 2
    with pytest.raises(InputError, match="fine-tuning on batches of 8 images of 16x16 keeps about"):
        finetune(encoder, 64, 2, images, labels, FinetuneSpec(epochs=1, batch_size=8))
    with pytest.raises(InputError, match=r"batches of 8 images \(all 8 labelled images\) of 16x16"):
        finetune(encoder, 64, 2, images, labels, FinetuneSpec(epochs=1, batch_size=2000))
    frozen = finetune(encoder, 64, 2, images, labels, FinetuneSpec(epochs=1, batch_size=8, frozen=True))
    # the linear layer alone, on h of the frozen encoder: no activations kept
    assert frozen[2].out_features == 2
