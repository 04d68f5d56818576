"""The IDX/MNIST loader: parsing, checksums, folders, cache, downloads (local server), sample."""

import gzip
import hashlib
import http.server
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from core.data import mnist
from core.data.mnist import (
    FILE_NAMES,
    MNIST,
    PARTS,
    DatasetSpec,
    download,
    load_mnist,
    parse_idx,
    read_idx,
)
from core.errors import DataError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    return bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) \
        + arr.tobytes()


@pytest.fixture()
def tiny(tmp_path):
    """A made-up IDX data set (6 train, 4 test images) with its own checksums."""
    rng = np.random.default_rng(0)
    arrays = {"train_images": rng.integers(0, 256, (6, 28, 28)),
              "train_labels": np.array([0, 1, 2, 3, 4, 5]),
              "test_images": rng.integers(0, 256, (4, 28, 28)),
              "test_labels": np.array([9, 8, 7, 6])}
    raw = {p: idx_bytes(a) for p, a in arrays.items()}
    gz = {p: gzip.compress(b, mtime=0) for p, b in raw.items()}
    spec = DatasetSpec(key="tiny", title="Tiny", raw_md5={p: hashlib.md5(b).hexdigest()
                                                          for p, b in raw.items()},
                       gz_md5={p: hashlib.md5(b).hexdigest() for p, b in gz.items()},
                       counts={"train": 6, "test": 4}, mirrors=(), subdirs=("", "tiny"),
                       classes=tuple(str(i) for i in range(10)))
    folder = tmp_path / "files"
    folder.mkdir()
    for p in PARTS:
        (folder / (FILE_NAMES[p] + ".gz")).write_bytes(gz[p])
    return spec, folder, arrays, raw, gz


@pytest.fixture()
def no_env(monkeypatch, tmp_path):
    monkeypatch.delenv(mnist.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_parse_idx_round_trip():
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(parse_idx(idx_bytes(a)), a)


def test_parse_idx_truncated_file_says_what_to_do():
    with pytest.raises(DataError, match="truncated or corrupt.*download it again"):
        parse_idx(idx_bytes(np.zeros((2, 3)))[:-1])


def test_parse_idx_bad_magic():
    with pytest.raises(DataError, match="not an IDX file"):
        parse_idx(b"\x1f\x8b\x08\x00garbage")


def test_load_from_a_named_folder_gzip_and_raw(tiny, tmp_path, no_env):
    spec, folder, arrays, raw, _ = tiny
    data = load_mnist(data_dir=folder, kind=spec)
    assert np.array_equal(data.train_x, arrays["train_images"])
    assert data.test_y.tolist() == [9, 8, 7, 6]
    plain = tmp_path / "plain" / "tiny"
    plain.mkdir(parents=True)
    for p in PARTS:
        (plain / FILE_NAMES[p]).write_bytes(raw[p])
    data2 = load_mnist(data_dir=plain.parent, kind=spec)  # found in the tiny/ subfolder
    assert np.array_equal(data2.test_x, arrays["test_images"])


def test_environment_variable_names_the_folder(tiny, monkeypatch, no_env):
    spec, folder, arrays, _, _ = tiny
    monkeypatch.setenv(mnist.ENV_VAR, str(folder))
    assert load_mnist(kind=spec).train_y.tolist() == [0, 1, 2, 3, 4, 5]


def test_checksum_mismatch_is_a_clear_error(tiny, no_env):
    spec, folder, _, raw, _ = tiny
    bad = bytearray(raw["train_images"])
    bad[-1] ^= 0xFF  # same size and header, one pixel changed
    (folder / (FILE_NAMES["train_images"] + ".gz")).write_bytes(gzip.compress(bytes(bad)))
    with pytest.raises(DataError, match="checksum mismatch.*delete it and download it again"):
        load_mnist(data_dir=folder, kind=spec)


def test_raw_files_without_published_raw_sums_are_checked_for_structure(tiny, tmp_path, no_env):
    """Like Fashion-MNIST: only the .gz sums are known, so raw files are read on their header."""
    spec, _, arrays, raw, _ = tiny
    gz_only = DatasetSpec(spec.key, spec.title, {}, spec.gz_md5, spec.counts, (), ("",),
                          spec.classes)
    folder = tmp_path / "raw"
    folder.mkdir()
    for p in PARTS:
        (folder / FILE_NAMES[p]).write_bytes(raw[p])
    assert np.array_equal(load_mnist(data_dir=folder, kind=gz_only).train_x,
                          arrays["train_images"])
    (folder / FILE_NAMES["test_labels"]).write_bytes(raw["test_labels"][:-1])
    with pytest.raises(DataError, match="truncated"):
        load_mnist(data_dir=folder, kind=gz_only)


def test_damaged_gzip_is_a_clear_error(tiny, no_env):
    spec, folder, _, _, gz = tiny
    (folder / (FILE_NAMES["test_labels"] + ".gz")).write_bytes(gz["test_labels"][:20])
    with pytest.raises(DataError, match="damaged"):
        load_mnist(data_dir=folder, kind=spec)


def test_missing_files_message_says_what_to_do(tmp_path, no_env):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as err:
        load_mnist(data_dir=empty)
    msg = str(err.value)
    for needed in ("train-images-idx3-ubyte.gz", "--data DIR", mnist.ENV_VAR, "--download",
                   "--sample", str(empty)):
        assert needed in msg


def test_missing_folder_is_named(tmp_path, no_env):
    with pytest.raises(DataError, match="no such folder"):
        load_mnist(data_dir=tmp_path / "nowhere")


def test_partial_folder_lists_what_it_has(tiny, no_env):
    spec, folder, _, _, _ = tiny
    (folder / (FILE_NAMES["test_images"] + ".gz")).unlink()
    with pytest.raises(DataError, match="has only"):
        load_mnist(data_dir=folder, kind=spec)


# --------------------------------------------------------------- downloads
class _Server:
    """A local HTTP server on 127.0.0.1 serving a dict of paths; stops itself."""

    def __init__(self, files: dict):
        self.files, self.requests = files, []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                owner.requests.append(self.path)
                body = owner.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.timeout = 5
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval":
                                                                               0.05},
                                       daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture()
def server():
    servers = []

    def start(files):
        s = _Server(files)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


def test_download_verifies_reports_progress_and_caches(tiny, server, tmp_path, no_env):
    spec, _, arrays, _, gz = tiny
    srv = server({f"/good/{FILE_NAMES[p]}.gz": gz[p] for p in PARTS})
    seen = []
    dest = download(spec, tmp_path / "dl", mirrors=[srv.url + "/good/"],
                    progress=lambda name, done, total: seen.append((name, done, total)),
                    timeout=5)
    assert sorted(p.name for p in dest.iterdir()) == sorted(FILE_NAMES[p] + ".gz" for p in PARTS)
    last = {name: (done, total) for name, done, total in seen}
    assert all(done == total for done, total in last.values()) and len(last) == 4
    assert len(srv.requests) == 4
    download(spec, tmp_path / "dl", mirrors=[srv.url + "/good/"], timeout=5)
    assert len(srv.requests) == 4  # valid files in the cache are not fetched again


def test_download_into_cache_through_load_mnist(tiny, server, no_env):
    spec, _, arrays, _, gz = tiny
    srv = server({f"/{FILE_NAMES[p]}.gz": gz[p] for p in PARTS})
    data = load_mnist(kind=spec, download_missing=True, mirrors=[srv.url])
    assert np.array_equal(data.test_x, arrays["test_images"])
    assert Path(data.source) == mnist.cache_dir(spec)
    assert load_mnist(kind=spec).train_y.tolist() == [0, 1, 2, 3, 4, 5]  # now from the cache


def test_download_skips_a_corrupt_mirror(tiny, server, tmp_path, no_env):
    spec, _, _, _, gz = tiny
    bad = server({f"/{FILE_NAMES[p]}.gz": gz[p][:-8] + b"\0" * 8 for p in PARTS})
    good = server({f"/{FILE_NAMES[p]}.gz": gz[p] for p in PARTS})
    dest = download(spec, tmp_path / "dl", mirrors=[bad.url, good.url], timeout=5)
    assert len(list(dest.glob("*.gz"))) == 4
    assert len(bad.requests) == 4 and len(good.requests) == 4


def test_download_with_only_bad_mirrors_fails_clearly(tiny, server, tmp_path, no_env):
    spec, _, _, _, gz = tiny
    wrong = server({f"/{FILE_NAMES[p]}.gz": gzip.compress(b"\0\0\x08\x01\0\0\0\0")
                    for p in PARTS})
    missing = server({})
    with pytest.raises(DataError) as err:
        download(spec, tmp_path / "dl", mirrors=[wrong.url, missing.url], timeout=5)
    msg = str(err.value)
    assert "checksum mismatch" in msg and "404" in msg and "--data DIR" in msg
    assert not list((tmp_path / "dl").glob("*.gz"))  # nothing unverified is kept


# ------------------------------------------------------- the real files
def test_embedded_sample_is_stratified_and_loads_without_pickle():
    data = load_mnist(source="sample")
    assert data.train_x.shape == (5000, 28, 28) and data.train_x.dtype == np.uint8
    assert data.test_x.shape == (1000, 28, 28)
    assert np.bincount(data.train_y).tolist() == [500] * 10
    assert np.bincount(data.test_y).tolist() == [100] * 10


@pytest.mark.skipif(not SHARED.is_dir(), reason="canonical MNIST not at ../shared/data/mnist")
def test_canonical_mnist_passes_its_checksums(no_env):
    data = load_mnist(data_dir=SHARED)
    assert data.train_x.shape == (60000, 28, 28) and data.test_x.shape == (10000, 28, 28)
    assert np.bincount(data.test_y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028,
                                                 974, 1009]


@pytest.mark.skipif(not SHARED.is_dir(), reason="canonical MNIST not at ../shared/data/mnist")
def test_sample_is_what_the_script_makes_from_the_full_set(tmp_path, no_env):
    """The shipped sample is reproducible: the script regenerates it bit for bit."""
    import resources.make_mnist_sample as maker

    out = tmp_path / "sample.npz"
    assert maker.main(["--data", str(SHARED), "--out", str(out)]) == 0
    with np.load(out, allow_pickle=False) as new, \
            np.load(mnist.sample_path(), allow_pickle=False) as shipped:
        for key in ("train_x", "train_y", "test_x", "test_y"):
            assert np.array_equal(new[key], shipped[key]), key
        full = load_mnist(data_dir=SHARED)
        assert np.array_equal(full.train_x[shipped["train_index"]], shipped["train_x"])


@pytest.mark.skipif(not SHARED.is_dir(), reason="canonical MNIST not at ../shared/data/mnist")
def test_real_file_with_a_flipped_byte_fails_its_checksum(tmp_path):
    raw = gzip.decompress((SHARED / "t10k-labels-idx1-ubyte.gz").read_bytes())
    bad = bytearray(raw)
    bad[100] = (bad[100] + 1) % 10
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(bytes(bad))
    with pytest.raises(DataError, match="checksum mismatch"):
        read_idx(path, MNIST.raw_md5["test_labels"], MNIST.gz_md5["test_labels"])


def test_gzip_damaged_mid_stream_is_a_clear_error(tiny, no_env):
    """A flipped byte inside the deflate stream: a DataError, not a zlib traceback."""
    spec, folder, _, _, gz = tiny
    bad = bytearray(gz["train_images"])
    bad[10] ^= 0xFF  # the first deflate block header: zlib reports an invalid block type
    (folder / (FILE_NAMES["train_images"] + ".gz")).write_bytes(bytes(bad))
    with pytest.raises(DataError, match="train-images.*damaged.*download it again"):
        load_mnist(data_dir=folder, kind=spec)
    gz_only = DatasetSpec(spec.key, spec.title, {}, spec.gz_md5, spec.counts, (), ("",),
                          spec.classes)
    # with only the .gz sum known the file is refused on its checksum, before decompression
    with pytest.raises(DataError, match="train-images.*checksum mismatch"):
        load_mnist(data_dir=folder, kind=gz_only)


def test_partial_data_folder_is_an_error_naming_the_missing_files(tiny, monkeypatch, tmp_path,
                                                                  no_env):
    """--data with 3 of 4 files does not fall through to a complete copy elsewhere."""
    spec, folder, _, _, gz = tiny
    partial = tmp_path / "partial"
    partial.mkdir()
    for p in PARTS[:3]:
        (partial / (FILE_NAMES[p] + ".gz")).write_bytes(gz[p])
    monkeypatch.setenv(mnist.ENV_VAR, str(folder))  # a complete copy the loader must not use
    with pytest.raises(DataError, match=r"--data .*partial: has only 3 of the four.*"
                                        r"t10k-labels-idx1-ubyte"):
        load_mnist(data_dir=partial, kind=spec)


# ------------------------------------------- headers that do not fit (issue 10)
def test_idx_dimensions_multiplying_past_2_to_the_64_are_refused():
    raw = bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 2**32 - 1)
    with pytest.raises(DataError, match=r"header bytes 4-15 give dimensions \(4294967295, "
                                        r"4294967295, 4294967295\)") as err:
        parse_idx(raw + b"\0" * 10, "f.idx")
    assert str(err.value).startswith("f.idx: ")


def test_idx_header_that_does_not_match_the_file_size_names_the_field():
    raw = bytes([0, 0, 0x0D, 1]) + struct.pack(">I", 3) + b"\0" * 16  # 3 float32 need 12
    with pytest.raises(DataError, match=r"header bytes 4-7 give dimensions \(3,\) of float32 "
                                        r"\(header byte 2\), 20 bytes in all, but the file "
                                        "has 24"):
        parse_idx(raw, "f.idx")
    with pytest.raises(DataError, match="header byte 3"):
        parse_idx(bytes([0, 0, 0x08, 0]), "f.idx")


def test_gzip_that_expands_past_the_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "MAX_IDX_BYTES", 1 << 16)
    bomb = tmp_path / "bomb.gz"
    bomb.write_bytes(gzip.compress(idx_bytes(np.zeros((1 << 17,)))))
    assert bomb.stat().st_size < 1 << 12
    with pytest.raises(DataError, match="decompresses to more than 65,536 bytes"):
        read_idx(bomb)


def _idx_typed(arr: np.ndarray, code: int) -> bytes:
    big = arr.astype(arr.dtype.newbyteorder(">"))
    return bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) \
        + big.tobytes()


@pytest.mark.parametrize("part, data, expect", [
    ("train_labels", _idx_typed(np.array([0, 1, 2, 3, 4, 5.5], np.float32), 0x0D),
     "header byte 2.*float32"),
    ("train_images", _idx_typed(np.full((6, 28, 28), np.nan, np.float32), 0x0D),
     "header byte 2.*float32"),
    ("test_images", _idx_typed(np.full((4, 28, 28), 1e30), 0x0E), "header byte 2.*float64"),
    ("test_labels", idx_bytes(np.array([9, 8, 7])), r"are \(3,\).*test labels are \(4,\)"),
    ("train_images", idx_bytes(np.zeros((6, 27, 28))), r"train images are \(6, 28, 28\)"),
    ("test_labels", idx_bytes(np.array([9, 8, 10, 6])), "label 10 at position 2 is out of "
                                                        "range"),
], ids=["float-labels", "nan-pixels", "1e30-pixels", "count", "size", "label-range"])
def test_raw_files_without_checksums_are_checked_like_canonical_ones(tiny, tmp_path, no_env,
                                                                     part, data, expect):
    """Raw Fashion-MNIST has no published raw sums: float, NaN or huge values are refused."""
    spec, _, _, raw, _ = tiny
    gz_only = DatasetSpec(spec.key, spec.title, {}, spec.gz_md5, spec.counts, (), ("",),
                          spec.classes)
    folder = tmp_path / "raw"
    folder.mkdir()
    for p in PARTS:
        (folder / FILE_NAMES[p]).write_bytes(data if p == part else raw[p])
    with pytest.raises(DataError, match=expect) as err:
        load_mnist(data_dir=folder, kind=gz_only)
    assert FILE_NAMES[part] in str(err.value)
