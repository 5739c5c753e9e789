"""The plans an NVIDIA H100 (80 GiB) would get from `simclr pretrain` with no config, stated without a GPU.

The planner measures each candidate shape's step on the GPU it runs on; without one lent, this script gives
the planner's own choice (simclr.planner.choose) the step times *estimated* from the one H100 figure measured
(BENCHMARKS.md, "Throughput on an NVIDIA H100": 74,037 views/s for the full-width ResNet-18 with the CIFAR
stem at 32 px, bf16, batch 512), scaled by each shape's counted FLOPs per view (forward and backward,
torch.utils.flop_counter on the meta device), and memory from the planner's own estimate. Real steps of
smaller networks run further from the peak than that, so the estimates favour them; the measured plans are
owed (BENCHMARKS.md, "Still owed").

Usage: python benchmarks/planned_gpu.py
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from simclr.build import build_model
from simclr.config_io import load_config
from simclr.planner.choose import Cost, DataProfile, DeviceProfile, Plan, choose, hold_in_memory, shapes
from simclr.planner.plan import render
from simclr.planner.trials import shape_config
from simclr.runtime.memory import step_memory

H100 = DeviceProfile("cuda", "NVIDIA H100 80GB HBM3", 16, True, 78 * 2**30)
MEASURED_VIEWS_PER_S = 74_037.0  # full-width ResNet-18, CIFAR stem, 32 px, bf16 (BENCHMARKS.md)


def flops_per_view(config) -> float:
    side = config.data.view_size or config.data.image_size
    with torch.device("meta"):
        net = build_model(config).train()
    x = torch.empty(4, 3, side, side, device="meta")
    with FlopCounterMode(display=False) as counter:
        out = net(x)
        (out.h.sum() + out.z.sum()).backward()
    return counter.get_total_flops() / 4


def estimated_costs(data: DataProfile) -> dict:
    base = load_config(None, [])
    anchor = load_config(None, ["model.arch=resnet18", "model.cifar_stem=true", "data.image_size=32"])
    rate = MEASURED_VIEWS_PER_S * flops_per_view(anchor)  # FLOP/s the measured step reached
    costs = {}
    for shape in shapes(data, H100):
        config = shape_config(base, shape, data, H100)
        side = config.data.view_size or config.data.image_size
        mem = step_memory(lambda c=config: build_model(c), side, True)
        costs[shape] = Cost(2 * shape.batch_size * flops_per_view(config) / rate,
                            mem.fixed + mem.per_view * 2 * shape.batch_size)
    return costs


def main() -> int:
    cases = [("CIFAR-10", DataProfile(50_000, 32, True)),
             ("ImageNet-sized photo folder", DataProfile(1_281_167, 400, False))]
    print("\n### The plans an H100 would get (estimated step times; measured figures owed)\n")
    for name, data in cases:
        costs = estimated_costs(data)
        print(f"#### {name}: {data.images:,} images of {data.side} px\n")
        print("| shape | estimated s a step | estimated memory |\n|---|---|---|")
        for shape, cost in costs.items():
            print(f"| {shape.describe()} | {cost.step_s:.4f} | {cost.memory / 2**30:.1f} GiB |")
        for minutes in (15, 60, None):
            plan: Plan = choose(data, H100, costs, None if minutes is None else minutes * 60 * 0.95)
            _, why = hold_in_memory(plan, data, H100, costs[plan.shape].memory)
            facts = {"data": data, "device": H100, "trial_s": 0.0,
                     "budget_s": None if minutes is None else minutes * 60.0,
                     "precision": "bf16 autocast, which this GPU runs natively", "memory": why}
            print("\n```\n" + render(plan, facts, {}).replace("trial steps took 0 s",
                                                             "step times estimated, not measured")
                  + "\n```")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
