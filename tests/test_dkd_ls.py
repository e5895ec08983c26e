"""DKD and logit-standardised KD against independent numpy/scipy computations of their authors' definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import log_softmax, softmax

from robustkd.distill.dkd import dkd_terms, warmup_factor
from robustkd.distill.logit_standardization import standardize
from robustkd.distill.methods import parse_method
from robustkd.distill.options import DistillOptions
from robustkd.errors import RobustKDError


def _logits(seed: int = 0, rows: int = 7, classes: int = 6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    student = 3 * torch.randn(rows, classes, generator=generator, dtype=torch.float64)
    teacher = 3 * torch.randn(rows, classes, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, classes, (rows,), generator=generator)
    return student, teacher, labels


def _kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return (p * (np.log(p) - np.log(q))).sum(axis=-1)


def _numpy_dkd(student: np.ndarray, teacher: np.ndarray, labels: np.ndarray, temperature: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sample: TCKD, NCKD and the full KD divergence, from the paper's definitions."""
    tckd, nckd, kd = [], [], []
    for s, t, y in zip(student / temperature, teacher / temperature, labels):
        p_s, p_t = softmax(s), softmax(t)
        b_s, b_t = np.array([p_s[y], 1 - p_s[y]]), np.array([p_t[y], 1 - p_t[y]])
        keep = np.arange(len(s)) != y
        q_s, q_t = softmax(s[keep]), softmax(t[keep])
        tckd.append(_kl(b_t, b_s))
        nckd.append(_kl(q_t, q_s))
        kd.append(_kl(p_t, p_s))
    return np.array(tckd), np.array(nckd), np.array(kd)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_dkd_terms_are_the_papers_binary_and_non_target_divergences(temperature: float) -> None:
    student, teacher, labels = _logits()
    tckd, nckd = dkd_terms(student, teacher, labels, temperature)
    expected_t, expected_n, kd = _numpy_dkd(student.numpy(), teacher.numpy(), labels.numpy(), temperature)
    assert float(tckd) == pytest.approx(temperature**2 * expected_t.mean(), rel=1e-10)
    assert float(nckd) == pytest.approx(temperature**2 * expected_n.mean(), rel=1e-10)
    # The decomposition (Eq. 1 of the paper): KD = TCKD + (1 - p_target of the teacher) * NCKD, per sample.
    p_target = softmax(teacher.numpy() / temperature, axis=1)[np.arange(len(labels)), labels.numpy()]
    assert kd == pytest.approx(expected_t + (1 - p_target) * expected_n, rel=1e-9)


def test_dkd_method_weights_and_warms_up_over_its_fraction_of_the_schedule() -> None:
    student, teacher, labels = _logits(1)
    method = parse_method("dkd", DistillOptions())
    assert method.recorded_options == {"ce_weight": 1.0, "dkd_alpha": 1.0, "dkd_beta": 8.0, "dkd_temperature": 4.0,
                                       "dkd_warmup_fraction": 20 / 240}
    expected_t, expected_n, _ = _numpy_dkd(student.numpy(), teacher.numpy(), labels.numpy(), 4.0)
    full = 16 * expected_t.mean(), 16 * 8 * expected_n.mean()
    ce = float(torch.nn.functional.cross_entropy(student, labels))
    losses = method.losses(student, teacher, labels)  # before any epoch: no warm-up factor
    assert float(losses["ce"]) == pytest.approx(ce) and float(losses["tckd"]) == pytest.approx(full[0])
    assert float(losses["nckd"]) == pytest.approx(full[1])
    method.start_epoch(1, 24)  # 24 epochs: a warm-up of 2 epochs (20/240 of them)
    assert float(method.losses(student, teacher, labels)["nckd"]) == pytest.approx(full[1] / 2)
    method.start_epoch(2, 24)
    assert float(method.losses(student, teacher, labels)["tckd"]) == pytest.approx(full[0])
    assert warmup_factor(20, 240, 20 / 240) == 1.0 and warmup_factor(5, 240, 20 / 240) == pytest.approx(0.25)
    assert warmup_factor(1, 10, 0.0) == 1.0


def test_logit_standardization_is_the_z_score_with_bessels_correction() -> None:
    student, _, _ = _logits(2)
    values = student.numpy()
    expected = (values - values.mean(axis=1, keepdims=True)) / (values.std(axis=1, ddof=1, keepdims=True) + 1e-7)
    assert standardize(student).numpy() == pytest.approx(expected, rel=1e-12)


def test_kd_ls_is_the_authors_loss_with_their_cifar100_settings() -> None:
    student, teacher, labels = _logits(3)
    method = parse_method("kd+ls", DistillOptions())
    assert method.name == "kd+ls" and method.uses_teacher
    assert method.recorded_options == {"ce_weight": 0.1, "ls_temperature": 2.0, "ls_weight": 9.0}

    def z(values: np.ndarray) -> np.ndarray:
        return (values - values.mean(axis=1, keepdims=True)) / (values.std(axis=1, ddof=1, keepdims=True) + 1e-7)

    p_t = softmax(z(teacher.numpy()) / 2.0, axis=1)
    log_p_s = log_softmax(z(student.numpy()) / 2.0, axis=1)
    kl = (p_t * (np.log(p_t) - log_p_s)).sum(axis=1).mean()
    losses = method.losses(student, teacher, labels)
    assert float(losses["kl"]) == pytest.approx(9.0 * 4.0 * kl, rel=1e-9)
    ce = float(torch.nn.functional.cross_entropy(student, labels))  # on the raw logits
    assert float(losses["ce"]) == pytest.approx(0.1 * ce, rel=1e-12)
    # Standardised: a scale and shift of either model's logits changes nothing in the distillation term.
    moved = method.losses(5 * student + 2, 0.5 * teacher - 1, labels)
    assert float(moved["kl"]) == pytest.approx(float(losses["kl"]), rel=1e-6)
    assert float(parse_method("kd", DistillOptions()).losses(5 * student, teacher, labels)["kl"]) != \
        pytest.approx(float(parse_method("kd", DistillOptions()).losses(student, teacher, labels)["kl"]), rel=1e-3)


def test_ls_is_refused_where_its_authors_do_not_define_it_and_bad_dkd_options_are_refused() -> None:
    with pytest.raises(RobustKDError, match=r"--method 'dist\+ls': the ls modifier is defined for kd only"):
        parse_method("dist+ls", DistillOptions())
    with pytest.raises(RobustKDError, match="dkd_warmup_fraction=1.5; expected a fraction of the epochs in"):
        DistillOptions.from_mapping({"dkd_warmup_fraction": 1.5})
    with pytest.raises(RobustKDError, match="dkd_beta=-1.0; expected a non-negative number"):
        DistillOptions.from_mapping({"dkd_beta": -1.0})
    assert parse_method("kd+ls+spearman", DistillOptions()).name == "kd+ls+spearman"
