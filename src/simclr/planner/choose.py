"""The planner's decisions as pure functions of what was measured: the candidate shapes for a dataset on a
device, and the choice among them given each one's measured cost and the time budget.

The rules follow the measurements of BENCHMARKS.md ("How the recipe was chosen"): at equal compute, a
quarter-width ResNet-18 with the CIFAR stem on views of half the image side matched or beat wider networks and
larger views for CIFAR-10 on a CPU, and more epochs of the small shape beat fewer of a larger one; on a GPU
the full-width ResNet-18 at the image side (configs/cifar10_gpu.yaml) reached 77.7% in 7.25 minutes. So the
plan takes the cheapest shape unless the budget lets a larger one see enough images (:func:`worth_it`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

MIN_SAMPLES = 2_000_000
"""A larger shape is chosen only when the budget lets it see this many images (40 epochs of CIFAR-10's 50,000:
the CPU recipe sees ~1.5M in 15 minutes and beat larger shapes that saw fewer). Counted in images, not epochs,
so that a dataset of 10M images is not held to 400M (it would never leave the cheapest shape) ..."""
MIN_REPEATS = 400
"""... nor one of 500 images to 4,000 epochs: a larger shape that gets this many epochs is worth it too."""
MAX_EPOCHS = 1000
"""A budget that would buy more epochs than this (the longest CIFAR-10 runs of the paper's Appendix B.9) is
not used up: the plan does this many and ends early."""
NO_BUDGET_EPOCHS = 100
"""Epochs of a plan without a time budget (the paper's shortest schedules are 100 epochs)."""
REASONABLE_HOURS = 24.0
"""A plan without a budget that would take longer says so and offers ``--time-budget``."""
SMALL_SIDE = 64
"""Images of this side or less are trained at their own side, with the CIFAR stem (Appendix B.9)."""
CPU_TRAIN_SIDE = 64
"""Larger images are trained at this side on a CPU (a CPU cannot afford 224-px views in hours)."""
GPU_TRAIN_SIDE = 224


@dataclass(frozen=True)
class DataProfile:
    """What the planner knows of the images: how many, their native side, whether they have labels."""

    images: int
    side: int
    labelled: bool = False


@dataclass(frozen=True)
class DeviceProfile:
    """Where the run goes: ``kind`` cpu or cuda, ``name`` (CPU model or GPU name), ``cores``, ``fast_bf16``
    (the CPU has bf16 matrix units, or the GPU bf16), ``memory`` (bytes available), ``count`` (processes /
    GPUs under torchrun)."""

    kind: str
    name: str
    cores: int
    fast_bf16: bool
    memory: int
    count: int = 1

    def describe(self) -> str:
        if self.kind == "cpu":
            return f"{self.cores}-core CPU{' with bf16 units' if self.fast_bf16 else ''} ({self.name})"
        many = f"{self.count} x " if self.count > 1 else ""
        return f"{many}{self.name} ({self.memory / 2**30:.0f} GiB)"


@dataclass(frozen=True, order=True)
class Shape:
    """One candidate: the network (``arch`` at ``width``), the side images are trained at and the views'
    side, the batch size (over all processes). Ordered from the cheapest by construction (:func:`shapes`)."""

    rank: int
    arch: str
    width: float
    image_size: int
    view_size: int
    batch_size: int

    def describe(self) -> str:
        width = f" x{self.width:g}" if self.width != 1.0 else ""
        return (f"{self.arch}{width}, {self.view_size}-px views of {self.image_size}-px images, "
                f"batch {self.batch_size}")


def fitted_batch(batch: int, images: int) -> int:
    """``batch``, or the largest power of two the dataset fills (at least 2)."""
    return batch if images >= batch else max(2, 1 << (max(images, 2).bit_length() - 1))


def shapes(data: DataProfile, device: DeviceProfile) -> list[Shape]:
    """The candidate shapes for ``data`` on ``device``, cheapest first (batches the dataset can fill)."""
    return [dataclasses.replace(s, batch_size=fitted_batch(s.batch_size, data.images))
            for s in _shapes(data, device)]


def _shapes(data: DataProfile, device: DeviceProfile) -> list[Shape]:
    small = data.side <= SMALL_SIDE
    if device.kind == "cpu":
        side = data.side if small else CPU_TRAIN_SIDE
        grid = [(0.25, side // 2), (0.25, 3 * side // 4), (0.25, side), (0.5, side), (1.0, side)]
        return [Shape(i, "resnet18", w, side, max(v, 8), 256) for i, (w, v) in enumerate(grid)]
    batch = 512 * device.count
    if small:
        nets = [("resnet18", 0.5), ("resnet18", 1.0), ("resnet50", 1.0)]
        return [Shape(i, a, w, data.side, data.side, batch) for i, (a, w) in enumerate(nets)]
    side = min(data.side, GPU_TRAIN_SIDE)
    return [Shape(0, "resnet18", 1.0, side // 2, side // 2, 256 * device.count),
            Shape(1, "resnet18", 1.0, side, side, 256 * device.count),
            Shape(2, "resnet50", 1.0, side, side, 256 * device.count)]


PINNABLE = {"model.arch": "arch", "model.width": "width", "data.image_size": "image_size",
            "data.view_size": "view_size", "train.batch_size": "batch_size"}
"""Settings of a shape the user may give (``--arch``, ``--batch-size``, ``--set``): the plan keeps them."""


def pin(candidates: list[Shape], pinned: dict[str, Any]) -> list[Shape]:
    """``candidates`` with the user's settings of :data:`PINNABLE` in place of theirs (a timm or torchvision
    network has width 1; a view side 0 is the image side), duplicates dropped, cheapest first."""
    out: list[Shape] = []
    for shape in candidates:
        fields = {attr: pinned[key] for key, attr in PINNABLE.items()
                  if key in pinned and not (attr in ("image_size", "view_size") and not pinned[key])}
        if ":" in str(fields.get("arch", shape.arch)):
            fields["width"] = 1.0
        new = dataclasses.replace(shape, **fields)
        if "data.image_size" in pinned and "data.view_size" not in pinned:
            new = dataclasses.replace(new, view_size=min(new.view_size, new.image_size))
        if new.view_size == 0 or new.view_size > new.image_size:  # views are cut from the images
            new = dataclasses.replace(new, view_size=new.image_size)
        if new.arch.startswith("torchvision:vit") and not pinned.get("data.view_size"):  # its side only
            new = dataclasses.replace(new, view_size=new.image_size)
        if all((n.arch, n.width, n.image_size, n.view_size, n.batch_size)
               != (new.arch, new.width, new.image_size, new.view_size, new.batch_size) for n in out):
            out.append(dataclasses.replace(new, rank=len(out)))
    return out


@dataclass(frozen=True)
class Cost:
    """A shape's measured cost: seconds per training step (of its batch) and the bytes a step keeps."""

    step_s: float
    memory: int


@dataclass
class Plan:
    """The chosen recipe: ``settings`` (config keys to values, as ``--set`` takes them), the ``shape``,
    ``steps`` and ``epochs`` it predicts, ``seconds`` it should take, and ``reasons``."""

    shape: Shape
    settings: dict[str, Any]
    steps: int
    epochs: float
    seconds: float
    reasons: list[str] = field(default_factory=list)
    fits: bool = True


def steps_in(seconds: float, cost: Cost) -> int:
    return max(1, int(seconds / cost.step_s))


def needed_samples(data: DataProfile) -> int:
    """Images a larger shape must see to be chosen: :data:`MIN_SAMPLES`, or :data:`MIN_REPEATS` epochs of a
    small dataset."""
    return min(MIN_SAMPLES, MIN_REPEATS * data.images)


def worth_it(shape: Shape, steps: int, data: DataProfile) -> bool:
    """Whether ``steps`` of ``shape`` see enough images (:func:`needed_samples`) for it to beat more steps of
    a cheaper shape."""
    return steps * shape.batch_size >= needed_samples(data)


def choose(data: DataProfile, device: DeviceProfile, costs: dict[Shape, Cost],
           budget_s: float | None) -> Plan:
    """The plan for ``data`` on ``device`` from the measured ``costs`` of the candidate shapes (those missing
    were not measured: too slow or out of memory) within ``budget_s`` seconds of training (None: no budget).

    Raises:
        ValueError: no shape was measured.
    """
    fitting = sorted(s for s, c in costs.items() if c.memory <= device.memory)
    if not fitting:
        raise ValueError("no candidate shape fits this device's memory")
    per_epoch = {s: max(1, data.images // s.batch_size) for s in fitting}
    if budget_s is None:
        return _no_budget(data, device, costs, fitting, per_epoch)
    epochs = {s: steps_in(budget_s, costs[s]) / per_epoch[s] for s in fitting}
    given_s = budget_s
    chosen = fitting[0]
    for shape in fitting[1:]:
        if worth_it(shape, steps_in(budget_s, costs[shape]), data):
            chosen = shape
    steps, got = steps_in(budget_s, costs[chosen]), epochs[chosen]
    reasons = [(f"measured {costs[chosen].step_s:.3g} s a step: {steps:,} steps ({got:.1f} epochs) fit "
               f"{budget_s / 60:.3g} minutes")]
    if got > MAX_EPOCHS:
        steps, got = MAX_EPOCHS * per_epoch[chosen], float(MAX_EPOCHS)
        budget_s = steps * costs[chosen].step_s
        reasons = [(f"measured {costs[chosen].step_s:.3g} s a step: {MAX_EPOCHS} epochs ({steps:,} steps) "
                    f"take {duration(budget_s)}, less than the budget: the run ends then")]
    larger = [s for s in fitting if s > chosen]
    if larger:
        seen = steps_in(given_s, costs[larger[0]]) * larger[0].batch_size
        reasons.append(f"a larger shape ({larger[0].describe()}) would see {_count(seen)} images "
                       f"({epochs[larger[0]]:.1f} epochs), fewer than the {_count(needed_samples(data))} "
                       "that make it worth more than steps of this one")
    plan = Plan(chosen, recipe_settings(chosen, data, device, got), steps, got, budget_s, reasons)
    if got == MAX_EPOCHS:
        plan.settings["train.time_budget"] = 0  # its epochs, not the budget: the run ends after them
    return plan


def _no_budget(data: DataProfile, device: DeviceProfile, costs: dict[Shape, Cost], fitting: list[Shape],
               per_epoch: dict[Shape, int]) -> Plan:
    """:data:`NO_BUDGET_EPOCHS` epochs of the largest shape that does them in :data:`REASONABLE_HOURS`, else
    of the cheapest, saying how long."""
    hours = {s: NO_BUDGET_EPOCHS * per_epoch[s] * costs[s].step_s / 3600 for s in fitting}
    within = [s for s in fitting if hours[s] <= REASONABLE_HOURS]
    chosen = within[-1] if within else fitting[0]
    steps = NO_BUDGET_EPOCHS * per_epoch[chosen]
    took = duration(hours[chosen] * 3600)
    reasons = [(f"no time budget: {NO_BUDGET_EPOCHS} epochs ({steps:,} steps at a measured "
               f"{costs[chosen].step_s:.3g} s) take about {took}")]
    if not within:
        reasons.append(f"that is more than {REASONABLE_HOURS:g} hours on this machine: pass --time-budget "
                       "MINUTES for a plan that fits the time you have")
    elif hours[chosen] >= 1:
        reasons.append("--time-budget MINUTES plans a shorter run for the time you have")
    return Plan(chosen, recipe_settings(chosen, data, device, NO_BUDGET_EPOCHS), steps, NO_BUDGET_EPOCHS,
                hours[chosen] * 3600, reasons, fits=bool(within))


def _count(n: int) -> str:
    return f"{n / 1e6:.3g}M" if n >= 1_000_000 else f"{n:,}"


MEMORY_SHARE = 0.25
"""Decoded images are held in memory when they take at most this share of the device's memory."""


def hold_in_memory(plan: Plan, data: DataProfile, device: DeviceProfile,
                   step_bytes: int = 0) -> tuple[bool, str]:
    """Whether the run decodes its images once and keeps them in memory at the training side (augmented there
    batch by batch) or streams them from their files (decoded and augmented in worker processes every step),
    and why. Large images on a GPU stream, as the paper's random crops of the full image; so does a plan that
    sees less than one epoch (decoding every image first would spend the budget on images it never uses);
    anything else is held when it takes at most :data:`MEMORY_SHARE` of the memory and leaves room for the
    step (``step_bytes``), since decoding every step on a CPU's few cores costs more than the step of the
    small shapes it trains."""
    side = plan.shape.image_size
    decoded = data.images * 3 * side**2
    where = "GPU memory" if device.kind == "cuda" else "memory"
    if device.kind == "cuda" and data.side > SMALL_SIDE:
        return False, (f"images streamed from their files, each view a random crop of the whole image (the "
                       f"paper's); held decoded at {side} px they would take {_bytes(decoded)}")
    if plan.epochs < 1:
        return False, (f"images streamed from their files: the plan sees {plan.epochs:.2g} of an epoch, so "
                       "decoding all of them first would spend the budget on images it never uses")
    if decoded <= MEMORY_SHARE * device.memory and decoded + step_bytes <= device.memory:
        return True, (f"images decoded once at {side} px and held in {where} ({_bytes(decoded)}), "
                      "augmented there batch by batch")
    if decoded <= MEMORY_SHARE * device.memory:
        return False, (f"images streamed from their files: decoded at {side} px they would take "
                       f"{_bytes(decoded)}, for which the step's {_bytes(step_bytes)} leave no room")
    return False, (f"images streamed from their files: decoded at {side} px they would take "
                   f"{_bytes(decoded)}, more than {MEMORY_SHARE:.0%} of the {_bytes(device.memory)} free")


def _bytes(n: float) -> str:
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    return f"{n / 2**20:.0f} MiB" if n >= 10 * 2**20 else f"{n / 2**20:.2g} MiB"


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} seconds"
    if seconds < 5400:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.1f} hours"


def warmup_for(epochs: float) -> float:
    """The warm-up of a run of ``epochs``: a thirtieth of it (the CPU recipe's 1 of ~30), 10 from 100 epochs
    on (the paper's)."""
    return 10.0 if epochs >= 100 else round(min(10.0, epochs / 30), 4)


def recipe_settings(shape: Shape, data: DataProfile, device: DeviceProfile, epochs: float) -> dict[str, Any]:
    """The config settings of ``shape``'s recipe: the network, sides and batch, and the loss, optimiser and
    augmentation measured with it (configs/cifar10_cpu.yaml on a CPU, configs/cifar10_gpu.yaml for small
    images on a GPU, the paper's ImageNet settings with square-root scaling (Appendix B.1) for large ones)."""
    small_images = shape.image_size <= SMALL_SIDE
    settings: dict[str, Any] = {
        "model.arch": shape.arch, "model.width": shape.width, "model.cifar_stem": small_images,
        "data.image_size": shape.image_size,
        "data.view_size": shape.view_size if shape.view_size != shape.image_size else 0,
        "train.batch_size": shape.batch_size, "train.epochs": round(max(epochs, 0.01), 2),
        "augment.preset": "cifar10" if small_images else "imagenet",
        "optim.name": "lars", "optim.lr_scaling": "linear", "optim.weight_decay": 1e-5, "loss.scale": 1.0,
    }
    if device.kind == "cpu":
        settings.update({"loss.temperature": 0.1, "optim.base_lr": 3.0, "model.head.out_dim": 128})
    elif small_images:
        settings.update({"loss.temperature": 0.2, "optim.base_lr": 0.4, "model.head.hidden_dim": 2048})
    else:
        settings.update({"loss.temperature": 0.1, "optim.base_lr": 0.075, "optim.lr_scaling": "sqrt",
                         "optim.weight_decay": 1e-6})
    # the warm-up: the CPU recipe's 1 epoch of ~30, the paper's 10 of 100 or more
    settings["optim.warmup_epochs"] = warmup_for(epochs)
    return settings
