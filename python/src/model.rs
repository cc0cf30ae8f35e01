//! `nnmpi.Model`: a trained network with its normaliser and class names, loaded, saved and
//! run on NumPy arrays. Its calls are made here, in Rust, so that a one-sample prediction
//! costs about a microsecond.

use crate::arrays::{self, Labels, dataset};
use crate::parallel;
use crate::to_py;
use crate::training::{Evaluating, Pruning, evaluation_dict, for_model};
use nnmpi::cluster::SelfComm;
use nnmpi::exec::Engine;
use nnmpi::kernels::Par;
use nnmpi::model::{Model as Inner, Task};
use nnmpi::recipe::{PruneSettings, TrainSettings};
use nnmpi::train::predicted_class;
use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

/// Inputs of at most this many values are run without releasing the GIL (releasing and taking
/// it back costs more than their forward pass).
const KEEP_GIL_UP_TO: usize = 4096;

/// A trained nnmpi network with its normaliser and class names.
///
/// Load one with `Model.load` (an nnmpi checkpoint) or `Model.import_safetensors`, or train
/// one with `nnmpi.train`. Inputs are `[samples, features]` arrays of float32 or float64 (any
/// order; a C-ordered float32 array is read in place), in the units the model was trained on:
/// the model's own normaliser is applied.
#[pyclass(module = "nnmpi", name = "Model", frozen)]
pub struct Model {
    pub(crate) inner: Inner,
    /// The inference engine of the last call and its thread setting, kept for the next one
    /// (building it took about half of a one-sample call).
    engine: Mutex<Option<(Par, Engine<SelfComm>)>>,
    /// The class names as Python strings, made on first use.
    names: OnceLock<Vec<Py<PyAny>>>,
    /// Per-epoch figures of the training that made this model.
    history: Vec<Py<PyDict>>,
}

impl From<Inner> for Model {
    fn from(inner: Inner) -> Model {
        Model::trained(inner, Vec::new())
    }
}

impl Model {
    /// A model with the per-epoch figures of its training.
    pub fn trained(inner: Inner, history: Vec<Py<PyDict>>) -> Model {
        Model {
            inner,
            engine: Mutex::new(None),
            names: OnceLock::new(),
            history,
        }
    }

    fn task_name(&self) -> &'static str {
        match self.inner.task {
            Task::Classification { .. } => "classify",
            Task::Regression => "regress",
        }
    }

    /// `y` as the extension reads labels (through the package's `_labels`).
    fn labels<'py>(&self, y: &Bound<'py, PyAny>, samples: usize) -> PyResult<Labels<'py>> {
        let py = y.py();
        let convert = py.import("nnmpi")?.getattr("_labels")?;
        convert.call1((y, self.task_name(), samples))?.extract()
    }

    fn names(&self, py: Python<'_>) -> &[Py<PyAny>] {
        self.names.get_or_init(|| match self.inner.task.classes() {
            Some(c) => c
                .iter()
                .map(|n| PyString::new(py, n).into_any().unbind())
                .collect(),
            None => Vec::new(),
        })
    }

    /// The network's outputs for `x`, sample-major `[samples, outputs]`.
    fn run(
        &self,
        x: &Bound<'_, PyAny>,
        threads: Option<usize>,
        batch_size: usize,
    ) -> PyResult<Vec<f32>> {
        let py = x.py();
        let x = arrays::rows(x)?;
        let model = &self.inner;
        // Checked in place; sample-major, as the caller holds it (no transposed copy).
        let given = arrays::checked(&x, Some(model.network.inputs()))?;
        let batch = batch_size.max(1);
        if parallel::on_several_ranks()? {
            let job = Predicting {
                model,
                given,
                batch,
            };
            return parallel::run(py, threads, job);
        }
        let small = given.len() <= KEEP_GIL_UP_TO;
        let work = || -> nnmpi::Result<Vec<f32>> {
            let par = threads.map_or_else(Par::current_pool, Par::threads);
            let fresh = || Engine::sharded(&model.network, SelfComm, par).for_inference();
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
            outputs_of(engine, model, given, batch)
        };
        // Releasing the GIL costs more than a small call's work: small calls keep it. Without
        // it the engine reads the caller's array in place, as NumPy's own functions do when
        // they release the GIL: the caller holds the array alive, and nnmpi never writes it.
        let y = if small {
            work()
        } else {
            py.detach(|| parallel::on_a_worker(work))
        }
        .map_err(to_py)?;
        Ok(y)
    }
}

/// The outputs of `model` (run by `engine`) for sample-major `rows`, `batch` samples per
/// pass, sample-major (`[samples, outputs]`); the rows are normalised in a copy when the
/// model has a normaliser.
fn outputs_of<C: nnmpi::cluster::Comm>(
    engine: &mut Engine<C>,
    model: &Inner,
    rows: &[f32],
    batch: usize,
) -> nnmpi::Result<Vec<f32>> {
    let mut normalised = None;
    if !model.normalizer.is_identity() {
        let copy = normalised.insert(rows.to_vec());
        model
            .normalizer
            .apply_samples(copy)
            .map_err(|e| nnmpi::Error::data(arrays::ORIGIN, 0, e.to_string()))?;
    }
    let rows = normalised.as_deref().unwrap_or(rows);
    let (inputs, outputs) = (engine.inputs(), engine.outputs());
    let mut y = vec![0.0; rows.len() / inputs.max(1) * outputs];
    for (x, y) in (rows.chunks(inputs.max(1) * batch)).zip(y.chunks_mut(outputs.max(1) * batch)) {
        let b = x.len() / inputs.max(1);
        let by_output = engine.forward_samples(x, b);
        for (o, values) in by_output.chunks_exact(b).enumerate() {
            for (s, &v) in values.iter().enumerate() {
                y[s * outputs + o] = v;
            }
        }
    }
    Ok(y)
}

/// A model's outputs on every rank of the MPI job, each computing its neurons of every layer.
struct Predicting<'a> {
    model: &'a Inner,
    /// Sample-major, not yet normalised.
    given: &'a [f32],
    batch: usize,
}

impl parallel::Job for Predicting<'_> {
    type Out = Vec<f32>;

    fn run<C: nnmpi::cluster::Comm>(
        self,
        topology: &nnmpi::cluster::Topology<C>,
        par: Par,
    ) -> nnmpi::Result<Vec<f32>> {
        let network = &self.model.network;
        let mut engine = Engine::sharded(network, topology.model.clone(), par).for_inference();
        outputs_of(&mut engine, self.model, self.given, self.batch)
    }
}

/// A new `[rows, columns]` float32 array of `values` (row-major).
fn array2<'py>(py: Python<'py>, columns: usize, values: &[f32]) -> Bound<'py, PyArray2<f32>> {
    let rows = values.len() / columns.max(1);
    // SAFETY: every element of the new array is written before it is returned.
    unsafe {
        let out = PyArray2::<f32>::new(py, [rows, columns], false);
        out.as_slice_mut()
            .expect("a new array is contiguous")
            .copy_from_slice(values);
        out
    }
}

#[pymethods]
impl Model {
    /// Reads an nnmpi checkpoint (written by `nnmpi train`, `prune` or `Model.save`). Raises
    /// `OSError` for a missing or corrupt file.
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Model> {
        let checkpoint = py.detach(|| nnmpi::io::load(&path)).map_err(to_py)?;
        Ok(checkpoint.model.into())
    }

    /// Writes the model as an nnmpi checkpoint (atomically: temporary file, fsync, rename).
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

    /// Writes the model as safetensors (weights `layers.{i}.weight` are `[out, in]`), for
    /// PyTorch, NumPy and other frameworks.
    fn export_safetensors(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| nnmpi::io::safetensors::export(&self.inner, &path))
            .map_err(to_py)
    }

    /// Layer sizes, inputs first, e.g. `[60, 30, 1]`.
    #[getter]
    fn sizes(&self) -> Vec<usize> {
        self.inner.network.sizes()
    }

    /// Features per sample the model takes.
    #[getter]
    fn n_features_in_(&self) -> usize {
        self.inner.network.inputs()
    }

    /// Class names of a classifier as a NumPy array (`None` for a regression model).
    #[getter]
    fn classes_<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyArray1<Py<PyAny>>>> {
        self.inner.task.classes()?;
        let names = self.names(py).iter().map(|n| n.clone_ref(py)).collect();
        Some(PyArray1::from_vec(py, names))
    }

    /// Each layer's activation, as the command line names it (e.g. `relu`, `leaky-relu:0.1`).
    #[getter]
    fn activations(&self) -> Vec<String> {
        let layers = self.inner.network.layers();
        layers.iter().map(|l| l.activation().to_string()).collect()
    }

    /// Stored weights and biases (a pruned model stores only its connections).
    #[getter]
    fn parameter_count(&self) -> usize {
        self.inner.network.parameter_count()
    }

    /// Per-epoch figures (dicts) of the training that made this model; empty for a loaded one.
    #[getter]
    fn history<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.history.iter().map(|h| h.clone_ref(py)))
    }

    /// The network's raw outputs, `[samples, outputs]` float32 (probabilities for a
    /// classifier). `threads`: cores to use (default: all, or `RAYON_NUM_THREADS`).
    #[pyo3(signature = (X, threads=None, batch_size=1024))]
    #[allow(non_snake_case)]
    fn outputs<'py>(
        &self,
        X: &Bound<'py, PyAny>,
        threads: Option<usize>,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let y = self.run(X, threads, batch_size)?;
        Ok(array2(X.py(), self.inner.network.outputs(), &y))
    }

    /// Class probabilities, `[samples, classes]` float32, columns in `classes_` order (a
    /// one-output binary model gives `[1 - p, p]`). Classifiers only.
    #[pyo3(signature = (X, threads=None, batch_size=1024))]
    #[allow(non_snake_case)]
    fn predict_proba<'py>(
        &self,
        X: &Bound<'py, PyAny>,
        threads: Option<usize>,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        if self.inner.task.classes().is_none() {
            return Err(PyValueError::new_err(
                "predict_proba needs a classifier; this model is a regression model",
            ));
        }
        let y = self.run(X, threads, batch_size)?;
        let outputs = self.inner.network.outputs();
        if outputs != 1 {
            return Ok(array2(X.py(), outputs, &y));
        }
        let both: Vec<f32> = y.iter().flat_map(|&p| [1.0 - p, p]).collect();
        Ok(array2(X.py(), 2, &both))
    }

    /// Predicted class names (classifier) or values (regression: `[samples]` for one output,
    /// else `[samples, outputs]`), as `nnmpi predict` gives them.
    #[pyo3(signature = (X, threads=None, batch_size=1024))]
    #[allow(non_snake_case)]
    fn predict<'py>(
        &self,
        X: &Bound<'py, PyAny>,
        threads: Option<usize>,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = X.py();
        let y = self.run(X, threads, batch_size)?;
        let outputs = self.inner.network.outputs();
        if self.inner.task.classes().is_none() {
            if outputs == 1 {
                return Ok(PyArray1::from_slice(py, &y).into_any());
            }
            return Ok(array2(py, outputs, &y).into_any());
        }
        let names = self.names(py);
        let labels: Vec<Py<PyAny>> = (y.chunks_exact(outputs.max(1)))
            .map(|row| names[predicted_class(row, 1, 0)].clone_ref(py))
            .collect();
        Ok(PyArray1::from_vec(py, labels).into_any())
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
        Ok(PyArray1::from_vec(py, ids))
    }

    /// Loss and (for a classifier) accuracy on `X` and `y`, as `nnmpi eval` gives them: a
    /// dict with `loss`, `accuracy` and `samples`.
    #[pyo3(signature = (X, y, threads=None))]
    #[allow(non_snake_case)]
    fn evaluate<'py>(
        &self,
        X: &Bound<'py, PyAny>,
        y: &Bound<'py, PyAny>,
        threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let py = X.py();
        let model = &self.inner;
        let x = arrays::rows(X)?;
        let labels = self.labels(y, x.shape()[0])?;
        let data = for_model(dataset(&x, labels, Some(model.network.inputs()))?, model)?;
        let eval = parallel::run(py, threads, Evaluating { model, data })?;
        evaluation_dict(py, &eval)
    }

    /// A pruned copy: `sparsity` of the connections removed (smallest magnitudes first;
    /// `scope` "global" or "layer"; blocks of `block` rows), reached in `steps` steps of the
    /// polynomial schedule with `finetune_epochs` epochs of fine-tuning on `X`, `y` after each
    /// (Adam, fresh state, as `nnmpi prune` does for a model without training state). Layers
    /// sparse enough are stored in the compact sparse layout and run faster.
    #[pyo3(signature = (sparsity, X=None, y=None, *, steps=1, finetune_epochs=0, scope="global", block=1, threads=None))]
    #[allow(clippy::too_many_arguments, non_snake_case)]
    fn prune(
        &self,
        py: Python<'_>,
        sparsity: f64,
        X: Option<&Bound<'_, PyAny>>,
        y: Option<&Bound<'_, PyAny>>,
        steps: usize,
        finetune_epochs: usize,
        scope: &str,
        block: usize,
        threads: Option<usize>,
    ) -> PyResult<Model> {
        let model = self.inner.clone();
        let settings = TrainSettings {
            prune: PruneSettings {
                to: Some(sparsity),
                steps,
                finetune_epochs,
                scope: scope
                    .parse()
                    .map_err(|e| PyValueError::new_err(format!("scope: {e}")))?,
                block,
            },
            ..TrainSettings::default()
        };
        settings.check().map_err(to_py)?;
        let plan = settings.prune_plan().expect("prune_to is set");
        let data = match (X, y) {
            (Some(x), Some(y)) => {
                let x = arrays::rows(x)?;
                let labels = self.labels(y, x.shape()[0])?;
                let inputs = Some(model.network.inputs());
                Some(for_model(dataset(&x, labels, inputs)?, &model)?)
            }
            (None, None) if finetune_epochs == 0 => None,
            (None, None) => {
                return Err(PyValueError::new_err(
                    "prune: fine-tuning needs X and y (or finetune_epochs=0 without data)",
                ));
            }
            _ => {
                return Err(PyValueError::new_err(
                    "prune: give both X and y, or neither",
                ));
            }
        };
        let pruned = parallel::run(py, threads, Pruning { model, plan, data })?;
        Ok(pruned.into())
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
