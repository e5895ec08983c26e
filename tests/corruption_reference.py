"""A straightforward per-image reference of the common corruptions, for fidelity tests and benchmarks.

A port of the algorithms of Hendrycks & Dietterich's creation scripts (make_cifar_c.py and
make_imagenet_c.py) onto current numpy / scikit-image / OpenCV / Pillow, one HWC uint8 image at a time.
The ``imagecorruptions`` package cannot serve here: three of its corruptions fail on numpy 2 and it
applies the ImageNet parameters at every size. ImageMagick's motion blur (not installable from PyPI)
is replaced by the imagecorruptions emulation, as in the engine.

Every random quantity can be given (``draws``, numpy arrays laid out like the engine's draws) so that
random corruptions can be compared value by value; with ``draws=None`` they come from ``np.random`` in
the scripts' order.
"""

from __future__ import annotations

import math
from io import BytesIO
from typing import Any

import cv2
import numpy as np
import skimage as sk
from PIL import Image
from scipy.ndimage import map_coordinates
from scipy.ndimage import zoom as scizoom
from skimage.filters import gaussian

from robustkd.corruptions.frost import FROST_FILES, frost_folder


def _gaussian(x: np.ndarray, sigma: float, **kwargs: Any) -> np.ndarray:
    return gaussian(x, sigma=sigma, channel_axis=-1 if x.ndim == 3 else None, **kwargs)


def disk(radius: float, alias_blur: float) -> np.ndarray:
    if radius <= 8:
        coords, ksize = np.arange(-8, 8 + 1), (3, 3)
    else:
        coords, ksize = np.arange(-radius, radius + 1), (5, 5)
    xx, yy = np.meshgrid(coords, coords)
    aliased = np.array((xx ** 2 + yy ** 2) <= radius ** 2, dtype=np.float32)
    aliased /= np.sum(aliased)
    return cv2.GaussianBlur(aliased, ksize=ksize, sigmaX=alias_blur)


def plasma_fractal(mapsize: int, wibbledecay: float, uniforms: np.ndarray | None = None) -> np.ndarray:
    """Diamond-square; ``uniforms`` (flat) replaces the U(-1, 1) draws (scaled by wibble), consumed in order."""
    maparray = np.empty((mapsize, mapsize), dtype=np.float64)
    maparray[0, 0] = 0
    stepsize = mapsize
    wibble = 100.0
    position = 0

    def wibbledmean(array: np.ndarray) -> np.ndarray:
        nonlocal position
        if uniforms is None:
            noise = np.random.uniform(-wibble, wibble, array.shape)
        else:
            noise = uniforms[position:position + array.size].reshape(array.shape) * wibble
            position += array.size
        return array / 4 + wibble * noise

    while stepsize >= 2:
        cornerref = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        squareaccum = cornerref + np.roll(cornerref, shift=-1, axis=0)
        squareaccum += np.roll(squareaccum, shift=-1, axis=1)
        maparray[stepsize // 2:mapsize:stepsize, stepsize // 2:mapsize:stepsize] = wibbledmean(squareaccum)
        drgrid = maparray[stepsize // 2:mapsize:stepsize, stepsize // 2:mapsize:stepsize]
        ulgrid = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        ltsum = (drgrid + np.roll(drgrid, 1, axis=0)) + (ulgrid + np.roll(ulgrid, -1, axis=1))
        maparray[0:mapsize:stepsize, stepsize // 2:mapsize:stepsize] = wibbledmean(ltsum)
        ttsum = (drgrid + np.roll(drgrid, 1, axis=1)) + (ulgrid + np.roll(ulgrid, -1, axis=0))
        maparray[stepsize // 2:mapsize:stepsize, 0:mapsize:stepsize] = wibbledmean(ttsum)
        stepsize //= 2
        wibble /= wibbledecay
    maparray -= maparray.min()
    return maparray / maparray.max()


def clipped_zoom(img: np.ndarray, zoom_factor: float) -> np.ndarray:
    h = img.shape[0]
    ch = int(np.ceil(h / zoom_factor))
    top = (h - ch) // 2
    img = scizoom(img[top:top + ch, top:top + ch], (zoom_factor, zoom_factor, 1), order=1)
    trim_top = (img.shape[0] - h) // 2
    return img[trim_top:trim_top + h, trim_top:trim_top + h]


def _shift(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    rows = np.clip(np.arange(image.shape[0]) - dy, 0, image.shape[0] - 1)
    cols = np.clip(np.arange(image.shape[1]) - dx, 0, image.shape[1] - 1)
    return image[rows][:, cols]


def motion_blur_emulation(x: np.ndarray, radius: int, sigma: float, angle: float) -> np.ndarray:
    width = radius * 2 + 1
    kernel = np.exp(-np.arange(width) ** 2 / (2 * sigma ** 2))
    kernel /= kernel.sum()
    point = (width * np.sin(np.deg2rad(angle)), width * np.cos(np.deg2rad(angle)))
    hypot = math.hypot(point[0], point[1])
    blurred = np.zeros_like(x, dtype=np.float64)
    for i in range(width):
        dy = -math.ceil(((i * point[0]) / hypot) - 0.5)
        dx = -math.ceil(((i * point[1]) / hypot) - 0.5)
        if abs(dy) >= x.shape[0] or abs(dx) >= x.shape[1]:
            break
        blurred = blurred + kernel[i] * _shift(x, dx, dy)
    return blurred


def _frost_texture(index: int, scale: float) -> np.ndarray:
    texture = cv2.imread(str(frost_folder() / FROST_FILES[index]))
    if scale != 1.0:
        texture = cv2.resize(texture, (0, 0), fx=scale, fy=scale)
    return texture


def reference(name: str, image: np.ndarray, c: Any, draws: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Corrupt one HWC uint8 image (32 or 224 pixels) with severity parameter ``c``; returns uint8."""
    size = image.shape[0]
    d = draws
    x = image.astype(np.float64) / 255.0
    if name == "gaussian_noise":
        noise = d["normal"].transpose(1, 2, 0) * c if d else np.random.normal(size=x.shape, scale=c)
        out = np.clip(x + noise, 0, 1) * 255
    elif name == "speckle_noise":
        noise = d["normal"].transpose(1, 2, 0) * c if d else np.random.normal(size=x.shape, scale=c)
        out = np.clip(x + x * noise, 0, 1) * 255
    elif name == "shot_noise":
        counts = d["counts"].transpose(1, 2, 0) if d else np.random.poisson(x * c)
        out = np.clip(counts / c, 0, 1) * 255
    elif name == "impulse_noise":
        if d:
            flipped, salted = d["flipped"].transpose(1, 2, 0), d["salted"].transpose(1, 2, 0)
            noisy = x.copy()
            noisy[flipped & salted] = 1
            noisy[flipped & ~salted] = 0
        else:
            noisy = sk.util.random_noise(x, mode="s&p", amount=c)
        out = np.clip(noisy, 0, 1) * 255
    elif name == "gaussian_blur":
        out = np.clip(_gaussian(x, c), 0, 1) * 255
    elif name == "glass_blur":
        sigma, delta, iterations = c
        y = np.uint8(_gaussian(x, sigma) * 255)
        step = 0
        for i in range(iterations):
            step = 0
            for h in range(size - delta, delta, -1):
                for w in range(size - delta, delta, -1):
                    if d:
                        dx, dy = d["offsets"][i, step]
                    else:
                        dx, dy = np.random.randint(-delta, delta, size=(2,))
                    step += 1
                    h_prime, w_prime = h + dy, w + dx
                    y[h, w], y[h_prime, w_prime] = y[h_prime, w_prime], y[h, w]
        out = np.clip(_gaussian(y / 255.0, sigma), 0, 1) * 255
    elif name == "defocus_blur":
        kernel = disk(c[0], c[1])
        channels = [cv2.filter2D(x[:, :, k], -1, kernel) for k in range(3)]
        out = np.clip(np.stack(channels, axis=2), 0, 1) * 255
    elif name == "motion_blur":
        angle = float(d["angle"]) if d else np.random.uniform(-45, 45)
        out = np.clip(motion_blur_emulation(image.astype(np.float64), c[0], c[1], angle), 0, 255)
    elif name == "zoom_blur":
        xf = x.astype(np.float32)
        total = np.zeros_like(xf)
        factors = np.arange(*c)
        for factor in factors:
            total += clipped_zoom(xf, factor)
        out = np.clip((xf + total) / (len(factors) + 1), 0, 1) * 255
    elif name == "snow":
        xf = x.astype(np.float32)
        if d:
            layer = c[0] + c[1] * d["normal"]
        else:
            layer = np.random.normal(size=x.shape[:2], loc=c[0], scale=c[1])
        layer = clipped_zoom(layer[..., np.newaxis], c[2])
        layer[layer < c[3]] = 0
        layer8 = (np.clip(layer.squeeze(), 0, 1) * 255).astype(np.uint8)
        angle = float(d["angle"]) if d else np.random.uniform(-135, -45)
        blurred = np.clip(np.round(motion_blur_emulation(layer8.astype(np.float64), c[4], c[5], angle)), 0, 255)
        layer = (blurred / 255.0)[..., np.newaxis]
        grey = cv2.cvtColor(xf, cv2.COLOR_RGB2GRAY).reshape(size, size, 1)
        xf = c[6] * xf + (1 - c[6]) * np.maximum(xf, grey * 1.5 + 0.5)
        out = np.clip(xf + layer + np.rot90(layer, k=2), 0, 1) * 255
    elif name == "frost":
        scale = 0.2 if size == 32 else 1.0
        if d:
            frost = d["frost"].transpose(1, 2, 0)
        else:
            texture = _frost_texture(np.random.randint(5), scale)
            top = np.random.randint(0, texture.shape[0] - size)
            left = np.random.randint(0, texture.shape[1] - size)
            frost = texture[top:top + size, left:left + size][..., [2, 1, 0]]
        out = np.clip(c[0] * image.astype(np.float64) + c[1] * frost, 0, 255)
    elif name == "fog":
        mapsize = 32 if size == 32 else 256
        plasma = plasma_fractal(mapsize, c[1], d["unit_draws"] if d else None)[:size, :size]
        max_val = x.max()
        y = x + c[0] * plasma[..., np.newaxis]
        out = np.clip(y * max_val / (max_val + c[0]), 0, 1) * 255
    elif name == "brightness":
        hsv = sk.color.rgb2hsv(x)
        hsv[:, :, 2] = np.clip(hsv[:, :, 2] + c, 0, 1)
        out = np.clip(sk.color.hsv2rgb(hsv), 0, 1) * 255
    elif name == "saturate":
        hsv = sk.color.rgb2hsv(x)
        hsv[:, :, 1] = np.clip(hsv[:, :, 1] * c[0] + c[1], 0, 1)
        out = np.clip(sk.color.hsv2rgb(hsv), 0, 1) * 255
    elif name == "contrast":
        means = np.mean(x, axis=(0, 1), keepdims=True)
        out = np.clip((x - means) * c + means, 0, 1) * 255
    elif name == "jpeg_compression":
        buffer = BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=c)
        out = np.asarray(Image.open(buffer))
    elif name == "pixelate":
        small = Image.fromarray(image).resize((int(size * c), int(size * c)), Image.Resampling.BOX)
        out = np.asarray(small.resize((size, size), Image.Resampling.BOX))
    elif name == "elastic_transform":
        xf = x.astype(np.float32)
        shape_size = xf.shape[:2]
        centre = np.float32(shape_size) // 2
        square = min(shape_size) // 3
        pts1 = np.float32([centre + square, [centre[0] + square, centre[1] - square], centre - square])
        offsets = d["affine"] if d else np.random.uniform(-c[2], c[2], size=pts1.shape).astype(np.float32)
        pts2 = pts1 + offsets
        matrix = cv2.getAffineTransform(pts1, pts2)
        xf = cv2.warpAffine(xf, matrix, shape_size[::-1], borderMode=cv2.BORDER_REFLECT_101)
        raw_dx = d["dx"] if d else np.random.uniform(-1, 1, size=shape_size)
        raw_dy = d["dy"] if d else np.random.uniform(-1, 1, size=shape_size)
        dx = (_gaussian(raw_dx, c[1], mode="reflect", truncate=3) * c[0]).astype(np.float32)[..., np.newaxis]
        dy = (_gaussian(raw_dy, c[1], mode="reflect", truncate=3) * c[0]).astype(np.float32)[..., np.newaxis]
        gx, gy, gz = np.meshgrid(np.arange(size), np.arange(size), np.arange(3))
        indices = np.reshape(gy + dy, (-1, 1)), np.reshape(gx + dx, (-1, 1)), np.reshape(gz, (-1, 1))
        out = np.clip(map_coordinates(xf, indices, order=1, mode="reflect").reshape(xf.shape), 0, 1) * 255
    else:
        raise ValueError(f"no reference for {name!r}")
    return np.uint8(out)
