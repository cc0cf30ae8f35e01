"""Type stubs of the compiled extension (the package re-exports ``Model`` as ``nnmpi.Model``)."""

from os import PathLike
from typing import Any, Callable, Optional, Union

import numpy as np
import numpy.typing as npt

__version__: str

Labels = Union[list[str], npt.NDArray[np.float32]]

class Model:
    @staticmethod
    def load(path: str | PathLike[str]) -> "Model": ...
    @staticmethod
    def import_safetensors(path: str | PathLike[str]) -> "Model": ...
    def save(self, path: str | PathLike[str]) -> None: ...
    def export_safetensors(self, path: str | PathLike[str]) -> None: ...
    @property
    def sizes(self) -> list[int]: ...
    @property
    def n_features_in_(self) -> int: ...
    @property
    def classes_(self) -> Optional[npt.NDArray[np.object_]]: ...
    @property
    def activations(self) -> list[str]: ...
    @property
    def parameter_count(self) -> int: ...
    @property
    def history(self) -> list[dict[str, Any]]: ...
    def outputs(
        self, X: npt.ArrayLike, threads: Optional[int] = None, batch_size: int = 1024
    ) -> npt.NDArray[np.float32]: ...
    def predict_proba(
        self, X: npt.ArrayLike, threads: Optional[int] = None, batch_size: int = 1024
    ) -> npt.NDArray[np.float32]: ...
    def predict(
        self, X: npt.ArrayLike, threads: Optional[int] = None, batch_size: int = 1024
    ) -> npt.NDArray[Any]: ...
    @staticmethod
    def class_indices(outputs: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]: ...
    def evaluate(
        self, X: npt.ArrayLike, y: npt.ArrayLike, threads: Optional[int] = None
    ) -> dict[str, float]: ...
    def prune(
        self,
        sparsity: float,
        X: Optional[npt.ArrayLike] = None,
        y: Optional[npt.ArrayLike] = None,
        *,
        steps: int = 1,
        finetune_epochs: int = 0,
        scope: str = "global",
        block: int = 1,
        threads: Optional[int] = None,
    ) -> "Model": ...

def train(
    x: npt.NDArray[np.float32],
    labels: Labels,
    settings: dict[str, Any],
    callback: Optional[Callable[[dict[str, Any]], Optional[bool]]] = None,
    threads: Optional[int] = None,
) -> tuple[Model, Optional[BaseException]]: ...
def defaults() -> dict[str, Any]: ...
def kfold(
    n: int, k: int, seed: int, labels: Optional[list[str]] = None
) -> list[tuple[list[int], list[int]]]: ...
def mpi_world() -> tuple[int, int]: ...
def finalize() -> None: ...
