"""Common corruptions (CIFAR-10/100-C, ImageNet-C): batched engine, official file layouts."""

from robustkd.corruptions.catalog import BENCHMARK_CORRUPTIONS, EXTRA_CORRUPTIONS, SEVERITIES
from robustkd.corruptions.engine import corrupt

__all__ = ["BENCHMARK_CORRUPTIONS", "EXTRA_CORRUPTIONS", "SEVERITIES", "corrupt"]
