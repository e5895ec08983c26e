"""Batch iteration over an in-memory uint8 dataset, with augmentation on the model's device.

The whole dataset lives on the device as uint8 (CIFAR-100 train: 150 MB). Each epoch's order and
augmentation come from seeds derived from ``(seed, epoch)``, so an epoch is reproducible on its own and a
resumed run sees exactly the batches an uninterrupted run would. Under data parallelism every rank draws
the same permutation and takes the strided shard ``perm[rank::world_size]`` (as DistributedSampler does).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from robustkd.data.augment import add_gaussian_noise, random_crop_flip
from robustkd.data.dataset import ImageDataset
from robustkd.utils.seeding import derive_seed, make_generator

Batch = tuple[torch.Tensor, torch.Tensor]


class TensorBatchLoader:
    """Yields ``(inputs, labels)``: inputs float (B, 3, H, W) in [0, 1] (plus noise if ``noise_sd``).

    ``train=True``: shuffled, random crop (4-pixel zero padding) + horizontal flip, last partial batch
    dropped. ``train=False``: file order, no augmentation, every example once.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int,
        device: torch.device,
        *,
        train: bool,
        seed: int = 0,
        noise_sd: float = 0.0,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.dataset = dataset
        self.split_images = len(dataset)  # the whole split's size; make_loader sets it when it kept a part
        self.images = dataset.images.to(device)
        self.labels = dataset.labels.to(device)
        self.batch_size = batch_size
        self.device = device
        self.train = train
        self.seed = seed
        self.noise_sd = noise_sd
        self.rank = rank
        self.world_size = world_size
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def _indices(self, epoch: int) -> torch.Tensor:
        count = len(self.dataset)
        if not self.train:
            return torch.arange(self.rank, count, self.world_size, device=self.device)
        order = torch.randperm(count, generator=make_generator(derive_seed(self.seed, epoch, 0)))
        usable = count - count % self.world_size
        return order[:usable][self.rank :: self.world_size].to(self.device)

    def __len__(self) -> int:
        count = len(self.dataset)
        if self.train:
            per_rank = (count - count % self.world_size) // self.world_size
            return per_rank // self.batch_size
        per_rank = len(range(self.rank, count, self.world_size))
        return -(-per_rank // self.batch_size)

    def epoch(self, epoch: int = 0) -> Iterator[Batch]:
        indices = self._indices(epoch)
        generator = make_generator(derive_seed(self.seed, epoch, 1, self.rank), self.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            batch_index = indices[start : start + self.batch_size]
            images = self.images[batch_index]
            if self.train:
                images = random_crop_flip(images, generator)
            inputs = images.float().div_(255.0)
            if self.noise_sd > 0:
                inputs = add_gaussian_noise(inputs, self.noise_sd, generator)
            yield inputs.contiguous(memory_format=self.memory_format), self.labels[batch_index]
