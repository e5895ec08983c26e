"""Batched image filters with the border and rounding conventions of the libraries the corruption
benchmarks were made with (scipy.ndimage, OpenCV, Pillow, scikit-image).

Written by hand because those libraries work one image at a time on the CPU; these work on a batch
(B, C, H, W) of float tensors on any device. Each function names the convention it reproduces.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def border_indices(n: int, pad: int, mode: str, device: torch.device) -> Tensor:
    """Source indices for positions ``-pad .. n - 1 + pad`` of a length-``n`` axis.

    ``nearest``: edge replicated (scipy 'nearest', OpenCV BORDER_REPLICATE); ``reflect``: half-sample
    symmetric, ``dcba|abcd|dcba`` (scipy 'reflect'); ``reflect101``: ``dcb|abcd|cba`` (OpenCV's default).
    Works for any pad, also wider than the axis.
    """
    index = torch.arange(-pad, n + pad, device=device)
    if mode == "nearest":
        return index.clamp(0, n - 1)
    if mode == "reflect":
        index = torch.remainder(index, 2 * n)
        return torch.where(index < n, index, 2 * n - 1 - index)
    if mode == "reflect101":
        if n == 1:
            return torch.zeros_like(index)
        period = 2 * n - 2
        index = torch.remainder(index, period)
        return torch.where(index < n, index, period - index)
    raise ValueError(f"border mode {mode!r}; expected nearest, reflect or reflect101")


def pad_axis(x: Tensor, pad: int, mode: str, dim: int) -> Tensor:
    """``x`` extended by ``pad`` samples on both sides of ``dim`` by ``border_indices``' rule ``mode``.

    Slices and flips when the pad is shorter than the axis (much faster than an index gather on the
    last axis); the general index rule otherwise.
    """
    n = x.shape[dim]
    if pad == 0:
        return x
    if pad >= n - 1:
        return x.index_select(dim, border_indices(n, pad, mode, x.device))
    if mode == "nearest":
        shape = list(x.shape)
        shape[dim] = pad
        left, right = x.narrow(dim, 0, 1).expand(shape), x.narrow(dim, n - 1, 1).expand(shape)
    elif mode == "reflect":
        left, right = x.narrow(dim, 0, pad).flip(dim), x.narrow(dim, n - pad, pad).flip(dim)
    elif mode == "reflect101":
        left, right = x.narrow(dim, 1, pad).flip(dim), x.narrow(dim, n - 1 - pad, pad).flip(dim)
    else:
        raise ValueError(f"border mode {mode!r}; expected nearest, reflect or reflect101")
    return torch.cat((left, x, right), dim)


def correlate1d(x: Tensor, weights: Tensor, dim: int, mode: str) -> Tensor:
    """Correlate ``x`` along ``dim`` (-1 or -2) with an odd-length kernel centred on its middle tap.

    ``weights`` (1-D, any device: taps are read as numbers or moved) -> a tensor on ``x``'s device."""
    radius = (weights.numel() - 1) // 2
    if radius == 0:
        return x * weights.to(device=x.device, dtype=x.dtype)
    n = x.shape[dim]
    padded = pad_axis(x, radius, mode, dim)
    if weights.numel() <= 41:  # a few shifted, weighted copies beat conv1d's per-row calls
        taps = weights.tolist()
        out = padded.narrow(dim, 0, n) * taps[0]
        for offset, weight in enumerate(taps[1:], start=1):
            out = out + padded.narrow(dim, offset, n) * weight
        return out
    moved = padded.movedim(dim, -1)
    flat = moved.reshape(-1, 1, moved.shape[-1])
    out = F.conv1d(flat, weights.to(device=x.device, dtype=x.dtype).view(1, 1, -1))
    return out.reshape(*moved.shape[:-1], n).movedim(-1, dim)


def gaussian_kernel1d(sigma: float, truncate: float) -> Tensor:
    """scipy.ndimage.gaussian_filter1d's kernel: radius ``int(truncate * sigma + 0.5)``, normalised."""
    radius = int(truncate * float(sigma) + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (x / float(sigma)) ** 2)
    return weights / weights.sum()


def gaussian_blur(x: Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> Tensor:
    """skimage.filters.gaussian on the two spatial axes of (..., H, W); sigma in pixels.

    As in scipy, a sigma below 1e-15 leaves the image unchanged.
    """
    if sigma <= 1e-15:
        return x
    weights = gaussian_kernel1d(sigma, truncate)
    return correlate1d(correlate1d(x, weights, -2, mode), weights, -1, mode)


def filter2d_reflect101(x: Tensor, kernel: Tensor) -> Tensor:
    """cv2.filter2D(x, -1, kernel) per channel of (B, C, H, W): correlation, BORDER_REFLECT_101."""
    kh, kw = kernel.shape
    padded = pad_axis(pad_axis(x, kh // 2, "reflect101", -2), kw // 2, "reflect101", -1)
    # Large kernels by FFT: the circular convolution of the padded image equals the correlation on
    # the un-wrapped (valid) region, which is exactly the output.
    ph, pw = padded.shape[-2:]
    flipped = torch.flip(kernel.to(device=x.device, dtype=torch.float32), dims=(0, 1))
    spectrum = torch.fft.rfft2(padded.float(), s=(ph, pw)) * torch.fft.rfft2(flipped, s=(ph, pw))
    full = torch.fft.irfft2(spectrum, s=(ph, pw))
    return full[..., kh - 1:, kw - 1:].to(x.dtype)


@lru_cache(maxsize=None)
def disk_kernel(radius: float, alias_blur: float) -> Tensor:
    """The defocus kernel of ImageNet-C: an aliased disk (17x17, or 2r+1 for r > 8), normalised, then
    smoothed by cv2.GaussianBlur (3x3, or 5x5 for r > 8) with sigma ``alias_blur``, float32."""
    if radius <= 8:
        coords = np.arange(-8, 8 + 1)
        ksize = 3
    else:
        coords = np.arange(-radius, radius + 1)
        ksize = 5
    xx, yy = np.meshgrid(coords, coords)
    disk = np.array((xx**2 + yy**2) <= radius**2, dtype=np.float32)
    disk /= np.sum(disk)
    taps = np.arange(ksize) - (ksize - 1) / 2
    gauss = np.exp(-(taps**2) / (2 * alias_blur**2))
    gauss = torch.tensor(gauss / gauss.sum(), dtype=torch.float64)
    smoothed = correlate1d(correlate1d(torch.from_numpy(disk).double(), gauss, -2, "reflect101"), gauss, -1,
                           "reflect101")
    return smoothed.float()


@lru_cache(maxsize=None)
def zoom_matrix(size: int, zoom: float) -> Tensor:
    """(size, size) float64 matrix A with ``clipped_zoom(x) = A @ x @ A.T``: the ``ceil(size / zoom)`` centre
    crop, scipy's corner-aligned linear interpolation to ``round(crop * zoom)`` and the centre trim, in one map."""
    crop = int(np.ceil(size / zoom))
    top = (size - crop) // 2
    out = int(round(crop * zoom))
    trim = (out - size) // 2
    rows = torch.arange(trim, trim + size, dtype=torch.float64)
    source = rows * (crop - 1) / (out - 1) if out > 1 else torch.zeros_like(rows)
    low = torch.floor(source).long().clamp(0, crop - 1)
    high = (low + 1).clamp(max=crop - 1)
    weight = source - low
    matrix = torch.zeros(size, size, dtype=torch.float64)
    index = torch.arange(size)
    matrix[index, top + low] += 1 - weight
    matrix[index, top + high] += weight
    return matrix


def clipped_zoom(x: Tensor, zoom: float) -> Tensor:
    """Zoom the centre of square (..., H, H) images by ``zoom`` >= 1 and crop back to H, as ImageNet-C's
    ``clipped_zoom`` (scipy.ndimage.zoom, order 1, then the centre trim): two small matrix products."""
    matrix = zoom_matrix(x.shape[-1], float(zoom)).to(device=x.device, dtype=x.dtype)
    return matrix @ x @ matrix.T


@lru_cache(maxsize=None)
def pil_box_matrix(n_in: int, n_out: int) -> Tensor:
    """(n_out, n_in) weights of Pillow's BOX resampling along one axis.

    Obtained from Pillow itself by resizing the identity matrix as a float ('F') image, so the support
    and rounding of its coefficient computation are Pillow's own.
    """
    from PIL import Image

    identity = Image.fromarray(np.eye(n_in, dtype=np.float32))
    resized = np.asarray(identity.resize((n_out, n_in), Image.Resampling.BOX), dtype=np.float64)
    return torch.from_numpy(resized.T.copy())


def pil_box_resize(x: Tensor, size: int) -> Tensor:
    """Pillow ``Image.resize((size, size), BOX)`` of uint8-valued float (..., H, W) images: the
    horizontal pass, rounded to uint8, then the vertical pass, rounded (Pillow's 8-bit path)."""
    h, w = x.shape[-2:]
    cols = pil_box_matrix(w, size).to(device=x.device, dtype=x.dtype)
    rows = pil_box_matrix(h, size).to(device=x.device, dtype=x.dtype)
    x = torch.floor(x @ cols.T + 0.5).clamp(0, 255)
    return torch.floor(rows @ x + 0.5).clamp(0, 255)


def rgb_to_hsv(rgb: Tensor) -> Tensor:
    """skimage.color.rgb2hsv on (B, 3, H, W) in [0, 1]; hue in [0, 1). Ties for the maximum go to the
    later channel, as in skimage."""
    r, g, b = rgb.unbind(1)
    value = rgb.amax(1)
    delta = value - rgb.amin(1)
    flat = delta == 0
    safe_delta = torch.where(flat, torch.ones_like(delta), delta)
    saturation = torch.where(flat, torch.zeros_like(delta), delta / torch.where(value == 0, 1, value))
    hue = (g - b) / safe_delta
    hue = torch.where(g == value, 2.0 + (b - r) / safe_delta, hue)
    hue = torch.where(b == value, 4.0 + (r - g) / safe_delta, hue)
    hue = torch.remainder(hue / 6.0, 1.0)
    hue = torch.where(flat, torch.zeros_like(hue), hue)
    return torch.stack((hue, saturation, value), 1)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """skimage.color.hsv2rgb on (B, 3, H, W)."""
    h, s, v = hsv.unbind(1)
    sector = torch.floor(h * 6)
    f = h * 6 - sector
    sector = torch.remainder(sector, 6).long()
    p = v * (1 - s)
    q = v * (1 - f * s)
    t = v * (1 - (1 - f) * s)
    choices = torch.stack([
        torch.stack((v, t, p), 1), torch.stack((q, v, p), 1), torch.stack((p, v, t), 1),
        torch.stack((p, q, v), 1), torch.stack((t, p, v), 1), torch.stack((v, p, q), 1),
    ], 0)
    index = sector.unsqueeze(0).unsqueeze(2).expand(1, -1, 3, -1, -1)
    return choices.gather(0, index).squeeze(0)


def bilinear_sample(image: Tensor, rows: Tensor, cols: Tensor, mode: str) -> Tensor:
    """Sample (B, C, H, W) at real coordinates ``rows``/``cols`` of shape (B, H', W') by bilinear
    interpolation; neighbours outside the image come from ``border_indices``' rule ``mode``."""
    b, c, h, w = image.shape
    r0 = torch.floor(rows)
    c0 = torch.floor(cols)
    fr = (rows - r0).unsqueeze(1)
    fc = (cols - c0).unsqueeze(1)
    r0 = r0.long()
    c0 = c0.long()
    pad = int(max(h, w)) * 4 + 2
    row_map = border_indices(h, pad, mode, image.device)
    col_map = border_indices(w, pad, mode, image.device)

    def tap(dr: int, dc: int) -> Tensor:
        rr = row_map[(r0 + dr + pad).clamp(0, row_map.numel() - 1)]
        cc = col_map[(c0 + dc + pad).clamp(0, col_map.numel() - 1)]
        flat = (rr * w + cc).reshape(b, 1, -1).expand(b, c, -1)
        return image.reshape(b, c, h * w).gather(2, flat).reshape(b, c, *rows.shape[1:])

    top = tap(0, 0) * (1 - fc) + tap(0, 1) * fc
    bottom = tap(1, 0) * (1 - fc) + tap(1, 1) * fc
    return top * (1 - fr) + bottom * fr


def affine_from_points(source: Tensor, target: Tensor) -> Tensor:
    """cv2.getAffineTransform for a batch: (B, 3, 2) point pairs (x, y) -> (B, 2, 3) matrices, float64."""
    ones = torch.ones(*source.shape[:-1], 1, dtype=torch.float64, device=source.device)
    design = torch.cat((source.double(), ones), -1)  # (B, 3, 3)
    return torch.linalg.solve(design, target.double()).transpose(1, 2)


def warp_affine_reflect101(image: Tensor, matrix: Tensor) -> Tensor:
    """cv2.warpAffine(image, M, (W, H), INTER_LINEAR, BORDER_REFLECT_101) for (B, C, H, W) and forward
    matrices (B, 2, 3); source coordinates are rounded to 1/32 pixel as OpenCV's fixed-point remap does."""
    b, _, h, w = image.shape
    linear = matrix[:, :, :2]
    inverse = torch.linalg.inv(linear)
    shift = -(inverse @ matrix[:, :, 2:])
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64, device=image.device),
                            torch.arange(w, dtype=torch.float64, device=image.device), indexing="ij")
    grid = torch.stack((xs.reshape(-1), ys.reshape(-1)), 0)  # (2, HW)
    source = inverse @ grid + shift  # (B, 2, HW)
    source = torch.round(source * 32) / 32
    cols = source[:, 0].reshape(b, h, w).to(image.dtype)
    rows = source[:, 1].reshape(b, h, w).to(image.dtype)
    return bilinear_sample(image, rows, cols, "reflect101")


def shift_replicate(x: Tensor, dy: Tensor, dx: Tensor) -> Tensor:
    """Per-image integer shifts of (B, C, H, W): ``out[b, :, i, j] = x[b, :, clamp(i - dy_b), clamp(j - dx_b)]``
    (edges replicated)."""
    b, c, h, w = x.shape
    rows = (torch.arange(h, device=x.device).view(1, h) - dy.view(b, 1)).clamp(0, h - 1)
    cols = (torch.arange(w, device=x.device).view(1, w) - dx.view(b, 1)).clamp(0, w - 1)
    flat = (rows.view(b, h, 1) * w + cols.view(b, 1, w)).reshape(b, 1, h * w).expand(b, c, -1)
    return x.reshape(b, c, h * w).gather(2, flat).reshape(b, c, h, w)


def motion_blur(x: Tensor, radius: int, sigma: float, angles_deg: Tensor) -> Tensor:
    """Linear motion blur of (B, C, H, W), one angle per image: 2*radius+1 taps of a one-sided Gaussian
    along the direction, each an edge-replicated integer shift (the ImageMagick emulation of the
    imagecorruptions package; ImageMagick itself is not a Python dependency)."""
    width = 2 * radius + 1
    taps = torch.arange(width, dtype=torch.float64)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    radians = torch.deg2rad(angles_deg.double().cpu())
    point_y = width * torch.sin(radians)
    point_x = width * torch.cos(radians)
    hypot = torch.sqrt(point_y**2 + point_x**2)
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    active = torch.ones(x.shape[0], dtype=torch.bool)
    for i in range(width):
        dy = -torch.ceil(i * point_y / hypot - 0.5).long()
        dx = -torch.ceil(i * point_x / hypot - 0.5).long()
        active &= (dy.abs() < h) & (dx.abs() < w)
        weight = (kernel[i] * active.double()).to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)
        out = out + weight * shift_replicate(x, dy.to(x.device), dx.to(x.device))
    return out


def rot180(x: Tensor) -> Tensor:
    return torch.flip(x, dims=(-2, -1))
