"""Tests for fastconv.datasets: IDX reading, where files are looked for, downloads.

Nothing here touches the network: an autouse fixture replaces the module's URL opener
with one that fails the test, and the download tests install a fake opener that
serves local bytes. The real MNIST is the copy that ships with fastconv; Debian's
Fashion-MNIST package is used when present, skipped with a reason if not. Synthetic data
sets load with verify=False (their files are not MNIST's); the isolated fixture hides the
shipped copy, so those tests see only the folders they make.
"""

import gzip
import hashlib
import io
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from fastconv import datasets

FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


from conftest import MNIST_DIR  # noqa: E402

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

needs_mnist = pytest.mark.skipif(
    not all((MNIST_DIR / (f + ".gz")).is_file() for f in FILES),
    reason=f"real MNIST not found at {MNIST_DIR}")
needs_debian_fashion = pytest.mark.skipif(
    not all((DEBIAN_FASHION / (f + ".gz")).is_file() for f in FILES),
    reason=f"Debian's dataset-fashion-mnist is not installed ({DEBIAN_FASHION} missing); "
           "apt-get install dataset-fashion-mnist")


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------

_TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
               np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}


def idx_bytes(array):
    """Encode an array as an IDX file (big-endian), the inverse of load_idx."""
    array = np.asarray(array)
    header = bytes([0, 0, _TYPE_CODES[array.dtype], array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def synthetic_set(n_train=7, n_test=3, seed=0):
    """Small MNIST-shaped data: (train_images, train_labels, test_images, test_labels) uint8."""
    rng = np.random.default_rng(seed)
    train_images = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    train_images[0, 0, 0] = 255
    train_images[0, 0, 1] = 0
    test_images = rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8)
    train_labels = (np.arange(n_train) % 10).astype(np.uint8)
    test_labels = ((np.arange(n_test) + seed) % 10).astype(np.uint8)
    return train_images, train_labels, test_images, test_labels


def write_set(folder, arrays, gz=True):
    """Write the four IDX files into folder; gz may be one bool or one per file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    gz_flags = gz if isinstance(gz, (list, tuple)) else [gz] * 4
    for stem, array, compress in zip(FILES, arrays, gz_flags):
        data = idx_bytes(array)
        if compress:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return folder


def assert_loads_as(result, arrays):
    (x_train, y_train), (x_test, y_test) = result
    train_images, train_labels, test_images, test_labels = arrays
    for x, images in ((x_train, train_images), (x_test, test_images)):
        assert x.dtype == np.float32
        assert x.shape == (images.shape[0], 1, 28, 28)
        assert x.flags.c_contiguous
        np.testing.assert_array_equal(x[:, 0], images.astype(np.float32) / np.float32(255))
    for y, labels in ((y_train, train_labels), (y_test, test_labels)):
        assert y.dtype == np.int64
        np.testing.assert_array_equal(y, labels)


class FakeOpener:
    """Stands in for urllib.request.urlopen: serves bytes per URL, or raises."""

    def __init__(self, responses):
        self.responses = responses  # url -> bytes or an exception instance
        self.calls = []

    def __call__(self, url, timeout=None):
        self.calls.append((url, timeout))
        response = self.responses.get(url, urllib.error.URLError("no route to host (fake)"))
        if isinstance(response, BaseException):
            raise response
        return io.BytesIO(response)


def gz_payloads(arrays):
    """{"<file>.gz": gzip bytes} for a synthetic set."""
    return {stem + ".gz": gzip.compress(idx_bytes(a)) for stem, a in zip(FILES, arrays)}


def patch_checksums(monkeypatch, name, payloads):
    table = datasets._DATASETS[name].sha256
    for gz_name, data in payloads.items():
        monkeypatch.setitem(table, gz_name, hashlib.sha256(data).hexdigest())


def no_system_dirs(monkeypatch, name):
    spec = datasets._DATASETS[name]
    monkeypatch.setitem(datasets._DATASETS, name, datasets.dataclasses.replace(spec, system_dirs=()))


# MNIST's spec as the package has it, with the copy that ships inside fastconv.
SHIPPED_MNIST_SPEC = datasets._DATASETS["mnist"]


def with_shipped_mnist(monkeypatch):
    """Put back the shipped copy that the isolated fixture hides."""
    monkeypatch.setitem(datasets._DATASETS, "mnist", SHIPPED_MNIST_SPEC)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No FASTCONV_DATA, a private empty cache, no shipped MNIST (with_shipped_mnist puts it
    back), and a network that fails the test."""
    monkeypatch.delenv("FASTCONV_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setitem(datasets._DATASETS, "mnist",
                        datasets.dataclasses.replace(SHIPPED_MNIST_SPEC, packaged_dir=None))

    def forbidden(url, timeout=None):
        raise AssertionError(f"test tried the network: {url}")

    monkeypatch.setattr(datasets, "_urlopen", forbidden)


# ----------------------------------------------------------------------------
# real MNIST
# ----------------------------------------------------------------------------

@needs_mnist
def test_real_mnist_from_data_dir():
    (x_train, y_train), (x_test, y_test) = datasets.load_mnist(MNIST_DIR, download=False)
    assert x_train.shape == (60000, 1, 28, 28)
    assert x_test.shape == (10000, 1, 28, 28)
    assert x_train.dtype == np.float32 and x_test.dtype == np.float32
    assert y_train.dtype == np.int64 and y_test.dtype == np.int64
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    assert x_test.min() == 0.0 and x_test.max() == 1.0
    assert np.bincount(y_train, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(y_test, minlength=10).tolist() == MNIST_TEST_COUNTS
    # The well-known first training digit is a 5, the first test digit a 7.
    assert y_train[0] == 5 and y_test[0] == 7
    # Grey levels are k/255 exactly: MNIST's training-set mean is 33.318 / 255.
    assert abs(float(x_train.mean(dtype=np.float64)) * 255 - 33.318) < 1e-3


@needs_mnist
def test_real_mnist_via_parent_folder_and_env(monkeypatch):
    # data_dir may be the folder that holds mnist/ ...
    assert datasets.find_dataset_dir("mnist", MNIST_DIR.parent) == MNIST_DIR
    # ... and so may FASTCONV_DATA, which is used when data_dir is None.
    monkeypatch.setenv("FASTCONV_DATA", str(MNIST_DIR.parent))
    assert datasets.find_dataset_dir("mnist") == MNIST_DIR
    (_, y_train), (x_test, y_test) = datasets.load_mnist(download=False)
    assert np.bincount(y_test, minlength=10).tolist() == MNIST_TEST_COUNTS
    assert np.bincount(y_train, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert x_test.shape == (10000, 1, 28, 28)


@needs_mnist
def test_real_mnist_from_xdg_cache(tmp_path, monkeypatch):
    cache_folder = tmp_path / "xdg-cache" / "fastconv" / "mnist"
    cache_folder.mkdir(parents=True)
    for stem in FILES:
        (cache_folder / (stem + ".gz")).symlink_to(MNIST_DIR / (stem + ".gz"))
    assert datasets.find_dataset_dir("mnist") == cache_folder
    (_, y_train), (_, y_test) = datasets.load_mnist(download=False)
    assert np.bincount(y_train, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(y_test, minlength=10).tolist() == MNIST_TEST_COUNTS


@needs_mnist
def test_real_mnist_test_split_raw_matches_gz(tmp_path):
    # Decompress the real test files; raw and gz copies must load identically.
    for stem in FILES[2:]:
        (tmp_path / stem).write_bytes(gzip.decompress((MNIST_DIR / (stem + ".gz")).read_bytes()))
        raw = datasets.load_idx(tmp_path / stem)
        np.testing.assert_array_equal(raw, datasets.load_idx(MNIST_DIR / (stem + ".gz")))
    images = datasets.load_idx(tmp_path / FILES[2])
    labels = datasets.load_idx(tmp_path / FILES[3])
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert np.bincount(labels, minlength=10).tolist() == MNIST_TEST_COUNTS


def test_shipped_mnist_is_found_after_the_usual_places(tmp_path, monkeypatch):
    with_shipped_mnist(monkeypatch)
    # Nothing in data_dir, FASTCONV_DATA or the cache: the copy inside the package, no network.
    assert datasets.find_dataset_dir("mnist") == MNIST_DIR
    assert MNIST_DIR.parent.name == "data" and MNIST_DIR.parent.parent.name == "fastconv"
    (x_train, y_train), (x_test, y_test) = datasets.load_mnist()
    assert x_train.shape == (60000, 1, 28, 28) and x_test.shape == (10000, 1, 28, 28)
    assert np.bincount(y_test, minlength=10).tolist() == MNIST_TEST_COUNTS
    assert (MNIST_DIR / "LICENSE").read_text().count("CC BY-SA 3.0") >= 1
    # A copy in the cache comes first.
    cache_folder = tmp_path / "xdg-cache" / "fastconv" / "mnist"
    write_set(cache_folder, synthetic_set(seed=21))
    assert datasets.find_dataset_dir("mnist") == cache_folder


def test_keras_format_loaders_return_what_keras_load_data_does(monkeypatch):
    with_shipped_mnist(monkeypatch)
    (x_train, y_train), (x_test, y_test) = datasets.load_mnist_keras()
    assert (x_train.shape, x_train.dtype) == ((60000, 28, 28), np.uint8)
    assert (y_train.shape, y_train.dtype) == ((60000,), np.uint8)
    assert (x_test.shape, x_test.dtype) == ((10000, 28, 28), np.uint8)
    assert (y_test.shape, y_test.dtype) == ((10000,), np.uint8)
    assert np.bincount(y_train, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert y_train[0] == 5 and y_test[0] == 7
    (xf_train, yf_train), _ = datasets.load_mnist()
    np.testing.assert_array_equal(xf_train[:100, 0], x_train[:100].astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(yf_train, y_train)


def test_fashion_keras_loader_shapes(tmp_path):
    arrays = synthetic_set(seed=22)
    write_set(tmp_path / "fashion-mnist", arrays)
    (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist_keras(
        tmp_path, download=False, verify=False)
    for got, want in zip((x_train, y_train, x_test, y_test), arrays):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, want)


# ----------------------------------------------------------------------------
# verification of the files on disk
# ----------------------------------------------------------------------------

def test_a_cached_gz_with_other_contents_is_refused(tmp_path, monkeypatch):
    with_shipped_mnist(monkeypatch)
    cache_folder = write_set(tmp_path / "xdg-cache" / "fastconv" / "mnist", synthetic_set(seed=23))
    with pytest.raises(ValueError) as info:
        datasets.load_mnist()
    message = str(info.value)
    assert str(cache_folder / "train-images-idx3-ubyte.gz") in message
    assert "not MNIST's train-images-idx3-ubyte" in message and "verify=False" in message
    # The explicit way to load a custom copy.
    assert_loads_as(datasets.load_mnist(verify=False), synthetic_set(seed=23))


def test_a_stale_raw_file_beside_the_right_gz_is_refused(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    for stem in FILES:
        (folder / (stem + ".gz")).symlink_to(MNIST_DIR / (stem + ".gz"))
    stale = np.zeros(10000, np.uint8)                  # all zeros: the symptom of issue 14
    (folder / FILES[3]).write_bytes(idx_bytes(stale))
    with pytest.raises(ValueError, match="not MNIST's t10k-labels-idx1-ubyte") as info:
        datasets.load_mnist(folder)
    assert f"{folder / FILES[3]}:" in str(info.value)
    (_, _), (_, y_test) = datasets.load_mnist(folder, verify=False)
    assert not y_test.any()


def test_a_recompressed_or_raw_copy_of_the_right_data_loads(tmp_path):
    # The shipped .gz files themselves differ from the mirrors' (recompressed): what is
    # checked is the IDX bytes, however they are stored.
    folder = tmp_path / "d"
    folder.mkdir()
    for i, stem in enumerate(FILES):
        raw = gzip.decompress((MNIST_DIR / (stem + ".gz")).read_bytes())
        if i % 2:
            (folder / stem).write_bytes(raw)
        else:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(raw, compresslevel=1))
    (_, y_train), (_, y_test) = datasets.load_mnist(folder)
    assert np.bincount(y_train, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(y_test, minlength=10).tolist() == MNIST_TEST_COUNTS


# ----------------------------------------------------------------------------
# Debian's Fashion-MNIST
# ----------------------------------------------------------------------------

@needs_debian_fashion
def test_fashion_mnist_from_debian_folder():
    assert datasets.find_dataset_dir("fashion-mnist") == DEBIAN_FASHION
    (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist(download=False)
    assert x_train.shape == (60000, 1, 28, 28) and x_test.shape == (10000, 1, 28, 28)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    # Fashion-MNIST is balanced: 6000 training and 1000 test images per class.
    assert np.bincount(y_train, minlength=10).tolist() == [6000] * 10
    assert np.bincount(y_test, minlength=10).tolist() == [1000] * 10
    # Its published training mean is 0.2860 (72.94 / 255).
    assert abs(float(x_train.mean(dtype=np.float64)) - 0.2860) < 1e-4


# Debian ships Zalando's deflate streams with the gzip header rewritten (no file name,
# the package's build time). Putting the original header back (FNAME flag, name,
# Zalando's mtimes) rebuilds the mirror's files byte for byte.
_FASHION_MTIMES = {
    "train-images-idx3-ubyte": 1504176606, "train-labels-idx1-ubyte": 1504176606,
    "t10k-images-idx3-ubyte": 1504176627, "t10k-labels-idx1-ubyte": 1504176627,
}


def rebuild_zalando_gz(stem):
    debian = (DEBIAN_FASHION / (stem + ".gz")).read_bytes()
    assert debian[:4] == b"\x1f\x8b\x08\x00"  # deflate, no flags: the header is 10 bytes
    header = (b"\x1f\x8b\x08\x08" + struct.pack("<I", _FASHION_MTIMES[stem]) + b"\x00\x03"
              + stem.encode() + b"\x00")
    return header + debian[10:]


@needs_debian_fashion
def test_fashion_download_checks_the_real_checksum_table(tmp_path, monkeypatch):
    # The module's SHA-256 table against real bytes: serve the rebuilt mirror files.
    no_system_dirs(monkeypatch, "fashion-mnist")
    mirror = datasets._DATASETS["fashion-mnist"].mirrors[0]
    opener = FakeOpener({mirror + stem + ".gz": rebuild_zalando_gz(stem) for stem in FILES})
    monkeypatch.setattr(datasets, "_urlopen", opener)
    (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist(cache_dir=tmp_path / "cache")
    assert len(opener.calls) == 4
    assert all(timeout is not None and timeout <= 60 for _, timeout in opener.calls)
    cache_folder = tmp_path / "cache" / "fashion-mnist"
    assert sorted(p.name for p in cache_folder.iterdir()) == sorted(s + ".gz" for s in FILES)
    assert x_train.shape == (60000, 1, 28, 28) and x_test.shape == (10000, 1, 28, 28)
    assert np.bincount(y_train, minlength=10).tolist() == [6000] * 10
    assert np.bincount(y_test, minlength=10).tolist() == [1000] * 10


def test_checksum_tables_are_complete():
    for spec in datasets._DATASETS.values():
        assert sorted(spec.sha256) == sorted(stem + ".gz" for stem in FILES)
        assert sorted(spec.idx_sha256) == sorted(FILES)
        for digest in list(spec.sha256.values()) + list(spec.idx_sha256.values()):
            assert len(digest) == 64 and all(c in "0123456789abcdef" for c in digest), digest
        assert spec.mirrors and all(m.startswith(("http://", "https://")) and m.endswith("/")
                                    for m in spec.mirrors)


# ----------------------------------------------------------------------------
# where files are looked for (synthetic data)
# ----------------------------------------------------------------------------

def test_raw_files_load_exactly(tmp_path):
    arrays = synthetic_set()
    write_set(tmp_path / "d", arrays, gz=False)
    result = datasets.load_mnist(tmp_path / "d", download=False, verify=False)
    assert_loads_as(result, arrays)
    (x_train, _), _ = result
    assert x_train[0, 0, 0, 0] == 1.0 and x_train[0, 0, 0, 1] == 0.0


def test_mixed_gz_and_raw_files(tmp_path):
    arrays = synthetic_set(seed=3)
    write_set(tmp_path / "d", arrays, gz=[True, False, False, True])
    assert_loads_as(datasets.load_mnist(str(tmp_path / "d"), download=False, verify=False), arrays)


def test_raw_file_preferred_over_gz(tmp_path):
    arrays = synthetic_set(seed=1)
    folder = write_set(tmp_path / "d", arrays, gz=True)
    other = synthetic_set(seed=2)
    (folder / FILES[3]).write_bytes(idx_bytes(other[3]))  # raw test labels beside the .gz
    (_, _), (_, y_test) = datasets.load_mnist(folder, download=False, verify=False)
    np.testing.assert_array_equal(y_test, other[3])


@pytest.mark.parametrize("sub", ["fashion-mnist", "fashion_mnist", "FashionMNIST/raw"])
def test_fashion_subfolders_of_data_dir(tmp_path, sub):
    arrays = synthetic_set(seed=4)
    write_set(tmp_path / "root" / sub, arrays)
    assert datasets.find_dataset_dir("fashion_mnist", tmp_path / "root") == tmp_path / "root" / sub
    assert_loads_as(datasets.load_fashion_mnist(tmp_path / "root", download=False, verify=False), arrays)


def test_data_dir_with_both_data_sets_picks_the_right_one(tmp_path):
    digits, fashion = synthetic_set(seed=5), synthetic_set(seed=6)
    write_set(tmp_path / "root" / "mnist", digits)
    write_set(tmp_path / "root" / "fashion-mnist", fashion)
    assert_loads_as(datasets.load_mnist(tmp_path / "root", download=False, verify=False), digits)
    assert_loads_as(datasets.load_fashion_mnist(tmp_path / "root", download=False, verify=False), fashion)


def test_folder_named_mnist_is_not_taken_as_fashion(tmp_path, monkeypatch):
    no_system_dirs(monkeypatch, "fashion-mnist")
    write_set(tmp_path / "mnist", synthetic_set())
    monkeypatch.setenv("FASTCONV_DATA", str(tmp_path / "mnist"))
    with pytest.raises(FileNotFoundError, match="Fashion-MNIST not found"):
        datasets.load_fashion_mnist(download=False)
    assert datasets.find_dataset_dir("mnist") == tmp_path / "mnist"


def test_search_order_data_dir_then_env_then_cache(tmp_path, monkeypatch):
    from_arg, from_env, from_cache = (synthetic_set(seed=s) for s in (7, 8, 9))
    write_set(tmp_path / "arg", from_arg)
    write_set(tmp_path / "env", from_env)
    write_set(tmp_path / "xdg-cache" / "fastconv" / "mnist", from_cache)
    monkeypatch.setenv("FASTCONV_DATA", str(tmp_path / "env"))
    assert_loads_as(datasets.load_mnist(tmp_path / "arg", download=False, verify=False), from_arg)
    # A data_dir without the files falls through to FASTCONV_DATA ...
    assert_loads_as(datasets.load_mnist(tmp_path / "empty", download=False, verify=False), from_env)
    # ... and without FASTCONV_DATA to the cache.
    monkeypatch.delenv("FASTCONV_DATA")
    assert_loads_as(datasets.load_mnist(download=False, verify=False), from_cache)


def test_cache_dir_argument_and_home_fallback(tmp_path, monkeypatch):
    arrays = synthetic_set(seed=10)
    write_set(tmp_path / "mycache" / "mnist", arrays)
    assert_loads_as(datasets.load_mnist(download=False, cache_dir=tmp_path / "mycache", verify=False), arrays)
    assert datasets.find_dataset_dir("mnist", cache_dir=tmp_path / "mycache") == tmp_path / "mycache" / "mnist"
    # Without XDG_CACHE_HOME the cache is ~/.cache/fastconv.
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    write_set(tmp_path / "home" / ".cache" / "fastconv" / "mnist", arrays)
    assert datasets.find_dataset_dir("mnist") == tmp_path / "home" / ".cache" / "fastconv" / "mnist"


def test_not_found_lists_every_folder_and_the_ways_out(tmp_path, monkeypatch):
    no_system_dirs(monkeypatch, "fashion-mnist")
    monkeypatch.setenv("FASTCONV_DATA", str(tmp_path / "envdir"))
    partial = write_set(tmp_path / "given", synthetic_set())
    (partial / (FILES[3] + ".gz")).unlink()
    with pytest.raises(FileNotFoundError) as info:
        datasets.load_mnist(partial, download=False)
    message = str(info.value)
    cache_folder = tmp_path / "xdg-cache" / "fastconv" / "mnist"
    for folder in (partial, partial / "mnist", tmp_path / "envdir", tmp_path / "envdir" / "mnist",
                   cache_folder):
        assert f"{folder}  (" in message
    assert f"{partial}  (data_dir: missing t10k-labels-idx1-ubyte[.gz])" in message
    assert "download=False" in message
    assert "FASTCONV_DATA=" in message and "data_dir=" in message and str(cache_folder) in message

    with pytest.raises(FileNotFoundError) as info:
        datasets.find_dataset_dir("fashion-mnist")
    message = str(info.value)
    assert "Fashion-MNIST not found" in message
    assert str(tmp_path / "envdir" / "fashion_mnist") in message
    assert "apt-get install dataset-fashion-mnist" in message


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown data set 'cifar10'"):
        datasets.find_dataset_dir("cifar10")


# ----------------------------------------------------------------------------
# IDX reading and validation
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_types_and_shapes(tmp_path, dtype, gz):
    offset = 0 if dtype == np.uint8 else 7  # negative values for the signed and float types
    array = (np.arange(2 * 3 * 5) - offset).reshape(2, 3, 5).astype(dtype)
    data = idx_bytes(array)
    path = tmp_path / ("a.idx" + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(data) if gz else data)
    loaded = datasets.load_idx(path)
    assert loaded.dtype == np.dtype(dtype) and loaded.dtype.isnative
    assert loaded.shape == (2, 3, 5)
    np.testing.assert_array_equal(loaded, array)
    loaded[0, 0, 0] = 1  # writable


def test_gzip_detected_by_content_not_name(tmp_path):
    labels = np.array([3, 1, 4, 1, 5], np.uint8)
    (tmp_path / "labels").write_bytes(gzip.compress(idx_bytes(labels)))
    np.testing.assert_array_equal(datasets.load_idx(tmp_path / "labels"), labels)


@pytest.mark.parametrize("gz", [False, True])
def test_bad_magic_names_the_file(tmp_path, gz):
    arrays = synthetic_set()
    folder = write_set(tmp_path / "d", arrays, gz=gz)
    target = folder / (FILES[0] + (".gz" if gz else ""))
    data = bytearray(idx_bytes(arrays[0]))
    data[0:4] = b"\x12\x34\x08\x03"
    target.write_bytes(gzip.compress(bytes(data)) if gz else bytes(data))
    with pytest.raises(ValueError, match="bad magic number 0x12340803") as info:
        datasets.load_mnist(folder, download=False)
    assert str(target) in str(info.value)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_file_names_the_file(tmp_path, gz):
    data = idx_bytes(np.zeros((4, 28, 28), np.uint8))[:-100]
    path = tmp_path / ("t.gz" if gz else "t")
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(ValueError, match="truncated IDX file") as info:
        datasets.load_idx(path)
    assert str(path) in str(info.value) and "(4, 28, 28)" in str(info.value)


def test_truncated_header_trailing_bytes_and_corrupt_gzip(tmp_path):
    (tmp_path / "short").write_bytes(b"\x00\x00\x08")
    with pytest.raises(ValueError, match="short: not an IDX file"):
        datasets.load_idx(tmp_path / "short")
    (tmp_path / "head").write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(ValueError, match="head: truncated IDX header"):
        datasets.load_idx(tmp_path / "head")
    (tmp_path / "long").write_bytes(idx_bytes(np.zeros(5, np.uint8)) + b"\x00")
    with pytest.raises(ValueError, match="long: IDX file has bytes past"):
        datasets.load_idx(tmp_path / "long")
    compressed = gzip.compress(idx_bytes(np.zeros(5000, np.uint8)))
    (tmp_path / "cut.gz").write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(ValueError, match="cut.gz: "):
        datasets.load_idx(tmp_path / "cut.gz")
    with pytest.raises(FileNotFoundError):
        datasets.load_idx(tmp_path / "absent")


def test_label_count_must_match_image_count(tmp_path):
    train_images, train_labels, test_images, test_labels = synthetic_set()
    folder = write_set(tmp_path / "d", (train_images, train_labels[:-1], test_images, test_labels))
    with pytest.raises(ValueError, match="holds 6 labels but .*train-images-idx3-ubyte.gz holds 7 images"):
        datasets.load_mnist(folder, download=False, verify=False)


def test_labels_must_be_digits(tmp_path):
    train_images, train_labels, test_images, test_labels = synthetic_set()
    test_labels = test_labels.copy()
    test_labels[2] = 10
    folder = write_set(tmp_path / "d", (train_images, train_labels, test_images, test_labels))
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte.gz: label 10 at index 2 is outside 0..9"):
        datasets.load_mnist(folder, download=False, verify=False)


def test_images_must_be_28_by_28(tmp_path):
    train_images, train_labels, test_images, test_labels = synthetic_set()
    folder = write_set(tmp_path / "d", (train_images, train_labels, test_images[:, :27], test_labels))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz: expected uint8 images of shape "
                                         r"\(N, 28, 28\), found uint8 of shape \(3, 27, 28\)"):
        datasets.load_mnist(folder, download=False, verify=False)


# ----------------------------------------------------------------------------
# downloads, with a fake opener
# ----------------------------------------------------------------------------

def test_download_lands_in_cache_and_loads(tmp_path, monkeypatch):
    arrays = synthetic_set(seed=11)
    payloads = gz_payloads(arrays)
    patch_checksums(monkeypatch, "mnist", payloads)
    first, second = datasets._DATASETS["mnist"].mirrors
    # The first mirror is down; the second serves every file.
    opener = FakeOpener({second + name: data for name, data in payloads.items()})
    monkeypatch.setattr(datasets, "_urlopen", opener)
    assert_loads_as(datasets.load_mnist(verify=False), arrays)
    assert [url for url, _ in opener.calls] == [m + s + ".gz" for s in FILES for m in (first, second)]
    cache_folder = tmp_path / "xdg-cache" / "fastconv" / "mnist"
    assert sorted(p.name for p in cache_folder.iterdir()) == sorted(payloads)
    for name, data in payloads.items():
        assert (cache_folder / name).read_bytes() == data
    # A second load reads the cache and does not download.
    assert_loads_as(datasets.load_mnist(verify=False), arrays)
    assert len(opener.calls) == 8


def test_download_fetches_only_missing_files(tmp_path, monkeypatch):
    arrays = synthetic_set(seed=12)
    payloads = gz_payloads(arrays)
    patch_checksums(monkeypatch, "mnist", payloads)
    cache = tmp_path / "c"
    write_set(cache / "mnist", arrays, gz=False)
    (cache / "mnist" / FILES[1]).unlink()
    mirror = datasets._DATASETS["mnist"].mirrors[0]
    opener = FakeOpener({mirror + name: data for name, data in payloads.items()})
    monkeypatch.setattr(datasets, "_urlopen", opener)
    assert_loads_as(datasets.load_mnist(cache_dir=cache, verify=False), arrays)
    assert [url for url, _ in opener.calls] == [mirror + FILES[1] + ".gz"]


def test_bad_checksum_raises_and_leaves_no_file(tmp_path, monkeypatch):
    arrays = synthetic_set(seed=13)
    payloads = gz_payloads(arrays)
    patch_checksums(monkeypatch, "mnist", payloads)
    corrupted = dict(payloads)
    good = payloads[FILES[0] + ".gz"]
    corrupted[FILES[0] + ".gz"] = good[:100] + bytes([good[100] ^ 0xFF]) + good[101:]
    opener = FakeOpener({m + name: data for m in datasets._DATASETS["mnist"].mirrors
                         for name, data in corrupted.items()})
    monkeypatch.setattr(datasets, "_urlopen", opener)
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz does not match its checksum") as info:
        datasets.load_mnist(cache_dir=tmp_path / "c", verify=False)
    assert "SHA-256" in str(info.value) and hashlib.sha256(corrupted[FILES[0] + ".gz"]).hexdigest() in str(info.value)
    assert list((tmp_path / "c" / "mnist").iterdir()) == []  # nothing kept, no .part file


def test_bad_first_mirror_good_second(tmp_path, monkeypatch):
    arrays = synthetic_set(seed=14)
    payloads = gz_payloads(arrays)
    patch_checksums(monkeypatch, "mnist", payloads)
    first, second = datasets._DATASETS["mnist"].mirrors
    responses = {second + name: data for name, data in payloads.items()}
    responses[first + FILES[0] + ".gz"] = b"<html>not found</html>"
    monkeypatch.setattr(datasets, "_urlopen", FakeOpener(responses))
    assert_loads_as(datasets.load_mnist(cache_dir=tmp_path / "c", verify=False), arrays)
    assert sorted(p.name for p in (tmp_path / "c" / "mnist").iterdir()) == sorted(payloads)


def test_no_network_gives_file_not_found(tmp_path, monkeypatch):
    opener = FakeOpener({})
    monkeypatch.setattr(datasets, "_urlopen", opener)
    with pytest.raises(FileNotFoundError) as info:
        datasets.load_mnist(tmp_path / "nothing-here")
    message = str(info.value)
    assert "download: failed" in message and "no route to host (fake)" in message
    assert str(tmp_path / "nothing-here") in message and "FASTCONV_DATA" in message
    # It gave up after the first file, tried on every mirror, and left nothing behind.
    assert len(opener.calls) == len(datasets._DATASETS["mnist"].mirrors)
    assert list((tmp_path / "xdg-cache" / "fastconv" / "mnist").iterdir()) == []


def test_download_false_never_opens_a_url(tmp_path):
    # The autouse fixture's opener fails the test if called.
    with pytest.raises(FileNotFoundError, match="not attempted"):
        datasets.load_mnist(tmp_path / "nothing-here", download=False)
