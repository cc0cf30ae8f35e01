"""The package under `mpirun`: a script run on 2 ranks gives the 1-process predictions bit for
bit (forward passes do not depend on the rank count), with and without `import mpi4py` first,
and trains the model `mpirun -np 2 nnmpi train` trains."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nnmpi
from test_model import NNMPI, SONAR, cli, sonar_features

HERE = Path(__file__).resolve().parent
MPIRUN = shutil.which("mpirun")


def mpirun(ranks, *args):
    """Runs `args` on `ranks` ranks (oversubscribed, one thread each)."""
    env = dict(os.environ, RAYON_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1",
               PYTHONPATH=str(HERE))
    done = subprocess.run([MPIRUN, "-np", str(ranks), "--bind-to", "none", *map(str, args)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    if not Path(NNMPI).exists():
        pytest.skip(f"{NNMPI} is not built (run cargo build, or set NNMPI_BIN)")
    path = tmp_path_factory.mktemp("mpi") / "model.nnmpi"
    cli("train", "--data", SONAR, "--hidden", "30,10", "--epochs", "5", "--quiet", "--out", path)
    return path


@pytest.mark.skipif(MPIRUN is None, reason="mpirun is not installed")
@pytest.mark.parametrize("mpi4py_first", [False, True])
def test_a_script_on_two_ranks_gives_the_one_process_results(tmp_path, model, mpi4py_first):
    if mpi4py_first:
        pytest.importorskip("mpi4py")
    args = ["--mpi4py"] if mpi4py_first else []
    mpirun(2, sys.executable, HERE / "mpi_script.py", tmp_path, model, *args)
    assert (tmp_path / "world-1.txt").read_text().split()[:2] == ["1", "2"], \
        "the package did not see the MPI job (built without its mpi feature?)"
    alone = nnmpi.Model.load(model).outputs(sonar_features())
    for rank in (0, 1):
        for name in ("outputs", "outputs-b7"):
            got = np.load(tmp_path / f"{name}-{rank}.npy")
            assert got.dtype == np.float32 and np.array_equal(got, alone), (name, rank)
    # Every rank holds the same trained and pruned models ...
    for name in ("trained", "pruned"):
        copies = [(tmp_path / f"{name}-{r}.safetensors").read_bytes() for r in (0, 1)]
        assert copies[0] == copies[1], name
    # ... and the trained one is the command's on 2 ranks, bit for bit.
    want = tmp_path / "cli.nnmpi"
    mpirun(2, NNMPI, "train", "--data", SONAR, "--hidden", "12", "--epochs", "3", "--seed", "3",
           "--val-split", "0.2", "--quiet", "--out", want)
    nnmpi.Model.load(want).export_safetensors(tmp_path / "cli.safetensors")
    assert (tmp_path / "cli.safetensors").read_bytes() == \
        (tmp_path / "trained-0.safetensors").read_bytes()


def test_without_a_launcher_the_package_is_one_process():
    assert nnmpi.world() == (0, 1)
