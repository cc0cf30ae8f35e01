"""nnmpi from Python: train, prune, save and run nnmpi models on NumPy arrays.

The engine is the Rust library behind the ``nnmpi`` command; this package calls it with the
GIL released, so other Python threads keep running while it computes. Training goes through
the same library steps and defaults as ``nnmpi train``: the same data and settings give the
same model, bit for bit.

>>> import numpy as np, nnmpi
>>> model = nnmpi.train(X, y, hidden=[30], epochs=50)   # or nnmpi.MLPClassifier().fit(X, y)
>>> model = model.prune(0.9, X, y, steps=5, finetune_epochs=10)
>>> model.save("sonar.nnmpi")
>>> labels = nnmpi.Model.load("sonar.nnmpi").predict(X)
"""

import atexit
import warnings

import numpy as np

from . import _nnmpi

# Under an MPI launcher the package initialises MPI on first use unless the script did
# (mpi4py); it finalises it at exit only when it initialised it.
if hasattr(_nnmpi, "finalize"):
    atexit.register(_nnmpi.finalize)

_F32 = np.dtype(np.float32)

__all__ = ["Model", "train", "defaults", "world", "MLPClassifier", "MLPRegressor", "KFold",
           "__version__"]
__version__ = _nnmpi.__version__


def defaults():
    """The training settings and their defaults (those of ``nnmpi train``), as a dict:
    ``hidden``, ``activation``, ``output_activation``, ``loss``, ``init``, ``optimizer``,
    ``lr``, ``momentum``, ``weight_decay``, ``batch_size``, ``epochs``, ``seed``,
    ``val_split``, ``patience``, ``shuffle``, ``normalize``, ``prune_to``, ``prune_steps``,
    ``finetune_epochs``, ``prune_scope``, ``prune_block``. Text settings take the command
    line's values (e.g. ``activation="leaky-relu:0.1"``, ``loss="ce"``)."""
    return _nnmpi.defaults()


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


def world():
    """``(rank, ranks)`` of this process. Started by an MPI launcher (``mpirun -np 2 python
    script.py``), every call of the package runs on all ranks with each layer's neurons split
    over them (as ``nnmpi train``'s default ``--parallel model``), and every rank gets the same
    models and outputs: every rank must make the same calls. ``(0, 1)`` otherwise. MPI is used
    as the script left it: initialised by ``mpi4py`` or not."""
    return _nnmpi.mpi_world()


def _labels(y, task, samples):
    """``y`` as the extension takes labels: class names (``str`` of each label) for
    ``task="classify"``, float32 targets for ``task="regress"``."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"y must be one label per sample ([samples]); it has shape {y.shape}")
    if len(y) != samples:
        raise ValueError(f"y has {len(y)} labels for {samples} samples")
    if task == "classify":
        return [str(v) for v in y.tolist()]
    if task == "regress":
        if not (np.issubdtype(y.dtype, np.floating) or np.issubdtype(y.dtype, np.integer)):
            raise ValueError(f"regression targets must be numbers; y's dtype is {y.dtype}")
        return np.ascontiguousarray(y, dtype=np.float32)
    raise ValueError(f"task must be 'classify' or 'regress', not {task!r}")


def _finish(result):
    """The model of a training call; a Ctrl-C that stopped it early is a warning (the model
    holds the weights reached), any other exception (the callback's) is raised."""
    model, error = result
    if isinstance(error, KeyboardInterrupt):
        done = sum(1 for h in model.history if not h["interrupted"])
        warnings.warn(f"training stopped by Ctrl-C after {done} epochs; the model holds the "
                      "weights reached", RuntimeWarning, stacklevel=3)
    elif error is not None:
        raise error
    return model


def train(X, y, *, task="classify", callback=None, threads=None, **settings):
    """Trains a network on ``X`` (``[samples, features]``) and ``y`` (a label per sample), as
    ``nnmpi train`` does on the same data (same seed and settings: the same model, bit for
    bit). ``settings`` are those of :func:`defaults` (``hidden=[30]``, ``epochs=50``,
    ``prune_to=0.9``, ...); unknown names are an error.

    ``task``: ``"classify"`` (labels are class names, any type: they are compared as text) or
    ``"regress"`` (numbers). ``callback(metrics)`` is called after every epoch with a dict
    (``epoch``, ``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy``,
    ``samples_per_sec``); returning ``False`` stops training. Ctrl-C stops at the next
    mini-batch and returns the model reached, with a warning. ``threads``: cores to use
    (default: all, or ``RAYON_NUM_THREADS``). The per-epoch figures are in ``model.history``.
    """
    x = _as_features(X)
    labels = _labels(y, task, x.shape[0])
    return _finish(_nnmpi.train(x, labels, settings, callback, threads))


Model = _nnmpi.Model


# scikit-learn estimators: with scikit-learn installed they are its BaseEstimator (so clone,
# Pipeline, GridSearchCV and cross_val_score treat them as their own); without it, the same
# get_params/set_params/score conventions are provided here.
try:
    from sklearn.base import BaseEstimator as _Base
    from sklearn.base import ClassifierMixin as _ClassifierMixin
    from sklearn.base import RegressorMixin as _RegressorMixin
except ImportError:  # pragma: no cover - exercised without scikit-learn
    import inspect

    class _Base:
        """get_params/set_params as scikit-learn defines them (the __init__ arguments)."""

        @classmethod
        def _get_param_names(cls):
            sig = inspect.signature(cls.__init__)
            return sorted(p for p in sig.parameters if p != "self")

        def get_params(self, deep=True):
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params):
            for name, value in params.items():
                if name not in self._get_param_names():
                    raise ValueError(f"invalid parameter {name!r} for {type(self).__name__}")
                setattr(self, name, value)
            return self

        def __repr__(self):
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
            return f"{type(self).__name__}({args})"

    class _ClassifierMixin:
        _estimator_type = "classifier"

        def score(self, X, y, sample_weight=None):
            return float(np.average(self.predict(X) == np.asarray(y), weights=sample_weight))

    class _RegressorMixin:
        _estimator_type = "regressor"

        def score(self, X, y, sample_weight=None):
            y = np.asarray(y, dtype=np.float64)
            err = np.average((y - self.predict(X)) ** 2, weights=sample_weight)
            var = np.average((y - np.average(y, weights=sample_weight)) ** 2,
                             weights=sample_weight)
            return float(1.0 - err / var) if var > 0 else 0.0

_D = _nnmpi.defaults()


class _Estimator(_Base):
    """What both estimators share: the settings of :func:`train` as constructor arguments
    (defaults from the library), ``fit`` storing the trained :class:`Model` as ``model_``."""

    _task = "classify"

    def __init__(self, hidden=tuple(_D["hidden"]), activation=_D["activation"],
                 output_activation=_D["output_activation"], loss=_D["loss"], init=_D["init"],
                 optimizer=_D["optimizer"], lr=_D["lr"], momentum=_D["momentum"],
                 weight_decay=_D["weight_decay"], batch_size=_D["batch_size"],
                 epochs=_D["epochs"], seed=_D["seed"], val_split=_D["val_split"],
                 patience=_D["patience"], shuffle=_D["shuffle"], normalize=_D["normalize"],
                 prune_to=_D["prune_to"], prune_steps=_D["prune_steps"],
                 finetune_epochs=_D["finetune_epochs"], prune_scope=_D["prune_scope"],
                 prune_block=_D["prune_block"], threads=None, callback=None):
        self.hidden = hidden
        self.activation = activation
        self.output_activation = output_activation
        self.loss = loss
        self.init = init
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.seed = seed
        self.val_split = val_split
        self.patience = patience
        self.shuffle = shuffle
        self.normalize = normalize
        self.prune_to = prune_to
        self.prune_steps = prune_steps
        self.finetune_epochs = finetune_epochs
        self.prune_scope = prune_scope
        self.prune_block = prune_block
        self.threads = threads
        self.callback = callback

    def _settings(self):
        names = [n for n in _D if n != "hidden"]
        settings = {n: getattr(self, n) for n in names}
        settings["hidden"] = [int(h) for h in np.atleast_1d(self.hidden)]
        return settings

    def fit(self, X, y):
        """Trains on ``X`` (``[samples, features]``) and ``y``; returns ``self``."""
        x = _as_features(X)
        labels = _labels(y, self._task, x.shape[0])
        self.model_ = _finish(_nnmpi.train(x, labels, self._settings(), self.callback,
                                           self.threads))
        self.n_features_in_ = x.shape[1]
        self.history_ = self.model_.history
        return self

    def _fitted(self):
        model = getattr(self, "model_", None)
        if model is None:
            raise AttributeError(f"this {type(self).__name__} is not fitted yet: call fit first")
        return model


class MLPClassifier(_ClassifierMixin, _Estimator):
    """A multi-layer perceptron classifier trained by nnmpi, in scikit-learn's conventions
    (``fit``/``predict``/``predict_proba``/``score``, ``get_params``/``set_params``,
    clonable). The arguments are :func:`train`'s settings; ``classes_`` holds the labels as
    given to ``fit`` (sorted as nnmpi sorts class names: numerically when all are numbers)."""

    _task = "classify"

    def fit(self, X, y):
        super().fit(X, y)
        by_name = {}
        for v in np.asarray(y).ravel().tolist():
            by_name.setdefault(str(v), v)
        self.classes_ = np.array([by_name[c] for c in self.model_.classes_])
        return self

    def predict_proba(self, X):
        """Class probabilities, ``[samples, classes]``, columns in ``classes_`` order."""
        return self._fitted().predict_proba(X, self.threads)

    def predict(self, X):
        """The predicted label of each sample (as given to ``fit``)."""
        y = self._fitted().outputs(X, self.threads)
        return self.classes_[Model.class_indices(y)]


class MLPRegressor(_RegressorMixin, _Estimator):
    """A multi-layer perceptron regressor trained by nnmpi (one target), in scikit-learn's
    conventions; the arguments are :func:`train`'s settings."""

    _task = "regress"

    def predict(self, X):
        """The predicted value of each sample, ``[samples]``."""
        return self._fitted().outputs(X, self.threads)[:, 0]


class KFold:
    """The folds of ``nnmpi train --kfold``, as a scikit-learn splitter (``cv=`` of
    ``cross_val_score``): seeded, stratified by class when ``y`` is given (classes spread
    evenly over the folds), each sample tested once."""

    def __init__(self, n_splits=5, seed=_D["seed"]):
        self.n_splits = n_splits
        self.seed = seed

    def get_n_splits(self, X=None, y=None, groups=None):
        return self.n_splits

    def split(self, X, y=None, groups=None):
        n = len(X)
        labels = None if y is None else [str(v) for v in np.asarray(y).ravel().tolist()]
        for train, test in _nnmpi.kfold(n, self.n_splits, self.seed, labels):
            yield np.array(train, dtype=np.intp), np.array(test, dtype=np.intp)

    def __repr__(self):
        return f"KFold(n_splits={self.n_splits}, seed={self.seed})"
