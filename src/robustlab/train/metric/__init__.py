"""Objectives of the metric and margin heads (registered on import): arcface, ring, triplet,
contrastive, mct, pcl; and the P x K batch sampler they share."""

from robustlab.train.metric import arcface, mct, pcl, ring, triplet  # noqa: F401
from robustlab.train.metric.sampler import pk_batches

__all__ = ["pk_batches"]
