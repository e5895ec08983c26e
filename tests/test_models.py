"""Model zoo: parameter counts derived in closed form and checked against published figures."""

from __future__ import annotations

import pytest
import torch

from robustkd.errors import RobustKDError
from robustkd.models import build_model, build_network, canonical_model_name, model_names

C = 100  # CIFAR-100


def conv(cin: int, cout: int, k: int, groups: int = 1, bias: bool = False) -> int:
    return cin // groups * cout * k * k + (cout if bias else 0)


def bn(c: int) -> int:
    return 2 * c


def fc(cin: int, cout: int) -> int:
    return cin * cout + cout


def cifar_resnet_params(depth: int, widths: tuple[int, int, int, int]) -> int:
    """He et al. CIFAR ResNet with projection (1x1 conv + BN) shortcuts where shape changes."""
    n = (depth - 2) // 6
    total = conv(3, widths[0], 3) + bn(widths[0])
    cin = widths[0]
    for planes in widths[1:]:
        for index in range(n):
            total += conv(cin, planes, 3) + bn(planes) + conv(planes, planes, 3) + bn(planes)
            if cin != planes or (index == 0 and planes != widths[1]):
                total += conv(cin, planes, 1) + bn(planes)
            cin = planes
    return total + fc(widths[3], C)


def wrn_params(depth: int, k: int) -> int:
    n = (depth - 4) // 6
    widths = [16, 16 * k, 32 * k, 64 * k]
    total = conv(3, 16, 3)
    cin = 16
    for planes in widths[1:]:
        for _ in range(n):
            total += bn(cin) + conv(cin, planes, 3) + bn(planes) + conv(planes, planes, 3)
            if cin != planes:
                total += conv(cin, planes, 1)
            cin = planes
    return total + bn(widths[3]) + fc(widths[3], C)


def vgg_params(config: list[list[int]]) -> int:
    total, cin = 0, 3
    for block in config:
        for width in block:
            total += conv(cin, width, 3, bias=True) + bn(width)
            cin = width
    return total + fc(512, C)


def mobilenetv2_params(width: float = 0.5, t: int = 6) -> int:
    settings = [(1, 16, 1, 1), (t, 24, 2, 1), (t, 32, 3, 2), (t, 64, 4, 2), (t, 96, 3, 1), (t, 160, 3, 2), (t, 320, 1, 1)]
    cin = int(32 * width)
    total = conv(3, cin, 3) + bn(cin)
    for ratio, channels, repeats, _ in settings:
        cout = int(channels * width)
        for _ in range(repeats):
            hidden = cin * ratio
            total += conv(cin, hidden, 1) + bn(hidden) + conv(hidden, hidden, 3, groups=hidden) + bn(hidden)
            total += conv(hidden, cout, 1) + bn(cout)
            cin = cout
    return total + conv(cin, 1280, 1) + bn(1280) + fc(1280, C)


def shufflev1_params(out_planes=(240, 480, 960), blocks=(4, 8, 4), g: int = 3) -> int:
    total, cin = conv(3, 24, 1) + bn(24), 24
    for planes, count in zip(out_planes, blocks):
        for index in range(count):
            cout = planes - cin if index == 0 else planes
            mid = cout // 4
            first_groups = 1 if cin == 24 else g
            total += conv(cin, mid, 1, groups=first_groups) + bn(mid) + conv(mid, mid, 3, groups=mid) + bn(mid)
            total += conv(mid, cout, 1, groups=g) + bn(cout)
            cin = planes
    return total + fc(out_planes[-1], C)


def shufflev2_params(channels=(116, 232, 464, 1024), blocks=(3, 7, 3)) -> int:
    total, cin = conv(3, 24, 1) + bn(24), 24
    for cout, count in zip(channels[:3], blocks):
        mid = cout // 2
        total += conv(cin, cin, 3, groups=cin) + bn(cin) + conv(cin, mid, 1) + bn(mid)
        total += conv(cin, mid, 1) + bn(mid) + conv(mid, mid, 3, groups=mid) + bn(mid) + conv(mid, mid, 1) + bn(mid)
        total += count * (2 * (conv(mid, mid, 1) + bn(mid)) + conv(mid, mid, 3, groups=mid) + bn(mid))
        cin = cout
    return total + conv(channels[2], channels[3], 1) + bn(channels[3]) + fc(channels[3], C)


def resnet_stem_params(bottleneck: bool, blocks: tuple[int, int, int, int]) -> int:
    expansion = 4 if bottleneck else 1
    total, cin = conv(3, 64, 3) + bn(64), 64
    for planes, count, stride in zip((64, 128, 256, 512), blocks, (1, 2, 2, 2)):
        for index in range(count):
            cout = planes * expansion
            if bottleneck:
                total += conv(cin, planes, 1) + bn(planes) + conv(planes, planes, 3) + bn(planes) + conv(planes, cout, 1) + bn(cout)
            else:
                total += conv(cin, planes, 3) + bn(planes) + conv(planes, planes, 3) + bn(planes)
            if (index == 0 and stride != 1) or cin != cout:
                total += conv(cin, cout, 1) + bn(cout)
            cin = cout
    return total + fc(512 * expansion, C)


VGG = {
    "vgg8": [[64], [128], [256], [512], [512]],
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "vgg13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "vgg16": [[64, 64], [128, 128], [256] * 3, [512] * 3, [512] * 3],
    "vgg19": [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4],
}
DERIVED = {
    **{f"resnet{d}": cifar_resnet_params(d, (16, 16, 32, 64)) for d in (8, 14, 20, 32, 44, 56, 110)},
    "resnet8x4": cifar_resnet_params(8, (32, 64, 128, 256)),
    "resnet32x4": cifar_resnet_params(32, (32, 64, 128, 256)),
    **{f"wrn_{d}_{k}": wrn_params(d, k) for d, k in ((16, 1), (16, 2), (40, 1), (40, 2))},
    **{name: vgg_params(config) for name, config in VGG.items()},
    "MobileNetV2": mobilenetv2_params(),
    "ShuffleV1": shufflev1_params(),
    "ShuffleV2": shufflev2_params(),
    "ResNet18": resnet_stem_params(False, (2, 2, 2, 2)),
    "ResNet34": resnet_stem_params(False, (3, 4, 6, 3)),
    "ResNet50": resnet_stem_params(True, (3, 4, 6, 3)),
}

# CIFAR-100 parameter counts in millions as quoted for the RepDistiller definitions in the KD literature
# (model-size columns of CRD-protocol papers). Independent of the closed forms above: both must agree.
PUBLISHED_MILLIONS = {
    "resnet56": 0.86, "resnet110": 1.74, "resnet20": 0.28, "resnet32": 0.47, "resnet8x4": 1.23, "resnet32x4": 7.43,
    "wrn_16_2": 0.70, "wrn_40_1": 0.57, "wrn_40_2": 2.26, "vgg8": 3.96, "vgg13": 9.46, "MobileNetV2": 0.81,
    "ShuffleV1": 0.95, "ShuffleV2": 1.36, "ResNet50": 23.71,
}


def count(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def test_every_registered_model_has_a_derivation() -> None:
    assert sorted(DERIVED) == sorted(model_names())


@pytest.mark.parametrize("name", sorted(DERIVED))
def test_parameter_count_matches_closed_form(name: str) -> None:
    assert count(build_network(name, C)) == DERIVED[name]


@pytest.mark.parametrize("name", sorted(PUBLISHED_MILLIONS))
def test_parameter_count_matches_published_figure(name: str) -> None:
    assert abs(DERIVED[name] / 1e6 - PUBLISHED_MILLIONS[name]) <= 0.0051


@pytest.mark.parametrize("name", ["resnet8", "wrn_16_1", "vgg8", "MobileNetV2", "ShuffleV1", "ShuffleV2", "ResNet18"])
def test_forward_returns_logits_for_unit_range_inputs(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, C, (0.5, 0.4, 0.3), (0.2, 0.2, 0.2)).eval()
    inputs = torch.rand(2, 3, 32, 32)
    logits = model(inputs)
    assert logits.shape == (2, C)
    # The wrapper normalises: the bare network on manually normalised inputs gives the same logits.
    manual = model.net((inputs - model.mean) / model.std)
    torch.testing.assert_close(logits, manual)


def test_normalisation_is_saved_with_the_weights() -> None:
    state = build_model("resnet8", 10, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6)).state_dict()
    assert state["mean"].flatten().tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert state["std"].flatten().tolist() == pytest.approx([0.4, 0.5, 0.6])


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(RobustKDError, match="unknown model 'resnet9'.*resnet8x4.*ShuffleV2"):
        build_network("resnet9", C)


def test_names_are_case_insensitive_and_aliases_resolve() -> None:
    assert canonical_model_name("RESNET8X4") == "resnet8x4"
    assert canonical_model_name("mobile_half") == "MobileNetV2"
    assert canonical_model_name("vgg13_bn") == "vgg13"


def test_torchvision_models_by_name() -> None:
    model = build_network("torchvision:resnet18", 1000)
    assert count(model) == 11_689_512  # torchvision's documented resnet18 size
    with pytest.raises(RobustKDError, match="unknown torchvision model 'resnet19'"):
        build_network("torchvision:resnet19", 1000)
