"""NT-Logistic and margin triplet (Chen et al. 2020, Tables 2 and 4) against NumPy loop references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from simclr.losses.alternatives import LOSSES, margin_triplet, nt_logistic
from simclr.losses.ntxent import ContrastiveOutput, nt_xent_global


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def _similarities(z_local: np.ndarray, z_global: np.ndarray, normalize: bool) -> np.ndarray:
    s = np.zeros((z_local.shape[0], z_global.shape[0]))
    for i in range(z_local.shape[0]):
        for k in range(z_global.shape[0]):
            dot = float(np.dot(z_local[i], z_global[k]))
            if normalize:
                dot /= float(np.linalg.norm(z_local[i])) * float(np.linalg.norm(z_global[k]))
            s[i, k] = dot
    return s


def _anchors(z_local: np.ndarray, z_global: np.ndarray, offset: int, normalize: bool):
    """Yield (s_ip, [s_ik for every negative k]) for each local anchor i, with explicit indices."""
    two_n = z_local.shape[0]
    s = _similarities(z_local, z_global, normalize)
    for i in range(two_n):
        own = offset + i
        positive = offset + (i + two_n // 2) % two_n
        negatives = [s[i, k] for k in range(z_global.shape[0]) if k not in (own, positive)]
        yield s[i, positive], negatives


def _select(s_pos: float, negatives: list[float], semi_hard: bool,
            margin: float | None) -> tuple[list[float], bool]:
    """Schroff-style semi-hard selection; returns (chosen negatives, whether the fallback was used)."""
    if not semi_hard:
        return negatives, False
    chosen = [v for v in negatives if v < s_pos and (margin is None or v > s_pos - margin)]
    if chosen:
        return chosen, False
    return [max(negatives)], True


def reference_nt_logistic(z_local, z_global, offset, tau, semi_hard=False, normalize=True) -> float:
    """-log sig(s_ip/tau) - mean_{k in N_i} log sig(-s_ik/tau), averaged over anchors."""
    losses = []
    for s_pos, negatives in _anchors(z_local, z_global, offset, normalize):
        chosen, _ = _select(s_pos, negatives, semi_hard, None)
        negative_term = sum(_log_sigmoid(-v / tau) for v in chosen) / len(chosen)
        losses.append(-_log_sigmoid(s_pos / tau) - negative_term)
    return sum(losses) / len(losses)


def reference_margin_triplet(z_local, z_global, offset, margin, semi_hard=False, normalize=True) -> float:
    """mean_{k in N_i} max(s_ik - s_ip + m, 0), averaged over anchors."""
    losses = []
    for s_pos, negatives in _anchors(z_local, z_global, offset, normalize):
        chosen, _ = _select(s_pos, negatives, semi_hard, margin)
        losses.append(sum(max(v - s_pos + margin, 0.0) for v in chosen) / len(chosen))
    return sum(losses) / len(losses)


def _views(n: int, d: int, seed: int, noise: float = 0.8, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """[z1; z2] with z2 a noisy copy of z1, so positives are neither trivial nor hopeless."""
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g, dtype=dtype)
    return torch.cat([z1, z1 + noise * torch.randn(n, d, generator=g, dtype=dtype)])


CASES = [(2, 3, 0.1), (5, 16, 0.5), (8, 8, 1.0)]


@pytest.mark.parametrize("semi_hard", [False, True])
@pytest.mark.parametrize(("n", "d", "tau"), CASES)
def test_nt_logistic_matches_numpy(n: int, d: int, tau: float, semi_hard: bool) -> None:
    z = _views(n, d, seed=10 * n + d)
    out = nt_logistic(z, z, 0, tau, semi_hard=semi_hard)
    expected = reference_nt_logistic(z.numpy(), z.numpy(), 0, tau, semi_hard)
    assert out.loss.dtype == torch.float64
    np.testing.assert_allclose(out.loss.item(), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("semi_hard", [False, True])
@pytest.mark.parametrize(("n", "d", "margin"), CASES)
def test_margin_triplet_matches_numpy(n: int, d: int, margin: float, semi_hard: bool) -> None:
    z = _views(n, d, seed=10 * n + d)
    out = margin_triplet(z, z, 0, margin, semi_hard=semi_hard)
    expected = reference_margin_triplet(z.numpy(), z.numpy(), 0, margin, semi_hard)
    np.testing.assert_allclose(out.loss.item(), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("semi_hard", [False, True])
def test_unnormalized_and_float32_match_numpy(semi_hard: bool) -> None:
    z = 0.3 * _views(4, 8, seed=3)
    zn = z.numpy()
    got = nt_logistic(z, z, 0, 0.5, normalize=False, semi_hard=semi_hard).loss.item()
    assert got == pytest.approx(reference_nt_logistic(zn, zn, 0, 0.5, semi_hard, normalize=False), rel=1e-10)
    got = margin_triplet(z, z, 0, 0.5, normalize=False, semi_hard=semi_hard).loss.item()
    assert got == pytest.approx(reference_margin_triplet(zn, zn, 0, 0.5, semi_hard, normalize=False),
                                rel=1e-10)

    z32 = z.float()
    assert nt_logistic(z32, z32, 0, 0.5, semi_hard=semi_hard).loss.item() == pytest.approx(
        reference_nt_logistic(zn, zn, 0, 0.5, semi_hard), rel=1e-6)
    assert margin_triplet(z32, z32, 0, 0.5, semi_hard=semi_hard).loss.item() == pytest.approx(
        reference_margin_triplet(zn, zn, 0, 0.5, semi_hard), rel=1e-6)


def test_semi_hard_mining_is_active() -> None:
    """On this input some anchors keep a strict, non-empty subset of their negatives, and the loss moves."""
    z = _views(8, 8, seed=88)
    zn = z.numpy()
    strict = 0
    for s_pos, negatives in _anchors(zn, zn, 0, True):
        chosen, fallback = _select(s_pos, negatives, True, 0.5)
        strict += not fallback and len(chosen) < len(negatives)
    assert strict > 0
    plain = margin_triplet(z, z, 0, 0.5).loss
    mined = margin_triplet(z, z, 0, 0.5, semi_hard=True).loss
    assert not torch.isclose(plain, mined)
    assert not torch.isclose(nt_logistic(z, z, 0).loss, nt_logistic(z, z, 0, semi_hard=True).loss)


def test_fallback_to_hardest_negative() -> None:
    """Antipodal positives (s_ip = -1): no negative is below the positive, so each anchor keeps only its
    hardest negative and the losses have a closed form in max_k s_ik."""
    g = torch.Generator().manual_seed(5)
    z1 = torch.randn(3, 4, generator=g, dtype=torch.float64)
    z = torch.cat([z1, -z1])
    u = torch.nn.functional.normalize(z, dim=1)
    s = u @ u.T
    for i in range(6):
        s[i, i] = s[i, (i + 3) % 6] = -math.inf
    hardest = s.max(dim=1).values
    assert (hardest > -1).all()
    margin, tau = 0.5, 0.5

    for s_pos, negatives in _anchors(z.numpy(), z.numpy(), 0, True):
        assert _select(s_pos, negatives, True, margin)[1] and _select(s_pos, negatives, True, None)[1]
    expected_triplet = (hardest + 1 + margin).mean().item()
    expected_logistic = (math.log1p(math.exp(1 / tau))
                         - torch.nn.functional.logsigmoid(-hardest / tau).mean().item())
    assert (margin_triplet(z, z, 0, margin, semi_hard=True).loss.item()
            == pytest.approx(expected_triplet, rel=1e-10))
    assert (nt_logistic(z, z, 0, tau, semi_hard=True).loss.item()
            == pytest.approx(expected_logistic, rel=1e-10))
    assert margin_triplet(z, z, 0, margin).loss.item() < expected_triplet  # plain averages easier ones too


@pytest.mark.parametrize("semi_hard", [False, True])
@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_identical_embeddings_closed_form(tau: float, semi_hard: bool) -> None:
    z = torch.ones(8, 16)
    assert margin_triplet(z, z, 0, 0.7, semi_hard=semi_hard).loss.item() == pytest.approx(0.7, abs=1e-6)
    expected = math.log1p(math.exp(-1 / tau)) + math.log1p(math.exp(1 / tau))  # softplus(-x) + softplus(x)
    assert nt_logistic(z, z, 0, tau, semi_hard=semi_hard).loss.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("semi_hard", [False, True])
def test_multi_block_equals_single_process_rows(semi_hard: bool) -> None:
    world, n, d, tau, margin = 3, 2, 8, 0.5, 0.4
    blocks = [_views(n, d, seed=200 + r) for r in range(world)]
    z_global = torch.cat(blocks)
    full = torch.cat([b[:n] for b in blocks] + [b[n:] for b in blocks])  # single process: [all z1; all z2]
    for loss, ref, param in ((nt_logistic, reference_nt_logistic, tau),
                             (margin_triplet, reference_margin_triplet, margin)):
        outs = [loss(blocks[r], z_global, r * 2 * n, param, semi_hard=semi_hard) for r in range(world)]
        for r, out in enumerate(outs):
            expected = ref(blocks[r].numpy(), z_global.numpy(), r * 2 * n, param, semi_hard)
            np.testing.assert_allclose(out.loss.item(), expected, rtol=1e-10)
        single = loss(full, full, 0, param, semi_hard=semi_hard)
        mean = torch.stack([o.loss for o in outs]).mean()
        np.testing.assert_allclose(mean.item(), single.loss.item(), rtol=1e-12)
        acc = torch.stack([o.accuracy for o in outs]).mean()
        assert acc.item() == pytest.approx(single.accuracy.item())


@pytest.mark.parametrize("semi_hard", [False, True])
def test_gradient_flows(semi_hard: bool) -> None:
    for loss in (nt_logistic, margin_triplet):
        z = _views(6, 16, seed=5, dtype=torch.float32).requires_grad_(True)
        out = loss(z, z, 0, 0.5, semi_hard=semi_hard)
        assert out.loss.requires_grad and not out.accuracy.requires_grad
        out.loss.backward()
        assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_low_precision_input_computes_in_float32() -> None:
    z = _views(4, 8, seed=1, dtype=torch.float32)
    for loss in (nt_logistic, margin_triplet):
        low = loss(z.bfloat16(), z.bfloat16(), 0, semi_hard=True).loss
        assert low.dtype == torch.float32
        assert low.item() == pytest.approx(loss(z, z, 0, semi_hard=True).loss.item(), rel=5e-2)


def test_accuracy_matches_nt_xent() -> None:
    z = _views(8, 8, seed=21, noise=1.5)
    reference = nt_xent_global(z, z, 0, 0.5).accuracy.item()
    assert 0.0 < reference < 1.0
    for semi_hard in (False, True):
        assert nt_logistic(z, z, 0, 0.5, semi_hard=semi_hard).accuracy.item() == reference
        assert margin_triplet(z, z, 0, semi_hard=semi_hard).accuracy.item() == reference


def test_registry() -> None:
    assert set(LOSSES) == {"nt_xent", "nt_logistic", "margin_triplet"}
    z = _views(4, 8, seed=2)
    kwargs = {"temperature": 0.2, "margin": 0.3, "normalize": True}
    expected = {
        "nt_xent": nt_xent_global(z, z, 0, 0.2),
        "nt_logistic": nt_logistic(z, z, 0, 0.2, semi_hard=True),
        "margin_triplet": margin_triplet(z, z, 0, 0.3, semi_hard=True),
    }
    for name, fn in LOSSES.items():
        out = fn(z, z, 0, semi_hard=name != "nt_xent", **kwargs)
        assert isinstance(out, ContrastiveOutput)
        assert torch.equal(out.loss, expected[name].loss)
        assert torch.equal(out.accuracy, expected[name].accuracy)
    with pytest.raises(ValueError, match="semi-hard"):
        LOSSES["nt_xent"](z, z, 0, semi_hard=True, **kwargs)


@pytest.mark.parametrize(
    ("local_rows", "global_rows", "offset", "d_global"),
    [(3, 12, 0, 8), (4, 12, 10, 8), (4, 12, -1, 8), (4, 12, 0, 9), (0, 12, 0, 8), (2, 2, 0, 8)],
)
def test_bad_blocks_raise(local_rows: int, global_rows: int, offset: int, d_global: int) -> None:
    for loss in (nt_logistic, margin_triplet):
        with pytest.raises(ValueError):
            loss(torch.randn(local_rows, 8), torch.randn(global_rows, d_global), offset)
    with pytest.raises(ValueError):
        nt_logistic(torch.randn(8), torch.randn(8), 0)


@pytest.mark.parametrize("bad", [0.0, -0.5, math.nan])
def test_bad_temperature_and_margin_raise(bad: float) -> None:
    z = torch.randn(4, 8)
    with pytest.raises(ValueError, match="temperature"):
        nt_logistic(z, z, 0, bad)
    with pytest.raises(ValueError, match="margin"):
        margin_triplet(z, z, 0, bad)
    with pytest.raises(ValueError, match="temperature"):
        LOSSES["nt_logistic"](z, z, 0, temperature=bad)
