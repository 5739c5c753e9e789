"""NT-Xent against an independent NumPy transcription of SimCLR's Algorithm 1 (Chen et al. 2020)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from simclr.losses import ContrastiveOutput, nt_xent, nt_xent_global


def _interleave(z1: np.ndarray, z2: np.ndarray) -> list[np.ndarray]:
    """The paper's ordering: views 2k and 2k+1 (0-based) are the two views of example k."""
    views = []
    for k in range(z1.shape[0]):
        views.append(z1[k])
        views.append(z2[k])
    return views


def _similarities(views: list[np.ndarray], normalize: bool) -> np.ndarray:
    m = len(views)
    s = np.zeros((m, m))
    for i in range(m):
        for j in range(m):
            dot = float(np.dot(views[i], views[j]))
            if normalize:
                dot /= float(np.linalg.norm(views[i])) * float(np.linalg.norm(views[j]))
            s[i, j] = dot
    return s


def reference_loss(z1: np.ndarray, z2: np.ndarray, tau: float, normalize: bool = True) -> float:
    """Algorithm 1 with explicit loops: L = 1/(2N) sum_k [l(2k-1, 2k) + l(2k, 2k-1)]."""
    n = z1.shape[0]
    s = _similarities(_interleave(z1, z2), normalize)

    def l(i: int, j: int) -> float:
        denominator = 0.0
        for k in range(2 * n):
            if k != i:
                denominator += math.exp(s[i, k] / tau)
        return -math.log(math.exp(s[i, j] / tau) / denominator)

    total = 0.0
    for k in range(n):
        total += l(2 * k, 2 * k + 1) + l(2 * k + 1, 2 * k)
    return total / (2 * n)


def reference_accuracy(z1: np.ndarray, z2: np.ndarray, normalize: bool = True) -> float:
    """Fraction of the 2N anchors whose most similar other view is their positive."""
    n = z1.shape[0]
    s = _similarities(_interleave(z1, z2), normalize)
    hits = 0
    for i in range(2 * n):
        partner = i + 1 if i % 2 == 0 else i - 1
        best, best_k = -math.inf, -1
        for k in range(2 * n):
            if k != i and s[i, k] > best:
                best, best_k = s[i, k], k
        hits += best_k == partner
    return hits / (2 * n)


def _pair(n: int, d: int, seed: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype), torch.randn(n, d, generator=g, dtype=dtype)


@pytest.mark.parametrize(
    ("n", "d", "tau"), list(itertools.product([1, 2, 5, 16], [3, 16, 128], [0.1, 0.5, 1.0]))
)
def test_matches_numpy_algorithm_1(n: int, d: int, tau: float) -> None:
    z1, z2 = _pair(n, d, seed=1000 * n + d)
    out = nt_xent(z1, z2, tau)
    expected = reference_loss(z1.numpy(), z2.numpy(), tau)
    assert out.loss.dtype == torch.float64
    np.testing.assert_allclose(out.loss.item(), expected, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize(("n", "d", "noise"), [(2, 3, 0.8), (5, 16, 1.5), (16, 128, 4.0)])
def test_accuracy_matches_numpy(n: int, d: int, noise: float) -> None:
    z1, z2 = _pair(n, d, seed=7 + n)
    z2 = z1 + noise * z2  # noisy views of z1: accuracy strictly between 0 and 1
    out = nt_xent(z1, z2, 0.5)
    expected = reference_accuracy(z1.numpy(), z2.numpy())
    assert 0.0 < expected < 1.0
    assert out.accuracy.item() == pytest.approx(expected)
    assert not out.accuracy.requires_grad


@pytest.mark.parametrize(("n", "d", "tau"), [(1, 3, 1.0), (5, 16, 0.5), (16, 128, 1.0)])
def test_unnormalized_matches_numpy(n: int, d: int, tau: float) -> None:
    z1, z2 = _pair(n, d, seed=3)
    z1, z2 = 0.2 * z1, 0.2 * z2  # keep raw dot products small enough for the naive exp
    out = nt_xent(z1, z2, tau, normalize=False)
    expected = reference_loss(z1.numpy(), z2.numpy(), tau, normalize=False)
    np.testing.assert_allclose(out.loss.item(), expected, rtol=1e-6, atol=1e-12)
    assert out.accuracy.item() == pytest.approx(reference_accuracy(z1.numpy(), z2.numpy(), normalize=False))


@pytest.mark.parametrize("n", [1, 2, 8, 64])
def test_identical_embeddings_give_log_2n_minus_1(n: int) -> None:
    z = torch.ones(n, 16)
    out = nt_xent(z, z.clone(), 0.5)
    assert out.loss.item() == pytest.approx(math.log(2 * n - 1), abs=1e-6)


def test_output_type_and_scalars() -> None:
    z1, z2 = _pair(4, 8, seed=0, dtype=torch.float32)
    out = nt_xent(z1, z2)
    assert isinstance(out, ContrastiveOutput)
    assert out.loss.shape == () and out.accuracy.shape == ()
    assert 0.0 <= out.accuracy.item() <= 1.0


def test_gradient_flows_to_both_views() -> None:
    z1, z2 = _pair(6, 16, seed=5, dtype=torch.float32)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    nt_xent(z1, z2, 0.1).loss.backward()
    for grad in (z1.grad, z2.grad):
        assert grad is not None
        assert torch.isfinite(grad).all()
        assert grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs_close_to_fp32(dtype: torch.dtype) -> None:
    z1, z2 = _pair(32, 128, seed=11, dtype=torch.float32)
    full = nt_xent(z1, z2, 0.1).loss
    low = nt_xent(z1.to(dtype), z2.to(dtype), 0.1).loss
    assert low.dtype == torch.float32
    assert torch.isfinite(low)
    assert low.item() == pytest.approx(full.item(), rel=2e-2)


def test_low_precision_gradient_keeps_input_dtype() -> None:
    z1, z2 = _pair(8, 16, seed=2, dtype=torch.float32)
    z1 = z1.bfloat16().requires_grad_(True)
    nt_xent(z1, z2.bfloat16()).loss.backward()
    assert z1.grad is not None and z1.grad.dtype == torch.bfloat16
    assert torch.isfinite(z1.grad.float()).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_follows_input_device() -> None:
    z1, z2 = _pair(8, 16, seed=4, dtype=torch.float32)
    cpu = nt_xent(z1, z2)
    gpu = nt_xent(z1.cuda(), z2.cuda())
    assert gpu.loss.device.type == "cuda" and gpu.accuracy.device.type == "cuda"
    assert gpu.loss.item() == pytest.approx(cpu.loss.item(), rel=1e-5)


def test_global_with_one_rank_equals_local_exactly() -> None:
    z1, z2 = _pair(5, 16, seed=9, dtype=torch.float32)
    z = torch.cat([z1, z2])
    local = nt_xent(z1, z2, 0.5)
    glob = nt_xent_global(z, z, 0, 0.5)
    assert torch.equal(local.loss, glob.loss)
    assert torch.equal(local.accuracy, glob.accuracy)


def test_global_over_three_ranks_equals_full_batch() -> None:
    """Mean of the per-rank losses == NT-Xent over the whole global batch of n*W pairs."""
    world, n, d, tau = 3, 4, 16, 0.5
    pairs = [_pair(n, d, seed=100 + r) for r in range(world)]
    blocks = [torch.cat([z1, z2]) for z1, z2 in pairs]  # each rank's [view1; view2]
    z_global = torch.cat(blocks)
    outs = [nt_xent_global(blocks[r], z_global, r * 2 * n, tau) for r in range(world)]
    mean_loss = torch.stack([o.loss for o in outs]).mean()
    mean_acc = torch.stack([o.accuracy for o in outs]).mean()

    all_z1 = torch.cat([z1 for z1, _ in pairs])
    all_z2 = torch.cat([z2 for _, z2 in pairs])
    expected = reference_loss(all_z1.numpy(), all_z2.numpy(), tau)
    np.testing.assert_allclose(mean_loss.item(), expected, rtol=1e-6)
    np.testing.assert_allclose(mean_loss.item(), nt_xent(all_z1, all_z2, tau).loss.item(), rtol=1e-12)
    assert mean_acc.item() == pytest.approx(reference_accuracy(all_z1.numpy(), all_z2.numpy()))


def test_global_gradients_match_full_batch() -> None:
    """With a differentiable gather, the mean of rank losses has the full-batch gradient."""
    world, n, d = 3, 3, 8
    leaves = [torch.randn(2 * n, d, dtype=torch.float64, requires_grad=True) for _ in range(world)]
    z_global = torch.cat(leaves)
    losses = [nt_xent_global(leaves[r], z_global, r * 2 * n, 0.2).loss for r in range(world)]
    torch.stack(losses).mean().backward()
    got = torch.cat([leaf.grad for leaf in leaves])  # type: ignore[misc]

    full = torch.cat([leaf.detach() for leaf in leaves]).requires_grad_(True)
    z1 = torch.cat([full[r * 2 * n: r * 2 * n + n] for r in range(world)])
    z2 = torch.cat([full[r * 2 * n + n: (r + 1) * 2 * n] for r in range(world)])
    nt_xent(z1, z2, 0.2).loss.backward()
    torch.testing.assert_close(got, full.grad)


def test_global_wrong_offset_changes_loss() -> None:
    z = torch.randn(12, 8, dtype=torch.float64)
    right = nt_xent_global(z[4:8], z, 4).loss
    wrong = nt_xent_global(z[4:8], z, 0).loss
    assert not torch.isclose(right, wrong)


@pytest.mark.parametrize(
    ("z1_shape", "z2_shape"), [((4, 8), (4, 9)), ((4, 8), (5, 8)), ((8,), (8,)), ((0, 8), (0, 8))]
)
def test_bad_shapes_raise(z1_shape: tuple[int, ...], z2_shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        nt_xent(torch.randn(z1_shape), torch.randn(z2_shape))


@pytest.mark.parametrize("tau", [0.0, -0.5])
def test_bad_temperature_raises(tau: float) -> None:
    z = torch.randn(4, 8)
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(z, z, tau)
    with pytest.raises(ValueError, match="temperature"):
        nt_xent_global(z, z, 0, tau)


@pytest.mark.parametrize(
    ("local_rows", "global_rows", "offset", "d_global"),
    [(3, 12, 0, 8), (4, 12, 10, 8), (4, 12, -1, 8), (4, 12, 0, 9), (0, 12, 0, 8)],
)
def test_global_bad_arguments_raise(local_rows: int, global_rows: int, offset: int, d_global: int) -> None:
    with pytest.raises(ValueError):
        nt_xent_global(torch.randn(local_rows, 8), torch.randn(global_rows, d_global), offset, 0.5)
