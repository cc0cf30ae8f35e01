"""nnmpi from Python: load, save and run nnmpi models on NumPy arrays.

The engine is the Rust library behind the ``nnmpi`` command; this package calls it with the
GIL released, so other Python threads keep running while it computes.

>>> import numpy as np, nnmpi
>>> model = nnmpi.Model.load("sonar.nnmpi")        # written by `nnmpi train`
>>> proba = model.predict_proba(np.random.rand(5, 60))
>>> labels = model.predict(np.random.rand(5, 60))
"""

import numpy as np

from . import _nnmpi

_F32 = np.dtype(np.float32)

__all__ = ["Model", "__version__"]
__version__ = _nnmpi.__version__


def _as_features(x):
    """``x`` as a C-ordered float32 ``[samples, features]`` array (no copy when it is one)."""
    if type(x) is np.ndarray and x.dtype == _F32 and x.ndim == 2 and x.flags.c_contiguous:
        return x  # the common case, checked in a few attribute reads
    x = np.asarray(x)
    if x.ndim == 1:
        x = x.reshape(1, -1)
    if x.ndim != 2:
        raise ValueError(f"X must be [samples, features]; it has {x.ndim} dimensions")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"X must hold numbers; its dtype is {x.dtype}")
    return np.ascontiguousarray(x, dtype=np.float32)


class Model:
    """A trained nnmpi network with its normaliser and class names.

    Load one with :meth:`Model.load` (an nnmpi checkpoint) or
    :meth:`Model.import_safetensors`. Inputs are ``[samples, features]`` arrays of float32 or
    float64 (any order; a float32 C-ordered array is used without a copy), in the units the
    model was trained on: the model's own normaliser is applied.
    """

    __slots__ = ("_inner",)

    def __init__(self, inner):
        if not isinstance(inner, _nnmpi.Model):
            raise TypeError("use Model.load or Model.import_safetensors to make a Model")
        self._inner = inner

    @classmethod
    def load(cls, path):
        """Reads an nnmpi checkpoint. Raises ``OSError`` for a missing or corrupt file."""
        return cls(_nnmpi.Model.load(str(path)))

    @classmethod
    def import_safetensors(cls, path):
        """Reads a safetensors model as ``nnmpi export`` writes it."""
        return cls(_nnmpi.Model.import_safetensors(str(path)))

    def save(self, path):
        """Writes the model as an nnmpi checkpoint (atomically: temporary file, then rename)."""
        self._inner.save(str(path))

    def export_safetensors(self, path):
        """Writes the model as safetensors (weights ``layers.{i}.weight`` are ``[out, in]``)."""
        self._inner.export_safetensors(str(path))

    @property
    def sizes(self):
        """Layer sizes, inputs first, e.g. ``[60, 30, 1]``."""
        return list(self._inner.sizes)

    @property
    def n_features_in_(self):
        """Features per sample the model takes."""
        return self._inner.sizes[0]

    @property
    def classes_(self):
        """Class names of a classifier, as a NumPy array; ``None`` for regression."""
        classes = self._inner.classes
        return None if classes is None else np.array(classes, dtype=object)

    @property
    def activations(self):
        """Each layer's activation, e.g. ``['relu', 'sigmoid']``."""
        return list(self._inner.activations)

    @property
    def parameter_count(self):
        """Stored weights and biases."""
        return self._inner.parameter_count

    def outputs(self, X, threads=None, batch_size=1024):
        """The network's raw outputs, ``[samples, outputs]`` float32."""
        return self._inner.outputs(_as_features(X), threads, batch_size)

    def predict_proba(self, X, threads=None, batch_size=1024):
        """Class probabilities, ``[samples, classes]`` float32, columns in ``classes_`` order
        (a one-output binary model gives ``[1 - p, p]``). Classifiers only."""
        self._need_classes("predict_proba")
        y = self.outputs(X, threads, batch_size)
        if y.shape[1] == 1:
            return np.hstack([1.0 - y, y])
        return y

    def predict(self, X, threads=None, batch_size=1024):
        """Predicted class names (classifier) or values (regression: ``[samples]`` when the
        model has one output, else ``[samples, outputs]``), as ``nnmpi predict`` gives them."""
        y = self.outputs(X, threads, batch_size)
        if self._inner.classes is None:
            return y[:, 0] if y.shape[1] == 1 else y
        return self.classes_[_nnmpi.Model.class_indices(y)]

    def _need_classes(self, what):
        if self._inner.classes is None:
            raise ValueError(f"{what} needs a classifier; this model is a regression model")

    def __repr__(self):
        return repr(self._inner)
