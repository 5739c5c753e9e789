"""A study's report: results.csv, a Markdown page with the paper's numbers beside ours, and a PNG plot beside
it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from simclr.ablation.runner import StudyResult
from simclr.ablation.studies import Study
from simclr.errors import missing_extra
from simclr.files import atomic_file, atomic_write_text
from simclr.tables import write_csv

__all__ = ["write_csv", "write_plot", "write_report"]

Row = dict[str, Any]


def _value(r: Row, key: str) -> float:
    v = r.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def _heatmap(ax: Any, study: Study, rows: list[Row], key: str, title: str) -> None:
    import numpy as np

    rk, ck = study.axes
    labels = list(dict.fromkeys(c.params[rk] for c in study.cells))
    grid = np.full((len(labels), len(labels)), np.nan)
    for r in rows:
        grid[labels.index(r[rk]), labels.index(r[ck])] = _value(r, key)
    ax.imshow(np.ma.masked_invalid(grid), cmap="Greens")
    for i in range(len(labels)):
        for j in range(len(labels)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel(f"2nd transformation ({ck})")
    ax.set_ylabel(f"1st transformation ({rk})")
    ax.set_title(title)


def _bars(ax: Any, rows: list[Row], keys: list[tuple[str, str]], title: str) -> None:
    width = 0.8 / len(keys)
    for n, (key, label) in enumerate(keys):
        err = [_value(r, key + "_std") if key + "_std" in r else 0.0 for r in rows]
        ax.bar([i + n * width for i in range(len(rows))], [_value(r, key) for r in rows], width, label=label,
               yerr=err if any(err) else None, capsize=2)
    ax.set_xticks([i + width * (len(keys) - 1) / 2 for i in range(len(rows))], [r["cell"] for r in rows],
                  rotation=30, ha="right")
    ax.set_ylabel("top-1 (%)")
    ax.set_title(title)
    if len(keys) > 1:
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncols=len(keys), frameon=False)


def _lines(ax: Any, study: Study, rows: list[Row]) -> None:
    xk, gk = study.axes
    for group in dict.fromkeys(r[gk] for r in rows):
        line = sorted((r for r in rows if r[gk] == group), key=lambda r: r[xk])
        ax.errorbar([r[xk] for r in line], [_value(r, "linear_top1") for r in line],
                    yerr=[_value(r, "linear_top1_std") if "linear_top1_std" in r else 0.0 for r in line],
                    marker="o", capsize=3, label=f"{gk} {group}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel(xk)
    ax.set_ylabel("linear top-1 (%)")
    ax.set_title("ours")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncols=4, frameon=False)


def _floor(ax: Any, baseline: Row | None, values: list[float]) -> None:
    """The random-init encoder's linear top-1 as a dashed line; the y axis starts a little below the lowest
    value (so that differences of a point or two stay visible; the axis says where it starts)."""
    if not baseline:
        return
    floor = baseline["linear_top1"]
    ax.axhline(floor, color="gray", linestyle="--", linewidth=1, zorder=3)
    ax.annotate("random init (linear)", (0.99, floor), xycoords=("axes fraction", "data"), fontsize=7,
                color="dimgray", ha="right", va="bottom", zorder=4,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8})
    finite = [v for v in values if not math.isnan(v)]
    ax.set_ylim(max(0.0, min(finite + [floor]) - 5.0), ax.get_ylim()[1])


def write_plot(result: StudyResult, path: Path) -> None:
    """The study's figure: a heatmap (ours, paper) for the pairs, bars (ours | paper) or lines for the
    rest.
    """
    try:
        import matplotlib
    except ImportError:
        raise missing_extra("the ablation report's figure", "plots") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    study, rows = result.study, result.rows
    has_paper = any(c.paper is not None for c in study.cells)
    fig, axes = plt.subplots(1, 2 if has_paper else 1, figsize=(12 if has_paper else 7, 5), squeeze=False)
    if study.plot == "heatmap":
        _heatmap(axes[0, 0], study, rows, "linear_top1", "ours: linear top-1 (%)")
        paper_rows = [{**c.params, "paper_top1": c.paper} for c in study.cells]
        _heatmap(axes[0, 1], study, paper_rows, "paper_top1", f"paper ({study.source}, ImageNet)")
    elif study.plot == "lines":
        _lines(axes[0, 0], study, rows)
        _floor(axes[0, 0], result.baseline, [_value(r, "linear_top1") for r in rows])
    else:
        keys = [("linear_top1", "linear, h"), ("knn_top1", "kNN, h")]
        if study.eval_z:
            keys += [("linear_top1_z", "linear, z")]
        _bars(axes[0, 0], rows, keys, "ours")
        _floor(axes[0, 0], result.baseline, [_value(r, k) for r in rows for k, _ in keys])
        if has_paper:
            paper_rows = [{"cell": c.key, "paper_top1": c.paper} for c in study.cells]
            _bars(axes[0, 1], paper_rows, [("paper_top1", "paper")], f"paper ({study.source}, ImageNet)")
    fig.suptitle(f"{study.title} ({study.source})")
    fig.tight_layout()
    try:
        with atomic_file(path) as fh:
            fig.savefig(fh, dpi=110, format="png")
    finally:
        plt.close(fig)


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


TABLE = ("paper_top1", "linear_top1", "linear_top1_std", "linear_top5", "knn_top1", "knn_top1_std",
         "linear_top1_z", "linear_top1_z_std", "knn_top1_z", "paper_contrastive_acc", "contrastive_acc",
         "epochs_done", "runs")
HEADERS = {"cell": "cell", "paper_top1": "paper top-1", "linear_top1": "linear top-1",
           "linear_top5": "linear top-5", "knn_top1": "kNN top-1", "linear_top1_z": "linear top-1 on z",
           "knn_top1_z": "kNN top-1 on z", "linear_top1_std": "± (std)", "knn_top1_std": "± (std)",
           "linear_top1_z_std": "± (std)", "runs": "runs",
           "paper_contrastive_acc": "paper contrastive acc", "contrastive_acc": "contrastive acc",
           "epochs_done": "epochs"}


def markdown(result: StudyResult, plot_name: str, context: str = "") -> str:
    """The report page: the paper's finding, the checks, the table (percent), the plot and how it was made."""
    study, rows = result.study, result.rows
    lines = [f"# {study.title} ({study.source} of SimCLR): `simclr ablate {study.name}`", "",
             f"**The paper:** {study.finding}", ""]
    if context:
        lines += [context, ""]
    lines += ["## Does it reproduce?", ""]
    for c in result.checks:
        mark = {"reproduced": "yes", "NOT reproduced": "**no**"}.get(c.verdict, c.verdict)
        lines.append(f"- {c.claim}: {mark} ({c.detail})" + (f"; {c.caveat}" if c.caveat else ""))
    if result.missing:
        lines += ["", f"Cells not run yet: {', '.join(result.missing)}."]
    if result.baseline:
        b = result.baseline
        lines += ["", (f"The floor: the same evaluation of the encoder at its random initialisation "
                  f"(no pretraining) gives linear top-1 {b['linear_top1']:.2f}% and kNN top-1 "
                  f"{b['knn_top1']:.2f}%.")]
    cols = [k for k in TABLE if any(k in r for r in rows) and (k != "runs" or any(r[k] > 1 for r in rows))]
    params = ["cell"] + list(study.cells[0].params)
    lines += ["", "## Results", "",
              ("Accuracies in percent on the test split; paper numbers are ResNet-50 on ImageNet (linear "
               "evaluation), ours are the scaled-down runs described below."), "",
              "| " + " | ".join(params + [HEADERS[k] for k in cols]) + " |",
              "|" + "---|" * (len(params) + len(cols))]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(k)) for k in params + cols) + " |")
    lines += ["", f"![{study.name}]({plot_name})", "", "## How these numbers were made", "",
              ("Each cell is one pretraining run (per seed) with the budget above (times the cell's "
               "multiplier in the batch-size study), then frozen features of the labelled train and test "
               "splits: linear = L-BFGS logistic regression on h (weight decay chosen on held-out train "
               "features), kNN = weighted kNN (k = 200, T = 0.1). With several runs per cell (`--seeds`), "
               "values are means and ± is the standard deviation over the runs. The epochs column counts "
               "the images seen (steps x batch) over the train split: the last partial batch of every epoch "
               "is dropped, so 1 epoch of 500 images at batch 64 shows as 0.9. `results.csv` in the study "
               "folder holds every field, including the training loss, steps and views/s of each cell.")]
    return "\n".join(lines) + "\n"


def write_report(result: StudyResult, folder: Path, context: str = "") -> tuple[Path, Path]:
    """``folder/<study>.md`` and ``folder/<study>.png``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    md, png = folder / f"{result.study.name}.md", folder / f"{result.study.name}.png"
    if result.rows:
        write_plot(result, png)
    atomic_write_text(md, markdown(result, png.name, context))
    return md, png
