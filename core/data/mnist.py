"""MNIST and Fashion-MNIST: IDX files (gzip or raw), checksums, a cache, downloads, a sample.

Where the files are looked for, in order:

1. the folder passed as ``data_dir`` (``--data DIR`` on the command line);
2. the folder in the environment variable ``BACKPROP_STUDIO_DATA``;
3. the cache, ``$XDG_CACHE_HOME/backprop-studio/<set>`` (``~/.cache/…`` by default).

In each folder the four files may sit directly, or under ``mnist/`` /
``fashion-mnist/`` or torchvision's ``MNIST/raw/``; each may be gzip-compressed
(``.gz``) or raw. Every file is checked against the canonical MD5 sums before
use, so a truncated or wrong file is reported instead of training on garbage.
With ``download=True`` missing files are fetched from the usual public mirrors
into the cache, verified, then used.

``load_mnist(source="sample")`` reads the small stratified sample shipped in
``resources/mnist_sample.npz`` (5,000 training and 1,000 test digits), so the
app and the tests work offline.

Example
-------
>>> data = load_mnist(source="sample")
>>> data.train_x.shape, data.test_x.shape
((5000, 28, 28), (1000, 28, 28))
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import struct
import urllib.error
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import DataError
from resources import RESOURCES

ENV_VAR = "BACKPROP_STUDIO_DATA"

PARTS = ("train_images", "train_labels", "test_images", "test_labels")
FILE_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class DatasetSpec:
    """What identifies one IDX data set: names, checksums, shapes and mirrors.

    ``raw_md5`` are the sums of the uncompressed files, ``gz_md5`` those of the
    gzip files as the mirrors serve them; a file passes if either matches.
    """

    key: str
    title: str
    raw_md5: dict
    gz_md5: dict
    counts: dict
    mirrors: tuple
    subdirs: tuple
    classes: tuple


MNIST = DatasetSpec(
    key="mnist",
    title="MNIST",
    raw_md5={"train_images": "6bbc9ace898e44ae57da46a324031adb",
             "train_labels": "a25bea736e30d166cdddb491f175f624",
             "test_images": "2646ac647ad5339dbf082846283269ea",
             "test_labels": "27ae3e4e09519cfbb04c329615203637"},
    gz_md5={"train_images": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train_labels": "d53e105ee54ea40749a09fcbcd1e9432",
            "test_images": "9fb629c4189551a2d022fa330f9573f3",
            "test_labels": "ec29112dd5afa0611ce80d1b7f02629c"},
    counts={"train": 60000, "test": 10000},
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
             "https://storage.googleapis.com/cvdf-datasets/mnist/",
             "http://yann.lecun.com/exdb/mnist/"),
    subdirs=("", "mnist", "MNIST", "MNIST/raw"),
    classes=tuple(str(d) for d in range(10)),
)

FASHION_MNIST = DatasetSpec(
    key="fashion-mnist",
    title="Fashion-MNIST",
    # Zalando publishes the sums of the .gz files only; raw files are checked
    # for their IDX header, sizes and label range instead.
    raw_md5={},
    gz_md5={"train_images": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train_labels": "25c81989df183df01b3e8a0aad5dffbe",
            "test_images": "bef4ecab320f06d8554ea6380940ec79",
            "test_labels": "bb300cfdad3c16e7a12a480ee83cd310"},
    counts={"train": 60000, "test": 10000},
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
             "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/"),
    subdirs=("", "fashion-mnist", "fashion_mnist", "FashionMNIST/raw"),
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
             "Sneaker", "Bag", "Ankle boot"),
)

SPECS = {"mnist": MNIST, "fashion-mnist": FASHION_MNIST, "fashion": FASHION_MNIST}

SAMPLE_FILE = "mnist_sample.npz"


@dataclass
class MnistData:
    """The four arrays of an IDX image set plus where they came from.

    Attributes
    ----------
    train_x, test_x : numpy.ndarray
        uint8 images (N, 28, 28).
    train_y, test_y : numpy.ndarray
        uint8 labels (N,).
    source : str
        Folder, ``"sample"``, or the cache path.
    classes : tuple of str
        Class names.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    source: str
    classes: tuple


# ------------------------------------------------------------------- IDX
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


_IDX_NAMES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32",
              0x0D: "float32", 0x0E: "float64"}
# the largest IDX file read or decompressed (MNIST's largest is 47 MB)
MAX_IDX_BYTES = 256 << 20


def parse_idx(raw: bytes, where: str = "<data>") -> np.ndarray:
    """Decode the bytes of an IDX file (already decompressed) into an array.

    The header (magic ``00 00``, type byte, dimension count, one big-endian
    uint32 per dimension) must describe exactly the bytes that follow it; an
    error names the file and the header field that does not fit.
    """
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{where}: not an IDX file (header bytes 0-1 are not 00 00); "
                        "delete it so it can be fetched again")
    dtype = _IDX_TYPES.get(raw[2])
    ndim = raw[3]
    if dtype is None:
        raise DataError(f"{where}: unknown IDX element type 0x{raw[2]:02x} in header byte 2")
    if ndim == 0:
        raise DataError(f"{where}: IDX header byte 3 (number of dimensions) is 0")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{where}: IDX header is cut short: {ndim} dimensions need header "
                        f"bytes 4-{header - 1}, the file has {len(raw)} bytes")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    itemsize = np.dtype(dtype).itemsize
    need = header + math.prod(dims) * itemsize  # Python ints: no overflow past 2⁶⁴
    if len(raw) != need:
        raise DataError(f"{where}: IDX header bytes 4-{header - 1} give dimensions "
                        f"{tuple(dims)} of {_IDX_NAMES[raw[2]]} (header byte 2), "
                        f"{need:,} bytes in all, but the file has {len(raw):,}; the file is "
                        "truncated or corrupt — delete it and download it again")
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(arr.dtype.newbyteorder("="), copy=False)


def _decompress(data: bytes, where: str, limit: int | None = None) -> bytes:
    """The uncompressed bytes of gzip ``data`` (raw data is returned as it is).

    At most ``limit`` bytes are decompressed, so a small file that expands
    without bound is refused instead of filling memory.
    """
    if data[:2] != b"\x1f\x8b":
        return data
    limit = MAX_IDX_BYTES if limit is None else limit
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as fh:
            raw = fh.read(limit + 1)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise DataError(f"{where}: the gzip data is damaged ({exc}); delete the file and "
                        "download it again") from None
    if len(raw) > limit:
        raise DataError(f"{where}: decompresses to more than {limit:,} bytes, more than any "
                        "IDX file of the data sets read here; it is not one of them")
    return raw


def read_idx(path, expected_md5: str | None = None, gz_md5: str | None = None) -> np.ndarray:
    """Read an IDX file (gzip or raw), checking its MD5 sum when one is given.

    The file passes if its stored bytes match ``gz_md5`` or its uncompressed
    bytes match ``expected_md5``. A raw file with no known raw sum (Fashion-MNIST
    publishes sums of the .gz files only) is checked for its structure alone.
    A .gz file is checked against ``gz_md5`` before it is decompressed, so a
    damaged download is reported as such rather than as a decompression failure.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_IDX_BYTES:
            raise DataError(f"{path}: {size:,} bytes, more than any IDX file of the data sets "
                            f"read here ({MAX_IDX_BYTES:,} at most); it is not one of them")
        stored = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    compressed = stored[:2] == b"\x1f\x8b"
    mismatch = DataError(f"{path}: checksum mismatch — the file is corrupt, truncated or "
                         "not the canonical data set; delete it and download it again "
                         "(or point --data at a folder with the original files)")
    if compressed and gz_md5 and hashlib.md5(stored).hexdigest() == gz_md5:
        return parse_idx(_decompress(stored, str(path)), str(path))
    if compressed and gz_md5 and not expected_md5:
        raise mismatch  # only the .gz sum is known, and it does not match
    raw = _decompress(stored, str(path))
    if expected_md5 and hashlib.md5(raw).hexdigest() != expected_md5:
        raise mismatch
    return parse_idx(raw, str(path))


# ---------------------------------------------------------------- folders
def cache_dir(spec: DatasetSpec = MNIST) -> Path:
    """The per-user cache folder for one data set."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "backprop-studio" / spec.key


def _find_file(folder: Path, spec: DatasetSpec, part: str):
    name = FILE_NAMES[part]
    for sub in spec.subdirs:
        d = folder / sub if sub else folder
        for candidate in (d / (name + ".gz"), d / name, d / name.replace("-idx", ".idx")):
            if candidate.is_file():
                return candidate
    return None


def find_files(folder, spec: DatasetSpec = MNIST) -> dict:
    """``part -> path`` for the files present in ``folder`` (possibly fewer than four)."""
    folder = Path(folder)
    found = {}
    for part in PARTS:
        p = _find_file(folder, spec, part)
        if p is not None:
            found[part] = p
    return found


def _candidate_folders(data_dir, spec):
    out = []
    if data_dir is not None:
        out.append(("--data", Path(data_dir)))
    env = os.environ.get(ENV_VAR)
    if env:
        out.append((ENV_VAR, Path(env)))
    out.append(("cache", cache_dir(spec)))
    return out


def _load_folder(folder: Path, files: dict, spec: DatasetSpec) -> MnistData:
    arrays = {part: read_idx(files[part], spec.raw_md5.get(part), spec.gz_md5.get(part))
              for part in PARTS}
    for split in ("train", "test"):
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        n = spec.counts[split]
        # files without a known raw checksum (raw Fashion-MNIST) are held to the same
        # structure as the canonical ones: bytes 0-255 and class labels, n of each
        for part, arr, want, what in ((f"{split}_images", x, (n, 28, 28), "images"),
                                      (f"{split}_labels", y, (n,), "labels")):
            if arr.dtype != np.uint8:
                raise DataError(f"{files[part]}: IDX element type (header byte 2) is "
                                f"{arr.dtype}; {spec.title} files hold unsigned bytes (0x08)")
            if arr.shape != want:
                raise DataError(f"{files[part]}: IDX dimensions (header bytes 4-"
                                f"{3 + 4 * arr.ndim}) are {arr.shape}; {spec.title} "
                                f"{split} {what} are {want}")
        if len(y) and int(y.max()) >= len(spec.classes):
            raise DataError(f"{files[f'{split}_labels']}: label {int(y.max())} at position "
                            f"{int(np.argmax(y >= len(spec.classes)))} is out of range; "
                            f"{spec.title} has classes 0-{len(spec.classes) - 1}")
    return MnistData(arrays["train_images"], arrays["train_labels"], arrays["test_images"],
                     arrays["test_labels"], str(folder), spec.classes)


def _missing_message(spec, tried) -> str:
    names = ", ".join(FILE_NAMES[p] + ".gz" for p in PARTS)
    where = "; ".join(f"{label} {path}" + (f" (has only {', '.join(sorted(found))})"
                                            if found else "")
                      for label, path, found in tried)
    return (f"{spec.title} files not found (looked in: {where}). Put the four files "
            f"({names}) in a folder and pass --data DIR or set {ENV_VAR}=DIR; or download "
            f"them with --download (needs internet); or train on the embedded sample "
            f"with --sample.")


# -------------------------------------------------------------- download
def download(spec: DatasetSpec = MNIST, dest=None, mirrors=None, progress=None,
             timeout: float = 30.0) -> Path:
    """Fetch the four gzip files into ``dest`` (default: the cache), verifying each one.

    Parameters
    ----------
    mirrors : sequence of str, optional
        Base URLs tried in order (default: the data set's public mirrors).
    progress : callable, optional
        ``progress(file_name, bytes_done, bytes_total_or_None)`` while downloading.
    timeout : float
        Seconds to wait on a stalled connection.

    Files already present and valid are kept. A file whose checksum does not
    match is discarded and the next mirror tried; if no mirror serves a good
    copy a :class:`DataError` lists what happened.
    """
    dest = Path(dest) if dest is not None else cache_dir(spec)
    dest.mkdir(parents=True, exist_ok=True)
    mirrors = tuple(mirrors or spec.mirrors)
    for part in PARTS:
        name = FILE_NAMES[part] + ".gz"
        target = dest / name
        if target.is_file():
            try:
                read_idx(target, spec.raw_md5.get(part), spec.gz_md5.get(part))
                continue
            except DataError:
                target.unlink()
        errors = []
        for base in mirrors:
            url = base.rstrip("/") + "/" + name
            try:
                data = _fetch(url, name, progress, timeout)
            except urllib.error.HTTPError as exc:
                errors.append(f"{url}: HTTP {exc.code} {exc.reason}")
                continue
            except (urllib.error.URLError, OSError, ValueError) as exc:
                errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
                continue
            try:
                raw = _decompress(data, url)
                ok = hashlib.md5(data).hexdigest() == spec.gz_md5.get(part) or (
                    part in spec.raw_md5 and hashlib.md5(raw).hexdigest() == spec.raw_md5[part])
                if not ok:
                    raise DataError(f"{url}: checksum mismatch")
                parse_idx(raw, url)
            except DataError as exc:
                errors.append(str(exc))
                continue
            tmp = target.with_suffix(".part")
            tmp.write_bytes(data)
            os.replace(tmp, target)
            break
        else:
            raise DataError(f"could not download {name} from any mirror:\n  "
                            + "\n  ".join(errors)
                            + "\nCheck the internet connection, or put the files in a "
                              "folder and pass --data DIR.")
    return dest


def _fetch(url: str, name: str, progress, timeout: float) -> bytes:
    if not url.startswith(("http://", "https://")):
        raise ValueError("only http and https URLs are allowed")
    import urllib.request  # noqa: PLC0415 - http, email and ssl: only a download needs them

    req = urllib.request.Request(url, headers={"User-Agent": "backprop-studio"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        total = resp.headers.get("Content-Length")
        total = int(total) if total and total.isdigit() else None
        buf = io.BytesIO()
        done = 0
        if progress:
            progress(name, 0, total)
        while True:
            chunk = resp.read(1 << 16)
            if not chunk:
                break
            buf.write(chunk)
            done += len(chunk)
            if progress:
                progress(name, done, total)
        if total is not None and done != total:
            raise ValueError(f"connection closed after {done} of {total} bytes")
        return buf.getvalue()


# ------------------------------------------------------------------ load
def sample_path() -> Path:
    """The embedded sample file in ``resources/``."""
    return Path(RESOURCES) / SAMPLE_FILE


def load_sample(path=None) -> MnistData:
    """The small stratified MNIST sample shipped with the studio."""
    path = Path(path) if path is not None else sample_path()
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: np.array(z[k]) for k in ("train_x", "train_y", "test_x", "test_y")}
    except FileNotFoundError:
        raise DataError(f"{path}: the embedded MNIST sample is missing; regenerate it with "
                        "'python resources/make_mnist_sample.py --data DIR'") from None
    except (KeyError, ValueError, OSError) as exc:
        raise DataError(f"{path}: the embedded MNIST sample cannot be read ({exc}); "
                        "regenerate it with resources/make_mnist_sample.py") from None
    return MnistData(arrays["train_x"], arrays["train_y"], arrays["test_x"], arrays["test_y"],
                     "sample", MNIST.classes)


def load_mnist(source: str = "auto", data_dir=None, kind: str = "mnist",
               download_missing: bool = False, mirrors=None, progress=None) -> MnistData:
    """Load MNIST (or Fashion-MNIST with ``kind="fashion-mnist"``).

    Parameters
    ----------
    source : {"auto", "sample"}
        ``"sample"`` reads the embedded sample (MNIST only); ``"auto"`` looks in
        ``data_dir``, ``$BACKPROP_STUDIO_DATA`` and the cache, in that order.
    data_dir : path, optional
        A folder the user named.
    kind : str or DatasetSpec
        ``"mnist"`` or ``"fashion-mnist"``.
    download_missing : bool
        Download into the cache when no folder has the files.
    mirrors, progress
        Passed to :func:`download`.

    Raises
    ------
    DataError
        Files missing (the message says how to get them) or corrupt.
    """
    if isinstance(kind, DatasetSpec):
        spec = kind
    else:
        try:
            spec = SPECS[kind.lower()]
        except KeyError:
            raise DataError(f"unknown data set '{kind}'; choose mnist or fashion-mnist") \
                from None
    if source == "sample":
        if spec is not MNIST:
            raise DataError("the embedded sample is MNIST only")
        return load_sample()
    if source != "auto":
        raise DataError(f"unknown data source '{source}'; use 'auto' or 'sample'")
    tried = []
    for label, folder in _candidate_folders(data_dir, spec):
        if label != "cache" and not folder.is_dir():
            raise DataError(f"{label} {folder}: no such folder")
        files = find_files(folder, spec) if folder.is_dir() else {}
        if len(files) == len(PARTS):
            return _load_folder(folder, files, spec)
        if label == "--data" and files:
            # the user named this folder: files missing there are an error, not a reason to
            # quietly use another copy from the environment or the cache
            missing = ", ".join(FILE_NAMES[p] + "[.gz]" for p in PARTS if p not in files)
            raise DataError(f"--data {folder}: has only {len(files)} of the four {spec.title} "
                            f"files; missing {missing}. Add them, or leave --data out to use "
                            f"${ENV_VAR} or the cache")
        tried.append((label, folder, files))
    if download_missing:
        dest = download(spec, mirrors=mirrors, progress=progress)
        return _load_folder(dest, find_files(dest, spec), spec)
    raise DataError(_missing_message(spec, tried))
