"""What the ``simclr`` commands print without ``--json``: their results as text."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def pretrain_text(result: Any) -> str:
    """The last line of ``simclr pretrain``, from its :class:`~simclr.training.loop.PretrainResult`."""
    loss = "" if math.isnan(result.loss) else f", last loss {result.loss:.4f}"  # nan: nothing left to run
    return (f"done: {result.step}/{result.total_steps} steps, {round(result.passes, 2):g} epochs{loss}; run "
            f"folder {result.run_dir}")


def _finetune_text(result: dict[str, Any]) -> str:
    asked, share = result["label_fraction"], result["labelled_share"]
    text = (f"finetune ({result['labelled_images']} labelled images, {100 * share:.3g}% of the train split"
            + (f"; {100 * asked:g}% asked, at least one per class" if share > 1.5 * asked else "")
            + f", {result['epochs']} epochs): "
            f"top-1 {100 * result['top1']:.2f}%  top-5 {100 * result['top5']:.2f}%")
    if "baseline_top1" in result:
        text += f"; from scratch: top-1 {100 * result['baseline_top1']:.2f}%"
    return text


def _transfer_text(result: dict[str, Any], data: str) -> str:
    metric = result["paper_metric"]
    what = {"mean_class_top1": "mean per-class top-1 (the paper's metric for it)",
            "map11": "11-point mAP (the paper's metric for it)"}.get(metric, "top-1")
    text = (f"transfer to {data}, {what}: linear {100 * result[f'linear_{metric}']:.2f}%, fine-tuned "
            f"{100 * result[f'finetune_{metric}']:.2f}%, from scratch "
            f"{100 * result[f'scratch_{metric}']:.2f}%")
    if "finetune_grid" in result:
        text += "; picked on held-out images: " + ", ".join(
            f"{title} lr {result[f'{name}_lr']:g} weight decay {result[f'{name}_weight_decay']:g}"
            for name, title in (("finetune", "fine-tuning"), ("scratch", "from scratch")))
    return text


def eval_text(protocol: str, result: dict[str, Any], data: str) -> str:
    """What ``simclr eval PROTOCOL`` prints without --json: ``result`` is ``simclr.evaluate``'s for the
    dataset ``data``."""
    from simclr.evaluation.compare import format_table
    from simclr.evaluation.probe import format_probe

    if protocol == "compare":
        return format_table(result["rows"])
    if protocol == "probe":
        return format_probe(result["rows"])
    if protocol == "finetune":
        return _finetune_text(result)
    if protocol == "transfer":
        return _transfer_text(result, data)
    scores = f"11-point mAP {100 * result['map11']:.2f}%" if "map11" in result else \
        f"top-1 {100 * result['top1']:.2f}%  top-5 {100 * result['top5']:.2f}%"
    return f"{protocol}: {scores}  ({result['train_images']} train / {result['test_images']} test images)"


def export_text(info: dict[str, Any]) -> str:
    """``simclr export``'s line, from what ``simclr.export_weights`` returned."""
    return (f"wrote {info['arch']} ({info['features']}-dimensional h, {info['tensors']} tensors) to "
            f"{info['out']} in the {info['format']} format; load it with:\n  {info['load']}")


def import_text(info: dict[str, Any]) -> str:
    """``simclr import``'s lines, from what ``simclr.import_weights`` returned."""
    stem = "CIFAR stem" if info["cifar_stem"] else "ImageNet stem"
    stem += ", ImageNet input standardisation" if info["input_norm"] == "imagenet" else ""
    width = f" width {info['width']:g}," if info["width"] != 1 else ""
    return (f"imported {info['arch']} ({stem},{width} {info['features']}-dimensional h, "
            f"{info['tensors']} tensors; {info['ignored']} others left out) to {info['out']}; its "
            "projection head is untrained, so use h, e.g.:\n"
            f"  simclr eval linear --checkpoint {info['out']} --data DATA")


def embed_text(index: Any, out: Path, update: bool) -> str:
    """``simclr embed``'s line, from ``simclr.embed``'s :class:`~simclr.api.EmbedResult`."""
    skipped = ""
    if index.skipped:
        (path, why), more = index.skipped[0], len(index.skipped) - 1
        skipped = (f" ({len(index.skipped)} unreadable images skipped: {path} ({why})"
                   + (f" and {more} more" if more else "") + ")")
    dim = index.dim  # not index.h: a collection's vectors stay on disk
    if update and index.updated and not index.fresh:
        return (f"updated {out}: {len(index)} embeddings of dim {dim}; {index.reused} unchanged kept, "
                f"{index.embedded} new or changed embedded, {index.dropped} gone or changed dropped"
                + skipped)
    return f"wrote {len(index)} embeddings of dim {dim} to {out}" + skipped


def ablate_text(done: Any) -> str:
    """``simclr ablate``'s lines, from ``simclr.ablate``'s :class:`~simclr.api.Ablation`."""
    result = done.result
    lines = [f"{c.verdict}: {c.claim} ({c.detail})" + (f"; {c.caveat}" if c.caveat else "")
             for c in result.checks]
    lines.append(f"{len(result.rows)}/{len(result.study.cells)} cells done; report {done.report}, plot "
                 f"{done.plot}, table {done.table}")
    return "\n".join(lines)


def ablate_json(done: Any) -> dict[str, Any]:
    """``simclr ablate --json``'s object."""
    result = done.result
    return {"study": result.study.name, "rows": result.rows, "missing": result.missing,
            "checks": [{**c._asdict(), "verdict": c.verdict} for c in result.checks],
            "report": str(done.report)}
