"""Backbones: images -> features. Importing this package registers every backbone."""

from robustlab.models.backbones import cnn6, lenet, mlp, mobilenet, resnet, vgg  # noqa: F401
from robustlab.models.backbones.base import BACKBONES, Backbone

__all__ = ["BACKBONES", "Backbone"]
