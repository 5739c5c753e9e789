"""``simclr eval compare``: kNN (and linear) accuracy of raw pixels, a random-init encoder and the learned h
on the same splits, and its table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from simclr.build import build_model
from simclr.evaluation.features import Encode, raw_pixels
from simclr.evaluation.frozen import FeaturePair
from simclr.evaluation.learned import load_learned
from simclr.evaluation.setup import EvalSetup
from simclr.evaluation.splits import EvalData


def compare(checkpoint: str | Path, setup: EvalSetup, k: int = 200, temperature: float = 0.1,
            linear: bool = True) -> list[dict[str, Any]]:
    """kNN (and linear) accuracy of raw pixels, a random-init encoder and the learned h, on the same split."""
    learned = load_learned(checkpoint, setup)
    config = learned.config
    data = EvalData(config, setup)
    torch.manual_seed(config.train.seed)
    random_model = build_model(config).to(learned.device)
    encoders: tuple[tuple[str, Encode], ...] = (("raw pixels", raw_pixels),
                                                ("random-init encoder", learned.encoder(random_model)),
                                                ("learned h", learned.encoder()))
    rows = []
    for name, encode in encoders:
        pair = FeaturePair(encode, data, label=name)
        knn = pair.knn(k, temperature)
        lin = pair.linear(config.train.seed) if linear else {"top1": float("nan"), "top5": float("nan")}
        rows.append({"features": name, "dim": int(pair.train.h.shape[1]), "knn_top1": knn["top1"],
                     "knn_top5": knn["top5"], "linear_top1": lin["top1"], "linear_top5": lin["top5"]})
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of ``compare`` rows (accuracies in percent)."""
    head = (f"{'features':<22}{'dim':>7}{'kNN top-1':>11}{'kNN top-5':>11}{'linear top-1':>14}"
            f"{'linear top-5':>14}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['features']:<22}{r['dim']:>7}{100 * r['knn_top1']:>10.2f}%"
                     f"{100 * r['knn_top5']:>10.2f}%{100 * r['linear_top1']:>13.2f}%"
                     f"{100 * r['linear_top5']:>13.2f}%")
    return "\n".join(lines)
