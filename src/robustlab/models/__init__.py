"""Models: backbones + heads under the model contract, built from a plain config."""

from robustlab.models.backbones import BACKBONES, Backbone
from robustlab.models.classifier import Classifier, Normalize, build_model
from robustlab.models.config import ModelConfig
from robustlab.models.heads import HEADS, Head

__all__ = ["BACKBONES", "HEADS", "Backbone", "Classifier", "Head", "ModelConfig", "Normalize", "build_model"]
