"""VectorQuantizer: nearest codes (chunked) and the straight-through gradient, where each loss
term's gradient goes, the EMA codebook (k-means step, Laplace smoothing, convergence to cluster
means, agreement with vector_quantize_pytorch), perplexity, data initialisation, dead-code
restarts, bad input, and one codebook across two gloo processes."""

import math
from pathlib import Path

import pytest
import torch
from harness import run_gloo_workers

from pyro_flowkit.nn.vq import VectorQuantizer

HERE = Path(__file__).resolve().parent


def brute_nearest(z, codebook):
    return torch.cdist(z.reshape(-1, z.shape[-1]), codebook).argmin(-1).reshape(z.shape[:-1])


def test_forward_is_the_nearest_code_and_backward_is_the_gradient_at_it(device):
    vq = VectorQuantizer(10, 3, data_init=False).double().to(device).eval()
    z = torch.randn(4, 6, 3, dtype=torch.float64, device=device, requires_grad=True)
    out = vq(z)
    expected = brute_nearest(z.detach(), vq.codebook)
    assert torch.equal(out.indices, expected)
    assert torch.equal(out.value, vq.codebook[expected])  # exactly, not up to rounding
    w = torch.randn_like(z)
    (w * out.value + out.value.pow(2)).sum().backward()  # f(v); grad at z_q: w + 2 z_q
    torch.testing.assert_close(z.grad, w + 2 * vq.codebook[expected], rtol=0, atol=1e-15)


def test_chunked_search_equals_the_brute_force_search():
    vq = VectorQuantizer(37, 5, chunk_size=7, data_init=False).double()
    z = torch.randn(1000, 5, dtype=torch.float64)
    assert torch.equal(vq.nearest(z), brute_nearest(z, vq.codebook))
    assert vq.nearest(z.reshape(10, 100, 5)).shape == (10, 100)


def test_the_codebook_term_reaches_only_the_codebook_and_commitment_only_the_encoder():
    """decay=None (the paper's gradient-trained codebook): d/dz of the loss is the commitment
    term's 2 beta (z - z_q) / numel, d/de_k the codebook term's 2 sum (e_k - z) / numel, with no
    beta in it; with commitment=0 nothing reaches z."""
    beta = 0.25
    vq = VectorQuantizer(6, 2, commitment=beta, decay=None, data_init=False).double().eval()
    z = torch.randn(50, 2, dtype=torch.float64, requires_grad=True)
    out = vq(z)
    out.loss.backward()
    z_q = vq.codebook.detach()[out.indices]
    numel = z.numel()
    torch.testing.assert_close(z.grad, 2 * beta * (z.detach() - z_q) / numel)
    expected = torch.zeros_like(vq.codebook).index_add_(0, out.indices, 2 * (z_q - z.detach()))
    torch.testing.assert_close(vq.codebook.grad, expected / numel)
    vq.codebook.grad = None
    z.grad = None
    only_codebook = VectorQuantizer(6, 2, commitment=0.0, decay=None, data_init=False).double()
    only_codebook.load_state_dict(vq.state_dict())
    only_codebook(z).loss.backward()
    assert z.grad is None or not z.grad.any()
    torch.testing.assert_close(only_codebook.codebook.grad, expected / numel)


def test_the_ema_codebook_gets_no_gradient_and_the_loss_is_the_commitment_term():
    vq = VectorQuantizer(6, 2, commitment=0.5, data_init=False).double()
    z = torch.randn(30, 2, dtype=torch.float64, requires_grad=True)
    out = vq(z)
    assert not vq.codebook.requires_grad
    z_q = out.value.detach()
    torch.testing.assert_close(out.loss, 0.5 * (z.detach() - z_q).pow(2).mean())


def test_reductions():
    vq = VectorQuantizer(5, 3, data_init=False).double().eval()
    z = torch.randn(4, 7, 3, dtype=torch.float64)
    per_vector = vq(z, reduction="none").loss
    assert per_vector.shape == (4, 7)
    torch.testing.assert_close(vq(z, reduction="sum").loss, per_vector.sum())
    torch.testing.assert_close(vq(z).loss, per_vector.sum() / z.numel())


def test_decay_zero_is_one_kmeans_step_and_unused_codes_stay():
    vq = VectorQuantizer(5, 2, decay=0.0, eps=0.0, data_init=False, restart_dead=False).double()
    start = vq.codebook.clone()
    z = torch.randn(40, 2, dtype=torch.float64)
    assign = brute_nearest(z, start)
    vq(z)
    for k in range(5):
        members = z[assign == k]
        expected = members.mean(0) if len(members) else start[k]
        torch.testing.assert_close(vq.codebook[k], expected)


def test_one_ema_step_follows_the_papers_update_with_laplace_smoothing():
    gamma, eps = 0.5, 0.1
    vq = VectorQuantizer(3, 2, decay=gamma, eps=eps, data_init=False, restart_dead=False).double()
    vq.ema_count.copy_(torch.tensor([2.0, 1.0, 0.5]))
    vq.ema_sum.copy_(vq.codebook * vq.ema_count[:, None])
    z = torch.randn(20, 2, dtype=torch.float64)
    assign = brute_nearest(z, vq.codebook)
    n = torch.bincount(assign, minlength=3).double()
    s = torch.zeros(3, 2, dtype=torch.float64).index_add_(0, assign, z)
    count = gamma * vq.ema_count + (1 - gamma) * n
    total = gamma * vq.ema_sum + (1 - gamma) * s
    smoothed = (count + eps) / (count.sum() + 3 * eps) * count.sum()
    vq(z)
    torch.testing.assert_close(vq.ema_count, count)
    torch.testing.assert_close(vq.codebook, total / smoothed[:, None])


def test_the_ema_codebook_converges_to_the_cluster_means_of_stationary_data():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[4.0, 0.0], [0.0, 4.0], [-4.0, 0.0], [0.0, -4.0]], dtype=torch.float64)
    vq = VectorQuantizer(4, 2, decay=0.9, data_init=False).double()
    vq.codebook.copy_(centres + 1.0)  # off by 1 in each coordinate
    for _ in range(300):
        which = torch.randint(0, 4, (256,), generator=g)
        vq(centres[which] + 0.5 * torch.randn(256, 2, generator=g, dtype=torch.float64))
    # the clusters do not overlap, so each cluster's mean is its centre
    torch.testing.assert_close(vq.codebook, centres, atol=0.05, rtol=0)


def test_perplexity_is_the_exponentiated_entropy_of_code_use():
    vq = VectorQuantizer(4, 1, data_init=False).double().eval()
    vq.codebook.copy_(torch.tensor([[0.0], [10.0], [20.0], [30.0]]))
    z = torch.tensor([[0.1], [0.2], [10.1], [20.0], [29.0], [31.0]], dtype=torch.float64)
    p = torch.tensor([2, 1, 1, 2], dtype=torch.float64) / 6
    expected = math.exp(-float((p * p.log()).sum()))
    assert vq(z).perplexity.item() == pytest.approx(expected, rel=1e-12)
    assert vq(torch.zeros(5, 1, dtype=torch.float64)).perplexity.item() == pytest.approx(1.0)
    assert vq(vq.codebook.clone()).perplexity.item() == pytest.approx(4.0)


def test_data_initialisation_takes_codes_from_the_first_training_batch():
    vq = VectorQuantizer(8, 3, decay=None).double()
    z = torch.randn(50, 3, dtype=torch.float64)
    vq.eval()
    vq(z)
    assert not vq.initialized  # evaluation never initialises
    vq.train()
    vq(z)
    assert vq.initialized
    distances = torch.cdist(vq.codebook.detach(), z).min(-1).values
    assert torch.equal(distances, torch.zeros(8, dtype=torch.float64))
    state = vq.state_dict()
    assert state["initialized"].item() is True


def test_dead_codes_restart_at_encoder_outputs_and_evaluation_changes_nothing():
    vq = VectorQuantizer(4, 2, restart_after=3, data_init=False).double()
    vq.codebook.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [-1.0, 1.0], [1e3, 1e3]]))
    z = 0.3 * torch.randn(64, 2, dtype=torch.float64)
    vq.eval()
    before = {k: v.clone() for k, v in vq.state_dict().items()}
    for _ in range(5):
        vq(z)
    assert all(torch.equal(before[k], v) for k, v in vq.state_dict().items())
    vq.train()
    for step in range(3):
        assert vq.codebook[3, 0] == 1e3, step
        vq(z)
    assert (torch.cdist(vq.codebook[3:], z).min() == 0).item()  # one of the batch's vectors
    assert vq.unused_steps[3] == 0
    stuck = VectorQuantizer(4, 2, restart_after=3, restart_dead=False, data_init=False).double()
    stuck.load_state_dict(before)
    stuck.train()
    for _ in range(5):
        stuck(z)
    assert stuck.codebook[3, 0] == 1e3


def test_matches_vector_quantize_pytorch():
    """The peer's EuclideanCodebook (decay 0.99, commitment 0.25, no rotation trick): the same
    codes and commitment loss, and from the same EMA state the same codebook after a step."""
    vqp = pytest.importorskip("vector_quantize_pytorch")
    torch.manual_seed(0)
    peer = vqp.VectorQuantize(dim=3, codebook_size=8, decay=0.99, commitment_weight=0.25,
                              rotation_trick=False)  # fmt: skip
    ours = VectorQuantizer(8, 3, decay=0.99, commitment=0.25, data_init=False)
    book = peer._codebook
    ours.codebook.copy_(book.embed[0])
    ours.ema_count.copy_(book.cluster_size[0])
    ours.ema_sum.copy_(book.embed_avg[0])
    z = torch.randn(4, 16, 3)
    peer.eval()
    ours.eval()
    quantized, indices, _ = peer(z)
    out = ours(z)
    assert torch.equal(out.indices, indices)
    torch.testing.assert_close(out.value, quantized)
    peer.train()  # the peer computes its commitment loss in training mode only
    ours.train()
    _, _, commit = peer(z)
    torch.testing.assert_close(ours(z).loss, commit.reshape(()))
    torch.testing.assert_close(ours.codebook, book.embed[0], rtol=1e-5, atol=1e-6)


def test_bad_arguments_and_inputs_are_refused():
    with pytest.raises(ValueError, match="num_codes: expected a positive integer"):
        VectorQuantizer(0, 2)
    with pytest.raises(ValueError, match=r"decay: expected a decay in \[0, 1\)"):
        VectorQuantizer(4, 2, decay=1.0)
    with pytest.raises(ValueError, match="commitment: expected a non-negative"):
        VectorQuantizer(4, 2, commitment=-1.0)
    with pytest.raises(TypeError, match="restart_dead: expected a bool"):
        VectorQuantizer(4, 2, restart_dead=1)
    vq = VectorQuantizer(4, 2)
    with pytest.raises(ValueError, match=r"z: expected shape \(\.\.\., 2\), got \(5, 3\)"):
        vq(torch.randn(5, 3))
    with pytest.raises(ValueError, match="z: expected finite values, got 1 NaN"):
        vq(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(TypeError, match="z: expected a floating tensor"):
        vq(torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="reduction: expected one of"):
        vq(torch.randn(3, 2), reduction="max")
    assert not vq.initialized  # a refused batch initialises nothing


def test_two_gloo_processes_keep_one_codebook(tmp_path):
    """Each process quantises its own half of every batch (different clusters): the EMA
    statistics are summed over the processes, so both keep the codebook that one process gets
    on the whole batches; data initialisation and restarts (which draw random vectors) are
    rank 0's on both."""
    vq_worker = run_gloo_workers(HERE / "vq_worker.py", tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert torch.equal(ranks[0]["plain"], ranks[1]["plain"])
    assert torch.equal(ranks[0]["initialised"], ranks[1]["initialised"])
    assert torch.equal(ranks[0]["restarts"], ranks[1]["restarts"])
    assert ranks[0]["count"] > 0  # restarts did happen
    one, _ = vq_worker.run(0, 1, data_init=False, restart_dead=False)
    torch.testing.assert_close(ranks[0]["plain"], one, rtol=1e-12, atol=1e-12)
