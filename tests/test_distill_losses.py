"""Golden values for every distillation loss, and gradient sanity on awkward inputs."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from robustkd.distill.cmkd import cmkd_losses, spearman_loss_rows, term_weights
from robustkd.distill.correlation import inter_class_loss, intra_class_loss
from robustkd.distill.difficulty import sample_difficulty
from robustkd.distill.kd import kd_kl_loss
from robustkd.distill.methods import parse_method
from robustkd.distill.options import DistillOptions
from robustkd.distill.soft_rank import exact_rank, soft_rank
from robustkd.errors import RobustKDError

torch.set_default_dtype(torch.float32)


def _logits(batch: int = 6, classes: int = 20, seed: int = 0, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, classes, generator=generator, dtype=dtype) * 3,
            torch.randn(batch, classes, generator=generator, dtype=dtype) * 3)


def test_inter_class_pearson_equals_scipy_per_row() -> None:
    a, b = _logits()
    ours = inter_class_loss(a, b)
    expected = [1 - scipy.stats.pearsonr(a[i].numpy(), b[i].numpy())[0] for i in range(len(a))]
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-7)


def test_intra_class_pearson_equals_scipy_per_column() -> None:
    a, b = _logits(batch=16, classes=5)
    expected = np.mean([1 - scipy.stats.pearsonr(a[:, j].numpy(), b[:, j].numpy())[0] for j in range(5)])
    assert intra_class_loss(a, b).item() == pytest.approx(expected, abs=1e-7)


def test_dist_method_is_the_authors_formula() -> None:
    s, t = _logits()
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    losses = parse_method("dist", DistillOptions()).losses(s, t, labels)
    p_s, p_t = (s / 4).softmax(1).numpy(), (t / 4).softmax(1).numpy()
    inter = np.mean([1 - scipy.stats.pearsonr(p_s[i], p_t[i])[0] for i in range(6)])
    intra = np.mean([1 - scipy.stats.pearsonr(p_s[:, j], p_t[:, j])[0] for j in range(20)])
    assert losses["inter"].item() == pytest.approx(2 * 16 * inter, rel=1e-6)
    assert losses["intra"].item() == pytest.approx(2 * 16 * intra, rel=1e-6)
    assert losses["ce"].item() == pytest.approx(torch.nn.functional.cross_entropy(s, labels).item())


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0, 8.0])
def test_kd_equals_a_hand_written_kl(temperature: float) -> None:
    s, t = _logits()
    p_t = np.exp(t.numpy() / temperature)
    p_t /= p_t.sum(1, keepdims=True)
    p_s = np.exp(s.numpy() / temperature)
    p_s /= p_s.sum(1, keepdims=True)
    expected = temperature**2 * np.mean(np.sum(p_t * (np.log(p_t) - np.log(p_s)), axis=1))
    assert kd_kl_loss(s, t, temperature).item() == pytest.approx(expected, rel=1e-9)


def test_kd_method_weights_ce_and_kl_as_the_standard_protocol() -> None:
    s, t = _logits()
    labels = torch.zeros(6, dtype=torch.long)
    losses = parse_method("kd", DistillOptions()).losses(s, t, labels)
    assert losses["kl"].item() == pytest.approx(0.9 * kd_kl_loss(s, t, 4.0).item())
    assert losses["ce"].item() == pytest.approx(0.1 * torch.nn.functional.cross_entropy(s, labels).item())


def test_exact_ranks_match_scipy_with_ties() -> None:
    x = torch.tensor([[3.0, 1.0, 3.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    for row in range(2):
        np.testing.assert_array_equal(exact_rank(x)[row].numpy(), scipy.stats.rankdata(x[row].numpy()))
    many_ties = torch.randint(0, 5, (30, 40), generator=torch.Generator().manual_seed(0)).float()
    ranks = exact_rank(many_ties)
    for row in range(30):
        np.testing.assert_array_equal(ranks[row].numpy(), scipy.stats.rankdata(many_ties[row].numpy()))


@pytest.mark.parametrize("strength, tolerance", [(1e-1, 0.2), (1e-2, 2e-2), (1e-5, 1e-6)])
def test_spearman_term_approaches_scipy_as_regularisation_vanishes(strength: float, tolerance: float) -> None:
    # Tolerance stated per strength: |ours - (1 - spearmanr)| <= tolerance on 100-class float64 logits.
    s, t = _logits(batch=4, classes=100, seed=3)
    ours = spearman_loss_rows(s, t, strength).numpy()
    expected = [1 - scipy.stats.spearmanr(s[i].numpy(), t[i].numpy())[0] for i in range(4)]
    assert np.abs(ours - expected).max() <= tolerance


def test_spearman_term_handles_ties_like_scipy() -> None:
    s = torch.tensor([[1.0, 2.0, 2.0, 5.0, 0.0, 2.0]], dtype=torch.float64)
    t = torch.tensor([[0.0, 1.0, 1.0, 3.0, 1.0, 4.0]], dtype=torch.float64)
    expected = 1 - scipy.stats.spearmanr(s[0].numpy(), t[0].numpy())[0]
    assert spearman_loss_rows(s, t, 1e-5).item() == pytest.approx(expected, abs=1e-6)
    # Soft ranks of tied entries are equal (their average rank).
    ranks = soft_rank(s, 1e-5)[0]
    assert ranks[1].item() == pytest.approx(ranks[2].item()) == pytest.approx(ranks[5].item()) == pytest.approx(4.0)


def test_spearman_term_is_invariant_to_a_constant_added_to_the_logits() -> None:
    s, t = _logits(batch=4, classes=100)
    base = spearman_loss_rows(s, t, 0.1)
    shifted = spearman_loss_rows(s + 7.5, t - 3.0, 0.1)
    assert (base - shifted).abs().max().item() < 1e-9


def test_soft_rank_gradient_matches_finite_differences() -> None:
    x = torch.randn(3, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: soft_rank(v, 0.3), (x,))


def test_difficulty_measures() -> None:
    certain = torch.tensor([[20.0, 0.0, 0.0, 0.0]])
    uniform = torch.zeros(1, 4)
    label = torch.tensor([0])
    assert sample_difficulty(certain, label, "entropy").item() == pytest.approx(0.0, abs=1e-6)
    assert sample_difficulty(uniform, label, "entropy").item() == pytest.approx(1.0)
    assert sample_difficulty(uniform, label, "true_prob").item() == pytest.approx(0.75)
    assert sample_difficulty(certain, torch.tensor([1]), "true_prob").item() == pytest.approx(1.0)


def test_weighting_directions() -> None:
    difficulty = torch.tensor([0.0, 0.25, 1.0])
    w_p, w_s = term_weights(difficulty, "rank_hard", 1.0)
    assert w_s.tolist() == [0.0, 0.5, 2.0] and w_p.tolist() == [2.0, 1.5, 0.0]
    w_p, w_s = term_weights(difficulty, "value_hard", 1.0)
    assert w_p.tolist() == [0.0, 0.5, 2.0] and w_s.tolist() == [2.0, 1.5, 0.0]
    assert [w.tolist() for w in term_weights(difficulty, "equal", 1.0)] == [[1.0] * 3] * 2
    w_p, w_s = term_weights(difficulty, "rank_hard", 2.0)
    assert w_s.tolist() == [0.0, 0.125, 2.0]


def test_cmkd_terms_by_hand() -> None:
    s, t = _logits(batch=5, classes=30)
    labels = torch.arange(5)
    losses = cmkd_losses(s, t, labels, tau=4.0, pearson_scale=1.0, spearman_scale=0.5, intra_scale=0.25, strength=1e-5,
                         backend="sigmoid", teacher_ranks="exact", difficulty="true_prob", weighting="rank_hard", power=1.0)
    p_s, p_t = (s / 4).softmax(1).numpy(), (t / 4).softmax(1).numpy()
    d = 1 - (t.softmax(1).numpy()[np.arange(5), labels.numpy()])
    pearson = np.array([1 - scipy.stats.pearsonr(p_s[i], p_t[i])[0] for i in range(5)])
    spearman = np.array([1 - scipy.stats.spearmanr(s[i].numpy(), t[i].numpy())[0] for i in range(5)])
    intra = np.mean([1 - scipy.stats.pearsonr(p_s[:, j], p_t[:, j])[0] for j in range(30)])
    assert losses["pearson"].item() == pytest.approx(16 * np.mean(2 * (1 - d) * pearson), rel=1e-5)  # d in float32
    assert losses["spearman"].item() == pytest.approx(16 * 0.5 * np.mean(2 * d * spearman), rel=1e-5)
    assert losses["intra"].item() == pytest.approx(16 * 0.25 * intra, rel=1e-5)  # eps=1e-8 on small norms


METHODS = ["kd", "dist", "cmkd", "kd+spearman", "dist+spearman", "cmkd+pearson", "dkd", "kd+ls"]


def _awkward_cases() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    s, t = _logits(batch=4, classes=10, dtype=torch.float32)
    return {
        "constant rows": (torch.zeros(4, 10), torch.full((4, 10), 2.0)),
        "ties": (torch.tensor([[1.0, 1.0, 2.0, 2.0] * 2 + [0.0, 0.0]] * 4), t),
        "magnitude 1e4": (s * 1e4, t * 1e4),
        "batch size 1": (s[:1], t[:1]),
    }


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", list(_awkward_cases()))
def test_gradients_are_finite_on_awkward_inputs(method: str, case: str) -> None:
    student, teacher = _awkward_cases()[case]
    student = student.clone().requires_grad_(True)
    labels = torch.zeros(len(student), dtype=torch.long)
    losses = parse_method(method, DistillOptions()).losses(student, teacher, labels)
    total = sum(losses.values())
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(student.grad).all(), (method, case, losses)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("method", ["kd", "dist", "cmkd", "dkd", "kd+ls"])
def test_gradients_are_finite_under_autocast(method: str, dtype: torch.dtype) -> None:
    from robustkd.distill.task import DistillationTask
    from robustkd.models import build_model

    torch.manual_seed(0)
    student, teacher = build_model("resnet8", 10, (0.5,) * 3, (0.25,) * 3), build_model("resnet8", 10, (0.5,) * 3, (0.25,) * 3)
    task = DistillationTask(student, teacher, parse_method(method, DistillOptions()), {})
    inputs, labels = torch.rand(4, 3, 32, 32), torch.arange(4)
    with torch.autocast("cpu", dtype=dtype):
        logits, losses = task(inputs, labels)
    total = sum(losses.values())
    total.backward()
    assert all(value.dtype == torch.float32 for value in losses.values())
    assert torch.isfinite(total) and all(torch.isfinite(p.grad).all() for p in student.parameters() if p.grad is not None)


def test_unknown_methods_and_options_are_refused() -> None:
    with pytest.raises(RobustKDError, match="unknown distillation method 'crd'; expected one of: ce, kd, dist, cmkd"):
        parse_method("crd", DistillOptions())
    with pytest.raises(RobustKDError, match="unknown distillation add-on 'kendall'; expected one of: spearman, pearson"):
        parse_method("kd+kendall", DistillOptions())
    with pytest.raises(RobustKDError, match="names a term twice"):
        parse_method("kd+spearman+spearman", DistillOptions())
    with pytest.raises(RobustKDError, match="unknown distill option\\(s\\) temperature"):
        DistillOptions.from_mapping({"temperature": 4})
    with pytest.raises(RobustKDError, match="cmkd_weighting='hardest'; expected rank_hard or value_hard or equal"):
        DistillOptions.from_mapping({"cmkd_weighting": "hardest"})


@pytest.mark.parametrize("name, folded", [("resnet8", True), ("wrn_16_1", True), ("ShuffleV1", True), ("vgg8", False)])
def test_folded_teacher_matches_the_original(name: str, folded: bool) -> None:
    from robustkd.distill.teacher import frozen_teacher
    from robustkd.models import build_model

    torch.manual_seed(0)
    teacher = build_model(name, 10, (0.5,) * 3, (0.25,) * 3)
    teacher.train()
    teacher(torch.rand(16, 3, 32, 32))  # non-trivial BatchNorm running statistics
    teacher.eval()
    fast, was_folded = frozen_teacher(teacher)
    assert was_folded is folded
    assert not any(p.requires_grad for p in fast.parameters()) and not fast.training
    inputs = torch.rand(8, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fast(inputs), teacher(inputs), rtol=1e-4, atol=1e-4)


def test_exact_ranks_of_half_precision_logits_are_exact_for_many_classes() -> None:
    # 1000 distinct values: bf16 holds integers exactly only up to 256, so ranks must be computed wider.
    x = torch.randperm(1000).float()[None].to(torch.bfloat16)
    ranks = exact_rank(x)
    assert ranks.dtype == torch.float32
    np.testing.assert_array_equal(ranks[0].numpy(), scipy.stats.rankdata(x[0].float().numpy()))
