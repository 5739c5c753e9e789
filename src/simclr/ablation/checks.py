"""The paper's findings, checked on a study's rows: each check says what the paper found and whether ours
agrees.

A row is one finished cell (see :func:`simclr.ablation.runner.run_study`): its ``params``, its metrics in
percent (``linear_top1``, ``knn_top1``, ``linear_top1_z`` ...) and ``cell``. A check whose cells are not all
finished is reported as pending, never as agreeing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

__all__ = ["Check", "check_study", "spearman"]

Row = dict[str, Any]
METRIC = "linear_top1"


class Check(NamedTuple):
    """``claim``: the paper's finding; ``agrees``: True/False, or None while cells are missing or when the
    study cannot tell; ``detail``: ours; ``caveat``: why a verdict is weak or missing (one run per cell, no
    cell above the random-init floor)."""

    claim: str
    agrees: bool | None
    detail: str
    caveat: str = ""

    @property
    def verdict(self) -> str:
        """``reproduced``, ``NOT reproduced``, ``inconclusive`` (the cells cannot tell) or ``pending``."""
        if self.agrees is None:
            return "inconclusive" if self.caveat else "pending"
        return "reproduced" if self.agrees else "NOT reproduced"


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman rank correlation (ties get their mean rank); nan for fewer than two points or a constant
    side.
    """
    if len(x) < 2:
        return float("nan")

    def ranks(v: list[float]) -> np.ndarray:
        a = np.asarray(v, dtype=float)
        order = a.argsort(kind="stable")
        r = np.empty(len(a))
        r[order] = np.arange(len(a), dtype=float)
        for value in np.unique(a):  # mean rank for ties
            r[a == value] = r[a == value].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _by(rows: list[Row], **params: Any) -> list[Row]:
    return [r for r in rows if all(r.get(k) == v for k, v in params.items())]


def _pending(claim: str, missing: int) -> Check:
    return Check(claim, None, f"{missing} cell(s) not run yet")


def _pairs(rows: list[Row], total: int) -> list[Check]:
    out = []
    claim = "crop + colour (either order) is the strongest composition"
    comps = [r for r in rows if r["first"] != r["second"]]
    if len(rows) < total:
        out.append(_pending(claim, total - len(rows)))
    else:
        best = max(comps, key=lambda r: r[METRIC])
        agrees = {best["first"], best["second"]} == {"crop", "color"}
        out.append(Check(claim, agrees, f"best composition: {best['cell']} ({best[METRIC]:.1f}%)"))
        single = float(np.mean([r[METRIC] for r in rows if r["first"] == r["second"]]))
        mixed = float(np.mean([r[METRIC] for r in comps]))
        out.append(Check("compositions beat single transformations on average", mixed > single,
                         f"mean of compositions {mixed:.1f}% vs single transformations {single:.1f}%"))
        rho = spearman([r["paper_top1"] for r in rows], [r[METRIC] for r in rows])
        out.append(Check(f"the {total} cells rank as in the paper "
                         "(rank correlation with the paper's top-1 > 0)",
                         rho > 0, f"Spearman {rho:+.2f} over {len(rows)} cells"))
    return out


def _color(rows: list[Row], total: int) -> list[Check]:
    claim = "stronger colour distortion gives a better representation (rank correlation of s and top-1 > 0)"
    plain = sorted(_by(rows, blur=False), key=lambda r: r["strength"])
    if len(rows) < total:
        return [_pending(claim, total - len(rows))]
    rho = spearman([r["strength"] for r in plain], [r[METRIC] for r in plain])
    blur, s1 = _by(rows, blur=True)[0], _by(plain, strength=1.0)[0]
    return [Check(claim, rho > 0,
                  "top-1 by s: " + ", ".join(f"{r['strength']:g}: {r[METRIC]:.1f}%" for r in plain)
                  + f" (Spearman {rho:+.2f})"),
            Check("adding blur at s = 1 helps", blur[METRIC] > s1[METRIC],
                  f"{blur[METRIC]:.1f}% with blur vs {s1[METRIC]:.1f}% without")]


def _head(rows: list[Row], total: int) -> list[Check]:
    claim = "non-linear head > linear head > no head (best output size of each)"
    if len(rows) < total:
        return [_pending(claim, total - len(rows))]
    best = {kind: max(r[METRIC] for r in _by(rows, head=kind)) for kind in ("none", "linear", "nonlinear")}
    nonlinear = _by(rows, head="nonlinear")
    gaps = [r[METRIC] - r["linear_top1_z"] for r in nonlinear]
    return [Check(claim, best["nonlinear"] > best["linear"] > best["none"],
                  ", ".join(f"{k}: {v:.1f}%" for k, v in best.items())),
            Check("h is a better representation than z = g(h) (non-linear head, every output size)",
                  min(gaps) > 0,
                  "h minus z: " + ", ".join(f"{r['out_dim']}: {g:+.1f}" for r, g in zip(nonlinear, gaps)))]


def _loss(rows: list[Row], total: int) -> list[Check]:
    claim = "NT-Xent beats NT-Logistic and margin triplet (with or without semi-hard mining)"
    if len(rows) < total:
        return [_pending(claim, total - len(rows))]
    xent = _by(rows, loss="nt_xent")[0][METRIC]
    others = [r for r in rows if r["loss"] != "nt_xent"]
    best_other = max(others, key=lambda r: r[METRIC])
    out = [Check(claim, xent > best_other[METRIC], f"NT-Xent {xent:.1f}% vs best other {best_other['cell']} "
                 f"{best_other[METRIC]:.1f}%")]
    for name in ("nt_logistic", "margin_triplet"):
        plain, sh = _by(rows, loss=name, semi_hard=False)[0], _by(rows, loss=name, semi_hard=True)[0]
        out.append(Check(f"semi-hard mining helps {name}", sh[METRIC] > plain[METRIC],
                         f"{sh[METRIC]:.1f}% with vs {plain[METRIC]:.1f}% without"))
    return out


def _temperature(rows: list[Row], total: int) -> list[Check]:
    claim = "with l2 normalisation, 0.1 is the best of the temperatures 0.05, 0.1, 0.5, 1"
    if len(rows) < total:
        return [_pending(claim, total - len(rows))]
    l2 = sorted(_by(rows, l2_norm=True), key=lambda r: r["temperature"])
    raw = _by(rows, l2_norm=False)
    best = max(l2, key=lambda r: r[METRIC])
    rho = spearman([r["temperature"] for r in l2], [r["contrastive_acc"] for r in l2])
    return [Check(claim, best["temperature"] == 0.1, f"best: {best['temperature']:g} ({best[METRIC]:.1f}%)"),
            Check("l2 normalisation gives a better representation than none",
                  best[METRIC] > max(r[METRIC] for r in raw),
                  f"best with l2 {best[METRIC]:.1f}% vs without {max(r[METRIC] for r in raw):.1f}%"),
            Check("with l2 normalisation, the contrastive accuracy falls as the temperature rises "
                  "(rank correlation < 0)", rho < 0,
                  "contrastive accuracy: " + ", ".join(f"{r['temperature']:g}: {r['contrastive_acc']:.1f}%"
                                                        for r in l2) + f" (Spearman {rho:+.2f})")]


def _batch(rows: list[Row], total: int) -> list[Check]:
    claim = ("with the shortest training, larger batches are better "
             "(rank correlation of batch size and top-1 > 0)")
    if len(rows) < total:
        return [_pending(claim, total - len(rows))]
    budgets = sorted({r["budget"] for r in rows}, key=lambda b: float(b.lstrip("x")))
    lines = {b: sorted(_by(rows, budget=b), key=lambda r: r["batch_size"]) for b in budgets}
    short, long = lines[budgets[0]], lines[budgets[-1]]
    rho = spearman([r["batch_size"] for r in short], [r[METRIC] for r in short])

    def spread(line: list[Row]) -> float:
        return max(r[METRIC] for r in line) - min(r[METRIC] for r in line)

    return [Check(claim, rho > 0,
                  f"{budgets[0]}: " + ", ".join(f"{r['batch_size']}: {r[METRIC]:.1f}%" for r in short)
                  + f" (Spearman {rho:+.2f})"),
            Check("the gap between batch sizes shrinks with longer training", spread(long) < spread(short),
                  f"spread {spread(short):.1f} points at {budgets[0]}, {spread(long):.1f} at {budgets[-1]}")]


CHECKS: dict[str, Callable[[list[Row], int], list[Check]]] = {
    "augment-pairs": _pairs, "color-strength": _color, "head": _head, "loss": _loss,
    "temperature": _temperature, "batch-size": _batch,
}


FLOOR_MARGIN = 1.0
"""Points of linear top-1 some cell must gain over the random-init encoder for the study to say anything."""


def check_study(name: str, rows: list[Row], total: int, floor: float | None = None) -> list[Check]:
    """The checks of study ``name`` on its finished ``rows`` (``total``: the number of cells of the study).

    ``floor``: the linear top-1 of the random-init encoder. When no cell beats it by :data:`FLOOR_MARGIN`, the
    pretraining learned too little for any comparison to mean something: the checks are inconclusive. With one
    run per cell, verdicts carry a caveat: a gap of a point or two may be run-to-run noise.
    """
    checks = CHECKS[name](rows, total)
    if not rows or any(c.agrees is None for c in checks):
        return checks
    best = max(r[METRIC] for r in rows)
    if floor is not None and best < floor + FLOOR_MARGIN:
        why = (f"inconclusive: no cell beats the random-init encoder ({floor:.1f}%) "
               f"by {FLOOR_MARGIN:g} point (best {best:.1f}%); pretrain longer")
        return [c._replace(agrees=None, caveat=why) for c in checks]
    if min(int(r.get("runs", 1)) for r in rows) < 2:
        why = "one run per cell: a gap of a point or two may be run-to-run noise (--seeds 3 measures it)"
        return [c._replace(caveat=why) for c in checks]
    return checks
