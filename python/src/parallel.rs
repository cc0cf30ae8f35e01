//! Where the engine runs: in this process alone, or, when the script was started by an MPI
//! launcher (`mpirun -np N python script.py`), on every rank of the job with each layer's
//! neurons split over the ranks, as `nnmpi`'s default `--parallel model` splits them. Every
//! rank gets the same results (models and outputs are shared from rank 0), so a script runs
//! unchanged under `mpirun`; every rank must make the same calls in the same order.

use crate::to_py;
use nnmpi::cluster::{Comm, Topology};
use nnmpi::io::{Checkpoint, decode, encode};
use nnmpi::kernels::Par;
use nnmpi::model::Model;
use pyo3::prelude::*;

/// A piece of work the engine runs on one rank of a topology (one process: the trivial one).
pub trait Job: Send {
    /// What every rank gets back.
    type Out: Send;
    /// Runs on this rank of `topology` with `par` threads.
    fn run<C: Comm>(self, topology: &Topology<C>, par: Par) -> nnmpi::Result<Self::Out>;
}

/// Runs `job` without the GIL, on every rank of the MPI job when there is one (of more than
/// one rank), else in this process; `threads` per rank (default: all cores, or
/// `RAYON_NUM_THREADS`).
pub fn run<J: Job>(py: Python<'_>, threads: Option<usize>, job: J) -> PyResult<J::Out> {
    let par = threads.map_or_else(Par::current_pool, Par::threads);
    #[cfg(feature = "mpi")]
    if let Some(ranks) = mpi::ranks()? {
        return py
            .detach(|| {
                let world = nnmpi::cluster::MpiComm::world();
                let grid = nnmpi::cluster::Grid::model(ranks);
                job.run(&Topology::new(world, grid)?, par)
            })
            .map_err(to_py);
    }
    py.detach(|| job.run(&Topology::single(), par))
        .map_err(to_py)
}

/// Runs `work` on a thread of rayon's pool, as the command runs all its work: a parallel
/// product started from a thread outside the pool is handed to the pool while the caller
/// sleeps, once per product (a batch of 1024 through 784-1024-1024-10 on 2 threads took 1.2
/// times the command's time). For prediction only: not under MPI, whose calls must come from
/// the thread that initialised it, nor for training, whose Ctrl-C is seen only on Python's
/// main thread.
pub fn on_a_worker<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| work())
}

/// Whether calls run on the several ranks of an MPI job.
pub fn on_several_ranks() -> PyResult<bool> {
    #[cfg(feature = "mpi")]
    return Ok(mpi::ranks()?.is_some());
    #[cfg(not(feature = "mpi"))]
    Ok(false)
}

/// This process's rank and the number of ranks calls run on (`(0, 1)` without MPI).
#[pyfunction]
pub fn mpi_world() -> PyResult<(usize, usize)> {
    #[cfg(feature = "mpi")]
    if mpi::ranks()?.is_some() {
        let world = nnmpi::cluster::MpiComm::world();
        return Ok((world.rank(), world.size()));
    }
    Ok((0, 1))
}

/// `model` (given on world rank 0, `None` elsewhere) on every rank.
pub fn share_model<C: Comm>(world: &C, model: Option<Model>) -> nnmpi::Result<Model> {
    if world.size() == 1 {
        return Ok(model.expect("one process is rank 0"));
    }
    let mut bytes = match &model {
        Some(m) => encode(&Checkpoint {
            model: m.clone(),
            training: None,
        })?,
        None => Vec::new(),
    };
    world.broadcast_bytes(0, &mut bytes);
    match model {
        Some(m) => Ok(m),
        None => Ok(decode(std::path::Path::new("rank 0's model"), &bytes)?.model),
    }
}

#[cfg(feature = "mpi")]
pub mod mpi {
    //! The MPI session of the Python process: attached to an MPI the script initialised
    //! (mpi4py), or initialised on first use and finalised at exit.

    use crate::to_py;
    use nnmpi::cluster::{Comm, MpiComm, MpiSession, launched_by_mpi};
    use pyo3::prelude::*;
    use std::sync::Mutex;

    /// `None` until first needed; `Some(None)` when not launched by MPI.
    static SESSION: Mutex<Option<Option<MpiSession>>> = Mutex::new(None);

    /// The number of ranks when this process is one of an MPI job of several, else `None`.
    pub fn ranks() -> PyResult<Option<usize>> {
        let mut session = SESSION.lock().unwrap_or_else(|e| e.into_inner());
        if session.is_none() {
            let started = if launched_by_mpi() {
                Some(MpiSession::attach_or_init().map_err(to_py)?)
            } else {
                None
            };
            *session = Some(started);
        }
        match session.as_ref() {
            Some(Some(_)) => Ok(Some(MpiComm::world().size()).filter(|&n| n > 1)),
            _ => Ok(None),
        }
    }

    /// Finalises MPI if nnmpi initialised it (registered with `atexit`); nothing otherwise.
    #[pyfunction]
    pub fn finalize() {
        let mut session = SESSION.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Some(s)) = session.take() {
            drop(s);
        }
        *session = Some(None);
    }
}
