"""The ImageNet / ImageNet-C path end to end on a stand-in: a tiny ImageNet-format folder of scikit-image's
sample photographs, a torchvision MobileNetV3-Small with random weights (no download), the clean suite, generated
224-pixel corruption cells, and cells read from the official ImageNet-C layout
(``<root>/<corruption>/<severity>/<wnid>/<image>``).

The official-layout cells are written from the same generated images (losslessly, as PNG, for one corruption),
so reading them back must reproduce the generated cells' accuracy and NLL exactly: a check of the layout's
order, labels and decoding. The other is written as JPEG, the format of the released files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from robustkd.corruptions.catalog import BENCHMARK_CORRUPTIONS
from robustkd.corruptions.engine import corrupt
from robustkd.data import make_loader
from robustkd.data.imagenet import IMAGENET_MEAN, IMAGENET_STD
from robustkd.evaluate.runner import evaluate_model
from robustkd.evaluate.suite_file import load_suite
from robustkd.models.zoo import build_model

WNIDS = ("n01440764", "n01443537", "n01484850")
PHOTOS = (("astronaut", "coffee"), ("chelsea", "rocket"), ("immunohistochemistry", "hubble_deep_field"))


@pytest.fixture(scope="module")
def imagenet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<dir>/imagenet/val/<wnid>/*.JPEG``: three classes of two photographs (all at least 300 pixels)."""
    from PIL import Image
    from skimage import data

    root = tmp_path_factory.mktemp("imagenet-standin")
    for wnid, names in zip(WNIDS, PHOTOS):
        folder = root / "imagenet" / "val" / wnid
        folder.mkdir(parents=True)
        for name in names:
            Image.fromarray(getattr(data, name)()).save(folder / f"ILSVRC2012_val_{name}.JPEG", quality=90)
    return root


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("torchvision:mobilenet_v3_small", 1000, IMAGENET_MEAN, IMAGENET_STD).eval()


def _suite(folder: Path, name: str, text: str):
    path = folder / f"{name}.toml"
    path.write_text(text)
    return load_suite(str(path))


def _summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def _cells(folder: Path) -> dict[tuple[str, int], tuple[float, float, int]]:
    import pandas as pd

    cells = pd.read_csv(folder / "cells.csv")
    return {(c, int(s)): (a, nll, int(n)) for c, s, a, nll, n in
            zip(cells["corruption"], cells["severity"], cells["accuracy"], cells["nll"], cells["n"])}


def _write_imagenet_c(imagenet_dir: Path, root: Path, device: torch.device, plan: dict[str, str]) -> None:
    """The engine's images of each (corruption, severity 1) in the official layout, one file per val image,
    named as the val image (so the folder order is the val order); ``plan`` maps corruption -> file format."""
    from PIL import Image
    from torchvision import datasets

    loader = make_loader("imagenet", "test", imagenet_dir, 4, device, train=False)
    files = datasets.ImageFolder(str(imagenet_dir / "imagenet" / "val")).samples
    start = 0
    for inputs, _ in loader.epoch(0):
        clean = torch.round(inputs * 255).to(torch.uint8)  # the suite's own conversion of the loader's batches
        for name, fmt in plan.items():
            images = corrupt(clean, name, 1, seed=0, first_index=start).cpu()
            for offset, image in enumerate(images):
                source = Path(files[start + offset][0])
                target = root / name / "1" / source.parent.name / f"{source.stem}.{'png' if fmt == 'png' else 'JPEG'}"
                target.parent.mkdir(parents=True, exist_ok=True)
                array = image.permute(1, 2, 0).numpy()
                Image.fromarray(np.ascontiguousarray(array)).save(target, **({"quality": 85} if fmt == "jpeg" else {}))
        start += len(inputs)


def test_imagenet_clean_generated_and_official_corruption_cells(imagenet_dir: Path, tmp_path: Path,
                                                                test_device: torch.device) -> None:
    model = _model()
    corruptions = '["fog", "jpeg_compression"]'
    clean = _suite(tmp_path, "clean", 'suite = "clean"\nbatch_size = 4\n')
    generated = _suite(tmp_path, "corruption", f'suite = "corruption"\nbatch_size = 4\nsource = "generated"\n'
                                               f'corruptions = {corruptions}\nseverities = [1]\n')
    folders = [run.target for run in evaluate_model(model, name="standin", dataset="imagenet",
                                                    suites=[clean, generated], out_root=tmp_path / "out",
                                                    data_dir=imagenet_dir, device=test_device)]
    clean_summary, generated_summary = _summary(folders[0]), _summary(folders[1])
    assert clean_summary["n_examples"] == 6 and clean_summary["subset"] is False

    # The clean accuracy is the model's on the standard 224-pixel evaluation transform.
    from torchvision import datasets

    from robustkd.data.imagenet import EVAL_TRANSFORM

    folder = datasets.ImageFolder(str(imagenet_dir / "imagenet" / "val"), transform=EVAL_TRANSFORM)
    inputs = torch.stack([folder[i][0] for i in range(len(folder))])
    labels = torch.tensor(folder.targets)
    with torch.no_grad():
        top1 = 100.0 * float(model.cpu()(inputs).argmax(1).eq(labels).double().mean())
    assert clean_summary["metrics"]["top1"] == pytest.approx(top1, abs=1e-9)
    assert generated_summary["protocol"]["parameters"] == "imagenet (make_imagenet_c.py)"
    assert generated_summary["protocol"]["source"] == "generated"
    generated_cells = _cells(folders[1])
    assert set(generated_cells) == {("fog", 1), ("jpeg_compression", 1)}
    assert all(n == 6 for _, _, n in generated_cells.values())

    # The same images in the official ImageNet-C layout: PNG (lossless) for fog, JPEG for jpeg_compression.
    root = tmp_path / "ImageNet-C"
    _write_imagenet_c(imagenet_dir, root, test_device, {"fog": "png", "jpeg_compression": "jpeg"})
    official = _suite(tmp_path, "official", f'suite = "corruption"\nbatch_size = 4\nsource = "official"\n'
                                            f'official_dir = "{root}"\ncorruptions = {corruptions}\nseverities = [1]\n')
    (official_run,) = evaluate_model(model, name="standin-official", dataset="imagenet", suites=[official],
                                     out_root=tmp_path / "out", data_dir=imagenet_dir, device=test_device)
    official_folder = official_run.target
    assert _summary(official_folder)["protocol"]["source"] == "official"
    official_cells = _cells(official_folder)
    assert official_cells[("fog", 1)] == pytest.approx(generated_cells[("fog", 1)], rel=1e-5)
    accuracy, nll, count = official_cells[("jpeg_compression", 1)]
    assert count == 6 and 0.0 <= accuracy <= 1.0 and nll == pytest.approx(generated_cells[("jpeg_compression", 1)][1],
                                                                          rel=0.05)


@pytest.mark.slow
def test_every_imagenet_corruption_through_the_suite(imagenet_dir: Path, tmp_path: Path,
                                                     test_device: torch.device) -> None:
    suite = _suite(tmp_path, "corruption", 'suite = "corruption"\nbatch_size = 6\nsource = "generated"\n'
                                           'severities = [3]\n')
    (run,) = evaluate_model(_model(), name="standin", dataset="imagenet", suites=[suite], out_root=tmp_path / "out",
                            data_dir=imagenet_dir, device=test_device)
    folder = run.target
    cells = _cells(folder)
    assert set(cells) == {(name, 3) for name in BENCHMARK_CORRUPTIONS} and all(n == 6 for _, _, n in cells.values())
