"""The paper's ablation studies as grids of pretraining runs ("cells"), with the paper's numbers beside each
cell.

Each :class:`Study` lists its cells (one config layer each, over the user's base config), the paper's ImageNet
linear-evaluation top-1 where the paper prints it, and the paper's findings as checks that
:mod:`simclr.ablation.checks` evaluates on our rows. The paper's numbers (Chen et al., ICML 2020) are
ResNet-50 on ImageNet, linear evaluation top-1 in percent:

* Figure 5 (augmentation pairs, asymmetric: the ops on one branch, the other branch left as is; the heatmap's
  printed values, rows = first op, columns = second op, the diagonal = that op alone);
* Table 1 (colour distortion strength ``s``; the SimCLR row; AutoAugment is not offered here);
* Table 4 (losses, with and without semi-hard negative mining);
* Table 5 (l2 normalisation and temperature; also the contrastive accuracy);
* Figures 8 and 9 (projection heads; batch size x training length) are bar charts without printed values, so
  their cells carry no paper number; the report states the paper's finding instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from simclr.data.augment_spec import ABLATION_OPS

__all__ = ["STUDIES", "Cell", "Study"]


@dataclass(frozen=True)
class Cell:
    """One pretraining run of a study.

    Attributes:
        key: identifier, also the run's folder name under ``OUT/cells/`` (e.g. ``crop+color``).
        params: the study's variables for this cell, as report columns (e.g. ``{"first": "crop"}``).
        overrides: the config layer that makes this cell (e.g. ``{"augment": {"ops": ["crop", "color"]}}``).
        paper: the paper's linear top-1 (%) for this setting, where printed.
        paper_extra: other printed values (e.g. ``{"contrastive_acc": 87.8}``).
        budget_scale: multiplier on the per-cell budget (the batch-size study's longer runs).
    """

    key: str
    params: dict[str, Any]
    overrides: dict[str, Any]
    paper: float | None = None
    paper_extra: dict[str, float] = field(default_factory=dict)
    budget_scale: float = 1.0


@dataclass(frozen=True)
class Study:
    """A study: its cells, where it comes from in the paper, and how its report is drawn.

    Attributes:
        name: the ``simclr ablate`` argument.
        title: report title.
        source: where the paper reports it (``Figure 5``).
        finding: the paper's finding, in words.
        plot: ``heatmap`` (``axes`` = row and column parameter), ``bars`` or ``lines`` (``axes`` = x parameter
            and the parameter that makes one line each).
        axes: parameter names the plot uses.
        cells: the runs.
        base: a config layer every cell of the study starts from (over the user's config).
        eval_z: also evaluate z = g(h) (the head study: h versus z).
    """

    name: str
    title: str
    source: str
    finding: str
    plot: str
    axes: tuple[str, ...]
    cells: tuple[Cell, ...]
    base: dict[str, Any] = field(default_factory=dict)
    eval_z: bool = False

    def cell(self, key: str) -> Cell:
        for c in self.cells:
            if c.key == key:
                return c
        raise KeyError(key)


# Figure 5: rows = 1st transformation, columns = 2nd, diagonal = the transformation alone.
_FIG5 = {
    "crop": (33.1, 33.9, 56.3, 46.0, 39.9, 35.0, 30.2),
    "cutout": (32.2, 25.6, 33.9, 40.0, 26.5, 25.2, 22.4),
    "color": (55.8, 35.5, 18.8, 21.0, 11.4, 16.5, 20.8),
    "sobel": (46.2, 40.6, 20.9, 4.0, 9.3, 6.2, 4.2),
    "noise": (38.8, 25.8, 7.5, 7.6, 9.8, 9.8, 9.6),
    "blur": (35.1, 25.2, 16.6, 5.8, 9.7, 2.6, 6.7),
    "rotate": (30.0, 22.5, 20.7, 4.3, 9.7, 6.5, 2.6),
}


def _pairs() -> tuple[Cell, ...]:
    cells = []
    for first in ABLATION_OPS:
        for j, second in enumerate(ABLATION_OPS):
            ops = [first] if first == second else [first, second]
            cells.append(Cell("+".join(ops), {"first": first, "second": second}, {"augment": {"ops": ops}},
                              paper=_FIG5[first][j]))
    return tuple(cells)


def _color() -> tuple[Cell, ...]:
    table1 = ((0.125, 59.6), (0.25, 61.0), (0.5, 62.6), (1.0, 63.2))
    cells = [Cell(f"s{s:g}", {"strength": s, "blur": False},
                  {"augment": {"color_strength": s, "blur_p": 0.0}}, paper=top1) for s, top1 in table1]
    cells.append(Cell("s1+blur", {"strength": 1.0, "blur": True},
                      {"augment": {"color_strength": 1.0, "blur_p": 0.5}}, paper=64.5))
    return tuple(cells)


HEAD_DIMS = (32, 128, 512)


def _heads() -> tuple[Cell, ...]:
    cells = [Cell("none", {"head": "none", "out_dim": 0}, {"model": {"head": {"kind": "none"}}})]
    for kind in ("linear", "nonlinear"):
        cells += [Cell(f"{kind}-{d}", {"head": kind, "out_dim": d},
                       {"model": {"head": {"kind": kind, "out_dim": d}}})
                  for d in HEAD_DIMS]
    return tuple(cells)


def _losses() -> tuple[Cell, ...]:
    table4 = (("nt_logistic", False, 51.6), ("margin_triplet", False, 50.9), ("nt_logistic", True, 57.9),
              ("margin_triplet", True, 57.5), ("nt_xent", False, 63.9))
    return tuple(Cell(name + ("-sh" if sh else ""), {"loss": name, "semi_hard": sh},
                      {"loss": {"name": name, "semi_hard": sh}}, paper=top1) for name, sh, top1 in table4)


def _temperatures() -> tuple[Cell, ...]:
    table5 = ((True, 0.05, 59.7, 90.5), (True, 0.1, 64.4, 87.8), (True, 0.5, 60.7, 68.2),
              (True, 1.0, 58.0, 59.1), (False, 10.0, 57.2, 91.7), (False, 100.0, 57.0, 92.1))
    return tuple(Cell(f"{'l2' if l2 else 'no-l2'}-t{t:g}", {"l2_norm": l2, "temperature": t},
                      {"loss": {"normalize": l2, "temperature": t}}, paper=top1,
                      paper_extra={"contrastive_acc": acc}) for l2, t, top1, acc in table5)


BATCH_SIZES = (64, 128, 256, 512, 1024)
BATCH_BUDGETS = (1, 4)


def _batches() -> tuple[Cell, ...]:
    return tuple(Cell(f"b{b}-x{m}", {"batch_size": b, "budget": f"x{m}"}, {"train": {"batch_size": b}},
                      budget_scale=float(m)) for m in BATCH_BUDGETS for b in BATCH_SIZES)


STUDIES: dict[str, Study] = {s.name: s for s in (
    Study("augment-pairs", "Composition of data augmentations", "Figure 5",
          "No single transformation suffices; composing transformations helps, and random crop followed by "
          "colour distortion is by far the strongest pair (56.3% against at most 46.2% for any other pair).",
          "heatmap", ("first", "second"), _pairs(), base={"augment": {"asymmetric": True}}),
    Study("color-strength", "Colour distortion strength", "Table 1",
          "Stronger colour distortion improves the unsupervised representation (59.6% at s = 1/8 up to "
          "63.2% at s = 1), and adding blur helps further (64.5%).",
          "bars", ("strength",), _color()),
    Study("head", "Projection heads (and h versus z)", "Figure 8",
          "A non-linear projection head is better than a linear one (about +3%) and much better than none "
          "(>10%); the output size barely matters; and h, the layer before the head, is a much better "
          "representation than z = g(h) (>10%). The figure prints no values.",
          "bars", ("head", "out_dim"), _heads(), eval_z=True),
    Study("loss", "Loss functions", "Table 4",
          "NT-Xent beats NT-Logistic and margin triplet, with or without semi-hard negative mining; "
          "semi-hard mining helps the other two.",
          "bars", ("loss",), _losses()),
    Study("temperature", "l2 normalisation and temperature", "Table 5",
          "With l2 normalisation a moderate temperature is best (0.1 of those tried); without it the "
          "contrastive accuracy is higher but the representation is worse.",
          "bars", ("temperature",), _temperatures()),
    Study("batch-size", "Batch size and training length", "Figure 9",
          "With short training, larger batches are clearly better; with longer training the gap between "
          "batch sizes shrinks or disappears. The figure prints no values.",
          "lines", ("batch_size", "budget"), _batches()),
)}
