"""The planner's choices as pure functions of measured costs, over a grid of synthetic device profiles (a
2-core AVX2 CPU, a 16-core CPU, a 16 GiB and an 80 GiB GPU, 8 GPUs) and data shapes (32 to 512 px, 500 to 10M
images): every plan fits the device's memory and the budget, and follows the measured rules."""

from __future__ import annotations

import itertools

import pytest

from simclr.config_io import build_config, unflatten
from simclr.planner.choose import (
    MIN_REPEATS,
    MIN_SAMPLES,
    NO_BUDGET_EPOCHS,
    REASONABLE_HOURS,
    Cost,
    DataProfile,
    DeviceProfile,
    Plan,
    choose,
    hold_in_memory,
    needed_samples,
    pin,
    shapes,
)

GiB = 2**30
DEVICES = {
    "2-core AVX2 CPU": (DeviceProfile("cpu", "EPYC", 2, False, 20 * GiB), 1.0),
    "16-core CPU": (DeviceProfile("cpu", "Xeon", 16, True, 120 * GiB), 10.0),
    "16 GiB GPU": (DeviceProfile("cuda", "T4", 8, False, 15 * GiB), 40.0),
    "80 GiB GPU": (DeviceProfile("cuda", "H100", 16, True, 78 * GiB), 400.0),
    "8 GPUs": (DeviceProfile("cuda", "H100", 16, True, 78 * GiB, count=8), 3200.0),
}
DATA = [DataProfile(100, 32), DataProfile(500, 32), DataProfile(50_000, 32), DataProfile(20_000, 64),
        DataProfile(100_000, 96), DataProfile(1_000_000, 224), DataProfile(10_000_000, 512)]
BUDGETS = [None, 5 * 60.0, 15 * 60.0, 60 * 60.0, 24 * 3600.0]


def _flops(shape) -> float:
    """A step's work, as a cost model would count it: views x side^2 x width^2 (x4 for ResNet-50)."""
    net = 4.0 if shape.arch == "resnet50" else 1.0
    return 2 * shape.batch_size * shape.view_size**2 * shape.width**2 * net


def _costs(data: DataProfile, device: DeviceProfile, speed: float) -> dict:
    """Synthetic measurements: seconds proportional to the work over the device's speed; memory per view
    proportional to the side^2 x width (a ResNet's activations)."""
    out = {}
    for s in shapes(data, device):
        net = 4 if s.arch == "resnet50" else 1
        memory = int(1e9 + 2 * s.batch_size // device.count * s.view_size**2 * s.width * 1500 * net)
        out[s] = Cost(_flops(s) / (speed * 2e7), memory)
    return out


@pytest.mark.parametrize("device_name,data,budget", list(itertools.product(DEVICES, DATA, BUDGETS)))
def test_every_plan_fits_memory_and_budget(device_name: str, data: DataProfile, budget: float | None) -> None:
    device, speed = DEVICES[device_name]
    costs = _costs(data, device, speed)
    plan = choose(data, device, costs, budget)
    assert costs[plan.shape].memory <= device.memory
    assert 2 <= plan.shape.batch_size <= data.images  # a batch the dataset fills
    warmup = plan.settings["optim.warmup_epochs"]
    assert warmup < plan.epochs or plan.epochs >= 100  # the learning rate decays: never all warm-up
    if budget is not None:
        assert plan.steps * costs[plan.shape].step_s <= budget + 1e-6 and plan.fits
    else:
        assert plan.epochs == NO_BUDGET_EPOCHS
        assert plan.fits == (plan.seconds <= REASONABLE_HOURS * 3600)
        # a plan of an hour or more points to --time-budget (one longer than 24 hours offers it instead)
        assert any("--time-budget" in r for r in plan.reasons) == (plan.seconds >= 3600)
    config = build_config(*[unflatten(k, v) for k, v in plan.settings.items()])  # a valid config
    assert config.train.batch_size == plan.shape.batch_size and config.model.arch == plan.shape.arch
    assert (config.data.view_size or config.data.image_size) == plan.shape.view_size


@pytest.mark.parametrize("device_name,data,budget", list(itertools.product(DEVICES, DATA, BUDGETS[1:])))
def test_a_larger_shape_only_when_it_sees_enough_images(device_name: str, data: DataProfile,
                                                          budget: float) -> None:
    device, speed = DEVICES[device_name]
    costs = _costs(data, device, speed)
    plan = choose(data, device, costs, budget)
    need = needed_samples(data)
    cheapest = min(costs)
    assert plan.shape == cheapest or plan.steps * plan.shape.batch_size >= need
    fitting = [s for s in costs if costs[s].memory <= device.memory]
    for larger in (s for s in fitting if s > plan.shape):  # each larger one that fits would see fewer
        assert int(budget / costs[larger].step_s) * larger.batch_size < need


def test_the_images_a_larger_shape_needs() -> None:
    """2M images (40 epochs of CIFAR-10), fewer for small datasets (400 epochs): 10M images are not held to
    40 epochs (400M), nor 500 images to 4,000."""
    assert needed_samples(DataProfile(50_000, 32)) == MIN_SAMPLES == 2_000_000
    assert needed_samples(DataProfile(10_000_000, 512)) == 2_000_000
    assert needed_samples(DataProfile(500, 32)) == MIN_REPEATS * 500 == 200_000
    cpu = DeviceProfile("cpu", "EPYC", 2, False, 20 * GiB)
    for data in (DataProfile(10_000_000, 64), DataProfile(500, 32)):
        # a day on the 2-core CPU: the larger shapes see millions of images, 10M ones included
        plan = choose(data, cpu, _costs(data, cpu, 1.0), 24 * 3600.0)
        assert plan.shape.rank > 0


def test_the_cpu_cifar10_plan_is_the_measured_recipe() -> None:
    """CIFAR-10 on this 2-core CPU in 15 minutes: the quarter-width ResNet-18 on 16-px views of the 32-px
    images, LARS 3.0, temperature 0.1 (configs/cifar10_cpu.yaml), from its measured 0.18 s a step."""
    device = DeviceProfile("cpu", "EPYC", 2, True, 20 * GiB)
    data = DataProfile(50_000, 32, labelled=True)
    candidates = shapes(data, device)
    costs = {s: Cost(0.18 * _flops(s) / _flops(candidates[0]), 3 * GiB) for s in candidates}
    plan = choose(data, device, costs, 15 * 60 * 0.95)
    assert (plan.shape.arch, plan.shape.width, plan.shape.image_size, plan.shape.view_size,
            plan.shape.batch_size) == ("resnet18", 0.25, 32, 16, 256)
    s = plan.settings
    assert (s["optim.name"], s["optim.base_lr"], s["loss.temperature"], s["loss.scale"],
            s["augment.preset"], s["model.cifar_stem"]) == ("lars", 3.0, 0.1, 1.0, "cifar10", True)
    assert 20 <= plan.epochs <= 30 and s["optim.warmup_epochs"] == pytest.approx(plan.epochs / 30, abs=0.01)


def test_a_gpu_gets_the_gpu_recipe_and_large_images_the_papers() -> None:
    h100 = DeviceProfile("cuda", "H100", 16, True, 78 * GiB)
    small = choose(DataProfile(50_000, 32), h100, _costs(DataProfile(50_000, 32), h100, 400.0), 600.0)
    assert small.settings["optim.base_lr"] == 0.4 and small.settings["loss.temperature"] == 0.2
    large_data = DataProfile(1_000_000, 500)
    large = choose(large_data, h100, _costs(large_data, h100, 400.0), 3600.0)
    assert large.shape.image_size <= 224 and large.settings["optim.lr_scaling"] == "sqrt"
    assert large.settings["augment.preset"] == "imagenet" and not large.settings["model.cifar_stem"]


def test_a_cpu_trains_large_images_small() -> None:
    cpu = DeviceProfile("cpu", "EPYC", 2, False, 20 * GiB)
    assert {s.image_size for s in shapes(DataProfile(5_000, 512), cpu)} == {64}


def test_shapes_out_of_memory_are_not_chosen_and_none_fitting_is_an_error() -> None:
    gpu = DeviceProfile("cuda", "small", 4, False, int(3.5 * GiB))
    data = DataProfile(100_000, 224)
    costs = {s: Cost(0.1 * (s.rank + 1), (s.rank + 3) * GiB) for s in shapes(data, gpu)}  # only rank 0 fits
    assert choose(data, gpu, costs, 3600.0).shape.rank == 0
    with pytest.raises(ValueError, match="fits this device's memory"):
        choose(data, gpu, {s: Cost(0.1, 10 * GiB) for s in costs}, 3600.0)


def test_pinned_settings_replace_the_candidates() -> None:
    cpu = DeviceProfile("cpu", "EPYC", 2, False, 20 * GiB)
    data = DataProfile(50_000, 32)
    pinned = pin(shapes(data, cpu), {"model.arch": "resnet18", "train.batch_size": 128})
    assert pinned and all(s.batch_size == 128 for s in pinned)
    assert [s.rank for s in pinned] == list(range(len(pinned)))
    big_views = pin(shapes(data, cpu), {"data.view_size": 96})  # views are cut from 32-px images
    assert {s.view_size for s in big_views} == {32}
    assert pin(shapes(data, cpu), {"data.image_size": 0}) == shapes(data, cpu)  # 0 = auto: not pinned
    timm = pin(shapes(data, cpu), {"model.arch": "timm:convnext_atto", "data.view_size": 32})
    assert {(s.arch, s.width, s.view_size) for s in timm} == {("timm:convnext_atto", 1.0, 32)}  # one left


def test_images_are_held_in_memory_when_they_fit_else_streamed() -> None:
    def plan(shape, epochs: float = 30.0) -> Plan:
        return Plan(shape, {}, 1000, epochs, 600.0)

    cpu = DeviceProfile("cpu", "EPYC", 2, False, 20 * GiB)
    cifar = DataProfile(50_000, 32)
    held, why = hold_in_memory(plan(shapes(cifar, cpu)[0]), cifar, cpu)
    assert held and "146 MiB" in why  # 50,000 x 3 x 32 x 32 bytes
    many = DataProfile(10_000_000, 512)  # trained at 64 px on a CPU: 114 GiB decoded
    held, why = hold_in_memory(plan(shapes(many, cpu)[0]), many, cpu)
    assert not held and "114.4 GiB" in why and "streamed" in why
    big = DeviceProfile("cpu", "EPYC", 2, False, 1024 * GiB)  # it would fit, but the plan sees 0.3 epochs
    held, why = hold_in_memory(plan(shapes(many, big)[0], 0.3), many, big)
    assert not held and "0.3 of an epoch" in why
    h100 = DeviceProfile("cuda", "H100", 16, True, 78 * GiB)
    assert hold_in_memory(plan(shapes(cifar, h100)[0]), cifar, h100)[0]  # small images on the GPU
    held, why = hold_in_memory(plan(shapes(cifar, h100)[0]), cifar, h100, step_bytes=78 * GiB)
    assert not held and "leave no room" in why
    photos = DataProfile(20_000, 300)  # large images stream on a GPU: crops of the whole image
    held, why = hold_in_memory(plan(shapes(photos, h100)[0]), photos, h100)
    assert not held and "the paper's" in why


def test_a_torchvision_vit_trains_on_views_of_its_own_side() -> None:
    cpu = DeviceProfile("cpu", "EPYC", 2, False, 20 * GiB)
    pinned = pin(shapes(DataProfile(50_000, 32), cpu), {"model.arch": "torchvision:vit_b_16"})
    assert {(s.image_size, s.view_size) for s in pinned} == {(32, 32)}


def test_under_the_epoch_cap_the_larger_shape_is_weighed_on_the_whole_budget() -> None:
    cpu = DeviceProfile("cpu", "EPYC", 2, False, 20 * GiB)
    data = DataProfile(500, 32)  # 1 step an epoch: 1,000 epochs take the cheapest shape 10 seconds
    small, large = shapes(data, cpu)[:2]
    plan = choose(data, cpu, {small: Cost(0.01, GiB), large: Cost(10.0, GiB)}, 600.0)
    assert plan.shape == small and plan.epochs == 1000 and plan.settings["train.time_budget"] == 0
    assert "would see 15,360 images (60.0 epochs)" in plan.reasons[-1]  # 600 s / 10 s x 256, not 10 s' worth
