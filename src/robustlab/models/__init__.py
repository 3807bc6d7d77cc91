"""Models: backbones + heads under the model contract, built from a plain config."""

from robustlab.models.backbones import BACKBONES, Backbone
from robustlab.models.classifier import Classifier, Normalize, build_model
from robustlab.models.config import ModelConfig
from robustlab.models.heads import HEADS, Head
from robustlab.models.wrap import WrappedModel, load_factory, wrap

__all__ = [
    "BACKBONES", "HEADS", "Backbone", "Classifier", "Head", "ModelConfig", "Normalize", "WrappedModel",
    "build_model", "load_factory", "wrap",
]
