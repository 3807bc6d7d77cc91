"""Heads: features -> scores and decisions. Importing this package registers every head."""

from robustlab.models.heads import arcface, contrastive, mct, pcl, ring, softmax, triplet  # noqa: F401
from robustlab.models.heads.base import HEADS, Head
from robustlab.models.heads.knn import KNNGallery
from robustlab.models.heads.triplet import KNNHead

__all__ = ["HEADS", "Head", "KNNGallery", "KNNHead"]
