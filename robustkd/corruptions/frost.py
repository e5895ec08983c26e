"""The frost textures of ImageNet-C, read from the ``imagecorruptions`` package's data folder.

The package is a dependency for its six texture files only; it is located without importing it (its
module does not import on numpy 2 for every corruption).
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from robustkd.errors import RobustKDError

FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")
N_FROST_USED = 5
"""The creation scripts draw ``randint(5)``: the sixth texture is never used."""


def frost_folder() -> Path:
    spec = importlib.util.find_spec("imagecorruptions")
    if spec is None or not spec.submodule_search_locations:
        raise RobustKDError("frost: the frost textures come from the 'imagecorruptions' package; "
                            "install it with pip install imagecorruptions")
    return Path(list(spec.submodule_search_locations)[0]) / "frost"


@lru_cache(maxsize=None)
def frost_textures(scale: float) -> tuple[Tensor, ...]:
    """The used textures as uint8 (3, H, W) RGB tensors, resized by ``scale`` like
    ``cv2.resize(fx=scale, fy=scale)`` (bilinear, half-pixel centres) when ``scale != 1``."""
    from PIL import Image

    textures = []
    for name in FROST_FILES[:N_FROST_USED]:
        path = frost_folder() / name
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"), dtype=np.uint8)
        texture = torch.from_numpy(array.copy()).permute(2, 0, 1)
        if scale != 1.0:
            resized = F.interpolate(texture.unsqueeze(0).float(), scale_factor=scale, mode="bilinear",
                                    align_corners=False, recompute_scale_factor=False)
            texture = torch.floor(resized[0] + 0.5).clamp(0, 255).to(torch.uint8)
        textures.append(texture)
    return tuple(textures)
