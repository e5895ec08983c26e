"""The model registry: CIFAR architectures of the distillation literature, and torchvision's ImageNet models.

``build_model(name, num_classes, mean, std)`` returns a ``Normalized`` module: inputs (N, 3, H, W) in
[0, 1], outputs logits (N, num_classes). CIFAR names follow RepDistiller / mdistiller. ImageNet models are
named ``torchvision:<name>`` (e.g. ``torchvision:resnet50``), built untrained.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torchvision
from torch import nn

from robustkd.errors import RobustKDError
from robustkd.models.cifar_resnet import CifarResNet
from robustkd.models.mobilenetv2 import MobileNetV2
from robustkd.models.normalized import Normalized
from robustkd.models.resnet_cifar_stem import BasicBlock, Bottleneck, ResNetCifarStem
from robustkd.models.shufflenet import ShuffleNetV1, ShuffleNetV2
from robustkd.models.vgg import VGG, VGG_CONFIGS
from robustkd.models.wide_resnet import WideResNet
from robustkd.registry import Registry

ModelFactory = Callable[[int], nn.Module]
CIFAR_MODELS: Registry[ModelFactory] = Registry("model")
TORCHVISION_PREFIX = "torchvision:"

for _depth in (8, 14, 20, 32, 44, 56, 110):
    CIFAR_MODELS.add(f"resnet{_depth}", partial(CifarResNet, _depth, (16, 16, 32, 64)))
CIFAR_MODELS.add("resnet8x4", partial(CifarResNet, 8, (32, 64, 128, 256)))
CIFAR_MODELS.add("resnet32x4", partial(CifarResNet, 32, (32, 64, 128, 256)))
for _depth, _width in ((16, 1), (16, 2), (40, 1), (40, 2)):
    CIFAR_MODELS.add(f"wrn_{_depth}_{_width}", partial(WideResNet, _depth, _width))
for _name, _config in VGG_CONFIGS.items():
    CIFAR_MODELS.add(_name, partial(VGG, _config), f"{_name}_bn")
CIFAR_MODELS.add("MobileNetV2", lambda num_classes: MobileNetV2(num_classes, width_mult=0.5), "mobile_half")
CIFAR_MODELS.add("ShuffleV1", lambda num_classes: ShuffleNetV1(num_classes), "shufflenetv1")
CIFAR_MODELS.add("ShuffleV2", lambda num_classes: ShuffleNetV2(num_classes), "shufflenetv2")
CIFAR_MODELS.add("ResNet18", partial(ResNetCifarStem, BasicBlock, (2, 2, 2, 2)))
CIFAR_MODELS.add("ResNet34", partial(ResNetCifarStem, BasicBlock, (3, 4, 6, 3)))
CIFAR_MODELS.add("ResNet50", partial(ResNetCifarStem, Bottleneck, (3, 4, 6, 3)))

# Names the registry resolves case-insensitively would clash ("resnet18" vs "ResNet18"); CIFAR names are
# therefore matched case-insensitively only among themselves, and torchvision names need their prefix.


def torchvision_model_names() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


def canonical_model_name(name: str) -> str:
    """The registered spelling of ``name``; raises RobustKDError listing the valid names."""
    if name.startswith(TORCHVISION_PREFIX):
        arch = name[len(TORCHVISION_PREFIX):]
        if arch not in torchvision_model_names():
            raise RobustKDError(
                f"unknown torchvision model {arch!r}; expected one of: {', '.join(torchvision_model_names())}"
            )
        return name
    try:
        return CIFAR_MODELS.canonical(name)
    except RobustKDError:
        raise RobustKDError(
            f"unknown model {name!r}; expected one of: {', '.join(model_names())}, "
            f"or {TORCHVISION_PREFIX}<name> for an ImageNet model"
        ) from None


def model_names() -> list[str]:
    return CIFAR_MODELS.names()


def build_network(name: str, num_classes: int) -> nn.Module:
    """The bare network (expects normalised inputs)."""
    if num_classes < 1:
        raise RobustKDError(f"num_classes must be a positive integer, got {num_classes}")
    canonical = canonical_model_name(name)
    if canonical.startswith(TORCHVISION_PREFIX):
        return torchvision.models.get_model(canonical[len(TORCHVISION_PREFIX):], weights=None, num_classes=num_classes)
    return CIFAR_MODELS.get(canonical)(num_classes)


def build_model(name: str, num_classes: int, mean: Sequence[float], std: Sequence[float]) -> Normalized:
    """A network wrapped with its normalisation: inputs in [0, 1], outputs logits."""
    return Normalized(build_network(name, num_classes), mean, std)
