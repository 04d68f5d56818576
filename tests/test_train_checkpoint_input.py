"""Damaged or hostile checkpoints: a clear error naming the place, never a traceback or a
silently wrong figure (issue 10)."""

import contextlib
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from core.errors import FileFormatError
from core.train.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_TRAIN = ("train", "logistic_regression_mnist", "--sample", "--limit", "200",
                "--val-split", "0", "--quiet")


def cli(*argv):
    """``(exit code, stdout, stderr)`` of the backprop-studio command line, in process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def sample_ckpt(tmp_path_factory):
    """A checkpoint of logistic regression trained one epoch on 200 sample digits."""
    path = tmp_path_factory.mktemp("ckpt") / "logreg.npz"
    rc, _, err = cli(*SAMPLE_TRAIN, "--epochs", "1", "--out", path)
    assert rc == 0, err
    return path


@pytest.fixture(scope="module")
def augmented_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "augmented.npz"
    rc, _, err = cli(*SAMPLE_TRAIN, "--epochs", "1", "--augment", "--out", path)
    assert rc == 0, err
    return path


def members(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: np.array(z[k]) for k in z.files}


def with_meta(src, dst, change):
    """Copy checkpoint ``src`` to ``dst`` with ``change(meta)`` applied to its metadata."""
    arrays = members(src)
    meta = json.loads(str(arrays["meta.json"]))
    change(meta)
    arrays["meta.json"] = np.array(json.dumps(meta))
    np.savez(dst, **arrays)
    return dst


def npy_member(shape, descr="<f4", data=b"") -> bytes:
    """The bytes of an .npy file whose header declares ``shape``, followed by ``data``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue() + data


def replace_member(src, dst, name, payload, compress=zipfile.ZIP_STORED):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compress) as zout:
        for info in zin.infolist():
            if info.filename != name:
                zout.writestr(info.filename, zin.read(info))
        zout.writestr(name, payload)
    return dst


def weight_member(path) -> str:
    return next(n for n in zipfile.ZipFile(path).namelist() if n.startswith("weights/"))


# ------------------------------------------------------------ arrays
def test_array_header_claiming_a_trillion_elements_is_refused_before_reading(sample_ckpt,
                                                                               tmp_path):
    name = weight_member(sample_ckpt)
    bad = replace_member(sample_ckpt, tmp_path / "huge.npz", name,
                         npy_member((10**12,), data=b"\0" * 64))
    with pytest.raises(FileFormatError, match=r"declares shape \(1000000000000,\)") as err:
        read_checkpoint(bad)
    assert name[:-4] in str(err.value) and str(bad) in str(err.value)


def test_array_header_that_does_not_match_the_member_size_is_refused(sample_ckpt, tmp_path):
    name = weight_member(sample_ckpt)
    bad = replace_member(sample_ckpt, tmp_path / "short.npz", name,
                         npy_member((4, 3), data=b"\0" * 40))  # 48 bytes declared
    with pytest.raises(FileFormatError, match="48 bytes of data, but the member holds 40"):
        read_checkpoint(bad)


def test_negative_dimension_in_an_array_header_is_refused(sample_ckpt, tmp_path):
    name = weight_member(sample_ckpt)
    bad = replace_member(sample_ckpt, tmp_path / "neg.npz", name, npy_member((-4, 3)))
    with pytest.raises(FileFormatError, match="negative dimension"):
        read_checkpoint(bad)


def test_a_member_the_format_does_not_name_is_never_read(sample_ckpt, tmp_path, monkeypatch):
    """A 1 GB member beside the checkpoint's own is skipped, not decompressed."""
    junk = replace_member(sample_ckpt, tmp_path / "junk.npz", "unrelated.npy",
                          npy_member((1 << 30,), "|u1", b"\0" * 1000))  # declares 1 GB
    opened = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open",
                        lambda self, name, *a, **k: opened.append(getattr(name, "filename",
                                                                          name))
                        or real_open(self, name, *a, **k))
    meta, arrays = read_checkpoint(junk)
    assert "unrelated" not in arrays and "unrelated.npy" not in opened
    assert meta["epoch"] == 1 and any(k.startswith("weights/") for k in arrays)


def test_a_compressed_member_that_expands_past_the_limit_is_refused(sample_ckpt, tmp_path,
                                                                   monkeypatch):
    from core.train import checkpoint

    monkeypatch.setattr(checkpoint, "MAX_ARRAY_BYTES", 1 << 20)  # the same check, smaller data
    name = weight_member(sample_ckpt)
    bomb = npy_member((4 << 20,), "|u1", bytes(4 << 20))  # 4 MB of zeros, 4 kB zipped
    bad = replace_member(sample_ckpt, tmp_path / "bomb.npz", name, bomb, zipfile.ZIP_DEFLATED)
    assert bad.stat().st_size < 64 << 10
    with pytest.raises(FileFormatError, match="more than the 1,048,576"):
        read_checkpoint(bad)


def test_object_arrays_are_refused_without_unpickling(sample_ckpt, tmp_path):
    name = weight_member(sample_ckpt)
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    bad = replace_member(sample_ckpt, tmp_path / "obj.npz", name, buf.getvalue())
    with pytest.raises(FileFormatError, match="Python objects"):
        read_checkpoint(bad)


# ---------------------------------------------------------- metadata
@pytest.mark.parametrize("depth", [100, 100_000])
def test_deeply_nested_metadata_is_a_clear_error(sample_ckpt, tmp_path, depth):
    bad = tmp_path / "deep.npz"
    arrays = members(sample_ckpt)
    meta = str(arrays["meta.json"])
    arrays["meta.json"] = np.array(meta[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}")
    np.savez(bad, **arrays)
    with pytest.raises(FileFormatError, match="meta.json: nested more than 64 levels"):
        read_checkpoint(bad)


def test_metadata_that_is_not_a_string_is_refused(sample_ckpt, tmp_path):
    arrays = members(sample_ckpt)
    arrays["meta.json"] = np.arange(3)
    np.savez(tmp_path / "m.npz", **arrays)
    with pytest.raises(FileFormatError, match="meta.json: must be one text string"):
        read_checkpoint(tmp_path / "m.npz")


@pytest.mark.parametrize("change, expect", [
    (lambda n: n.update(std=1e-320), "'std' is 1e-320, below"),
    (lambda n: n.pop("scale"), "'scale' is missing"),
    (lambda n: n.update(scale="1/255"), "'scale' must be a finite number"),
    (lambda n: n.update(mean=True), "'mean' must be a finite number"),
    (lambda n: n.update(std=-0.3), "'std' is -0.3"),
    (lambda n: n.update(mean=float("nan")), "'mean' must be a finite number"),
    (lambda n: n.update(mean=3.0), r"normalizer.mean: 3.0 is outside the range"),
    (lambda n: n.update(std=5.0), r"normalizer.std: 5.0 is more than half"),
])
def test_evaluate_refuses_a_bad_normalizer(sample_ckpt, tmp_path, change, expect):
    """A wrong normalizer used to give a wrong accuracy with exit 0."""
    bad = with_meta(sample_ckpt, tmp_path / "norm.npz",
                    lambda m: change(m["data"]["normalizer"]))
    rc, out, err = cli("evaluate", "logistic_regression_mnist", "--checkpoint", bad)
    assert rc == 2 and out == ""
    assert "meta.json.data.normalizer" in err and len(err.strip().splitlines()) == 1
    assert expect in err


def test_resume_refuses_a_bad_normalizer(sample_ckpt, tmp_path):
    bad = with_meta(sample_ckpt, tmp_path / "norm.npz",
                    lambda m: m["data"]["normalizer"].update(std=1e-320))
    rc, _, err = cli(*SAMPLE_TRAIN, "--epochs", "2", "--resume", bad)
    assert rc == 2 and "meta.json.data.normalizer" in err and "1e-320" in err


# -------------------------------------------------------- augmentation
def test_checkpoint_records_its_augmentation(sample_ckpt, augmented_ckpt):
    plain, augmented = read_checkpoint(sample_ckpt)[0], read_checkpoint(augmented_ckpt)[0]
    assert plain["version"] == 2 and plain["augment"] is None
    assert augmented["augment"]["shift"] == 2 and augmented["augment"]["rotation"] == 10.0


def test_resume_without_augment_of_an_augmented_run_is_refused(augmented_ckpt):
    rc, _, err = cli(*SAMPLE_TRAIN, "--epochs", "2", "--resume", augmented_ckpt)
    assert rc == 2
    assert "was trained with --augment" in err and "pass --augment to resume it" in err


def test_resume_with_augment_of_a_plain_run_is_refused(sample_ckpt):
    rc, _, err = cli(*SAMPLE_TRAIN, "--epochs", "2", "--augment", "--resume", sample_ckpt)
    assert rc == 2 and "was trained without --augment" in err


def test_resume_with_the_same_augmentation_continues(augmented_ckpt, tmp_path):
    rc, out, err = cli(*SAMPLE_TRAIN, "--epochs", "2", "--augment", "--resume", augmented_ckpt)
    assert rc == 0, err
    assert json.loads(out.splitlines()[-1])["epochs"] == 2


def test_old_checkpoint_without_the_record_resumes_with_a_note(sample_ckpt, tmp_path):
    def as_version_1(meta):
        meta["version"] = 1
        del meta["augment"]
    old = with_meta(sample_ckpt, tmp_path / "v1.npz", as_version_1)
    rc, _, err = cli(*SAMPLE_TRAIN, "--epochs", "2", "--resume", old)
    assert rc == 0, err
    assert "does not record whether it was trained with --augment" in err


def test_version_2_checkpoint_without_the_record_is_refused(sample_ckpt, tmp_path):
    bad = with_meta(sample_ckpt, tmp_path / "v2.npz", lambda m: m.pop("augment"))
    with pytest.raises(FileFormatError, match="meta.json.augment: missing"):
        read_checkpoint(bad)


# ------------------------------------------------------ command line
def run(*args):
    return subprocess.run([sys.executable, "-m", "app", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)


def test_command_line_prints_one_line_for_bad_checkpoints_and_folders(sample_ckpt, tmp_path):
    name = weight_member(sample_ckpt)
    huge = replace_member(sample_ckpt, tmp_path / "huge.npz", name, npy_member((10**12,)))
    folder = tmp_path / "idx"
    folder.mkdir()
    header = bytes([0, 0, 8, 3]) + (0xFFFFFFFF).to_bytes(4, "big") * 3  # 2⁹⁶ pixels
    (folder / "train-images-idx3-ubyte").write_bytes(header)
    for part in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (folder / part).write_bytes(b"\0\0\x08\x01\0\0\0\0")
    for args, where in (
            (("evaluate", "logistic_regression_mnist", "--checkpoint", huge), name[:-4]),
            (("train", "lenet5", "--data", folder, "--dataset", "fashion-mnist"),
             "train-images-idx3-ubyte"),
            (("train", "logistic_regression_mnist", "--sample", "--resume", huge), name[:-4])):
        out = run(*args)
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "error:" in lines[0] and where in lines[0], out.stderr


@pytest.mark.parametrize("change, where", [
    (lambda m: m["history"][0].pop("seconds"), None),  # an old record without a time: works
    (lambda m: m.update(history=[1]), "meta.json.history[0]"),
    (lambda m: m["history"][0].update(train_loss="low"), "meta.json.history[0]"),
    (lambda m: m.update(early_stopping={"monitor": "val_loss", "wait": "2"}),
     "meta.json.early_stopping.wait"),
    (lambda m: m.update(optimizer=["sgd"]), "meta.json.optimizer"),
    (lambda m: m.update(schedule={"config": [1]}), "meta.json.schedule"),
    (lambda m: m["data"].update(val_split="0.1"), "meta.json.data.val_split"),
    (lambda m: m["data"].update(limit=2.5), "meta.json.data.limit"),
    (lambda m: m["data"].update(source=7), "meta.json.data.source"),
    (lambda m: m["schedule"]["config"].update(name="warmup", warmup_epochs=[1]),
     "meta.json.schedule.config.warmup_epochs"),
])
def test_resume_checks_the_type_of_every_section_it_reads(sample_ckpt, tmp_path, change, where):
    """Each of these was a traceback (KeyError, AttributeError, TypeError) found by the fuzzer."""
    bad = with_meta(sample_ckpt, tmp_path / "meta.npz", change)
    rc, _, err = cli(*SAMPLE_TRAIN, "--epochs", "1", "--resume", bad)
    if where is None:
        assert rc == 0, err
    else:
        assert rc == 2 and f"{bad}: {where}" in err, err


def test_optimizer_state_with_nan_is_refused_on_resume(sample_ckpt, tmp_path):
    arrays = members(sample_ckpt)
    key = next(k for k in arrays if k.startswith("optim/"))
    arrays[key] = np.full_like(arrays[key], np.inf)
    np.savez(tmp_path / "opt.npz", **arrays)
    rc, _, err = cli(*SAMPLE_TRAIN, "--epochs", "2", "--resume", tmp_path / "opt.npz")
    assert rc == 2 and f"{key}: optimizer state holds NaN or Inf" in err, err


def test_garbled_npy_header_is_a_clear_error(sample_ckpt, tmp_path):
    """numpy's header parser raises SyntaxError or TokenError on some garbage."""
    name = weight_member(sample_ckpt)
    with zipfile.ZipFile(sample_ckpt) as z:
        member = bytearray(z.read(name))
    member[member.index(b"(")] = ord("]")
    bad = replace_member(sample_ckpt, tmp_path / "garbled.npz", name, bytes(member))
    with pytest.raises(FileFormatError, match="header cannot be parsed"):
        read_checkpoint(bad)


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_evaluate_refuses_weights_that_overflow_instead_of_a_wrong_accuracy(sample_ckpt,
                                                                           tmp_path):
    """Finite weights of 1e38 give Inf logits and NaN probabilities, which counted as class 0;
    the error says so, with no NumPy warning printed on the way."""
    arrays = members(sample_ckpt)
    key = weight_member(sample_ckpt)[:-4]
    arrays[key] = np.full_like(arrays[key], 1e38)
    np.savez(tmp_path / "big.npz", **arrays)
    rc, out, err = cli("evaluate", "logistic_regression_mnist", "--checkpoint",
                       tmp_path / "big.npz")
    assert rc == 2 and out == "" and "non-finite output" in err and "the weights overflow" in err


def test_trainer_refuses_to_resume_with_other_augmentation(augmented_ckpt):
    """The core check, for callers other than the command line (the CLI says it first)."""
    from core.data.datasets import Augment
    from core.errors import DataError
    from core.serialize import load_graph
    from core.train import Trainer
    from examples import resolve

    saved = read_checkpoint(augmented_ckpt)[0]["augment"]
    with pytest.raises(DataError, match="augmentation .*shift ±2 px.* in the checkpoint but no "
                                        "augmentation in this run"):
        Trainer(load_graph(resolve("logistic_regression_mnist"))).load_checkpoint(
            augmented_ckpt)
    same = Augment(saved["shift"], saved["rotation"], saved["fill"])
    tr = Trainer(load_graph(resolve("logistic_regression_mnist")), augment=same)
    assert tr.load_checkpoint(augmented_ckpt)["epoch"] == 1
