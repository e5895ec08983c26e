"""Names and severity parameters of the common corruptions (Hendrycks & Dietterich, ICLR 2019).

Two parameter profiles, transcribed from the authors' creation scripts: ``cifar`` (make_cifar_c.py, for
32x32 images: CIFAR-10-C / CIFAR-100-C) and ``imagenet`` (make_imagenet_c.py, for 224x224 images).
Each entry lists the parameters for severities 1..5 in the scripts' own order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from robustkd.errors import RobustKDError

BENCHMARK_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
"""The 15 corruptions of the benchmark, in the paper's order (noise, blur, weather, digital)."""

EXTRA_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "saturate")
"""Held-out corruptions available on request. ``spatter`` is not implemented (it needs Canny edges and a
distance transform per image)."""

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

CORRUPTION_GROUPS: dict[str, str] = {
    **dict.fromkeys(("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"), "noise"),
    **dict.fromkeys(("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur"), "blur"),
    **dict.fromkeys(("snow", "frost", "fog", "brightness"), "weather"),
    **dict.fromkeys(("contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate"), "digital"),
}

_CIFAR: dict[str, list[Any]] = {
    "gaussian_noise": [0.04, 0.06, .08, .09, .10],
    "shot_noise": [500, 250, 100, 75, 50],
    "impulse_noise": [.01, .02, .03, .05, .07],
    "speckle_noise": [.06, .1, .12, .16, .2],
    "gaussian_blur": [.4, .6, 0.7, .8, 1],
    "glass_blur": [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],
    "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
    "motion_blur": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],
    "zoom_blur": [(1, 1.06, 0.01), (1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.01), (1, 1.26, 0.01)],
    "fog": [(.2, 3), (.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],
    "frost": [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)],
    "snow": [(0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
             (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)],
    "contrast": [.75, .5, .4, .3, 0.15],
    "brightness": [.05, .1, .15, .2, .3],
    "saturate": [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)],
    "jpeg_compression": [80, 65, 58, 50, 40],
    "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],
    "elastic_transform": [(32 * 0, 32 * 0, 32 * 0.08), (32 * 0.05, 32 * 0.2, 32 * 0.07),
                          (32 * 0.08, 32 * 0.06, 32 * 0.06), (32 * 0.1, 32 * 0.04, 32 * 0.05),
                          (32 * 0.1, 32 * 0.03, 32 * 0.03)],
}

_IMAGENET: dict[str, list[Any]] = {
    "gaussian_noise": [.08, .12, 0.18, 0.26, 0.38],
    "shot_noise": [60, 25, 12, 5, 3],
    "impulse_noise": [.03, .06, .09, 0.17, 0.27],
    "speckle_noise": [.15, .2, 0.35, 0.45, 0.6],
    "gaussian_blur": [1, 2, 3, 4, 6],
    "glass_blur": [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)],
    "defocus_blur": [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)],
    "motion_blur": [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)],
    "zoom_blur": [(1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.02), (1, 1.26, 0.02), (1, 1.31, 0.03)],
    "fog": [(1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)],
    "frost": [(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)],
    "snow": [(0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7), (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
             (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)],
    "contrast": [0.4, .3, .2, .1, .05],
    "brightness": [.1, .2, .3, .4, .5],
    "saturate": [(0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)],
    "jpeg_compression": [25, 18, 15, 10, 7],
    "pixelate": [0.6, 0.5, 0.4, 0.3, 0.25],
    # 244 (not 224) is in the authors' script.
    "elastic_transform": [(244 * 2, 244 * 0.7, 244 * 0.1), (244 * 2, 244 * 0.08, 244 * 0.2),
                          (244 * 0.05, 244 * 0.01, 244 * 0.02), (244 * 0.07, 244 * 0.01, 244 * 0.02),
                          (244 * 0.12, 244 * 0.01, 244 * 0.02)],
}


@dataclass(frozen=True)
class CorruptionProfile:
    """Image size, severity parameters and the few size-dependent constants of one creation script."""

    name: str
    image_size: int
    parameters: dict[str, list[Any]]
    plasma_size: int
    frost_scale: float

    def parameter(self, corruption: str, severity: int) -> Any:
        check_corruption(corruption)
        if severity not in SEVERITIES:
            raise RobustKDError(f"severity: expected an integer 1..5, got {severity!r}")
        return self.parameters[corruption][severity - 1]


PROFILES: dict[str, CorruptionProfile] = {
    "cifar": CorruptionProfile("cifar", 32, _CIFAR, plasma_size=32, frost_scale=0.2),
    "imagenet": CorruptionProfile("imagenet", 224, _IMAGENET, plasma_size=256, frost_scale=1.0),
}


def check_corruption(name: str) -> str:
    if name not in BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS:
        raise RobustKDError(f"corruption: unknown name {name!r}; expected one of "
                            f"{', '.join(BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS)}")
    return name


def profile_for_size(image_size: int) -> CorruptionProfile:
    """The ``cifar`` profile for 32-pixel images, ``imagenet`` for 224-pixel ones."""
    for profile in PROFILES.values():
        if profile.image_size == image_size:
            return profile
    raise RobustKDError(f"images: the corruption parameters exist for 32x32 (CIFAR) and 224x224 (ImageNet) "
                        f"images, got {image_size}x{image_size}")
