"""VGG with batch norm for CIFAR, as defined in RepDistiller / mdistiller (no FC stack).

Five conv blocks separated by 2x2 max-pools; on 32-pixel inputs the fourth pool is skipped (as in the
reference), then global average pooling and one linear layer from 512 features.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

VGG_CONFIGS: dict[str, list[list[int]]] = {
    "vgg8": [[64], [128], [256], [512], [512]],
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "vgg13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "vgg16": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    "vgg19": [[64, 64], [128, 128], [256, 256, 256, 256], [512, 512, 512, 512], [512, 512, 512, 512]],
}


def _conv_block(widths: list[int], in_channels: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        in_channels = width
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, config: list[list[int]], num_classes: int) -> None:
        super().__init__()
        in_channels = 3
        # block0..block4 as attributes: the reference's names, so its state dicts load unchanged.
        for index, widths in enumerate(config):
            self.add_module(f"block{index}", _conv_block(widths, in_channels))
            in_channels = widths[-1]
        self.num_blocks = len(config)
        self.pool = nn.MaxPool2d(2, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(512, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        height = x.shape[2]
        out = x
        for index in range(self.num_blocks):
            out = getattr(self, f"block{index}")(out)
            if index < 3 or (index == 3 and height == 64):
                out = self.pool(out)
        return self.classifier(self.avgpool(out).flatten(1))
