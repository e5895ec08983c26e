"""Datasets and input pipelines: CIFAR from pickles, ImageNet from folders, embedded and synthetic sets."""

from robustkd.data.dataset import ImageDataset
from robustkd.data.sources import (
    DATASET_NAMES,
    DatasetInfo,
    dataset_info,
    load_image_dataset,
    make_loader,
    resolve_data_dir,
)

__all__ = ["DATASET_NAMES", "DatasetInfo", "ImageDataset", "dataset_info", "load_image_dataset", "make_loader", "resolve_data_dir"]
