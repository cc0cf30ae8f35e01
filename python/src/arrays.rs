//! NumPy arrays in: features checked and turned features-major, labels read as class names
//! or regression targets.

use crate::to_py;
use nnmpi::data::{Dataset, Targets};
use numpy::ndarray::Array2;
use numpy::{PyArray2, PyArrayMethods, PyReadonlyArray1, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// Where arrays come from, in messages.
pub const ORIGIN: &str = "the array";

/// A label per sample: class names (a classifier) or numbers (regression).
#[derive(FromPyObject)]
pub enum Labels<'py> {
    /// Class names, e.g. `str()` of each label.
    Names(Vec<String>),
    /// Regression targets.
    Values(PyReadonlyArray1<'py, f32>),
}

/// `x` as a C-ordered float32 `[samples, features]` array: itself when it is one, else the
/// package's `_as_features` conversion (float64, integers, lists, Fortran order, one sample).
pub fn rows<'py>(x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray2<f32>>> {
    if let Ok(a) = x.cast::<PyArray2<f32>>()
        && a.is_c_contiguous()
    {
        return Ok(a.clone());
    }
    let convert = x.py().import("nnmpi")?.getattr("_as_features")?;
    Ok(convert.call1((x,))?.cast_into::<PyArray2<f32>>()?)
}

/// `x` (`[samples, features]`, C-ordered float32) as the engine's features-major `[features,
/// samples]`, checked: `expect` features when given, every value finite.
pub fn features_major(
    x: &Bound<'_, PyArray2<f32>>,
    expect: Option<usize>,
) -> PyResult<Array2<f32>> {
    let (samples, features) = (x.shape()[0], x.shape()[1]);
    let values = checked(x, expect)?;
    let mut out = Array2::zeros((features, samples));
    nnmpi::kernels::transpose::transpose(
        values,
        samples,
        features,
        out.as_slice_mut().expect("a new array is contiguous"),
    );
    Ok(out)
}

/// The values of `x` (`[samples, features]`, C-ordered float32, read in place), checked:
/// `expect` features when given, every value finite.
pub fn checked<'a>(x: &'a Bound<'_, PyArray2<f32>>, expect: Option<usize>) -> PyResult<&'a [f32]> {
    let features = x.shape()[1];
    if let Some(inputs) = expect.filter(|&n| n != features) {
        return Err(PyValueError::new_err(format!(
            "X has {features} features per sample but the model takes {inputs}"
        )));
    }
    // SAFETY: nnmpi never writes to its inputs, and no Rust borrow of the array is alive in
    // this call; the slice lives as long as the caller's reference to the array.
    let values = unsafe { x.as_slice() }
        .map_err(|_| PyValueError::new_err("X must be a C-ordered float32 array"))?;
    if !all_finite(values)
        && let Some(k) = values.iter().position(|v| !v.is_finite())
    {
        return Err(PyValueError::new_err(format!(
            "X[{}, {}] is {}: every feature must be a finite number",
            k / features.max(1),
            k % features.max(1),
            values[k]
        )));
    }
    Ok(values)
}

/// Whether every value is finite, in blocks the compiler vectorises (a search for the first
/// bad value stops at each element to ask).
pub fn all_finite(values: &[f32]) -> bool {
    values
        .chunks(256)
        .all(|block| block.iter().fold(true, |ok, v| ok & v.is_finite()))
}

/// A data set of `x` and `labels` (with `expect` features when given).
pub fn dataset(
    x: &Bound<'_, PyArray2<f32>>,
    labels: Labels<'_>,
    expect: Option<usize>,
) -> PyResult<Dataset> {
    let features = features_major(x, expect)?;
    let samples = features.ncols();
    if samples == 0 {
        return Err(PyValueError::new_err("X has no samples"));
    }
    match labels {
        Labels::Names(names) => Dataset::labelled(features, &names, ORIGIN).map_err(to_py),
        Labels::Values(values) => {
            let values = values
                .as_slice()
                .map_err(|_| PyValueError::new_err("y must be a contiguous float32 array"))?;
            if values.len() != samples {
                return Err(PyValueError::new_err(format!(
                    "y has {} values for {samples} samples: give one per sample",
                    values.len()
                )));
            }
            if let Some(k) = (!all_finite(values))
                .then(|| values.iter().position(|v| !v.is_finite()))
                .flatten()
            {
                return Err(PyValueError::new_err(format!(
                    "y[{k}] is {}: every target must be a finite number",
                    values[k]
                )));
            }
            Ok(Dataset {
                features: features.into(),
                targets: Targets::Values(values.to_vec()),
                classes: Vec::new(),
                origin: ORIGIN.into(),
            })
        }
    }
}
