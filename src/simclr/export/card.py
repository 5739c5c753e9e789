"""The model card (README.md) of an exported folder: the data, the training, the figures the run recorded, the
preprocessing and how to load it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from simclr.errors import is_number
from simclr.runtime.metrics import read_metrics

EVAL_KEYS = ("knn_top1", "knn_top5")
"""The evaluation figures a run's metrics.jsonl records (the kNN monitor, ``train.knn_every``)."""


def run_evaluations(checkpoint: Path, step: int | None = None) -> list[dict[str, Any]]:
    """The rows of the run's ``metrics.jsonl`` (beside ``checkpoint``) that hold evaluation figures, oldest
    first, up to ``step`` (the checkpoint's: an earlier epoch's checkpoint is not credited with later
    figures); [] when there is none or it cannot be read."""
    try:
        records = read_metrics(checkpoint.parent / "metrics.jsonl")
    except (OSError, UnicodeDecodeError):
        return []
    return [{k: row[k] for k in ("epoch", "step", *EVAL_KEYS) if k in row} for row in records
            if isinstance(row, dict) and any(is_number(row.get(k)) for k in EVAL_KEYS)
            and (step is None or not is_number(row.get("step")) or row["step"] <= step)]


def evaluation_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The last and the best kNN figures of :func:`run_evaluations`' rows ({} when there are none)."""
    scored = [r for r in rows if is_number(r.get("knn_top1"))]
    if not scored:
        return {}
    return {"knn_monitor": {"last": scored[-1], "best": max(scored, key=lambda r: r["knn_top1"]),
                            "rows": len(scored)}}


def _figures(summary: dict[str, Any], config: dict[str, Any]) -> list[str]:
    knn = summary.get("knn_monitor")
    if not knn:
        return [("None recorded (the run's folder has no metrics.jsonl rows with kNN figures: "
                 "`train.knn_every` was 0, or the checkpoint was not a run's).")]

    def row(r: dict[str, Any]) -> str:
        top5 = f", top-5 {r['knn_top5']:.4f}" if is_number(r.get("knn_top5")) else ""
        when = f"after epoch {r.get('epoch', '?')} (step {r.get('step', '?')})"
        return f"top-1 {r['knn_top1']:.4f}{top5} {when}"

    t = config["train"]
    return [(f"kNN monitor on the data's test split (k = {t['knn_k']}, temperature {t['knn_temperature']}; "
             f"{knn['rows']} evaluations recorded):"),
            f"- last: {row(knn['last'])}", f"- best: {row(knn['best'])}"]


def _network(meta: dict[str, Any]) -> list[str]:
    m, head = meta["model"], meta["simclr_config"]["model"]["head"]
    stem = "off"
    if m["small_image_option"]:
        stem = "on" + (f" ({m['stem_change']})" if m.get("stem_change") else "")
    width = f" at width {m['width']:g}" if m["library"] == "simclr" else ""
    own = f"; the {m['library']} model's own under `encoder.model.`" if m["library"] != "simclr" else ""
    return [(f"- f: `{m['arch']}`{width}; small-image option (CIFAR stem) {stem}; input standardisation "
             f"`{m['input_norm']}`; h has {m['num_features']} features."),
            f"- g (projection head): {json.dumps(head)}; z has {m['projection_dim']} features.",
            ("- `model.safetensors`: f's tensors under `encoder.`, g's under `head.` (the state dict of "
             f"simclr's `SimCLRNet`){own}.")]


def _training(meta: dict[str, Any]) -> list[str]:
    c, done = meta["simclr_config"], meta["training"]
    d, t, o, lo = c["data"], c["train"], c["optim"], c["loss"]
    progress = f"{done['step']} steps, {done['epoch']} epochs done" if "step" in done \
        else f"steps and epochs done: not recorded ({done.get('note', 'not a run checkpoint')})"
    spec = os.path.basename(d["spec"].rstrip("/")) if os.path.isabs(d["spec"]) else d["spec"]  # no local path
    return [(f"- data: `{spec or 'not recorded'}`, images at {d['image_size']} px (training views at "
             f"{d['view_size'] or d['image_size']} px; augmentation: config.json's simclr_config.augment)."),
            f"- {t['epochs']:g} epochs planned at batch size {t['batch_size']}; {progress}.",
            (f"- optimiser {o['name']} (base learning rate {o['base_lr']:g}, {o['lr_scaling']} scaling, "
             f"weight decay {o['weight_decay']:g}, {o['warmup_epochs']:g} warm-up epochs); "
             f"loss {lo['name']} at temperature {lo['temperature']:g}; precision {t['precision']}; "
             f"seed {t['seed']}.")]


def _preprocessing(meta: dict[str, Any]) -> str:
    pre = meta["preprocessing"]
    why = "f standardises its input with ImageNet's mean and deviation itself" \
        if meta["model"]["input_norm"] == "imagenet" else "the network takes pixels in [0, 1] as they are"
    return (f"RGB, values in [0, 1]; resize the shorter side to {pre['resize_shorter_side']} px (bicubic), "
            f"centre-crop {pre['center_crop']} x {pre['center_crop']}; mean {pre['mean']}, std {pre['std']} "
            f"(identity: {why}). Input [B, 3, S, S] float32, NCHW.")


OWN_NETWORK = ("import safetensors.torch; state = safetensors.torch.load_file('model.safetensors')\n"
               "# simclr's own network: simclr.models.simclr.SimCLRNet(...).load_state_dict(state)")


def model_card(meta: dict[str, Any], load: str, plain: str | None) -> str:
    """README.md of the folder whose ``config.json`` is ``meta``; ``load`` and ``plain`` load it with simclr
    and without it."""
    m = meta["model"]
    lines = [
        f"# {m['arch']} encoder trained with SimCLR", "",
        (f"Exported by simclr {meta['versions']['simclr']} (`simclr export --format safetensors`) from "
         f"`{meta['source']}`."), "",
        "## Network", "", *_network(meta),
        "", "## Data and training", "", *_training(meta),
        "", "## Evaluation", "", *_figures(meta["evaluation"], meta["simclr_config"]),
        "", "## Preprocessing", "", _preprocessing(meta),
        "", "## Loading", "", "With simclr (images, PIL images or tensors in; h or z out):", "", "```python",
        load, f"h = enc(['image.jpg'])  # [1, {m['num_features']}]", "```", "",
        "Without simclr, with safetensors and torch:", "", "```python", plain or OWN_NETWORK, "```", ""]
    return "\n".join(lines)
