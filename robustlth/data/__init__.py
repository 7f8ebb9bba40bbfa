"""Dataset sources (CIFAR-10/100, SVHN, files, synthetic) and device-resident loaders."""
from .loader import TrainLoader, as_float, iterations_per_epoch, to_float
from .sources import (CIFAR10_MEAN, CIFAR10_STD, NUM_CLASSES, DataError, Dataset, Split, balanced_indices,
                      dataset_spec, load_dataset, make_synthetic, validate_arrays)

__all__ = ["TrainLoader", "as_float", "iterations_per_epoch", "to_float", "CIFAR10_MEAN", "CIFAR10_STD", "NUM_CLASSES",
           "DataError", "Dataset", "Split", "balanced_indices", "dataset_spec", "load_dataset", "make_synthetic",
           "validate_arrays"]
