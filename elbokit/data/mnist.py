"""MNIST and the fixed binarized MNIST, read from a local folder, checked against SHA-256.

Nothing here downloads by itself. The arrays are looked up under the data folder
(``$ELBOKIT_DATA``, default ``~/.cache/elbokit/data``)::

    mnist/mnist.npz                        x_train [60000, 28, 28] uint8, y_train, x_test, y_test
    binarized_mnist/binarized_mnist.npz    x_train [50000, 28, 28] {0,1}, x_valid, x_test [10000, ...]

(or the same file names directly in the folder). A file is accepted only when its SHA-256 is
one we know (ours, or the published one of the same content), so a corrupt or different
file is refused, not silently trained on. :func:`download` fetches the files when a user
asks (``elbokit datasets --download NAME``) and verifies them the same way.

Both sets keep their official splits: MNIST's 60,000 training and 10,000 test images (the
validation examples come from the training part), the binarized set's 50,000 / 10,000 /
10,000 (Larochelle & Murray 2011; the split most published log-likelihoods use).
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path

import numpy as np

from ..checkpoint import temporary_file
from ..errors import DataError

ENV = "ELBOKIT_DATA"

# name -> (sub-folder, file, accepted SHA-256s, download URL)
FILES: dict[str, tuple[str, str, frozenset[str], str]] = {
    "mnist": ("mnist", "mnist.npz", frozenset({
        # ../shared/data/mnist/mnist.npz (np.savez_compressed of the official arrays)
        "06af5dfe73b70e3bc1c36439982b18a8d76803db9b544f6fdf838a37fbb01b64",
        # the Keras/TensorFlow mnist.npz (same arrays, same keys), which download() fetches
        "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
    }), "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"),
    "binarized-mnist": ("binarized_mnist", "binarized_mnist.npz", frozenset({
        "3af50c40abac16f6b963d6bbb3ab35254cefcef7c09428ffb2a2237985ccce64",
    }), ""),
}
# The original .amat text files of the fixed binarization, which download() converts.
AMAT_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/binarized_mnist_{}.amat"
AMAT_SHA256 = {
    "train": "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
    "valid": "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
    "test": "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c",
}


def data_root() -> Path:
    """The folder the named MNIST sets are read from: ``$ELBOKIT_DATA`` or the default."""
    return Path(os.environ.get(ENV) or Path.home() / ".cache" / "elbokit" / "data")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def locate(name: str, root: Path | None = None) -> Path:
    """The verified file of the named set under ``root`` (default :func:`data_root`)."""
    folder, file, accepted, _ = FILES[name]
    root = root or data_root()
    for path in (root / folder / file, root / file):
        if path.is_file():
            if sha256_file(path) not in accepted:
                raise DataError(f"{path}: not the {name} file elbokit knows (SHA-256 differs); "
                                "replace it, e.g. with elbokit datasets --download " + name)
            return path
    raise DataError(f"{name}: {folder}/{file} not found in {root} (set {ENV} to the folder that "
                    f"holds it, or fetch it with: elbokit datasets --download {name})")


def _arrays(path: Path, keys: tuple[str, ...]) -> list[np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return [archive[k] for k in keys]
    except (KeyError, OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read the arrays {', '.join(keys)} ({e})") from None


def load_mnist(root: Path | None = None):
    """MNIST as grey levels in [0, 1]: x [70000, 784] float64 (train then test), labels,
    image shape (28, 28), and the official test split in ``meta["test_index"]``."""
    from . import Dataset

    path = locate("mnist", root)
    x_train, y_train, x_test, y_test = _arrays(path, ("x_train", "y_train", "x_test", "y_test"))
    x = np.concatenate([x_train, x_test]).reshape(-1, 784) / 255.0
    return Dataset(x=x, y=np.concatenate([y_train, y_test]).astype(np.int64), source="mnist",
                   image_shape=(28, 28), description=f"MNIST, 60000 + 10000 x 28x28 ({path})",
                   meta={"test_index": np.arange(60000, 70000)})


def load_binarized_mnist(root: Path | None = None):
    """The fixed binarization: x [70000, 784] in {0, 1} (train, valid, test), no labels, and
    the official split in ``meta["val_index"]``, ``meta["test_index"]``. Read from the
    verified ``.npz``, or else from the three verified ``.amat`` files :func:`download` keeps."""
    from . import Dataset

    root = root or data_root()
    amat = _amat_files(root)
    if amat is not None and not any((root / d / "binarized_mnist.npz").is_file()
                                    for d in ("binarized_mnist", ".")):
        parts = [np.loadtxt(amat[split], dtype=np.uint8) for split in ("train", "valid", "test")]
        path = amat["train"].parent
    else:
        path = locate("binarized-mnist", root)
        parts = _arrays(path, ("x_train", "x_valid", "x_test"))
    x = np.concatenate([p.reshape(len(p), 784) for p in parts]).astype(np.float64)
    return Dataset(x=x, source="binarized-mnist", image_shape=(28, 28),
                   description=f"binarized MNIST (Larochelle & Murray), 50000/10000/10000 ({path})",
                   meta={"val_index": np.arange(50000, 60000), "test_index": np.arange(60000, 70000)})


def _amat_files(root: Path) -> dict[str, Path] | None:
    """The three original .amat files under ``root/binarized_mnist``, when all are there and
    verified; None when any is missing."""
    files = {split: root / "binarized_mnist" / f"binarized_mnist_{split}.amat" for split in AMAT_SHA256}
    if not all(f.is_file() for f in files.values()):
        return None
    for split, f in files.items():
        if sha256_file(f) != AMAT_SHA256[split]:
            raise DataError(f"{f}: not the original file (SHA-256 differs); delete it and download again")
    return files


def _fetch(url: str, sha256: frozenset[str] | set[str], dest: Path) -> None:
    """Download ``url`` to ``dest`` (atomically), refusing bytes of an unknown checksum."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temporary_file(dest)  # the mode any new file gets (umask), as dest will keep it
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - fixed https/http URLs
            for block in iter(lambda: response.read(1 << 20), b""):
                f.write(block)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise DataError(f"cannot download {url} ({e})") from None
        raise
    if sha256_file(tmp) not in sha256:
        tmp.unlink(missing_ok=True)
        raise DataError(f"{url}: the downloaded file's SHA-256 is not the expected one; nothing kept")
    os.replace(tmp, dest)


def download(name: str, root: Path | None = None) -> Path:
    """Fetch the named set into ``root`` (default :func:`data_root`), verified; returns the
    file. Already present and verified: nothing is downloaded."""
    if name not in FILES:
        raise DataError(f"nothing to download for {name!r}; choose from {', '.join(FILES)}")
    root = root or data_root()
    folder, file, accepted, url = FILES[name]
    dest = root / folder / file
    if dest.is_file() and sha256_file(dest) in accepted:
        return dest
    if name == "mnist":
        _fetch(url, accepted, dest)
        return dest
    for split, digest in AMAT_SHA256.items():  # the original text files, each verified
        amat = root / folder / f"binarized_mnist_{split}.amat"
        if not (amat.is_file() and sha256_file(amat) == digest):
            _fetch(AMAT_URL.format(split), {digest}, amat)
    return root / folder
