"""The MNIST test set (10,000 digits; LeCun, Cortes & Burges), read from the shared data folder.

Only the test set's images are available here, so every accuracy in neurorec is measured on a
stratified split of those 10,000 images (default 8,000 train / 2,000 test, seed 0) and a report
says so. The files are found under ``$NEUROREC_DATA/mnist`` (default ``<repo>/../shared/data``).
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurorec.core.errors import DataError

ENV_VAR = "NEUROREC_DATA"
IMAGES = "t10k-images-idx3-ubyte.gz"
LABELS = "t10k-labels-idx1-ubyte.gz"
N_IMAGES = 10_000
CITATION = "Y. LeCun, C. Cortes, C. J. C. Burges: The MNIST database of handwritten digits"


def data_root() -> Path:
    """``$NEUROREC_DATA``, or ``<repo>/../shared/data`` from a checkout."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def _read_idx(path: Path, offset: int, magic: int) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: MNIST file not found; set {ENV_VAR} to the folder holding "
                        f"mnist/ (default <repo>/../shared/data)")
    try:
        raw = gzip.open(path).read()
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: unreadable gzip file ({err})") from None
    if len(raw) < offset or int.from_bytes(raw[:4], "big") != magic:
        raise DataError(f"{path}: not an IDX file (magic number {magic} expected)")
    return np.frombuffer(raw, np.uint8, offset=offset)


def load_mnist_test(root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 test images and labels.

    Returns:
        images: (10000, 28, 28) uint8, 0 (background) .. 255.
        labels: (10000,) int64 digits 0..9.
    """
    folder = Path(root) if root is not None else data_root()
    folder = folder / "mnist"
    images = _read_idx(folder / IMAGES, 16, 2051)
    labels = _read_idx(folder / LABELS, 8, 2049).astype(np.int64)
    if images.size != N_IMAGES * 28 * 28 or labels.size != N_IMAGES:
        raise DataError(f"{folder}: expected {N_IMAGES} images of 28×28 and labels, got "
                        f"{images.size} pixels and {labels.size} labels")
    return images.reshape(N_IMAGES, 28, 28), labels


@dataclass(frozen=True)
class MnistSplit:
    """A stratified split of the MNIST test set; images scaled to [0, 1] float32.

    Attributes:
        x_train, x_test: (n, 28, 28) float32.
        y_train, y_test: (n,) int64.
        index_train, index_test: (n,) positions in the 10,000-image file.
        seed: the split's seed.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    index_train: np.ndarray
    index_test: np.ndarray
    seed: int

    def describe(self) -> str:
        """The sentence every report prints beside an accuracy."""
        return (f"MNIST test set (10,000 images) split stratified into {len(self.y_train)} "
                f"train / {len(self.y_test)} test images, seed {self.seed}")


def mnist_split(n_test: int = 2000, seed: int = 0,
                root: str | Path | None = None) -> MnistSplit:
    """Stratified train/test split of the 10,000 MNIST test images (scikit-learn)."""
    from sklearn.model_selection import train_test_split

    images, labels = load_mnist_test(root)
    index = np.arange(N_IMAGES)
    i_train, i_test = train_test_split(index, test_size=n_test, random_state=seed,
                                       stratify=labels)
    i_train, i_test = np.sort(i_train), np.sort(i_test)
    x = images.astype(np.float32) / 255.0
    return MnistSplit(x[i_train], labels[i_train], x[i_test], labels[i_test], i_train, i_test,
                      seed)
