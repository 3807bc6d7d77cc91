"""Training losses: one module per loss (ArcFace, ring, triplet, contrastive, multi-class
triplet, prototype conformity, SVDD hinges). Objectives in `robustlab.train` combine them."""

from robustlab.losses.adversarial import adversarial_triplet, logit_pairing, trades_kl
from robustlab.losses.arcface import ArcFaceLoss, arcface_logits
from robustlab.losses.contrastive import contrastive_loss
from robustlab.losses.multiclass_triplet import (
    cosine_matrix,
    hardest_negative_per_class,
    multiclass_triplet_loss,
)
from robustlab.losses.prototype_conformity import prototype_conformity, prototype_distances
from robustlab.losses.ring import ring_loss
from robustlab.losses.svdd import negative_hinge, positive_hinge, svdd_loss
from robustlab.losses.triplet import MINING, TripletLoss

__all__ = [
    "MINING",
    "ArcFaceLoss",
    "arcface_logits",
    "TripletLoss",
    "contrastive_loss",
    "cosine_matrix",
    "hardest_negative_per_class",
    "multiclass_triplet_loss",
    "prototype_conformity",
    "prototype_distances",
    "ring_loss",
    "negative_hinge",
    "positive_hinge",
    "svdd_loss",
    "adversarial_triplet",
    "logit_pairing",
    "trades_kl",
]
