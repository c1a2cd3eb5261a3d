"""Data sets for the command line and the benchmarks, as numpy arrays.

`load_dataset` returns `(x_train, y_train), (x_test, y_test)` with inputs as
float32 in [0, 1] (images keep a channel axis) and integer class labels.
Three sources:

- `"digits"`: scikit-learn's embedded 8x8 handwritten digits (1797 images,
  no download), split 80/20 by a fixed, stratified split. The default.
- a path to a local `.npz` file in the `keras.datasets` layout (keys
  `x_train`, `y_train`, `x_test`, `y_test`), such as a saved copy of MNIST.
- a TensorFlow Datasets name (`mnist`, `fashion_mnist`, `cifar10`,
  `svhn_cropped`), downloaded by `tensorflow_datasets` on first use.
"""

import os

import numpy as np

DIGITS = "digits"
TFDS_NAMES = ("mnist", "fashion_mnist", "cifar10", "svhn_cropped")
CHOICES = (DIGITS,) + TFDS_NAMES
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
# The project's real MNIST beside a checkout (`../shared/datasets`), for
# machines without internet: what the benchmark scripts read by default.
SHARED_MNIST = os.path.normpath(
    os.path.join(
        os.path.dirname(__file__), "..", "..", "..", "shared", "datasets", "mnist.npz"
    )
)
# Fixed split of the digits data set, so every run sees the same test set.
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


def load_dataset(name_or_path=DIGITS, limit=None, data_dir=None, download=True):
    """Loads a classification data set as numpy arrays.

    Args:
        name_or_path: `"digits"`, a TensorFlow Datasets name (one of
            `mnist`, `fashion_mnist`, `cifar10`, `svhn_cropped`) or the path
            of a `.npz` file with keys `x_train`, `y_train`, `x_test`,
            `y_test`.
        limit: optional number of training samples to keep (the first
            `limit`); the test set is never cut.
        data_dir: TensorFlow Datasets' data folder (its default when None).
        download: whether TensorFlow Datasets may download missing data.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: float32 inputs scaled to
        [0, 1] with a trailing channel axis for images, int64 labels.

    Example:

    ```python
    (x_train, y_train), (x_test, y_test) = load_dataset("digits", limit=500)
    x_train.shape  # (500, 8, 8, 1)
    ```
    """
    limit = _validate_limit(limit)
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(
            "Expected `name_or_path` to be a data set name or a path to a .npz "
            f"file. Received: name_or_path={name_or_path!r} "
            f"of type {type(name_or_path).__name__}"
        )
    source = os.fspath(name_or_path)
    if source == DIGITS:
        train, test = _load_digits()
    elif source in TFDS_NAMES:
        train, test = _load_tfds(source, data_dir, download)
    elif source.endswith(".npz") or os.path.isfile(source):
        train, test = _load_npz(source)
    else:
        raise ValueError(
            "Received an invalid value for `name_or_path`, expected one of "
            f"{list(CHOICES)} or the path of a .npz file. "
            f"Received: name_or_path={source!r}"
        )
    if limit is not None:
        train = (train[0][:limit], train[1][:limit])
    return train, test


def _validate_limit(limit):
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)):
        raise TypeError(
            f"Expected an integer or None for `limit`. Received: limit={limit!r}"
        )
    if limit < 1:
        raise ValueError(
            "Received an invalid value for `limit`, expected a positive integer "
            f"or None. Received: limit={limit!r}"
        )
    return int(limit)


def _load_digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # Pixel values are integers 0..16.
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = digits.target.astype("int64")
    x_train, x_test, y_train, y_test = train_test_split(
        x,
        y,
        test_size=DIGITS_TEST_FRACTION,
        random_state=DIGITS_SPLIT_SEED,
        stratify=y,
    )
    return (x_train, y_train), (x_test, y_test)


def _load_npz(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Data set file not found: {path!r}. Expected a .npz file with keys "
            f"{list(NPZ_KEYS)} (the keras.datasets layout)."
        )
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in NPZ_KEYS if k not in f.files]
        if missing:
            raise ValueError(
                f"The .npz file {path!r} lacks the keys {missing}; expected "
                f"{list(NPZ_KEYS)} (the keras.datasets layout). Found: {f.files}"
            )
        arrays = {k: f[k] for k in NPZ_KEYS}
    return (
        (_inputs(arrays["x_train"]), _labels(arrays["y_train"])),
        (_inputs(arrays["x_test"]), _labels(arrays["y_test"])),
    )


def _load_tfds(name, data_dir, download):
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError(
            f"Loading {name!r} needs tensorflow-datasets: "
            "pip install tensorflow-datasets, or pass a local .npz file."
        ) from e
    try:
        (x_train, y_train), (x_test, y_test) = tfds.as_numpy(
            tfds.load(
                name,
                split=["train", "test"],
                as_supervised=True,
                batch_size=-1,
                data_dir=data_dir,
                download=download,
            )
        )
    except Exception as e:  # tfds raises many types for a failed download.
        raise RuntimeError(
            f"Could not load the TensorFlow Datasets data set {name!r} "
            f"({type(e).__name__}: {e}). Without internet access, pass the "
            "path of a local .npz file in the keras.datasets layout instead "
            "(keys x_train, y_train, x_test, y_test), e.g. "
            "`dataset: ../shared/datasets/mnist.npz`."
        ) from e
    return (_inputs(x_train), _labels(y_train)), (_inputs(x_test), _labels(y_test))


def _inputs(x):
    x = np.asarray(x)
    # Integer pixels, and float pixels above 1, are taken as 0..255 values.
    if np.issubdtype(x.dtype, np.integer) or (x.size and float(np.max(x)) > 1.0):
        x = x.astype("float32") / 255.0
    else:
        x = x.astype("float32")
    # Grayscale images stored as (N, H, W) get a channel axis.
    if x.ndim == 3:
        x = x[..., None]
    return x


def _labels(y):
    return np.asarray(y).reshape(len(y)).astype("int64")
