"""The Python package against the nnmpi command: same models, same predictions, bit for bit.

NNMPI_BIN names the command to compare with (default: the repository's debug build, which
`cargo test` leaves in target/debug).
"""

import csv
import os
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

import nnmpi

ROOT = Path(__file__).resolve().parents[2]
SONAR = ROOT / "data" / "sonar.csv"
NNMPI = os.environ.get("NNMPI_BIN", str(ROOT / "target" / "debug" / "nnmpi"))


def cli(*args):
    """Runs the nnmpi command on one thread; returns its stdout."""
    env = dict(os.environ, RAYON_NUM_THREADS="1")
    return subprocess.run([NNMPI, *map(str, args)], env=env, check=True,
                          capture_output=True, text=True).stdout


def sonar_features():
    """Sonar's 60 features as float32, parsed from the text as the command parses them."""
    with open(SONAR) as f:
        rows = list(csv.reader(f))
    return np.array([[np.float32(v) for v in r[:-1]] for r in rows], dtype=np.float32)


def trained_and_predicted(folder, data, *train_flags):
    """Trains a model on `data` with the command (a needed skip if it is not built), has the
    command predict `data` with it, and returns the model's path and the CSV's rows (header
    first)."""
    if not Path(NNMPI).exists():
        pytest.skip(f"{NNMPI} is not built (run cargo build, or set NNMPI_BIN)")
    model = folder / "model.nnmpi"
    cli("train", "--data", data, *train_flags, "--out", model)
    out = folder / "predictions.csv"
    cli("predict", "--model", model, "--data", data, "--exact", "--out", out)
    with open(out) as f:
        return model, list(csv.reader(f))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A Sonar classifier trained by the command, and the command's own predictions of it."""
    model, rows = trained_and_predicted(tmp_path_factory.mktemp("sonar"), SONAR, "--hidden",
                                        "12", "--epochs", "5", "--seed", "3", "--normalize",
                                        "zscore")
    header, rows = rows[0], rows[1:]
    labels = np.array([r[0] for r in rows], dtype=object)
    proba = np.array([[np.float32(v) for v in r[1:]] for r in rows], dtype=np.float32)
    return model, header, labels, proba


def test_predictions_equal_the_commands_bit_for_bit(trained):
    path, header, labels, proba = trained
    model = nnmpi.Model.load(path)
    assert header == ["prediction"] + [f"p_{c}" for c in model.classes_]
    got = model.predict_proba(sonar_features())
    assert got.dtype == np.float32 and got.shape == proba.shape
    assert np.array_equal(got.view(np.uint32), proba.view(np.uint32))
    assert list(model.predict(sonar_features())) == list(labels)


def test_any_layout_and_float_width_gives_the_same_outputs(trained):
    model = nnmpi.Model.load(trained[0])
    x = sonar_features()
    want = model.outputs(x)
    for variant in [x.astype(np.float64), np.asfortranarray(x), x[::-1][::-1],
                    np.ascontiguousarray(x.T).T]:
        assert np.array_equal(model.outputs(variant), want)
    # Threads and batch sizes do not change a bit.
    assert np.array_equal(model.outputs(x, threads=2, batch_size=7), want)
    # One sample as a vector.
    assert np.array_equal(model.outputs(x[5]), want[5:6])


def test_save_load_and_safetensors_round_trip(trained, tmp_path):
    model = nnmpi.Model.load(trained[0])
    x = sonar_features()
    want = model.outputs(x)
    model.save(tmp_path / "again.nnmpi")
    assert np.array_equal(nnmpi.Model.load(tmp_path / "again.nnmpi").outputs(x), want)
    model.export_safetensors(tmp_path / "m.safetensors")
    back = nnmpi.Model.import_safetensors(tmp_path / "m.safetensors")
    assert np.array_equal(back.outputs(x), want)
    assert back.sizes == model.sizes == [60, 12, 1]
    assert list(back.classes_) == ["M", "R"]
    assert "60-12-1" in repr(model)


def test_bad_input_is_a_python_exception_with_the_reason(trained, tmp_path):
    model = nnmpi.Model.load(trained[0])
    with pytest.raises(ValueError, match="59 features per sample but the model takes 60"):
        model.predict(np.zeros((3, 59)))
    x = sonar_features()[:4].copy()
    x[2, 7] = np.nan
    with pytest.raises(ValueError, match=r"X\[2, 7\] is NaN"):
        model.predict(x)
    with pytest.raises(ValueError, match="dimensions"):
        model.predict(np.zeros((2, 3, 60)))
    with pytest.raises(ValueError, match="dtype"):
        model.predict(np.array([["a"] * 60]))
    with pytest.raises(OSError, match="nope.nnmpi"):
        nnmpi.Model.load(tmp_path / "nope.nnmpi")
    bad = tmp_path / "bad.nnmpi"
    bad.write_bytes(Path(trained[0]).read_bytes()[:100])
    with pytest.raises(OSError, match="truncated or corrupt"):
        nnmpi.Model.load(bad)
    with pytest.raises(TypeError):
        nnmpi.Model(None)


def test_regression_models_predict_values(tmp_path):
    # Sonar's first feature from the other 59, as a regression.
    x = sonar_features()
    data = tmp_path / "reg.csv"
    with open(data, "w") as f:
        for row in x:
            f.write(",".join(f"{v}" for v in row[1:]) + f",{row[0]}\n")
    path, rows = trained_and_predicted(tmp_path, data, "--task", "regress", "--hidden", "6",
                                       "--epochs", "3", "--seed", "1")
    want = np.array([np.float32(r[0]) for r in rows[1:]], dtype=np.float32)
    model = nnmpi.Model.load(path)
    assert model.classes_ is None
    got = model.predict(x[:, 1:])
    assert got.shape == (len(x),)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    with pytest.raises(ValueError, match="needs a classifier"):
        model.predict_proba(x[:, 1:])


def test_other_python_threads_run_while_the_engine_computes(trained):
    # The engine releases the GIL: a Python thread counting meanwhile gets to count.
    model = nnmpi.Model.load(trained[0])
    x = np.tile(sonar_features(), (200, 1))
    counted, done = [0], threading.Event()

    def count():
        while not done.is_set():
            counted[0] += 1

    t = threading.Thread(target=count)
    t.start()
    before = counted[0]
    for _ in range(5):
        model.outputs(x, threads=1)
    during = counted[0] - before
    done.set()
    t.join()
    assert during > 0


def test_threads_sharing_one_model_get_the_same_bits(trained):
    # Calls from several Python threads at once (one reuses the model's kept engine, the
    # others build their own) give the bits of a call alone.
    model = nnmpi.Model.load(trained[0])
    x = np.tile(sonar_features(), (20, 1))
    want = model.outputs(x, threads=1)
    results = [None] * 4

    def call(i):
        results[i] = model.outputs(x, threads=1 + i % 2)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got in results:
        assert np.array_equal(got, want)
