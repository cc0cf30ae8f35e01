"""Training, pruning and evaluation from Python against the nnmpi command: the same data and
settings give the same model, bit for bit (compared as the bytes of their safetensors
exports, which hold every weight, bias and normalisation statistic)."""

import _thread
import re
import signal
import threading
from pathlib import Path

import numpy as np
import pytest

import nnmpi
from test_model import NNMPI, SONAR, cli, sonar_features


def need_cli():
    if not Path(NNMPI).exists():
        pytest.skip(f"{NNMPI} is not built (run cargo build, or set NNMPI_BIN)")


def sonar():
    with open(SONAR) as f:
        labels = [line.rstrip("\n").split(",")[-1] for line in f]
    return sonar_features(), np.array(labels)


def exported(model, path):
    """The bytes of `model`'s safetensors export (byte-reproducible)."""
    model.export_safetensors(path)
    return Path(path).read_bytes()


def cli_model(tmp_path, data, *flags):
    need_cli()
    out = tmp_path / "cli.nnmpi"
    cli("train", "--data", data, *flags, "--quiet", "--out", out)
    return nnmpi.Model.load(out)


@pytest.mark.parametrize("flags,settings", [
    (["--hidden", "12", "--epochs", "5", "--seed", "3", "--normalize", "zscore",
      "--val-split", "0.2"],
     dict(hidden=[12], epochs=5, seed=3, normalize="zscore", val_split=0.2)),
    (["--hidden", "16,8", "--activation", "tanh", "--optimizer", "sgd", "--momentum", "0.9",
      "--batch-size", "7", "--epochs", "4", "--prune-to", "0.8", "--prune-steps", "2",
      "--finetune-epochs", "2"],
     dict(hidden=[16, 8], activation="tanh", optimizer="sgd", momentum=0.9, batch_size=7,
          epochs=4, prune_to=0.8, prune_steps=2, finetune_epochs=2)),
])
def test_python_training_equals_cli_training(tmp_path, flags, settings):
    X, y = sonar()
    want = cli_model(tmp_path, SONAR, *flags)
    got = nnmpi.train(X, y, threads=1, **settings)
    assert got.sizes == want.sizes and list(got.classes_) == list(want.classes_)
    assert exported(got, tmp_path / "py.st") == exported(want, tmp_path / "cli.st")
    # The estimator trains the same model.
    est = nnmpi.MLPClassifier(threads=1, **{**settings, "hidden": tuple(settings["hidden"])})
    assert exported(est.fit(X, y).model_, tmp_path / "est.st") == exported(want, tmp_path / "c.st")


def test_regression_equals_cli(tmp_path):
    rng = np.random.default_rng(7)
    X = rng.uniform(-1, 1, size=(120, 5)).astype(np.float32)
    y = (X[:, 0] * 2 - X[:, 3] + 0.5 * X[:, 1] * X[:, 2]).astype(np.float32)
    data = tmp_path / "reg.csv"
    # repr of a float32 parses back to the same float32 in the command.
    data.write_text("".join(",".join(repr(float(v)) for v in (*row, t)) + "\n"
                            for row, t in zip(X, y)))
    want = cli_model(tmp_path, data, "--task", "regress", "--hidden", "10", "--epochs", "20")
    got = nnmpi.train(X, y, task="regress", hidden=[10], epochs=20, threads=1)
    assert got.classes_ is None
    assert exported(got, tmp_path / "py.st") == exported(want, tmp_path / "cli.st")
    reg = nnmpi.MLPRegressor(hidden=(10,), epochs=200, lr=0.01, threads=1).fit(X, y)
    assert reg.predict(X).shape == (120,)
    assert reg.score(X, y) > 0.8, "a 10-neuron network fits this smooth function"


def test_a_callback_sees_every_epoch_and_can_stop_training(tmp_path):
    X, y = sonar()
    seen = []

    def callback(metrics):
        seen.append(metrics)
        return metrics["epoch"] < 3  # False after epoch 3: stop

    stopped = nnmpi.train(X, y, hidden=[8], epochs=50, callback=callback, threads=1)
    assert [m["epoch"] for m in seen] == [1, 2, 3]
    assert set(seen[0]) >= {"train_loss", "train_accuracy", "val_loss", "samples_per_sec"}
    assert [h["epoch"] for h in stopped.history] == [1, 2, 3]
    three = nnmpi.train(X, y, hidden=[8], epochs=3, threads=1)
    assert exported(stopped, tmp_path / "a.st") == exported(three, tmp_path / "b.st")


def test_a_callback_error_stops_training_and_is_raised():
    X, y = sonar()

    def broken(metrics):
        raise RuntimeError("callback broke")

    with pytest.raises(RuntimeError, match="callback broke"):
        nnmpi.train(X, y, hidden=[8], epochs=50, callback=broken)


def test_ctrl_c_stops_at_the_next_batch_and_keeps_the_model():
    X, y = sonar()
    # Online SGD for 5000 epochs: about 20 seconds, so a missed interrupt fails the test
    # (the run ends without an interrupted epoch) instead of hanging it.
    # Python's own Ctrl-C handler, even where the test runs with SIGINT ignored (a
    # background job of a script), which makes interrupt_main do nothing.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    try:
        with pytest.warns(RuntimeWarning, match="Ctrl-C"):
            model = nnmpi.train(X, y, hidden=[30], epochs=5000, batch_size=1, threads=1)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert model.history and model.history[-1]["interrupted"]
    assert len(model.history) < 5000
    assert model.predict(X).shape == (len(X),)


def test_pruning_from_python_reaches_the_sparsity_and_keeps_accuracy():
    X, y = sonar()
    dense = nnmpi.train(X, y, hidden=[60], normalize="zscore", epochs=100, threads=1)
    pruned = dense.prune(0.9, X, y, steps=5, finetune_epochs=10, threads=1)
    weights = sum(a * b for a, b in zip(dense.sizes, dense.sizes[1:]))
    biases = sum(dense.sizes[1:])
    kept = pruned.parameter_count - biases
    assert kept == round(0.1 * weights), (kept, weights)
    before, after = dense.evaluate(X, y), pruned.evaluate(X, y)
    assert after["accuracy"] >= before["accuracy"] - 0.05, (before, after)
    # Without data: one-shot magnitude pruning, no fine-tuning.
    one_shot = dense.prune(0.5)
    assert one_shot.parameter_count - biases == round(0.5 * weights)


def test_evaluate_equals_the_command(tmp_path):
    need_cli()
    X, y = sonar()
    model = nnmpi.train(X, y, hidden=[12], epochs=5, threads=1)
    model.save(tmp_path / "m.nnmpi")
    out = cli("eval", "--model", tmp_path / "m.nnmpi", "--data", SONAR)
    accuracy = float(re.search(r"accuracy\s+([\d.]+)%", out).group(1)) / 100
    assert abs(model.evaluate(X, y)["accuracy"] - accuracy) < 5e-5, out


def test_cross_val_score_reaches_the_cli_5_fold_accuracy():
    sklearn = pytest.importorskip("sklearn")
    from sklearn.model_selection import cross_val_score
    need_cli()
    out = cli("train", "--data", SONAR, "--hidden", "60", "--normalize", "zscore", "--epochs",
              "100", "--kfold", "5", "--quiet")
    cli_mean = float(re.search(r"accuracy: ([\d.]+)%", out).group(1)) / 100
    X, y = sonar()
    est = nnmpi.MLPClassifier(hidden=(60,), normalize="zscore", epochs=100, threads=1)
    scores = cross_val_score(est, X, y, cv=nnmpi.KFold(5))
    assert scores.mean() >= cli_mean - 0.02, (scores, cli_mean, sklearn.__version__)


def test_scikit_learn_conventions():
    pytest.importorskip("sklearn")
    from sklearn.base import clone, is_classifier, is_regressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    X, y = sonar()
    est = nnmpi.MLPClassifier(hidden=(8,), epochs=30, seed=5)
    assert is_classifier(est) and is_regressor(nnmpi.MLPRegressor())
    params = est.get_params()
    assert params["hidden"] == (8,) and params["epochs"] == 30
    assert params["batch_size"] == nnmpi.defaults()["batch_size"]
    copy = clone(est).set_params(epochs=31)
    assert copy.epochs == 31 and est.epochs == 30
    pipe = make_pipeline(StandardScaler(), nnmpi.MLPClassifier(hidden=(8,), epochs=30))
    pipe.fit(X, y)
    assert set(pipe.predict(X)) <= {"M", "R"} and pipe.score(X, y) > 0.7
    # Labels keep their type: integers in, integers out.
    y01 = (y == "M").astype(np.int64)
    fitted = nnmpi.MLPClassifier(hidden=(8,), epochs=30).fit(X, y01)
    assert list(fitted.classes_) == [0, 1] and fitted.predict(X).dtype == np.int64
    assert fitted.predict_proba(X).shape == (len(X), 2)


@pytest.mark.parametrize("call,kind,message", [
    (lambda X, y: nnmpi.train(X, y, hidden=[4], colour="red"), ValueError, "unknown setting"),
    (lambda X, y: nnmpi.train(X, y, activation="cosine"), ValueError, "unknown activation .cosine."),
    (lambda X, y: nnmpi.train(X, y, patience=3), ValueError, "patience"),
    (lambda X, y: nnmpi.train(X, y, epochs=0), ValueError, "epochs"),
    (lambda X, y: nnmpi.train(X, y, val_split=1.5), ValueError, "val_split"),
    (lambda X, y: nnmpi.train(X, y[:10]), ValueError, "labels for"),
    (lambda X, y: nnmpi.train(X, ["R"] * len(X)), ValueError, "nothing to learn"),
    (lambda X, y: nnmpi.train(np.where(X > 0.5, np.nan, X), y), ValueError, "finite"),
    (lambda X, y: nnmpi.train(X, y, task="regress"), ValueError, "numbers"),
    (lambda X, y: nnmpi.train(X, y, task="cluster"), ValueError, "task"),
])
def test_bad_training_input_raises_a_clear_exception(call, kind, message):
    X, y = sonar()
    with pytest.raises(kind, match=message):
        call(X, y)


def test_bad_evaluation_and_pruning_input_raises_a_clear_exception():
    X, y = sonar()
    model = nnmpi.train(X, y, hidden=[4], epochs=1)
    with pytest.raises(ValueError, match="unknown label 'Q'"):
        model.evaluate(X, np.where(y == "M", "Q", y))
    with pytest.raises(ValueError, match="features"):
        model.evaluate(X[:, :10], y)
    with pytest.raises(ValueError, match="both X and y"):
        model.prune(0.5, X)
    with pytest.raises(ValueError, match="fine-tuning needs"):
        model.prune(0.5, finetune_epochs=2)
    with pytest.raises(ValueError, match="prune_to"):
        model.prune(1.5)
    with pytest.raises(AttributeError, match="not fitted"):
        nnmpi.MLPClassifier().predict(X)


def test_the_readme_example_runs(tmp_path):
    """examples/sonar_from_python.py, as the README runs it: trains, prunes to 90%, saves,
    reloads and predicts."""
    import subprocess
    import sys
    example = Path(__file__).resolve().parents[2] / "examples" / "sonar_from_python.py"
    done = subprocess.run([sys.executable, example, tmp_path], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "sonar-pruned.nnmpi").exists()
    dense = int(re.search(r"dense:\s+(\d+) parameters", done.stdout).group(1))
    pruned = int(re.search(r"pruned: (\d+) parameters", done.stdout).group(1))
    assert dense == 60 * 60 + 60 + 60 + 1
    assert pruned == round(0.1 * (60 * 60 + 60)) + 61, done.stdout
    pruned_model = nnmpi.Model.load(tmp_path / "sonar-pruned.nnmpi")
    assert pruned_model.parameter_count == pruned
