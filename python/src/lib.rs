//! The `nnmpi._nnmpi` extension module: nnmpi models from Python, NumPy arrays in and out.
//! The Python package (`nnmpi/__init__.py`) wraps it with array conversions and class names;
//! everything numerical happens here, in the same library calls the command line makes, with
//! the GIL released.

mod arrays;
mod parallel;
mod training;

use nnmpi::cluster::SelfComm;
use nnmpi::data::{Dataset, Targets};
use nnmpi::exec::Engine;
use nnmpi::kernels::Par;
use nnmpi::model::{Model as Inner, Task};
use nnmpi::train::{predict_all, predicted_class};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use std::path::PathBuf;
use std::sync::Mutex;

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

/// Inputs of at most this many values are run without releasing the GIL (releasing and taking
/// it back costs more than their forward pass).
const KEEP_GIL_UP_TO: usize = 4096;

/// A trained network with what it needs to read raw features (normaliser, class names).
#[pyclass(module = "nnmpi._nnmpi", name = "Model", frozen)]
pub(crate) struct Model {
    pub(crate) inner: Inner,
    /// The inference engine of the last call and its thread setting, kept for the next one
    /// (building it took about half of a one-sample call).
    engine: Mutex<Option<(Par, Engine<SelfComm>)>>,
}

impl From<Inner> for Model {
    fn from(inner: Inner) -> Model {
        Model {
            inner,
            engine: Mutex::new(None),
        }
    }
}

#[pymethods]
impl Model {
    /// Reads an nnmpi checkpoint (written by `nnmpi train`, `prune` or `Model.save`).
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Model> {
        let checkpoint = py.detach(|| nnmpi::io::load(&path)).map_err(to_py)?;
        Ok(checkpoint.model.into())
    }

    /// Writes the model as an nnmpi checkpoint (temporary file, fsync, rename).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let checkpoint = nnmpi::io::Checkpoint {
            model: self.inner.clone(),
            training: None,
        };
        py.detach(|| nnmpi::io::save(&path, &checkpoint))
            .map_err(to_py)
    }

    /// Reads a safetensors model (as `nnmpi export` or `Model.export_safetensors` write it).
    #[staticmethod]
    fn import_safetensors(py: Python<'_>, path: PathBuf) -> PyResult<Model> {
        let imported = py
            .detach(|| nnmpi::io::safetensors::import(&path))
            .map_err(to_py)?;
        Ok(imported.model.into())
    }

    /// Writes the model as safetensors, for PyTorch, NumPy and other frameworks.
    fn export_safetensors(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| nnmpi::io::safetensors::export(&self.inner, &path))
            .map_err(to_py)
    }

    /// Layer sizes, inputs first.
    #[getter]
    fn sizes(&self) -> Vec<usize> {
        self.inner.network.sizes()
    }

    /// The class names of a classifier (`None` for a regression model).
    #[getter]
    fn classes(&self) -> Option<Vec<String>> {
        match &self.inner.task {
            Task::Classification { classes } => Some(classes.clone()),
            Task::Regression => None,
        }
    }

    /// Each layer's activation, as the command line names it (e.g. `relu`, `leaky-relu:0.1`).
    #[getter]
    fn activations(&self) -> Vec<String> {
        let layers = self.inner.network.layers();
        layers.iter().map(|l| l.activation().to_string()).collect()
    }

    /// Stored weights and biases.
    #[getter]
    fn parameter_count(&self) -> usize {
        self.inner.network.parameter_count()
    }

    /// The network's outputs for `x` (`[samples, features]`, float32, C-ordered), normalised
    /// as the model was trained: `[samples, outputs]` float32 (probabilities for a classifier).
    #[pyo3(signature = (x, threads=None, batch_size=1024))]
    fn outputs<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        threads: Option<usize>,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let (samples, outputs) = (x.shape()[0], self.inner.network.outputs());
        let mut features = arrays::features_major(&x, Some(self.inner.network.inputs()))?;
        let model = &self.inner;
        if parallel::on_several_ranks()? {
            let job = Predicting {
                model,
                features,
                batch: batch_size.max(1),
            };
            let y = parallel::run(py, threads, job)?;
            let y = Array2::from_shape_vec((samples, outputs), y).expect("[samples, outputs]");
            return Ok(y.into_pyarray(py));
        }
        let work = || -> nnmpi::Result<Vec<f32>> {
            let par = threads.map_or_else(Par::current_pool, Par::threads);
            let fresh = || Engine::sharded(&model.network, SelfComm, par).for_inference();
            let batch = batch_size.max(1);
            // The kept engine, unless another thread is using it (then one of our own).
            let mut kept = self.engine.try_lock().ok();
            let mut own = None;
            let engine = match kept.as_deref_mut() {
                Some(slot) => {
                    if slot.as_ref().is_none_or(|(p, _)| *p != par) {
                        *slot = Some((par, fresh()));
                    }
                    &mut slot.as_mut().expect("just set").1
                }
                None => own.insert(fresh()),
            };
            if samples <= batch {
                // One batch: the forward pass `predict_all` would make, without its copies.
                model
                    .normalizer
                    .apply(&mut features)
                    .map_err(|e| nnmpi::Error::data(arrays::ORIGIN, 0, e.to_string()))?;
                let x = features.as_slice().expect("standard layout");
                let y = engine.forward(x, samples);
                let mut rows = vec![0.0; samples * outputs];
                for (o, by_sample) in y.chunks_exact(samples.max(1)).enumerate() {
                    for (s, &v) in by_sample.iter().enumerate() {
                        rows[s * outputs + o] = v;
                    }
                }
                return Ok(rows);
            }
            let mut data = Dataset {
                features,
                targets: Targets::None,
                classes: Vec::new(),
                origin: PathBuf::from(arrays::ORIGIN),
            };
            data.normalize(&model.normalizer)?;
            let y = predict_all(engine, &SelfComm, &data, batch);
            Ok(y.expect("one process is rank 0"))
        };
        // Releasing the GIL costs more than a small call's work: small calls keep it.
        let y = if samples * x.shape()[1] <= KEEP_GIL_UP_TO {
            work()
        } else {
            py.detach(work)
        }
        .map_err(to_py)?;
        let y = Array2::from_shape_vec((samples, outputs), y).expect("[samples, outputs]");
        Ok(y.into_pyarray(py))
    }

    /// Index of the predicted class of each row of `outputs` (as `Model.outputs` gives them),
    /// chosen as `nnmpi predict` chooses it (one output: 1 when it is at least 0.5).
    #[staticmethod]
    fn class_indices<'py>(
        py: Python<'py>,
        outputs: PyReadonlyArray2<'py, f32>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let y = outputs
            .as_slice()
            .map_err(|_| PyValueError::new_err("outputs must be a C-ordered float32 array"))?;
        let width = outputs.shape()[1].max(1);
        let ids: Vec<i64> = y
            .chunks_exact(width)
            .map(|row| predicted_class(row, 1, 0) as i64)
            .collect();
        Ok(ids.into_pyarray(py))
    }

    fn __repr__(&self) -> String {
        let sizes: Vec<String> = self.sizes().iter().map(usize::to_string).collect();
        let task = match &self.inner.task {
            Task::Classification { classes } => format!("classifier of {} classes", classes.len()),
            Task::Regression => "regression".into(),
        };
        format!(
            "nnmpi.Model({}, {task}, {} parameters)",
            sizes.join("-"),
            self.parameter_count()
        )
    }
}

/// Outputs of a model for a data set's features (normalised here), on every rank.
struct Predicting<'a> {
    model: &'a Inner,
    features: Array2<f32>,
    batch: usize,
}

impl parallel::Job for Predicting<'_> {
    type Out = Vec<f32>;

    fn run<C: nnmpi::cluster::Comm>(
        self,
        topology: &nnmpi::cluster::Topology<C>,
        par: Par,
    ) -> nnmpi::Result<Vec<f32>> {
        let mut data = Dataset {
            features: self.features,
            targets: Targets::None,
            classes: Vec::new(),
            origin: PathBuf::from(arrays::ORIGIN),
        };
        data.normalize(&self.model.normalizer)?;
        let network = &self.model.network;
        let mut engine = Engine::sharded(network, topology.model.clone(), par).for_inference();
        // Each rank is a data group of its own: every rank gets every output.
        let y = predict_all(&mut engine, &topology.data, &data, self.batch);
        Ok(y.expect("every rank is rank 0 of its data group"))
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
