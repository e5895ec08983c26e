"""CIFAR reading and validation, the restricted unpickler, the embedded subset, the loaders."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from robustkd.data import dataset_info, load_image_dataset, make_loader, resolve_data_dir
from robustkd.data.cifar import DataNotFoundError, load_cifar
from robustkd.data.embedded import embedded_manifest, load_embedded_cifar100
from robustkd.data.loader import TensorBatchLoader
from robustkd.data.safe_pickle import UnsafePickleError, load_restricted_pickle
from robustkd.data.synthetic import make_synthetic
from robustkd.errors import RobustKDError


def write_fake_cifar100(root: Path, *, test_per_class: int = 100, label_shift: int = 0, dtype=np.uint8) -> Path:
    """A CIFAR-100 folder with the real layout and a valid test split (random pixels), train split absent."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    labels = np.repeat(np.arange(100), test_per_class) + label_shift
    data = np.random.default_rng(0).integers(0, 256, (len(labels), 3072)).astype(dtype)
    with open(folder / "test", "wb") as handle:  # protocol 2 with bytes keys, as the official files
        pickle.dump({b"data": data, b"fine_labels": labels.tolist(), b"coarse_labels": [0] * len(labels)}, handle, protocol=2)
    with open(folder / "meta", "wb") as handle:
        pickle.dump({b"fine_label_names": [f"c{i}".encode() for i in range(100)]}, handle, protocol=2)
    return folder


def test_reads_the_pickle_layout_and_validates(tmp_path: Path) -> None:
    write_fake_cifar100(tmp_path)
    dataset = load_cifar("cifar100", tmp_path, "test")
    assert dataset.images.shape == (10000, 3, 32, 32) and dataset.images.dtype == torch.uint8
    assert dataset.num_classes == 100 and dataset.classes[3] == "c3"
    assert torch.bincount(dataset.labels).tolist() == [100] * 100


def test_missing_split_file_names_the_file(tmp_path: Path) -> None:
    write_fake_cifar100(tmp_path)
    with pytest.raises(DataNotFoundError, match="missing file .*cifar-100-python/train"):
        load_cifar("cifar100", tmp_path, "train")


def test_wrong_class_counts_are_refused(tmp_path: Path) -> None:
    write_fake_cifar100(tmp_path, test_per_class=99)
    with pytest.raises(RobustKDError, match="class 0 has 99 images, expected 100 per class"):
        load_cifar("cifar100", tmp_path, "test")


def test_out_of_range_labels_are_refused(tmp_path: Path) -> None:
    write_fake_cifar100(tmp_path, label_shift=1)
    with pytest.raises(RobustKDError, match=r"labels outside \[0, 100\)"):
        load_cifar("cifar100", tmp_path, "test")


def test_wrong_dtype_is_refused(tmp_path: Path) -> None:
    write_fake_cifar100(tmp_path, dtype=np.int16)
    with pytest.raises(RobustKDError, match=r"uint8 array of shape \(N, 3072\)"):
        load_cifar("cifar100", tmp_path, "test")


def test_truncated_file_is_reported_as_corrupt(tmp_path: Path) -> None:
    folder = write_fake_cifar100(tmp_path)
    data = (folder / "test").read_bytes()
    (folder / "test").write_bytes(data[: len(data) // 2])
    with pytest.raises(RobustKDError, match="corrupt or truncated"):
        load_cifar("cifar100", tmp_path, "test")


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_arbitrary_globals(tmp_path: Path) -> None:
    path = tmp_path / "evil"
    path.write_bytes(pickle.dumps({b"data": _Exploit()}, protocol=2))
    with pytest.raises(UnsafePickleError, match="refusing to load global"):
        load_restricted_pickle(path)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    (folder / "meta").write_bytes(path.read_bytes())
    with pytest.raises(RobustKDError, match="is not a CIFAR pickle"):
        load_cifar("cifar100", tmp_path, "test")


def test_missing_folder_without_download_or_fallback(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="cifar100 not found: no folder"):
        load_image_dataset("cifar100", "test", tmp_path / "absent")


def test_embedded_fallback_is_announced_in_one_line(tmp_path: Path) -> None:
    lines: list[str] = []
    dataset = load_image_dataset("cifar100", "train", tmp_path / "absent", allow_embedded=True, announce=lines.append)
    assert len(lines) == 1 and "\n" not in lines[0] and "embedded CIFAR-100 subset" in lines[0]
    assert dataset.source.startswith("embedded:")


def test_embedded_subset_is_real_cifar100_with_every_class() -> None:
    manifest = embedded_manifest()
    for split in ("train", "test"):
        dataset = load_embedded_cifar100(split)
        per_class = manifest[f"{split}_per_class"]
        assert torch.bincount(dataset.labels, minlength=100).tolist() == [per_class] * 100
        assert dataset.classes[0] == "apple" and dataset.classes[99] == "worm"
    # Per-channel statistics of real CIFAR-100 images, not of noise (noise would sit at 0.5 with std 0.29).
    mean = load_embedded_cifar100("train").images.float().mean((0, 2, 3)) / 255
    torch.testing.assert_close(mean, torch.tensor([0.507, 0.487, 0.441]), atol=0.03, rtol=0)


def test_data_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ROBUSTKD_DATA", str(tmp_path))
    assert resolve_data_dir(None) == tmp_path
    assert resolve_data_dir("elsewhere") == Path("elsewhere")
    monkeypatch.delenv("ROBUSTKD_DATA")
    assert resolve_data_dir(None) == Path("data")


def test_unknown_dataset_lists_the_valid_ones() -> None:
    with pytest.raises(RobustKDError, match="unknown dataset 'cifar1000'; expected one of: cifar100, cifar10, imagenet, synthetic"):
        dataset_info("cifar1000")


def test_synthetic_is_deterministic_and_balanced() -> None:
    first, second = make_synthetic("train", seed=3), make_synthetic("train", seed=3)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert torch.bincount(first.labels).tolist() == [100] * 10
    assert not torch.equal(make_synthetic("test", seed=3).images[:20], first.images[:20])


def test_loader_epochs_are_reproducible_and_distinct() -> None:
    dataset = make_synthetic("train")
    loader = TensorBatchLoader(dataset, 100, torch.device("cpu"), train=True, seed=1)
    epoch1 = [x for x, _ in loader.epoch(1)]
    again = [x for x, _ in loader.epoch(1)]
    epoch2 = [x for x, _ in loader.epoch(2)]
    assert len(epoch1) == len(loader) == 10
    assert all(torch.equal(a, b) for a, b in zip(epoch1, again))
    assert not torch.equal(epoch1[0], epoch2[0])
    assert 0.0 <= float(epoch1[0].min()) and float(epoch1[0].max()) <= 1.0


def test_data_parallel_shards_are_disjoint_and_cover_the_epoch() -> None:
    dataset = make_synthetic("train")
    dataset = type(dataset)(dataset.name, dataset.split, dataset.images, torch.arange(len(dataset)) % 10,
                            dataset.classes, dataset.mean, dataset.std, dataset.source)
    shards = [TensorBatchLoader(dataset, 50, torch.device("cpu"), train=True, seed=0, rank=r, world_size=2)._indices(4) for r in (0, 1)]
    assert len(set(shards[0].tolist()) & set(shards[1].tolist())) == 0
    assert sorted(shards[0].tolist() + shards[1].tolist()) == list(range(len(dataset)))


def test_eval_loader_visits_every_example_in_order() -> None:
    loader = make_loader("synthetic", "test", Path("unused"), 64, torch.device("cpu"), train=False)
    labels = torch.cat([y for _, y in loader.epoch(0)])
    assert torch.equal(labels, make_synthetic("test").labels)


def test_reads_cifar10_batches(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    labels = np.repeat(np.arange(10), 1000)
    data = np.random.default_rng(1).integers(0, 256, (10000, 3072)).astype(np.uint8)
    with open(folder / "test_batch", "wb") as handle:
        pickle.dump({b"data": data, b"labels": labels.tolist(), b"batch_label": b"testing batch 1 of 1"}, handle, protocol=2)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": [name.encode() for name in "airplane automobile bird cat deer dog frog horse ship truck".split()]}, handle, protocol=2)
    dataset = load_cifar("cifar10", tmp_path, "test")
    assert dataset.classes[0] == "airplane" and dataset.num_classes == 10
    # Row-major 3072 = 3 x 32 x 32 (channel planes), as the CIFAR files store them.
    assert dataset.images[5, 1, 0, 0].item() == data[5, 1024]


def test_imagenet_folder_layout_gives_224_pixel_unit_range_batches(tmp_path: Path) -> None:
    from PIL import Image

    for wnid in ("n01440764", "n01443537"):
        folder = tmp_path / "imagenet" / "val" / wnid
        folder.mkdir(parents=True)
        for index in range(3):
            Image.fromarray(np.full((300, 260, 3), 40 * index, dtype=np.uint8)).save(folder / f"{index}.JPEG")
    loader = make_loader("imagenet", "test", tmp_path, 4, torch.device("cpu"), train=False)
    batches = list(loader.epoch(0))
    assert sum(len(y) for _, y in batches) == 6
    inputs, labels = batches[0]
    assert inputs.shape[1:] == (3, 224, 224) and 0.0 <= float(inputs.min()) and float(inputs.max()) <= 1.0
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == [0, 0, 0, 1, 1, 1]
    with pytest.raises(DataNotFoundError, match="imagenet not found"):
        make_loader("imagenet", "train", tmp_path, 4, torch.device("cpu"), train=True)
