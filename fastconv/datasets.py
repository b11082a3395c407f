"""MNIST and Fashion-MNIST: IDX files in, float32 NCHW arrays out.

Both data sets come as four IDX files, each gzip-compressed or raw:

    train-images-idx3-ubyte   (60000, 28, 28) uint8 grey levels
    train-labels-idx1-ubyte   (60000,)        uint8 class ids 0..9
    t10k-images-idx3-ubyte    (10000, 28, 28)
    t10k-labels-idx1-ubyte    (10000,)

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the values in C order.

The loaders return ((x_train, y_train), (x_test, y_test)) with x float32 of shape
(N, 1, 28, 28) holding v / 255 (so in [0, 1]) and y int64 of shape (N,);
load_mnist_keras and load_fashion_mnist_keras return what keras.datasets' load_data()
does instead: uint8 images (N, 28, 28) and uint8 labels (N,).

Where the files are looked for, first hit wins (find_dataset_dir does only this part):

  1. the data_dir argument,
  2. the folder named by the FASTCONV_DATA environment variable,
  3. the cache folder, <cache>/<name>, where <cache> is cache_dir if given, else
     $XDG_CACHE_HOME/fastconv, else ~/.cache/fastconv, and <name> is "mnist" or
     "fashion-mnist",
  4. system folders: for Fashion-MNIST, /usr/share/datasets/fashion-mnist, where
     Debian's package dataset-fashion-mnist installs the four .gz files,
  5. for MNIST, the copy that ships inside the package (fastconv/data/mnist: the four
     .gz files, CC BY-SA 3.0, see the LICENSE file there), so MNIST needs no network.

For 1 and 2 the folder may hold the files itself or in a subfolder named after the
data set (mnist/, MNIST/raw/ for MNIST; fashion-mnist/, fashion_mnist/,
FashionMNIST/raw/ for Fashion-MNIST). A folder named after the other data set is
never taken as this one, so FASTCONV_DATA=.../mnist does not make load_fashion_mnist
return digits.

  6. If nothing is found and download=True, the four .gz files are fetched from the
     standard mirrors into the cache folder (3) and their SHA-256 checked against
     _DATASETS below; a mismatch deletes the file and raises ValueError.

If no copy is found and none can be downloaded, FileNotFoundError lists every
folder looked in and how to point fastconv at the files.

Every file is verified when it is loaded (verify=True, the default): the SHA-256 of its
decompressed IDX bytes must be the published data set's, whatever folder it came from and
however it was compressed (a recompressed .gz of the right data loads; a file with other
contents, say a stale raw file beside the right .gz, raises ValueError naming it). This
costs about 30 ms for the four files. Pass verify=False to load a custom or modified
copy in the same format.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.client
import logging
import os
import tempfile
import urllib.request
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

__all__ = ["load_mnist", "load_fashion_mnist", "load_mnist_keras", "load_fashion_mnist_keras",
           "load_idx", "find_dataset_dir"]

_log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
Split = Tuple[np.ndarray, np.ndarray]

# The four files of each data set, without the .gz suffix, in the order
# train images, train labels, test images, test labels.
_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

_ENV_VAR = "FASTCONV_DATA"
_DOWNLOAD_TIMEOUT_S = 20.0             # per socket operation, not per file
_MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024  # the largest file (Fashion train images) is 26 MB
_MAX_IDX_BYTES = 1 << 32               # a header announcing more than 4 GiB is not taken at its word
_IMAGE_SIDE = 28
_NUM_CLASSES = 10

# The opener used for downloads; tests replace it with one that serves local bytes.
_urlopen = urllib.request.urlopen

# The MNIST copy that ships with the package (the four .gz files and their licence).
_PACKAGED_DATA = Path(__file__).resolve().parent / "data"


@dataclasses.dataclass(frozen=True)
class _DatasetSpec:
    name: str                    # canonical name, also the cache subfolder
    title: str                   # for messages
    subfolders: Tuple[str, ...]  # accepted inside data_dir / FASTCONV_DATA
    system_dirs: Tuple[str, ...]  # installed copies (distribution packages)
    mirrors: Tuple[str, ...]     # base URLs, tried in order; file URL = base + file + ".gz"
    sha256: Dict[str, str]       # "<file>.gz" -> SHA-256 of the mirrors' gzip file
    idx_sha256: Dict[str, str]   # "<file>" -> SHA-256 of its decompressed IDX bytes (verify)
    packaged_dir: Optional[Path] = None  # the copy shipped inside fastconv, if any
    install_hint: str = ""


_DATASETS: Dict[str, _DatasetSpec] = {
    "mnist": _DatasetSpec(
        name="mnist",
        title="MNIST",
        subfolders=("mnist", "MNIST/raw", "MNIST"),
        system_dirs=(),
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        # The gzip files LeCun published and both mirrors serve.
        sha256={
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
        # The IDX bytes inside those files (their MD5s are the ones LeCun's page and
        # torchvision list: 6bbc9ace..., a25bea73..., 2646ac64..., 27ae3e4e...).
        idx_sha256={
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        packaged_dir=_PACKAGED_DATA / "mnist",
    ),
    "fashion-mnist": _DatasetSpec(
        name="fashion-mnist",
        title="Fashion-MNIST",
        subfolders=("fashion-mnist", "fashion_mnist", "FashionMNIST/raw", "FashionMNIST"),
        # Debian/Ubuntu: apt-get install dataset-fashion-mnist (the four .gz files).
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        # Zalando's gzip files (their README publishes the MD5s of the same bytes).
        sha256={
            "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
        # The IDX bytes inside them, as Debian's package also holds them (raw MD5s
        # f4a8712d..., 9018921c..., 8181f547..., 15d48437..., as torchvision lists).
        idx_sha256={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        install_hint="on Debian/Ubuntu: apt-get install dataset-fashion-mnist "
                     "(installs them in /usr/share/datasets/fashion-mnist)",
    ),
}

_ALIASES = {"mnist": "mnist", "fashion-mnist": "fashion-mnist", "fashion": "fashion-mnist"}

# IDX type code -> element type (multi-byte types are big-endian in the file).
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


# ----------------------------------------------------------------------------
# IDX reading
# ----------------------------------------------------------------------------

def _read_exactly(stream, n: int) -> bytes:
    """Read n bytes, or fewer only at the end of the stream."""
    parts = []
    while n > 0:
        chunk = stream.read(n)
        if not chunk:
            break
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def _read_idx_stream(stream, path: Path, data_limit: int, digest=None) -> np.ndarray:
    """Parse one IDX stream; data_limit is the most data bytes it can hold. digest, a
    hashlib object or None, is fed every byte of the (decompressed) file as it is read."""
    head = _read_exactly(stream, 4)
    if len(head) < 4:
        raise ValueError(f"{path}: not an IDX file: {len(head)} bytes, shorter than the 4-byte magic number")
    zero0, zero1, type_code, ndim = head
    if zero0 != 0 or zero1 != 0 or type_code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(
            f"{path}: not an IDX file: bad magic number 0x{head.hex()} "
            "(expected 0x0000TTDD: two zero bytes, a type code such as 0x08 for uint8, "
            "and the number of dimensions)")
    dims_bytes = _read_exactly(stream, 4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header: {ndim} dimensions announced, "
                         f"only {len(dims_bytes)} of {4 * ndim} header bytes present")
    if digest is not None:
        digest.update(head)
        digest.update(dims_bytes)
    dims = tuple(int(d) for d in np.frombuffer(dims_bytes, dtype=">u4"))
    dtype = _IDX_DTYPES[type_code]
    count = 1
    for d in dims:
        count *= d
    if count * dtype.itemsize > data_limit:
        if data_limit >= _MAX_IDX_BYTES:
            raise ValueError(f"{path}: implausible IDX header: shape {dims} of {dtype.name} "
                             f"is more than {_MAX_IDX_BYTES} bytes")
        raise ValueError(f"{path}: truncated IDX file: the header says shape {dims} of {dtype.name} "
                         f"({count * dtype.itemsize} data bytes), the file holds only {max(data_limit, 0)}")
    # flat is (count,) in the file's byte order; filled in place, no intermediate copy.
    flat = np.empty(count, dtype=dtype)
    buffer = memoryview(flat.view(np.uint8))
    filled = 0
    while filled < flat.nbytes:
        n = stream.readinto(buffer[filled:])
        if not n:
            break
        filled += n
    if filled < flat.nbytes:
        raise ValueError(f"{path}: truncated IDX file: the header says shape {dims} of {dtype.name} "
                         f"({flat.nbytes} data bytes), the file holds only {filled}")
    if stream.read(1):
        raise ValueError(f"{path}: IDX file has bytes past the {flat.nbytes} data bytes "
                         f"its header announces (shape {dims})")
    if digest is not None:
        digest.update(buffer)
    if dtype.byteorder == ">":
        flat = flat.astype(dtype.newbyteorder("="))
    return flat.reshape(dims)


def load_idx(path: PathLike) -> np.ndarray:
    """Read one IDX file (gzip-compressed or raw) into a NumPy array.

    The shape and element type come from the file's header; multi-byte types are
    returned in native byte order. Whether the file is gzip-compressed is decided by
    its first two bytes, not by its name.

    Raises FileNotFoundError if the file does not exist, and ValueError naming the
    file if its magic number is wrong, it is truncated, it has trailing bytes, or its
    gzip stream is corrupt.
    """
    return _read_idx(Path(path))


def _read_idx(path: Path, digest=None) -> np.ndarray:
    """load_idx, feeding the decompressed bytes to digest (a hashlib object) if given."""
    with open(path, "rb") as raw:
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        try:
            if compressed:
                with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                    return _read_idx_stream(stream, path, _MAX_IDX_BYTES, digest)
            header_bytes = 4 + 4 * (raw.read(4)[3:4] or b"\0")[0]
            raw.seek(0)
            return _read_idx_stream(raw, path, os.fstat(raw.fileno()).st_size - header_bytes, digest)
        except (EOFError, zlib.error, gzip.BadGzipFile) as err:
            raise ValueError(f"{path}: corrupt gzip data ({err})") from err


# ----------------------------------------------------------------------------
# Finding the files
# ----------------------------------------------------------------------------

def _spec(name: str) -> _DatasetSpec:
    key = _ALIASES.get(str(name).lower().replace("_", "-"))
    if key is None:
        raise ValueError(f"unknown data set {name!r}; expected one of: mnist, fashion-mnist")
    return _DATASETS[key]


def _file_in(folder: Path, stem: str) -> Optional[Path]:
    """The raw file if present (no decompression needed), else the .gz, else None."""
    for candidate in (folder / stem, folder / (stem + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _check_folder(folder: Path) -> Tuple[Optional[Dict[str, Path]], str]:
    """(stem -> path for all four files, "") or (None, why this folder does not do)."""
    if not folder.is_dir():
        return None, "no such folder" if not folder.exists() else "not a folder"
    found = {stem: _file_in(folder, stem) for stem in _FILES}
    missing = [stem for stem, path in found.items() if path is None]
    if len(missing) == len(_FILES):
        return None, "no IDX files"
    if missing:
        return None, "missing " + ", ".join(f"{stem}[.gz]" for stem in missing)
    return found, ""  # type: ignore[return-value]


def _other_names(spec: _DatasetSpec) -> set:
    names = set()
    for other in _DATASETS.values():
        if other.name != spec.name:
            names.add(other.name.lower())
            names.update(s.split("/")[0].lower() for s in other.subfolders)
    return names


def _user_candidates(base: Path, spec: _DatasetSpec) -> List[Path]:
    """The subfolders named after the data set, then the folder itself, unless it is
    named after the other data set (or, for MNIST/raw style, its parent is)."""
    candidates = [base / sub for sub in spec.subfolders]
    others = _other_names(spec)
    own_name = base.name.lower()
    parent_name = base.parent.name.lower() if own_name == "raw" else ""
    if own_name not in others and parent_name not in others:
        candidates.append(base)
    return candidates


def _cache_root(cache_dir: Optional[PathLike]) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "fastconv"
    return Path.home() / ".cache" / "fastconv"


def _search(spec: _DatasetSpec, data_dir: Optional[PathLike], cache_dir: Optional[PathLike]
            ) -> Tuple[Optional[Dict[str, Path]], List[str]]:
    """Walk the search order; return (files or None, one line per place looked in)."""
    looked: List[str] = []

    def try_folders(folders: List[Path], origin: str):
        for folder in folders:
            files, why = _check_folder(folder)
            if files is not None:
                return files
            looked.append(f"{folder}  ({origin}: {why})")
        return None

    if data_dir is not None:
        files = try_folders(_user_candidates(Path(data_dir).expanduser(), spec), "data_dir")
        if files:
            return files, looked
    env_value = os.environ.get(_ENV_VAR, "")
    if env_value:
        files = try_folders(_user_candidates(Path(env_value).expanduser(), spec), _ENV_VAR)
        if files:
            return files, looked
    else:
        looked.append(f"${_ENV_VAR}  (not set)")
    files = try_folders([_cache_root(cache_dir) / spec.name], "cache")
    if files:
        return files, looked
    files = try_folders([Path(d) for d in spec.system_dirs], "system")
    if files or spec.packaged_dir is None:
        return files, looked
    files = try_folders([spec.packaged_dir], "shipped with fastconv")
    return files, looked


def _not_found_message(spec: _DatasetSpec, looked: List[str], download_note: str,
                       cache_dir: Optional[PathLike]) -> str:
    loader = "load_mnist" if spec.name == "mnist" else "load_fashion_mnist"
    cache_folder = _cache_root(cache_dir) / spec.name
    lines = [f"{spec.title} not found. Looked in:"]
    lines += [f"  {entry}" for entry in looked]
    lines.append(f"  download: {download_note}")
    lines.append(
        f"Point fastconv at a folder holding the four IDX files ({', '.join(_FILES)}; "
        "each raw or .gz) in one of these ways:")
    lines.append(f"  fastconv.datasets.{loader}(data_dir='/path/to/folder')")
    lines.append(f"  export {_ENV_VAR}=/path/to/folder   "
                 f"(the files there or in its {spec.subfolders[0]}/ subfolder)")
    lines.append(f"  put them in the cache folder {cache_folder}")
    if spec.install_hint:
        lines.append(f"  {spec.install_hint}")
    return "\n".join(lines)


def find_dataset_dir(name: str, data_dir: Optional[PathLike] = None, *,
                     cache_dir: Optional[PathLike] = None) -> Path:
    """Return the folder the loaders would read data set `name` from, without downloading.

    name is "mnist" or "fashion-mnist" (also "fashion_mnist", "fashion"). The places
    searched, in order, are described in this module's docstring: data_dir, the
    FASTCONV_DATA folder, the cache folder, system folders, then (MNIST) the copy that
    ships with fastconv.

    Raises FileNotFoundError listing every folder looked in (and why each did not
    do) when no folder holds all four files.
    """
    spec = _spec(name)
    files, looked = _search(spec, data_dir, cache_dir)
    if files is None:
        raise FileNotFoundError(_not_found_message(spec, looked, "not attempted by find_dataset_dir",
                                                   cache_dir))
    return files[_FILES[0]].parent


# ----------------------------------------------------------------------------
# Downloading
# ----------------------------------------------------------------------------

class _ChecksumMismatch(Exception):
    pass


def _fetch_one(url: str, target: Path, expected_sha256: str) -> None:
    """Download url into target via a temporary file; check its SHA-256 first.

    Raises OSError / http.client.HTTPException for network trouble and
    _ChecksumMismatch for wrong bytes; in every failure no file is left behind.
    """
    fd, tmp_name = tempfile.mkstemp(prefix="." + target.name + ".", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as out, _urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
            while True:
                chunk = response.read(1 << 20)
                if not chunk:
                    break
                size += len(chunk)
                if size > _MAX_DOWNLOAD_BYTES:
                    raise _ChecksumMismatch(f"{url}: more than {_MAX_DOWNLOAD_BYTES} bytes, "
                                            "not the expected file")
                digest.update(chunk)
                out.write(chunk)
        actual = digest.hexdigest()
        if actual != expected_sha256:
            raise _ChecksumMismatch(f"{url}: SHA-256 {actual}, expected {expected_sha256} "
                                    f"({size} bytes received; deleted)")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _download(spec: _DatasetSpec, folder: Path) -> List[str]:
    """Fetch every missing .gz into folder. Returns a list of failures (empty: all done).

    Raises ValueError if a file came back with the wrong checksum from every mirror.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return [f"cannot create the cache folder {folder}: {err}"]
    for stem in _FILES:
        if _file_in(folder, stem) is not None:
            continue
        gz_name = stem + ".gz"
        failures: List[str] = []
        mismatches: List[str] = []
        for mirror in spec.mirrors:
            url = mirror + gz_name
            _log.info("fastconv: downloading %s", url)
            try:
                _fetch_one(url, folder / gz_name, spec.sha256[gz_name])
                break
            except _ChecksumMismatch as err:
                mismatches.append(str(err))
            except (OSError, http.client.HTTPException) as err:
                failures.append(f"{url}: {type(err).__name__}: {err}")
        else:
            if mismatches:
                raise ValueError(f"{spec.title}: downloaded {gz_name} does not match its checksum:\n  "
                                 + "\n  ".join(mismatches + failures))
            return failures  # the network is not there; the other files would fail too
    return []


# ----------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------

def _images_to_float(images: np.ndarray) -> np.ndarray:
    # images is (N, 28, 28) uint8; x is (N, 1, 28, 28) float32 = images / 255, exactly rounded.
    x = images.astype(np.float32).reshape(images.shape[0], 1, _IMAGE_SIDE, _IMAGE_SIDE)
    np.divide(x, np.float32(255), out=x)
    return x


def _load_verified(spec: _DatasetSpec, stem: str, path: Path, verify: bool) -> np.ndarray:
    """load_idx(path), checking (verify) that its IDX bytes are the data set's file `stem`."""
    if not verify:
        return load_idx(path)
    digest = hashlib.sha256()
    array = _read_idx(path, digest)
    expected = spec.idx_sha256[stem]
    if digest.hexdigest() != expected:
        raise ValueError(
            f"{path}: not {spec.title}'s {stem}: the SHA-256 of its IDX bytes is "
            f"{digest.hexdigest()}, expected {expected}. Delete or replace the file (a stale "
            f"raw file is read before the .gz beside it), or pass verify=False to load a "
            f"custom copy.")
    return array


def _load_split(spec: _DatasetSpec, files: Dict[str, Path], image_stem: str, label_stem: str,
                verify: bool) -> Tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) uint8) from one pair of files, checked."""
    image_path, label_path = files[image_stem], files[label_stem]
    images = _load_verified(spec, image_stem, image_path, verify)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (_IMAGE_SIDE, _IMAGE_SIDE):
        raise ValueError(f"{image_path}: expected uint8 images of shape (N, {_IMAGE_SIDE}, {_IMAGE_SIDE}), "
                         f"found {images.dtype.name} of shape {images.shape}")
    labels = _load_verified(spec, label_stem, label_path, verify)
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(f"{label_path}: expected uint8 labels of shape (N,), "
                         f"found {labels.dtype.name} of shape {labels.shape}")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"{label_path} holds {labels.shape[0]} labels but {image_path} "
                         f"holds {images.shape[0]} images")
    if labels.size and int(labels.max()) >= _NUM_CLASSES:
        bad = int(np.argmax(labels >= _NUM_CLASSES))
        raise ValueError(f"{label_path}: label {int(labels[bad])} at index {bad} is outside 0..{_NUM_CLASSES - 1}")
    return images, labels


def _load_raw(spec: _DatasetSpec, data_dir: Optional[PathLike], download: bool,
              cache_dir: Optional[PathLike], verify: bool) -> Tuple[Tuple[np.ndarray, np.ndarray], ...]:
    """((train images, train labels), (test images, test labels)) as uint8, as stored."""
    files, looked = _search(spec, data_dir, cache_dir)
    if files is None:
        if not download:
            note = "not attempted (download=False)"
        else:
            cache_folder = _cache_root(cache_dir) / spec.name
            failures = _download(spec, cache_folder)
            if not failures:
                files, _ = _check_folder(cache_folder)
            note = "failed:\n    " + "\n    ".join(failures) if failures else ""
        if files is None:
            raise FileNotFoundError(_not_found_message(spec, looked, note, cache_dir))
    train = _load_split(spec, files, _FILES[0], _FILES[1], verify)
    test = _load_split(spec, files, _FILES[2], _FILES[3], verify)
    return train, test


def _load(spec: _DatasetSpec, data_dir: Optional[PathLike], download: bool,
          cache_dir: Optional[PathLike], verify: bool) -> Tuple[Split, Split]:
    (train_images, train_labels), (test_images, test_labels) = _load_raw(
        spec, data_dir, download, cache_dir, verify)
    return ((_images_to_float(train_images), train_labels.astype(np.int64)),
            (_images_to_float(test_images), test_labels.astype(np.int64)))


def load_mnist(data_dir: Optional[PathLike] = None, *, download: bool = True,
               cache_dir: Optional[PathLike] = None, verify: bool = True) -> Tuple[Split, Split]:
    """Load MNIST as ((x_train, y_train), (x_test, y_test)).

    x_train is (60000, 1, 28, 28) and x_test (10000, 1, 28, 28), float32 in [0, 1]
    (grey level / 255); y_train and y_test are int64 digits 0..9.

    data_dir: a folder holding the four IDX files (raw or .gz), or holding them in
        a subfolder mnist/ (or MNIST/raw/). If None or empty there, the
        FASTCONV_DATA folder, the cache folder and then the copy that ships with
        fastconv are tried (see the module docstring).
    download: if no copy is found, fetch the files from the standard mirrors into the
        cache folder and check their SHA-256 (with the shipped copy in place, MNIST
        never needs to).
    cache_dir: replaces $XDG_CACHE_HOME/fastconv (default ~/.cache/fastconv); the
        files live in its mnist/ subfolder.
    verify: check each file's SHA-256 (of its decompressed IDX bytes) against MNIST's;
        False loads any four IDX files of the right shapes (a custom copy).

    Raises FileNotFoundError listing the folders looked in when no copy is found and
    none can be downloaded; ValueError naming the file when a file is malformed, is
    not MNIST's (verify=True), or a download fails its checksum.
    """
    return _load(_DATASETS["mnist"], data_dir, download, cache_dir, verify)


def load_fashion_mnist(data_dir: Optional[PathLike] = None, *, download: bool = True,
                       cache_dir: Optional[PathLike] = None, verify: bool = True) -> Tuple[Split, Split]:
    """Load Fashion-MNIST as ((x_train, y_train), (x_test, y_test)).

    Shapes, types and arguments as load_mnist: x float32 (N, 1, 28, 28) in [0, 1],
    y int64 class ids 0..9 (0 T-shirt/top, 1 trouser, 2 pullover, 3 dress, 4 coat,
    5 sandal, 6 shirt, 7 sneaker, 8 bag, 9 ankle boot). The accepted subfolders of
    data_dir and FASTCONV_DATA are fashion-mnist/, fashion_mnist/ and
    FashionMNIST/raw/; the cache subfolder is fashion-mnist/. After those, the folder
    where Debian's dataset-fashion-mnist package installs the files
    (/usr/share/datasets/fashion-mnist) is tried before downloading (Fashion-MNIST does
    not ship with fastconv). verify=True checks each file against Fashion-MNIST's.
    """
    return _load(_DATASETS["fashion-mnist"], data_dir, download, cache_dir, verify)


def load_mnist_keras(data_dir: Optional[PathLike] = None, *, download: bool = True,
                     cache_dir: Optional[PathLike] = None, verify: bool = True
                     ) -> Tuple[Tuple[np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray]]:
    """MNIST as keras.datasets.mnist.load_data() returns it: ((x_train, y_train), (x_test, y_test)).

    x_train is uint8 (60000, 28, 28), y_train uint8 (60000,), x_test uint8 (10000, 28, 28),
    y_test uint8 (10000,): the grey levels and digits as stored, no scaling and no channel
    axis. Arguments and search order as load_mnist.
    """
    return _load_raw(_DATASETS["mnist"], data_dir, download, cache_dir, verify)


def load_fashion_mnist_keras(data_dir: Optional[PathLike] = None, *, download: bool = True,
                             cache_dir: Optional[PathLike] = None, verify: bool = True
                             ) -> Tuple[Tuple[np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray]]:
    """Fashion-MNIST as keras.datasets.fashion_mnist.load_data() returns it.

    ((x_train, y_train), (x_test, y_test)): uint8 (60000, 28, 28), uint8 (60000,),
    uint8 (10000, 28, 28), uint8 (10000,). Arguments and search order as
    load_fashion_mnist.
    """
    return _load_raw(_DATASETS["fashion-mnist"], data_dir, download, cache_dir, verify)
