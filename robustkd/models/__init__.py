"""Model zoo: every model takes inputs in [0, 1], carries its normalisation and returns logits."""

from robustkd.models.normalized import Normalized
from robustkd.models.zoo import build_model, build_network, canonical_model_name, model_names

__all__ = ["Normalized", "build_model", "build_network", "canonical_model_name", "model_names"]
