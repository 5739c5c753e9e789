"""CIFAR-10 in a wall-clock budget with lightly's recipe, then kNN top-1 of its h: cifar10_budget.py's protocol.

Trains lightly 1.6's published CIFAR-10 SimCLR recipe (``benchmarks/lightly_recipe.py``: ResNet-18 with the
CIFAR stem, batch 512, SGD, per-image PIL augmentation in DataLoader workers) from a cold start for
``--minutes`` of wall clock: building the dataset, the model and the workers and every step count, and a step
that would end past the budget is not started. lightly's schedule is cosine per epoch over ``max_epochs``
(``--max-epochs``, lightly's 200); where the budget holds less than one epoch, as on a 2-core CPU, the
learning rate stays at its base value. Then it embeds CIFAR-10's 50,000 train and 10,000 test images with the backbone (32 px, ImageNet
normalisation, as lightly's test transform) and scores simclr's kNN classifier (k = 200, T = 0.1, cosine;
bank = the train split; queries = the test split), also for the same network at its random init (the weights
the run started from; ``--no-random-init`` skips it). Prints a Markdown block for BENCHMARKS.md.

Usage: python benchmarks/lightly_budget.py [--minutes 15] [--batch 512] [--workers 2] [--max-epochs 200]
       (lightly is a benchmark-only extra: pip install -e ".[bench]")
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time
from pathlib import Path

import torch
from lightly_recipe import IMAGENET_MEAN, IMAGENET_STD, lightly_recipe, lightly_step  # benchmarks/
from machine import cpu_name  # benchmarks/machine.py
from torch import nn
from tqdm import tqdm

from simclr.data.decode import decode_source
from simclr.data.sources import load_source
from simclr.evaluation.knn import knn_accuracy

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"


def train(args: argparse.Namespace, device: torch.device) -> tuple[nn.Module, nn.Module, dict[str, float]]:
    """The budgeted run: (its trained backbone, the backbone at random init, facts about the run)."""
    budget = args.minutes * 60
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    recipe = lightly_recipe(args.data, args.batch, args.workers, device)
    start = copy.deepcopy(recipe.backbone)
    per_epoch = len(recipe.loader)
    base_lr = recipe.optimizer.param_groups[0]["lr"]
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(recipe.optimizer, T_max=args.max_epochs)
    recipe.model.train()
    steps, loss, views = 0, torch.tensor(float("nan")), []
    bar = tqdm(total=round(budget), desc="lightly", unit="s", file=sys.stderr)
    prev = time.perf_counter() - t0  # the end of the setup, then of each step (its wait for data included)
    done = False
    while not done and steps < args.max_epochs * per_epoch:
        for (x0, x1), _, _ in recipe.loader:
            loss = lightly_step(recipe, x0, x1, device)
            steps += 1
            now = time.perf_counter() - t0
            views.append(2 * args.batch / (now - prev))  # wall clock, the wait for data included
            done, prev = now + (now - prev) > budget, now  # the next step would end past the budget
            bar.update(round(min(now, budget)) - bar.n)
            bar.set_postfix(step=steps, loss=f"{float(loss):.3f}")
            if done:
                break
        else:
            sched.step()  # lightly's cosine steps per epoch (Lightning's default interval)
    bar.close()
    views.sort()
    facts = {"steps": steps, "epochs": steps / per_epoch, "loss": float(loss), "wall": time.perf_counter() - t0,
             "views_s": views[len(views) // 2] if views else 0.0, "base_lr": base_lr,
             "lr": recipe.optimizer.param_groups[0]["lr"], "per_epoch": per_epoch}
    return recipe.backbone, start, facts


@torch.no_grad()
def features(backbone: nn.Module, images: torch.Tensor, batch: int, device: torch.device, desc: str) -> torch.Tensor:
    backbone.eval()
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    out = []
    for chunk in tqdm(images.split(batch), desc=desc, file=sys.stderr):
        x = (chunk.to(device).float() / 255 - mean) / std
        out.append(backbone(x.contiguous(memory_format=torch.channels_last)).float().cpu())
    return torch.cat(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=15.0)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--max-epochs", type=int, default=200, help="lightly's max_epochs (the cosine's length)")
    p.add_argument("--eval-batch", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-random-init", action="store_true")
    p.add_argument("--eval-limit", type=int, default=0, help="score N train and N/5 test images spread "
                   "over each split (a quick rehearsal; 0 = all)")
    args = p.parse_args()
    device = torch.device(args.device)
    load_source(args.data, "all")  # the archive extracted into the cache outside the budget, as cifar10_budget.py
    trained, start, facts = train(args, device)
    splits = {}
    for split in ("train", "test"):
        dec = decode_source(load_source(args.data, split), 32, workers=args.workers)
        n = args.eval_limit // (1 if split == "train" else 5) if args.eval_limit else len(dec.labels)
        keep = torch.linspace(0, len(dec.labels) - 1, min(n, len(dec.labels))).long()  # spread over the classes
        splits[split] = (dec.images[keep], dec.labels[keep])
    (bank_x, bank_y), (query_x, query_y) = splits["train"], splits["test"]
    rows = []
    nets = [("learned h", trained)] + ([] if args.no_random_init else [("random-init encoder", start)])
    for name, net in nets:
        t = time.perf_counter()
        bank = features(net, bank_x, args.eval_batch, device, f"{name}: train")
        queries = features(net, query_x, args.eval_batch, device, f"{name}: test")
        acc = knn_accuracy(bank, bank_y, queries, query_y, 10, k=200, temperature=0.1)
        rows.append((name, bank.shape[1], acc["top1"], acc["top5"], time.perf_counter() - t))
    cmd = f"python benchmarks/lightly_budget.py --minutes {args.minutes:g} --batch {args.batch} " \
          f"--workers {args.workers} --max-epochs {args.max_epochs}"
    schedule = (f"constant: the cosine over {args.max_epochs} epochs steps at epoch ends, and the run did not "
                f"finish its first" if facts["steps"] < facts["per_epoch"] else
                f"cosine over {args.max_epochs} epochs, {facts['lr']:g} at the end")
    print(f"\n### CIFAR-10, {args.minutes:g}-minute budget, lightly 1.6's recipe\n")
    print(f"- machine: {cpu_name()}, {os.cpu_count()} cores; torch {torch.__version__}; device {args.device}")
    print(f"- command: `{cmd}`")
    print(f"- recipe: ResNet-18 (CIFAR stem) x1, 32-px views, batch {args.batch}, SGD lr {facts['base_lr']:g} "
          f"({schedule}), NT-Xent T=0.5, {args.workers} DataLoader workers, fp32")
    print(f"- pretraining: {facts['steps']} steps ({facts['epochs']:.3f} epochs), wall {facts['wall'] / 60:.2f} "
          f"min incl. setup; median {facts['views_s']:.1f} views/s (wall clock, data included); final loss "
          f"{facts['loss']:.3f}")
    print(f"- evaluated on {len(bank_y)} bank and {len(query_y)} query images\n")
    print("| features | dim | kNN top-1 | kNN top-5 | eval time |\n|---|---|---|---|---|")
    for name, dim, top1, top5, secs in rows:
        print(f"| {name} | {dim} | {100 * top1:.2f}% | {100 * top5:.2f}% | {secs:.0f} s |")
    return 0 if all(math.isfinite(r[2]) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
