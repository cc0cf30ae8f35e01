"""Safetensors round trips with PyTorch (skipped cleanly where PyTorch is not installed): a
model trained by the package runs in PyTorch with the same outputs, and PyTorch's weights run
in the package."""

import json

import numpy as np
import pytest

import nnmpi
from test_training import sonar

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")


def torch_sequential(tensors, activations):
    """A torch.nn.Sequential of the layers in `tensors` (`layers.{i}.weight` is `[out, in]`)."""
    acts = {"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh,
            "identity": torch.nn.Identity, "softmax": lambda: torch.nn.Softmax(dim=1)}
    mods = []
    for i, act in enumerate(activations):
        w, b = tensors[f"layers.{i}.weight"], tensors[f"layers.{i}.bias"]
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        mods += [lin, acts[act]()]
    return torch.nn.Sequential(*mods).eval()


def test_a_model_trained_in_python_runs_in_pytorch(tmp_path):
    X, y = sonar()
    model = nnmpi.train(X, y, hidden=[16], normalize="zscore", epochs=20, threads=1)
    path = tmp_path / "sonar.safetensors"
    model.export_safetensors(path)
    tensors = safetensors_torch.load_file(str(path))
    net = torch_sequential(tensors, model.activations)
    offset, scale = tensors["normalizer.offset"], tensors["normalizer.scale"]
    with torch.no_grad():
        theirs = net((torch.from_numpy(X) - offset) * scale).numpy()
    ours = model.outputs(X)
    assert np.abs(ours - theirs).max() < 1e-6


def test_pytorch_weights_run_in_the_package(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3),
                              torch.nn.Softmax(dim=1)).eval()
    tensors = {"layers.0.weight": net[0].weight, "layers.0.bias": net[0].bias,
               "layers.1.weight": net[2].weight, "layers.1.bias": net[2].bias}
    meta = {"nnmpi.activations": "relu,softmax", "nnmpi.task": "classification",
            "nnmpi.classes": json.dumps(["a", "b", "c"])}
    path = tmp_path / "torch.safetensors"
    safetensors_torch.save_file({k: v.detach().contiguous() for k, v in tensors.items()},
                                str(path), metadata=meta)
    model = nnmpi.Model.import_safetensors(path)
    x = np.random.default_rng(3).standard_normal((50, 20)).astype(np.float32)
    with torch.no_grad():
        theirs = net(torch.from_numpy(x)).numpy()
    assert np.abs(model.predict_proba(x) - theirs).max() < 1e-6
    assert list(model.classes_) == ["a", "b", "c"]
    assert list(model.predict(x)) == [["a", "b", "c"][i] for i in theirs.argmax(axis=1)]
