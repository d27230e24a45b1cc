"""Datasets by name, as uint8 image tensors of shape (3, H, W) with H = W = ``data.image_size``.

One file per source, each registering its names in :mod:`pqstudy.data.registry`:

- ``cifar10`` (:mod:`.cifar10`): the official python-batch layout under the data root; downloaded with an md5 check
  when absent and ``data.download`` is on; batches unpickled by a restricted unpickler and validated.
- ``photos`` (:mod:`.photos`): colour photographs bundled inside installed packages, cut into deterministic random
  crops; train and test come from different photos. Works offline.
- ``folder:<path>``, ``imagenet``, ``ffhq`` (:mod:`.folder`): any image folder, and the named folders
  ``<root>/imagenet/{train,val}`` and ``<root>/ffhq``.

The data root (:mod:`.root`) is ``PQSTUDY_DATA_DIR`` if set, else ``data.root``, else ``data``; a relative path is
taken from the repository root. Images stay uint8 here; training converts them to floats (``to_model_space``).
"""

# The sources register their names as they are imported; the order here is the order names are listed in errors.
from pqstudy.data import cifar10, photos, folder  # noqa: I001, F401
from pqstudy.data.cifar10 import CorruptDataError, read_cifar_batch, read_cifar_batch_with_labels
from pqstudy.data.dataset import SPLITS, DatasetNotFoundError, DataWarning, ImageDataset, to_model_space
from pqstudy.data.registry import DATASETS, check_config, data_fingerprint, dataset, load_dataset
from pqstudy.data.root import resolve_data_root

__all__ = [
    "DATASETS",
    "SPLITS",
    "CorruptDataError",
    "DataWarning",
    "DatasetNotFoundError",
    "ImageDataset",
    "check_config",
    "data_fingerprint",
    "dataset",
    "load_dataset",
    "read_cifar_batch",
    "read_cifar_batch_with_labels",
    "resolve_data_root",
    "to_model_space",
]
