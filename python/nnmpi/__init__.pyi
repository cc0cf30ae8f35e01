from typing import Any, Callable, Iterator, Optional

import numpy as np
import numpy.typing as npt

from ._nnmpi import Model as Model

__version__: str

Callback = Callable[[dict[str, Any]], Optional[bool]]

def defaults() -> dict[str, Any]: ...
def world() -> tuple[int, int]: ...
def train(
    X: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    task: str = "classify",
    callback: Optional[Callback] = None,
    threads: Optional[int] = None,
    **settings: Any,
) -> Model: ...

class _Estimator:
    model_: Model
    n_features_in_: int
    history_: list[dict[str, Any]]
    def __init__(
        self,
        hidden: tuple[int, ...] = ...,
        activation: str = ...,
        output_activation: Optional[str] = ...,
        loss: Optional[str] = ...,
        init: Optional[str] = ...,
        optimizer: str = ...,
        lr: Optional[float] = ...,
        momentum: float = ...,
        weight_decay: float = ...,
        batch_size: int = ...,
        epochs: int = ...,
        seed: int = ...,
        val_split: float = ...,
        patience: Optional[int] = ...,
        shuffle: bool = ...,
        normalize: str = ...,
        prune_to: Optional[float] = ...,
        prune_steps: int = ...,
        finetune_epochs: int = ...,
        prune_scope: str = ...,
        prune_block: int = ...,
        threads: Optional[int] = ...,
        callback: Optional[Callback] = ...,
    ) -> None: ...
    def fit(self, X: npt.ArrayLike, y: npt.ArrayLike) -> "_Estimator": ...
    def get_params(self, deep: bool = True) -> dict[str, Any]: ...
    def set_params(self, **params: Any) -> "_Estimator": ...
    def score(self, X: npt.ArrayLike, y: npt.ArrayLike, sample_weight: Any = None) -> float: ...

class MLPClassifier(_Estimator):
    classes_: npt.NDArray[Any]
    def predict_proba(self, X: npt.ArrayLike) -> npt.NDArray[np.float32]: ...
    def predict(self, X: npt.ArrayLike) -> npt.NDArray[Any]: ...

class MLPRegressor(_Estimator):
    def predict(self, X: npt.ArrayLike) -> npt.NDArray[np.float32]: ...

class KFold:
    n_splits: int
    seed: int
    def __init__(self, n_splits: int = 5, seed: int = ...) -> None: ...
    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int: ...
    def split(
        self, X: Any, y: Any = None, groups: Any = None
    ) -> Iterator[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]]: ...
