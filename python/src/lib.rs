//! The `nnmpi._nnmpi` extension module: nnmpi models from Python, NumPy arrays in and out.
//! The Python package (`nnmpi/__init__.py`) adds training settings, scikit-learn estimators
//! and array conversions; everything numerical happens here, in the same library calls the
//! command line makes, with the GIL released.

mod arrays;
mod model;
mod parallel;
mod training;

pub(crate) use model::Model;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;

/// The library's error as a Python exception: files that cannot be read or are not valid
/// checkpoints are `OSError`, everything else (shapes, values, settings) `ValueError`.
pub(crate) fn to_py(e: nnmpi::Error) -> PyErr {
    match e {
        nnmpi::Error::Io { .. } | nnmpi::Error::Checkpoint { .. } => {
            PyOSError::new_err(e.to_string())
        }
        _ => PyValueError::new_err(e.to_string()),
    }
}

/// The nnmpi engine's Python module.
#[pymodule]
fn _nnmpi(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(training::train, m)?)?;
    m.add_function(wrap_pyfunction!(training::defaults, m)?)?;
    m.add_function(wrap_pyfunction!(training::kfold, m)?)?;
    m.add_function(wrap_pyfunction!(parallel::mpi_world, m)?)?;
    #[cfg(feature = "mpi")]
    m.add_function(wrap_pyfunction!(parallel::mpi::finalize, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
