"""The batched corruption engine: ``corrupt(images, name, severity, seed=...)``.

Every corruption is split into ``draw`` (the random quantities for one image, made on the CPU from a
generator seeded by (seed, corruption, severity, image index), so a result does not depend on the batch
size or the device) and ``apply`` (a batched, deterministic function of the images and the draws, on
the images' device). Algorithms and constants follow the authors' creation scripts; see
``docs/corruptions.md`` for the known differences (motion blur without ImageMagick, float32).
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from robustkd.corruptions import filters
from robustkd.corruptions.catalog import CorruptionProfile, check_corruption, profile_for_size
from robustkd.corruptions.frost import frost_textures
from robustkd.corruptions.plasma import plasma_draw_count, plasma_fractal, replay_uniform
from robustkd.errors import RobustKDError

Draws = dict[str, Tensor]
DrawFn = Callable[[Tensor, Any, CorruptionProfile, torch.Generator], Draws]
ApplyFn = Callable[[Tensor, Any, CorruptionProfile, Draws], Tensor]


@dataclass(frozen=True)
class Corruption:
    """``draw(image uint8 (3, H, W) on CPU, parameter, profile, generator) -> draws`` and
    ``apply(images (B, 3, H, W) float in [0, 255], parameter, profile, batched draws) -> float [0, 255]``."""

    name: str
    draw: DrawFn
    apply: ApplyFn


def _no_draws(image: Tensor, parameter: Any, profile: CorruptionProfile, generator: torch.Generator) -> Draws:
    return {}


def _uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator,
             dtype: torch.dtype = torch.float64) -> Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, dtype=dtype)


def _to_unit(x: Tensor) -> Tensor:
    return x / 255.0


def _from_unit(x: Tensor) -> Tensor:
    return x.clamp(0, 1) * 255.0


# ----- noise -----

def _draw_normal(image: Tensor, parameter: Any, profile: CorruptionProfile, generator: torch.Generator) -> Draws:
    return {"normal": torch.randn(tuple(image.shape), generator=generator)}


def _apply_gaussian_noise(x: Tensor, c: float, profile: CorruptionProfile, draws: Draws) -> Tensor:
    return _from_unit(_to_unit(x) + draws["normal"] * c)


def _apply_speckle_noise(x: Tensor, c: float, profile: CorruptionProfile, draws: Draws) -> Tensor:
    unit = _to_unit(x)
    return _from_unit(unit + unit * draws["normal"] * c)


def _draw_shot_noise(image: Tensor, c: float, profile: CorruptionProfile, generator: torch.Generator) -> Draws:
    rate = image.float() / 255.0 * c
    return {"counts": torch.poisson(rate, generator=generator).float()}


def _apply_shot_noise(x: Tensor, c: float, profile: CorruptionProfile, draws: Draws) -> Tensor:
    return _from_unit(draws["counts"] / c)


def _draw_impulse_noise(image: Tensor, c: float, profile: CorruptionProfile, generator: torch.Generator) -> Draws:
    shape = tuple(image.shape)
    return {"flipped": torch.rand(shape, generator=generator, dtype=torch.float64) < c,
            "salted": torch.rand(shape, generator=generator, dtype=torch.float64) < 0.5}


def _apply_impulse_noise(x: Tensor, c: float, profile: CorruptionProfile, draws: Draws) -> Tensor:
    flipped, salted = draws["flipped"], draws["salted"]
    unit = _to_unit(x)
    unit = torch.where(flipped & salted, torch.ones_like(unit), unit)
    unit = torch.where(flipped & ~salted, torch.zeros_like(unit), unit)
    return _from_unit(unit)


# ----- blur -----

def _apply_gaussian_blur(x: Tensor, sigma: float, profile: CorruptionProfile, draws: Draws) -> Tensor:
    return _from_unit(filters.gaussian_blur(_to_unit(x), sigma))


def _glass_positions(size: int, delta: int) -> list[tuple[int, int]]:
    rows = range(size - delta, delta, -1)
    return [(h, w) for h in rows for w in rows]


def _draw_glass_blur(image: Tensor, c: tuple[float, int, int], profile: CorruptionProfile,
                     generator: torch.Generator) -> Draws:
    _, delta, iterations = c
    steps = len(_glass_positions(image.shape[-1], delta))
    # (dx, dy) per visited pixel, from randint(-delta, delta): values -delta .. delta - 1.
    return {"offsets": torch.randint(-delta, delta, (iterations, steps, 2), generator=generator)}


def _apply_glass_blur(x: Tensor, c: tuple[float, int, int], profile: CorruptionProfile, draws: Draws) -> Tensor:
    """Blur, then for every pixel (bottom-right to top-left) copy the pixel at a random offset into it.

    The scripts write this as a tuple "swap" of two numpy views, which copies one way only; the
    published data has that effect, so this does too.
    """
    sigma, delta, iterations = c
    b, ch, h, w = x.shape
    blurred = torch.floor(filters.gaussian_blur(_to_unit(x), sigma) * 255)
    flat = blurred.reshape(b, ch, h * w).clone()
    positions = _glass_positions(h, delta)
    offsets = draws["offsets"]
    targets = torch.tensor([row * w + col for row, col in positions], device=x.device)
    for iteration in range(iterations):
        if delta == 1:
            # Offsets in {-1, 0} point up/left, to pixels not yet visited in this pass (bottom-right to
            # top-left): every copy reads the pass's input, so the whole pass is one gather.
            sources = targets + offsets[:, iteration, :, 1] * w + offsets[:, iteration, :, 0]
            gathered = flat.gather(2, sources.unsqueeze(1).expand(b, ch, -1))
            flat[:, :, targets] = gathered
            continue
        for step, (row, col) in enumerate(positions):
            dx = offsets[:, iteration, step, 0]
            dy = offsets[:, iteration, step, 1]
            source = ((row + dy) * w + (col + dx)).view(b, 1, 1).expand(b, ch, 1)
            flat[:, :, row * w + col] = flat.gather(2, source).squeeze(2)
    shuffled = flat.reshape(b, ch, h, w)
    return _from_unit(filters.gaussian_blur(shuffled / 255.0, sigma))


def _apply_defocus_blur(x: Tensor, c: tuple[float, float], profile: CorruptionProfile, draws: Draws) -> Tensor:
    kernel = filters.disk_kernel(float(c[0]), float(c[1]))
    return _from_unit(filters.filter2d_reflect101(_to_unit(x), kernel))


def _draw_motion_blur(image: Tensor, c: Any, profile: CorruptionProfile, generator: torch.Generator) -> Draws:
    return {"angle": _uniform((), -45.0, 45.0, generator)}


def _apply_motion_blur(x: Tensor, c: tuple[int, float], profile: CorruptionProfile, draws: Draws) -> Tensor:
    return filters.motion_blur(x, int(c[0]), float(c[1]), draws["angle"]).clamp(0, 255)


def _zoom_factors(c: tuple[float, float, float]) -> np.ndarray:
    return np.arange(*c)


def _apply_zoom_blur(x: Tensor, c: tuple[float, float, float], profile: CorruptionProfile, draws: Draws) -> Tensor:
    unit = _to_unit(x)
    factors = _zoom_factors(c)
    total = torch.zeros_like(unit)
    for factor in factors:
        total = total + filters.clipped_zoom(unit, float(factor))
    return _from_unit((unit + total) / (len(factors) + 1))


# ----- weather -----

def _draw_snow(image: Tensor, c: Any, profile: CorruptionProfile, generator: torch.Generator) -> Draws:
    return {"normal": torch.randn(tuple(image.shape[-2:]), generator=generator, dtype=torch.float64),
            "angle": _uniform((), -135.0, -45.0, generator)}


def _apply_snow(x: Tensor, c: tuple[float, ...], profile: CorruptionProfile, draws: Draws) -> Tensor:
    loc, scale, zoom, threshold, radius, sigma, keep = c
    unit = _to_unit(x)
    layer = (loc + scale * draws["normal"]).to(unit.dtype).unsqueeze(1)
    layer = filters.clipped_zoom(layer, float(zoom))
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer)
    layer = torch.floor(layer.clamp(0, 1) * 255)  # the 8-bit greyscale image handed to ImageMagick
    layer = filters.motion_blur(layer, int(radius), float(sigma), draws["angle"])
    layer = torch.floor(layer + 0.5).clamp(0, 255) / 255.0
    grey = 0.299 * unit[:, 0:1] + 0.587 * unit[:, 1:2] + 0.114 * unit[:, 2:3]
    unit = keep * unit + (1 - keep) * torch.maximum(unit, grey * 1.5 + 0.5)
    return _from_unit(unit + layer + filters.rot180(layer))


def _draw_frost(image: Tensor, c: Any, profile: CorruptionProfile, generator: torch.Generator) -> Draws:
    textures = frost_textures(profile.frost_scale)
    index = int(torch.randint(0, len(textures), (), generator=generator))
    texture = textures[index]
    size = image.shape[-1]
    top = int(torch.randint(0, texture.shape[1] - size, (), generator=generator))
    left = int(torch.randint(0, texture.shape[2] - size, (), generator=generator))
    return {"frost": texture[:, top:top + size, left:left + size].float()}


def _apply_frost(x: Tensor, c: tuple[float, float], profile: CorruptionProfile, draws: Draws) -> Tensor:
    return (c[0] * x + c[1] * draws["frost"]).clamp(0, 255)


def _draw_fog(image: Tensor, c: tuple[float, float], profile: CorruptionProfile,
              generator: torch.Generator) -> Draws:
    """The plasma's U(-1, 1) draws, all steps concatenated (the map itself is built batched in ``apply``)."""
    return {"unit_draws": torch.rand(plasma_draw_count(profile.plasma_size), generator=generator,
                                     dtype=torch.float64) * 2 - 1}


def _apply_fog(x: Tensor, c: tuple[float, float], profile: CorruptionProfile, draws: Draws) -> Tensor:
    size = x.shape[-1]
    plasma = plasma_fractal(profile.plasma_size, float(c[1]), replay_uniform(draws["unit_draws"]))
    unit = _to_unit(x)
    max_value = unit.amax(dim=(1, 2, 3), keepdim=True)
    unit = unit + c[0] * plasma[:, :size, :size].to(unit.dtype).unsqueeze(1)
    return _from_unit(unit * max_value / (max_value + c[0]))


def _apply_brightness(x: Tensor, c: float, profile: CorruptionProfile, draws: Draws) -> Tensor:
    hsv = filters.rgb_to_hsv(_to_unit(x))
    hsv = torch.cat((hsv[:, :2], (hsv[:, 2:] + c).clamp(0, 1)), 1)
    return _from_unit(filters.hsv_to_rgb(hsv))


# ----- digital -----

def _apply_contrast(x: Tensor, c: float, profile: CorruptionProfile, draws: Draws) -> Tensor:
    unit = _to_unit(x)
    means = unit.mean(dim=(2, 3), keepdim=True)
    return _from_unit((unit - means) * c + means)


def _apply_saturate(x: Tensor, c: tuple[float, float], profile: CorruptionProfile, draws: Draws) -> Tensor:
    hsv = filters.rgb_to_hsv(_to_unit(x))
    saturation = (hsv[:, 1:2] * c[0] + c[1]).clamp(0, 1)
    return _from_unit(filters.hsv_to_rgb(torch.cat((hsv[:, :1], saturation, hsv[:, 2:]), 1)))


def _apply_jpeg_compression(x: Tensor, quality: int, profile: CorruptionProfile, draws: Draws) -> Tensor:
    """libjpeg through torchvision's batched codec (Pillow's encoder defaults: baseline, 4:2:0 chroma
    subsampling; tested equal to Pillow), always on the CPU: images on another device are copied to the
    CPU, coded there and copied back. torchvision's GPU codec (nvJPEG) is not libjpeg and differs from it
    by up to 127 levels (measured on an H200), so it is never used. torchvision 0.29 flags its codec as
    deprecated in favour of TorchCodec, which has no image encoder yet; the warning is silenced here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg

        images = list(x.to(device="cpu", dtype=torch.uint8).unbind(0))
        encoded = encode_jpeg(images, quality=int(quality))
        decoded = decode_jpeg(encoded, mode=ImageReadMode.RGB)
    return torch.stack(decoded).to(device=x.device, dtype=x.dtype)


def _apply_pixelate(x: Tensor, c: float, profile: CorruptionProfile, draws: Draws) -> Tensor:
    size = x.shape[-1]
    small = filters.pil_box_resize(x, int(size * c))
    return filters.pil_box_resize(small, size)


def _draw_elastic(image: Tensor, c: tuple[float, float, float], profile: CorruptionProfile,
                  generator: torch.Generator) -> Draws:
    size = tuple(image.shape[-2:])
    return {"affine": _uniform((3, 2), -c[2], c[2], generator).float(),
            "dx": _uniform(size, -1.0, 1.0, generator),
            "dy": _uniform(size, -1.0, 1.0, generator)}


def elastic_source_points(size: int) -> Tensor:
    """The three (x, y) anchor points of the random affine step, float32."""
    centre = float(size // 2)
    square = float(size // 3)
    return torch.tensor([[centre + square, centre + square], [centre + square, centre - square],
                         [centre - square, centre - square]], dtype=torch.float32)


def _apply_elastic(x: Tensor, c: tuple[float, float, float], profile: CorruptionProfile, draws: Draws) -> Tensor:
    alpha, sigma, _ = c
    b, _, h, w = x.shape
    unit = _to_unit(x)
    source = elastic_source_points(h).to(x.device).expand(b, 3, 2)
    matrix = filters.affine_from_points(source, source + draws["affine"])
    unit = filters.warp_affine_reflect101(unit, matrix)
    dx = filters.gaussian_blur(draws["dx"].float(), sigma, mode="reflect", truncate=3) * alpha
    dy = filters.gaussian_blur(draws["dy"].float(), sigma, mode="reflect", truncate=3) * alpha
    rows = torch.arange(h, device=x.device, dtype=dy.dtype).view(1, h, 1) + dy
    cols = torch.arange(w, device=x.device, dtype=dx.dtype).view(1, 1, w) + dx
    return _from_unit(filters.bilinear_sample(unit, rows, cols, "reflect"))


CORRUPTIONS: dict[str, Corruption] = {c.name: c for c in (
    Corruption("gaussian_noise", _draw_normal, _apply_gaussian_noise),
    Corruption("shot_noise", _draw_shot_noise, _apply_shot_noise),
    Corruption("impulse_noise", _draw_impulse_noise, _apply_impulse_noise),
    Corruption("speckle_noise", _draw_normal, _apply_speckle_noise),
    Corruption("defocus_blur", _no_draws, _apply_defocus_blur),
    Corruption("glass_blur", _draw_glass_blur, _apply_glass_blur),
    Corruption("motion_blur", _draw_motion_blur, _apply_motion_blur),
    Corruption("zoom_blur", _no_draws, _apply_zoom_blur),
    Corruption("gaussian_blur", _no_draws, _apply_gaussian_blur),
    Corruption("snow", _draw_snow, _apply_snow),
    Corruption("frost", _draw_frost, _apply_frost),
    Corruption("fog", _draw_fog, _apply_fog),
    Corruption("brightness", _no_draws, _apply_brightness),
    Corruption("contrast", _no_draws, _apply_contrast),
    Corruption("elastic_transform", _draw_elastic, _apply_elastic),
    Corruption("pixelate", _no_draws, _apply_pixelate),
    Corruption("jpeg_compression", _no_draws, _apply_jpeg_compression),
    Corruption("saturate", _no_draws, _apply_saturate),
)}


DEVICE_EXACT: tuple[str, ...] = ("impulse_noise", "jpeg_compression")
"""Corruptions whose output is the same uint8 image on every device: selections and correctly rounded IEEE
operations, or the CPU codec. The others may differ by one level between devices (a GPU's fused
multiply-adds and reduction orders move a value across a rounding boundary); draws never differ."""


def image_seed(seed: int, corruption: str, severity: int, index: int) -> int:
    """The generator seed of one image: a hash of (seed, corruption, severity, dataset index)."""
    digest = hashlib.sha256(f"{seed}:{corruption}:{severity}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def draw_batch(images: Tensor, name: str, severity: int, *, seed: int, first_index: int,
               profile: CorruptionProfile) -> Draws:
    """The draws of each image of a CPU uint8 batch, stacked along a new first dimension."""
    corruption = CORRUPTIONS[name]
    parameter = profile.parameter(name, severity)
    if corruption.draw is _no_draws:
        return {}
    per_image = []
    generator = torch.Generator()
    for offset, image in enumerate(images):
        generator.manual_seed(image_seed(seed, name, severity, first_index + offset))
        per_image.append(corruption.draw(image, parameter, profile, generator))
    if not per_image or not per_image[0]:
        return {}
    return {key: torch.stack([draws[key] for draws in per_image]) for key in per_image[0]}


def apply_with_draws(images: Tensor, name: str, severity: int, draws: Draws,
                     profile: CorruptionProfile | None = None) -> Tensor:
    """Corrupt a uint8 (B, 3, H, W) batch with given draws; returns uint8 (truncated, as ``np.uint8``)."""
    profile = profile or profile_for_size(images.shape[-1])
    corruption = CORRUPTIONS[check_corruption(name)]
    parameter = profile.parameter(name, severity)
    device_draws = {key: value.to(images.device) for key, value in draws.items()}
    corrupted = corruption.apply(images.float(), parameter, profile, device_draws)
    return torch.floor(corrupted.clamp(0, 255)).to(torch.uint8)


def corrupt(images: Tensor, name: str, severity: int, *, seed: int = 0, first_index: int = 0) -> Tensor:
    """Corrupt uint8 images (B, 3, H, W) with H = W = 32 (CIFAR parameters) or 224 (ImageNet-C).

    ``first_index`` is the dataset index of ``images[0]``: image i's randomness depends only on
    (seed, name, severity, first_index + i). Returns uint8 on the images' device.
    """
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise RobustKDError(f"images: expected a uint8 tensor (B, 3, H, W), got {images.dtype} "
                            f"{tuple(images.shape)}")
    if images.shape[-1] != images.shape[-2]:
        raise RobustKDError(f"images: expected square images, got {tuple(images.shape[-2:])}")
    check_corruption(name)
    profile = profile_for_size(images.shape[-1])
    draws = draw_batch(images.cpu(), name, severity, seed=seed, first_index=first_index, profile=profile)
    return apply_with_draws(images, name, severity, draws, profile)
