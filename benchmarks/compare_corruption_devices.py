"""Every corruption x severity on the CPU and on another device: the largest uint8 difference per cell.

Bounds (issue 9): identical for the corruptions in ``robustkd.corruptions.engine.DEVICE_EXACT`` (JPEG
through the CPU codec, impulse noise), at most 1 level for every other cell. 32-pixel cells use the CIFAR
parameters on the first ``--images`` test images (the embedded CIFAR-100 subset when no CIFAR-100 is on
disk); 224-pixel cells use the ImageNet parameters on ``--imagenet-images`` crops of scikit-image's sample
photographs. Prints one line per cell (max difference, share of differing values, seconds on each device);
exits 1 when a bound is broken.

  python benchmarks/compare_corruption_devices.py --device cuda --images 200 --imagenet-images 2 --json out.json
  python benchmarks/compare_corruption_devices.py --device cpu --images 8 --imagenet-images 0   # plumbing check
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from robustkd.corruptions.catalog import BENCHMARK_CORRUPTIONS, EXTRA_CORRUPTIONS, SEVERITIES
from robustkd.corruptions.engine import DEVICE_EXACT, corrupt
from robustkd.data.sources import load_image_dataset

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")


def imagenet_crops(count: int) -> torch.Tensor:
    """uint8 (count, 3, 224, 224): centre crops of scikit-image's sample photographs (all at least 300 px)."""
    from skimage import data

    crops = []
    for name in PHOTOS[:count]:
        image = torch.from_numpy(getattr(data, name)().copy()).permute(2, 0, 1)
        top, left = (image.shape[1] - 224) // 2, (image.shape[2] - 224) // 2
        crops.append(image[:, top:top + 224, left:left + 224])
    return torch.stack(crops).contiguous()


def _timed(function, device: torch.device) -> tuple[torch.Tensor, float]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    out = function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - started


def compare(images: torch.Tensor, device: torch.device, batch_size: int, names: tuple[str, ...]) -> list[dict]:
    rows = []
    for name in names:
        for severity in SEVERITIES:
            cpu_parts, device_parts, cpu_seconds, device_seconds = [], [], 0.0, 0.0
            for start in range(0, len(images), batch_size):
                batch = images[start:start + batch_size]
                cpu, seconds = _timed(lambda: corrupt(batch, name, severity, seed=0, first_index=start),
                                      torch.device("cpu"))
                cpu_parts.append(cpu)
                cpu_seconds += seconds
                on_device = batch.to(device)
                moved, seconds = _timed(lambda: corrupt(on_device, name, severity, seed=0, first_index=start), device)
                if moved.device != on_device.device:
                    raise AssertionError(f"{name} {severity}: output on {moved.device}, input on {on_device.device}")
                device_parts.append(moved.cpu())
                device_seconds += seconds
            difference = (torch.cat(device_parts).int() - torch.cat(cpu_parts).int()).abs()
            bound = 0 if name in DEVICE_EXACT else 1
            rows.append({"size": images.shape[-1], "corruption": name, "severity": severity,
                         "max_abs_diff": int(difference.max()), "share_differing": float((difference > 0).double().mean()),
                         "bound": bound, "ok": int(difference.max()) <= bound,
                         "cpu_seconds": cpu_seconds, "device_seconds": device_seconds})
            row = rows[-1]
            print(f"{row['size']:4d}px {name:18s} s{severity}  max |diff| {row['max_abs_diff']:3d} (bound {bound})  "
                  f"differing {100 * row['share_differing']:7.4f} %  cpu {cpu_seconds:7.3f} s  "
                  f"{device.type} {device_seconds:7.3f} s  {'ok' if row['ok'] else 'BROKEN'}", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--images", type=int, default=200, help="32-pixel test images (0: none)")
    parser.add_argument("--imagenet-images", type=int, default=2, help=f"224-pixel photographs, at most {len(PHOTOS)}")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--corruptions", nargs="*", default=list(BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS))
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--json", help="write every row here")
    args = parser.parse_args()
    device = torch.device(args.device)
    names = tuple(args.corruptions)
    rows: list[dict] = []
    if args.images > 0:
        test = load_image_dataset("cifar100", "test", Path(args.data_dir), allow_embedded=True, announce=print)
        rows += compare(test.images[:args.images].contiguous(), device, args.batch_size, names)
    if args.imagenet_images > 0:
        rows += compare(imagenet_crops(min(args.imagenet_images, len(PHOTOS))), device, args.batch_size, names)
    broken = [row for row in rows if not row["ok"]]
    print(f"{len(rows)} cells compared on {device}: {len(rows) - len(broken)} within bounds, {len(broken)} broken; "
          f"largest difference {max((r['max_abs_diff'] for r in rows), default=0)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": str(device), "torch": torch.__version__,
                                               "device_name": torch.cuda.get_device_name(device)
                                               if device.type == "cuda" else "cpu", "rows": rows}, indent=1) + "\n")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
