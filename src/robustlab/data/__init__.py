"""robustlab.data: data sets as float32 NCHW images in [0, 1] with int64 labels.

No normalization happens here (it belongs to the model, so attacks work in pixel space).
Splits are deterministic for a seed; downloaded files are verified by checksum.
"""

from robustlab.data.checksums import (
    CIFAR10_CHECKSUMS,
    FASHION_MNIST_CHECKSUMS,
    MNIST_CHECKSUMS,
    Checksum,
)
from robustlab.data.cifar import load_cifar10_dir, parse_cifar_records
from robustlab.data.dataset import Dataset
from robustlab.data.idx import parse_idx, read_idx
from robustlab.data.images import IMAGE_EXTENSIONS, read_image, write_image
from robustlab.data.mnist import load_idx_dataset
from robustlab.data.registry import DATASETS, DatasetStatus, list_datasets, load_dataset
from robustlab.data.resize import resize_images
from robustlab.data.splits import per_class_split, stratified_sample, stratified_split

__all__ = [
    "CIFAR10_CHECKSUMS",
    "DATASETS",
    "FASHION_MNIST_CHECKSUMS",
    "IMAGE_EXTENSIONS",
    "MNIST_CHECKSUMS",
    "Checksum",
    "Dataset",
    "DatasetStatus",
    "list_datasets",
    "load_cifar10_dir",
    "load_dataset",
    "load_idx_dataset",
    "parse_cifar_records",
    "parse_idx",
    "per_class_split",
    "read_idx",
    "read_image",
    "resize_images",
    "stratified_sample",
    "stratified_split",
    "write_image",
]
