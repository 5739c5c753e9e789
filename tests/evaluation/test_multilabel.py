"""Multi-label evaluation (VOC2007): 11-point mAP against an independent NumPy version of the VOC devkit's
VOCevalcls, the masked loss, and the linear and fine-tuned classifiers on a task with several labels per
image."""

import numpy as np
import pytest
import torch

from simclr.data.named_sets import ABSENT, DIFFICULT, PRESENT
from simclr.evaluation.finetune import FinetuneSpec, evaluate_classifier, finetune
from simclr.evaluation.multilabel import ap11, fit_multilabel, map11, multilabel_linear_eval, multilabel_loss
from simclr.models.resnet import EncoderSpec, build_encoder

pytestmark = pytest.mark.usefixtures("one_thread")


def _devkit_ap11(scores: np.ndarray, gt: np.ndarray) -> float:
    """VOCevalcls with the devkit's ground truth (1 positive, -1 negative, 0 difficult), as its MATLAB
    does."""
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(gt[order] > 0)
    fp = np.cumsum(gt[order] < 0)
    rec = tp / np.sum(gt > 0)
    with np.errstate(invalid="ignore"):
        prec = tp / (fp + tp)
    ap = 0.0
    for t in np.arange(0, 1.1, 0.1):
        p = prec[rec >= t - 1e-12]
        p = p[~np.isnan(p)]
        ap += (p.max() if p.size else 0.0) / 11
    return ap


def _codes_to_devkit(codes: np.ndarray) -> np.ndarray:
    return np.select([codes == PRESENT, codes == DIFFICULT], [1, 0], -1)


def test_ap11_by_hand() -> None:
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    codes = torch.tensor([PRESENT, ABSENT, PRESENT, DIFFICULT])
    # without the difficult one: P (precision 1, recall .5), N, P (2/3, recall 1): six levels at 1, five at
    # 2/3
    assert ap11(scores, codes) == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    assert np.isnan(ap11(scores, torch.tensor([ABSENT, ABSENT, DIFFICULT, ABSENT])))  # no positive image
    assert ap11(scores, torch.tensor([PRESENT, PRESENT, ABSENT, ABSENT])) == 1.0


@pytest.mark.parametrize("seed", range(4))
def test_map11_matches_the_devkit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, c = 60, 5
    codes = rng.choice([ABSENT, PRESENT, DIFFICULT], size=(n, c), p=[0.6, 0.3, 0.1])
    codes[:, 4] = ABSENT  # a class with no positive image is left out of the mean
    scores = rng.normal(size=(n, c)) + 1.5 * (codes == PRESENT)
    expected = [_devkit_ap11(scores[:, k], _codes_to_devkit(codes[:, k])) for k in range(4)]
    got = map11(torch.from_numpy(scores).float(), torch.from_numpy(codes))
    assert got == pytest.approx(float(np.mean(expected)), abs=1e-6)
    assert all(ap11(torch.from_numpy(scores[:, k]),
                    torch.from_numpy(codes[:, k])) == pytest.approx(expected[k])
               for k in range(4))


def test_multilabel_loss_leaves_difficult_entries_out() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    codes = torch.tensor([[PRESENT, ABSENT, DIFFICULT], [ABSENT, PRESENT, PRESENT]])
    x, y = logits.numpy(), (codes == PRESENT).numpy()
    bce = np.log1p(np.exp(-x)) * y + np.log1p(np.exp(x)) * (1 - y)
    known = (codes != DIFFICULT).numpy()
    assert multilabel_loss(logits, codes).item() == pytest.approx(float(bce[known].mean()), rel=1e-6)


def _task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Features where class k is present when feature k is high: several labels per sample."""
    gen = torch.Generator().manual_seed(seed)
    present = torch.rand(n, 3, generator=gen) < 0.4
    x = torch.randn(n, 8, generator=gen) * 0.3
    x[:, :3] += 2.0 * present
    codes = torch.where(present, PRESENT, ABSENT)
    codes[torch.rand(n, 3, generator=gen) < 0.05] = DIFFICULT
    return x, codes


def test_linear_multilabel_learns_the_rule() -> None:
    x, codes = _task(300, 0)
    tx, tcodes = _task(100, 1)
    model = fit_multilabel(x, codes, 1e-4)
    assert map11(model.logits(tx), tcodes) > 0.95
    noise = fit_multilabel(torch.randn(300, 8), codes, 1e-4)
    assert map11(noise.logits(torch.randn(100, 8)), tcodes) < 0.75
    result = multilabel_linear_eval(x, codes, tx, tcodes, weight_decays=(1e-6, 1e5))
    assert result["weight_decay"] == 1e-6 and result["map11"] > 0.95 and result["weight_decays_tried"] == 2


def test_finetune_on_several_labels_per_image() -> None:
    gen = torch.Generator().manual_seed(0)
    present = torch.rand(64, 3, generator=gen) < 0.5
    images = torch.rand(64, 3, 16, 16, generator=gen) * 0.4 + 0.5 * present[:, :, None, None]
    images = (images * 255).round().to(torch.uint8)
    codes = torch.where(present, PRESENT, ABSENT)
    torch.manual_seed(0)
    encoder = build_encoder(EncoderSpec("resnet18", width=0.125, cifar_stem=True))
    model = finetune(encoder, encoder.num_features, 3, images, codes,
                     FinetuneSpec(epochs=10, batch_size=16, lr=0.1, seed=1))
    result = evaluate_classifier(model, images, codes)
    assert set(result) == {"map11"} and result["map11"] > 0.9
    with pytest.raises(ValueError, match="codes"):
        finetune(encoder, encoder.num_features, 4, images, codes, FinetuneSpec(epochs=1))
    with pytest.raises(ValueError, match="labels must be in"):
        finetune(encoder, encoder.num_features, 3, images, codes * 3, FinetuneSpec(epochs=1))
