"""Randomized smoothing (Cohen, Rosenfeld & Kolter, ICML 2019): prediction and certification.

The smoothed classifier is g(x) = argmax_c P(f(x + e) = c), e ~ N(0, sigma^2 I), with noise added in input
space ([0, 1] pixels; the model normalises itself). This class holds the algorithm only; I/O, resumable
per-example output and analysis live elsewhere.

- ``certify(x)``: guess the top class from ``n0`` noise samples, count it in ``n`` fresh samples, take the
  one-sided (1 - alpha) Clopper-Pearson lower bound p_A of its probability; abstain if p_A < 1/2, else
  return the class and the certified L2 radius sigma * Phi^-1(p_A).
- ``predict(x)``: count ``n`` samples; return the top class if a two-sided binomial test of its count against
  the runner-up's rejects equality at level alpha, else abstain.

Speed: noise is drawn, the base classifier run and its votes counted on ``x``'s device (``bincount`` there,
counts accumulated there); a call transfers one small result to the host. Batches may be as large as memory
allows. Reproducibility: the noise of sample k of a (seed, stream) comes from chunk ``k // noise_chunk``,
drawn by a generator on ``x``'s device seeded by (seed, stream, chunk), so counts depend on the seed, the
device and ``noise_chunk``, not on ``batch_size``. Reduced precision (``autocast_dtype``) changes the base
classifier and is off unless asked for.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from scipy.stats import beta, binomtest, norm
from torch import nn

from robustkd.evaluate.finite import nonfinite_count, raise_if_nonfinite

ABSTAIN = -1
NOISE_CHUNK = 256
"""Samples per noise chunk (the unit of the noise stream; part of the protocol, recorded by the suite)."""

SELECTION, ESTIMATION, PREDICTION = 0, 1, 2
"""Noise streams of one input: ``certify``'s n0 selection samples, its n estimation samples, ``predict``'s."""

_MASK64 = (1 << 64) - 1


def clopper_pearson_lower(successes: int, trials: int, alpha: float) -> float:
    """One-sided (1 - alpha) lower confidence bound on a binomial proportion (0 if no successes)."""
    if successes <= 0:
        return 0.0
    return float(beta.ppf(alpha, successes, trials - successes + 1))


def chunk_seed(seed: int, stream: int, chunk: int) -> int:
    """A 63-bit generator seed for chunk ``chunk`` of stream ``stream`` (splitmix64 finaliser of the three)."""
    z = (seed * 0x9E3779B97F4A7C15 + stream * 0xBF58476D1CE4E5B9 + chunk * 0x94D049BB133111EB + 1) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) >> 1


def noise_batches(shape: tuple[int, ...], num: int, batch_size: int, *, seed: int, stream: int,
                  device: torch.device, chunk: int = NOISE_CHUNK) -> Iterator[torch.Tensor]:
    """Standard normal noise for samples 0 .. num - 1 of ``shape``, in batches of ``batch_size`` (the last
    may be smaller), float32 on ``device``.

    Sample k is row ``k % chunk`` of ``randn(chunk, ...)`` drawn after seeding a generator on ``device`` with
    ``chunk_seed(seed, stream, k // chunk)``: the values do not depend on ``batch_size``. For images
    (C, H, W) the draw is in (H, W, C) order and batches come out channels_last (the faster convolution
    layout), as views; other shapes are drawn as they are.
    """
    if num < 0 or batch_size < 1 or chunk < 1:
        raise ValueError(f"noise_batches: num >= 0, batch_size >= 1 and chunk >= 1, got {num}, {batch_size}, {chunk}")
    image = len(shape) == 3
    drawn = (shape[1], shape[2], shape[0]) if image else tuple(shape)
    generator = torch.Generator(device=device)
    buffer: torch.Tensor | None = None
    used = chunk
    index = 0
    done = 0
    while done < num:
        size = min(batch_size, num - done)
        out = torch.empty((size, *drawn), device=device)
        filled = 0
        while filled < size:
            if used == chunk:  # start a new chunk: straight into the batch when it fits whole
                generator.manual_seed(chunk_seed(seed, stream, index))
                index += 1
                if size - filled >= chunk:
                    torch.randn((chunk, *drawn), generator=generator, device=device, out=out[filled:filled + chunk])
                    filled += chunk
                    continue
                buffer = torch.randn((chunk, *drawn), generator=generator, device=device)
                used = 0
            assert buffer is not None
            take = min(chunk - used, size - filled)
            out[filled:filled + take] = buffer[used:used + take]
            used += take
            filled += take
        done += size
        yield out.permute(0, 3, 1, 2) if image else out


def inference_model(model: nn.Module, fold_batchnorm: bool = True) -> tuple[nn.Module, bool]:
    """An eval-mode, gradient-free copy of ``model`` for repeated forwards, and whether BatchNorm was folded.

    With ``fold_batchnorm``, BatchNorm layers are folded into the convolutions before them
    (``torch.fx.experimental.optimization.fuse``): the same function up to float32 rounding, one memory pass
    fewer per layer. Models torch.fx cannot trace are copied as they are. The copy is channels_last.
    """
    was_training = model.training
    prepared, folded = None, False
    if fold_batchnorm:
        from torch.fx.experimental.optimization import fuse

        try:
            prepared, folded = fuse(copy.deepcopy(model).eval(), inplace=True), True
        except Exception:  # torch.fx raises many error types on untraceable Python
            prepared = None
    if prepared is None:
        prepared = copy.deepcopy(model)
    model.train(was_training)
    prepared = prepared.eval().to(memory_format=torch.channels_last)
    for parameter in prepared.parameters():
        parameter.requires_grad_(False)
    return prepared, folded


@dataclass(frozen=True)
class Certificate:
    prediction: int  # ABSTAIN (-1) or a class index
    radius: float  # certified L2 radius in input units; 0.0 when abstaining
    count: int  # samples (of n) that voted for the predicted class
    p_lower: float


class Smooth:
    """``model`` maps (B, 3, H, W) inputs in [0, 1] to (B, num_classes) logits on the inputs' device;
    ``sigma`` is the noise level; ``autocast_dtype`` (e.g. torch.bfloat16) runs the model under autocast."""

    def __init__(self, model: nn.Module, num_classes: int, sigma: float, *, noise_chunk: int = NOISE_CHUNK,
                 autocast_dtype: torch.dtype | None = None) -> None:
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        if noise_chunk < 1:
            raise ValueError(f"noise_chunk must be positive, got {noise_chunk}")
        self.model = model
        self.num_classes = num_classes
        self.sigma = sigma
        self.noise_chunk = noise_chunk
        self.autocast_dtype = autocast_dtype
        self._nonfinite: torch.Tensor | None = None  # non-finite logits since the last certify/predict (device)

    def certify(self, x: torch.Tensor, n0: int, n: int, alpha: float, batch_size: int, seed: int = 0) -> Certificate:
        """Certify one input ``x`` (3, H, W); reproducible for a given ``seed`` and device."""
        selection = self.sample_counts(x, n0, batch_size, seed, SELECTION)
        estimation = self.sample_counts(x, n, batch_size, seed, ESTIMATION)
        guess_tensor = selection.argmax()
        guess, count, bad = torch.stack((guess_tensor, estimation[guess_tensor], self._take_nonfinite(x))).tolist()
        raise_if_nonfinite(bad, (n0 + n) * self.num_classes, "on noisy copies of one image")  # one sync above
        p_lower = clopper_pearson_lower(count, n, alpha)
        if p_lower < 0.5:
            return Certificate(ABSTAIN, 0.0, count, p_lower)
        return Certificate(guess, self.sigma * float(norm.ppf(p_lower)), count, p_lower)

    def predict(self, x: torch.Tensor, n: int, alpha: float, batch_size: int, seed: int = 0) -> int:
        """The smoothed prediction for one input ``x`` (3, H, W), or ABSTAIN."""
        top2 = self.sample_counts(x, n, batch_size, seed, PREDICTION).topk(2)
        (first, second), (top, _) = top2.values.tolist(), top2.indices.tolist()
        raise_if_nonfinite(int(self._take_nonfinite(x)), n * self.num_classes, "on noisy copies of one image")
        if binomtest(first, first + second, 0.5).pvalue > alpha:
            return ABSTAIN
        return int(top)

    def _take_nonfinite(self, x: torch.Tensor) -> torch.Tensor:
        """The non-finite logits counted since the last call (on ``x``'s device), and reset the count."""
        bad, self._nonfinite = self._nonfinite, None
        return torch.zeros((), dtype=torch.long, device=x.device) if bad is None else bad

    @torch.no_grad()
    def sample_counts(self, x: torch.Tensor, num: int, batch_size: int, seed: int = 0,
                      stream: int = ESTIMATION) -> torch.Tensor:
        """(num_classes,) int64 counts, on ``x``'s device, of the base classifier's predictions on ``num``
        noisy copies of ``x`` (noise from ``noise_batches``; the counts do not depend on ``batch_size``)."""
        was_training = self.model.training
        self.model.eval()
        counts = torch.zeros(self.num_classes, dtype=torch.long, device=x.device)
        bad = torch.zeros((), dtype=torch.long, device=x.device)
        for noise in noise_batches(tuple(x.shape), num, batch_size, seed=seed, stream=stream, device=x.device,
                                   chunk=self.noise_chunk):
            inputs = noise * self.sigma + x  # x broadcast over the batch; the noise (channels_last) layout kept
            with torch.autocast(x.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
                logits = self.model(inputs)
            bad += nonfinite_count(logits)
            counts += torch.bincount(logits.argmax(dim=1), minlength=self.num_classes)
        self._nonfinite = bad if self._nonfinite is None else self._nonfinite + bad
        self.model.train(was_training)
        return counts
