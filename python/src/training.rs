//! Training, pruning and evaluation from NumPy arrays, through the library's recipe (the
//! settings, defaults and steps `nnmpi train` uses, so the same data and settings give the
//! same model bit for bit).

use crate::arrays::{self, Labels, dataset};
use crate::parallel::{self, Job, share_model};
use crate::{Model, to_py};
use nnmpi::cluster::{Comm, Topology};
use nnmpi::data::{Dataset, NormKind};
use nnmpi::exec::Engine;
use nnmpi::kernels::Par;
use nnmpi::model::{Activation, Init};
use nnmpi::prune::Scope;
use nnmpi::recipe::{self, OptimizerKind, Run, TrainSettings};
use nnmpi::train::{EpochReport, Evaluation, Loss, Observer, PrunePlan, PruneStep, Trainer};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// How often a running training looks for a pending Ctrl-C (taking the GIL to ask).
const SIGNAL_CHECK_EVERY: Duration = Duration::from_millis(50);

/// The library's training defaults as a dict, in the names [`settings`] reads: the Python
/// package's arguments default to these (nothing re-typed).
#[pyfunction]
pub fn defaults(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = TrainSettings::default();
    let a = &d.architecture;
    let out = PyDict::new(py);
    out.set_item("hidden", a.hidden.clone())?;
    out.set_item("activation", a.activation.to_string())?;
    out.set_item(
        "output_activation",
        a.output_activation.map(|x| x.to_string()),
    )?;
    out.set_item("loss", a.loss.map(|x| x.to_string()))?;
    out.set_item("init", a.init.map(|x| x.to_string()))?;
    let optimizer = match d.optimizer {
        OptimizerKind::Adam => "adam",
        OptimizerKind::Sgd => "sgd",
    };
    out.set_item("optimizer", optimizer)?;
    out.set_item("lr", d.lr)?;
    out.set_item("momentum", d.momentum)?;
    out.set_item("weight_decay", d.weight_decay)?;
    out.set_item("batch_size", d.batch_size)?;
    out.set_item("epochs", d.epochs)?;
    out.set_item("seed", d.seed)?;
    out.set_item("val_split", d.val_split)?;
    out.set_item("patience", d.patience)?;
    out.set_item("shuffle", d.shuffle)?;
    out.set_item("normalize", d.normalize.to_string())?;
    out.set_item("prune_to", d.prune.to)?;
    out.set_item("prune_steps", d.prune.steps)?;
    out.set_item("finetune_epochs", d.prune.finetune_epochs)?;
    out.set_item("prune_scope", d.prune.scope.to_string())?;
    out.set_item("prune_block", d.prune.block)?;
    Ok(out)
}

/// A setting given as text (an activation, loss, ...), parsed as the command line parses it.
fn parse<T: FromStr>(name: &str, value: &str) -> PyResult<T>
where
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e| PyValueError::new_err(format!("{name}: {e}")))
}

/// An optional text setting, parsed.
fn parse_opt<T: FromStr>(name: &str, value: Option<String>) -> PyResult<Option<T>>
where
    T::Err: std::fmt::Display,
{
    value.map(|v| parse(name, &v)).transpose()
}

/// The training settings a dict gives (every key one of [`defaults`]'s; missing keys keep the
/// default). Values are checked by the library, which names the setting.
fn settings(given: &Bound<'_, PyDict>) -> PyResult<TrainSettings> {
    let mut s = TrainSettings::default();
    for (key, value) in given.iter() {
        let key: String = key.extract()?;
        let text = || -> PyResult<String> { value.extract() };
        let opt_text = || -> PyResult<Option<String>> { value.extract() };
        let a = &mut s.architecture;
        match key.as_str() {
            "hidden" => a.hidden = value.extract()?,
            "activation" => a.activation = parse::<Activation>(&key, &text()?)?,
            "output_activation" => a.output_activation = parse_opt(&key, opt_text()?)?,
            "loss" => a.loss = parse_opt::<Loss>(&key, opt_text()?)?,
            "init" => a.init = parse_opt::<Init>(&key, opt_text()?)?,
            "optimizer" => {
                s.optimizer = match text()?.to_ascii_lowercase().as_str() {
                    "adam" => OptimizerKind::Adam,
                    "sgd" => OptimizerKind::Sgd,
                    other => {
                        return Err(PyValueError::new_err(format!(
                            "optimizer: unknown optimiser '{other}': expected adam or sgd"
                        )));
                    }
                }
            }
            "lr" => s.lr = value.extract()?,
            "momentum" => s.momentum = value.extract()?,
            "weight_decay" => s.weight_decay = value.extract()?,
            "batch_size" => s.batch_size = value.extract()?,
            "epochs" => s.epochs = value.extract()?,
            "seed" => s.seed = value.extract()?,
            "val_split" => s.val_split = value.extract()?,
            "patience" => s.patience = value.extract()?,
            "shuffle" => s.shuffle = value.extract()?,
            "normalize" => s.normalize = parse::<NormKind>(&key, &text()?)?,
            "prune_to" => s.prune.to = value.extract()?,
            "prune_steps" => s.prune.steps = value.extract()?,
            "finetune_epochs" => s.prune.finetune_epochs = value.extract()?,
            "prune_scope" => s.prune.scope = parse::<Scope>(&key, &text()?)?,
            "prune_block" => s.prune.block = value.extract()?,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown setting '{other}'; the settings are those of nnmpi.defaults()"
                )));
            }
        }
    }
    s.check().map_err(to_py)?;
    Ok(s)
}

/// An evaluation as a dict: `loss`, `samples`, and `accuracy` for a classifier.
pub fn evaluation_dict<'py>(py: Python<'py>, e: &Evaluation) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("loss", e.loss)?;
    d.set_item("samples", e.samples)?;
    if let Some(a) = e.accuracy {
        d.set_item("accuracy", a)?;
    }
    Ok(d)
}

/// An epoch's figures as a dict (the columns of `nnmpi train --log`).
fn report_dict<'py>(py: Python<'py>, r: &EpochReport) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("epoch", r.epoch)?;
    d.set_item("train_loss", r.train_loss)?;
    d.set_item("train_accuracy", r.train_accuracy)?;
    let val = r.validation.as_ref();
    d.set_item("val_loss", val.map(|v| v.loss))?;
    d.set_item("val_accuracy", val.and_then(|v| v.accuracy))?;
    d.set_item("samples_per_sec", r.samples_per_sec)?;
    d.set_item("stopped_early", r.stopped_early)?;
    d.set_item("interrupted", r.interrupted)?;
    Ok(d)
}

/// Watches a training run from Python: hands every epoch's figures to the callback (which
/// may stop training by returning `False`), and stops at the next mini-batch on Ctrl-C.
/// Training runs without the GIL; this takes it only to call back and to look for signals.
struct PythonObserver {
    callback: Option<Py<PyAny>>,
    last_check: Instant,
    stop: bool,
    /// The exception that stopped training (Ctrl-C's `KeyboardInterrupt`, or the callback's).
    error: Option<PyErr>,
}

impl PythonObserver {
    fn new(callback: Option<Py<PyAny>>) -> Self {
        PythonObserver {
            callback,
            last_check: Instant::now(),
            stop: false,
            error: None,
        }
    }

    fn fail(&mut self, e: PyErr) {
        self.stop = true;
        self.error.get_or_insert(e);
    }
}

impl<C: Comm> Observer<C> for PythonObserver {
    fn batch_done(&mut self, _done: usize) {
        if self.last_check.elapsed() >= SIGNAL_CHECK_EVERY {
            self.last_check = Instant::now();
            if let Err(e) = Python::attach(|py| py.check_signals()) {
                self.fail(e);
            }
        }
    }

    fn epoch_done(&mut self, _t: &Trainer<C>, report: &EpochReport) -> nnmpi::Result<()> {
        if let Some(callback) = &self.callback {
            let answer = Python::attach(|py| -> PyResult<bool> {
                let metrics = report_dict(py, report)?;
                let result = callback.call1(py, (metrics,))?;
                // Only an explicit False stops (a callback returning nothing goes on).
                Ok(result.bind(py).is_instance_of::<pyo3::types::PyBool>()
                    && !result.extract::<bool>(py)?)
            });
            match answer {
                Ok(stop) => self.stop |= stop,
                Err(e) => self.fail(e),
            }
        }
        Ok(())
    }

    fn may_stop(&self) -> bool {
        true
    }

    fn stop_requested(&mut self) -> bool {
        self.stop
    }
}

/// What a training call gives back: the model (with each epoch's figures), and the exception
/// that stopped it early (Ctrl-C or the callback's), which the package raises after keeping the
/// model.
type Trained = (Model, Option<PyErr>);

fn history(py: Python<'_>, reports: &[EpochReport]) -> PyResult<Vec<Py<PyDict>>> {
    reports
        .iter()
        .map(|r| Ok(report_dict(py, r)?.unbind()))
        .collect()
}

/// Trains a network on `x` and `labels` with `settings` (see `defaults()`), as
/// `nnmpi train` would on the same samples, and prunes it when `prune_to` is set.
#[pyfunction]
#[pyo3(signature = (x, labels, settings, callback=None, threads=None))]
pub fn train(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    labels: Labels,
    settings: &Bound<'_, PyDict>,
    callback: Option<Py<PyAny>>,
    threads: Option<usize>,
) -> PyResult<Trained> {
    let settings = self::settings(settings)?;
    let data = dataset(&arrays::rows(x)?, labels, None)?;
    let mut observer = PythonObserver::new(callback);
    let job = Training {
        settings,
        data,
        observer: &mut observer,
    };
    let (model, reports) = parallel::run(py, threads, job)?;
    let history = history(py, &reports)?;
    Ok((Model::trained(model, history), observer.error))
}

/// Training on a data set, then the gradual pruning the settings ask for.
struct Training<'a> {
    settings: TrainSettings,
    data: Dataset,
    observer: &'a mut PythonObserver,
}

impl Job for Training<'_> {
    type Out = (nnmpi::model::Model, Vec<EpochReport>);

    fn run<C: Comm>(self, topology: &Topology<C>, par: Par) -> nnmpi::Result<Self::Out> {
        let mut run = self.settings.start(&self.data, par, topology)?;
        drop(self.data);
        let reports = run.fit(self.observer)?;
        if let (Some(plan), false) = (self.settings.prune_plan(), run.trainer.stopped()) {
            run.prune_gradually(&plan, &mut |_| {})?;
        }
        Ok((share_model(&topology.world, run.finish())?, reports))
    }
}

/// Gradual pruning of a model, fine-tuned on `data` when given.
pub struct Pruning {
    pub model: nnmpi::model::Model,
    pub plan: PrunePlan,
    pub data: Option<Dataset>,
}

impl Job for Pruning {
    type Out = nnmpi::model::Model;

    fn run<C: Comm>(self, topology: &Topology<C>, par: Par) -> nnmpi::Result<Self::Out> {
        let Pruning { model, plan, data } = self;
        let loss = recipe::implied_loss(model.network.output_activation(), &model.task);
        let config = recipe::fine_tuning(loss);
        let ignore = &mut |_: &PruneStep| {};
        let Some(data) = data else {
            // No fine-tuning: the steps only prune (no sample is read).
            let mut trainer = Trainer::distributed(&model.network, config, par, topology)?;
            let empty = Dataset {
                features: numpy::ndarray::Array2::zeros((model.network.inputs(), 0)).into(),
                targets: nnmpi::data::Targets::None,
                classes: Vec::new(),
                origin: "no data".into(),
            };
            trainer.prune_gradually(&plan, &empty, None, ignore)?;
            let network = share_model(
                &topology.world,
                trainer.finish().map(|network| nnmpi::model::Model {
                    network,
                    normalizer: model.normalizer.clone(),
                    task: model.task.clone(),
                }),
            )?;
            return Ok(network);
        };
        let normalizer = model.normalizer.clone();
        let mut run = Run::new(
            model.network,
            model.task,
            config,
            (&data, 0.0),
            |_| Ok(normalizer),
            par,
            topology,
        )?;
        run.prune_gradually(&plan, ignore)?;
        share_model(&topology.world, run.finish())
    }
}

/// A model's loss and accuracy on a data set (normalised here).
pub struct Evaluating<'a> {
    pub model: &'a nnmpi::model::Model,
    pub data: Dataset,
}

impl Job for Evaluating<'_> {
    type Out = Evaluation;

    fn run<C: Comm>(self, topology: &Topology<C>, par: Par) -> nnmpi::Result<Self::Out> {
        let Evaluating { model, mut data } = self;
        data.normalize(&model.normalizer)?;
        let mut engine =
            Engine::sharded(&model.network, topology.model.clone(), par).for_inference();
        let loss = recipe::implied_loss(model.network.output_activation(), &model.task);
        nnmpi::train::evaluate(&mut engine, &topology.data, &data, loss, 1024)
    }
}

/// `data` with a model's classes (a classifier's labels must be among them).
pub fn for_model(data: Dataset, model: &nnmpi::model::Model) -> PyResult<Dataset> {
    match model.task.classes() {
        Some(classes) => data.with_classes(classes).map_err(to_py),
        None => Ok(data),
    }
}

/// The folds `nnmpi train --kfold k` makes of `n` samples (stratified by `labels` when
/// given): a list of `(train, test)` index lists, each sample tested once.
#[pyfunction]
#[pyo3(signature = (n, k, seed, labels=None))]
pub fn kfold(
    n: usize,
    k: usize,
    seed: u64,
    labels: Option<Vec<String>>,
) -> PyResult<Vec<(Vec<usize>, Vec<usize>)>> {
    if k < 2 || k > n {
        return Err(PyValueError::new_err(format!(
            "n_splits is {k}: cross-validation needs 2 <= n_splits <= {n} (the number of samples)"
        )));
    }
    let targets = match labels {
        Some(names) if names.len() != n => {
            return Err(PyValueError::new_err(format!(
                "{} labels for {n} samples",
                names.len()
            )));
        }
        Some(names) => {
            let features = numpy::ndarray::Array2::zeros((0, n));
            Dataset::labelled(features, &names, crate::arrays::ORIGIN)
                .map_err(to_py)?
                .targets
        }
        None => nnmpi::data::Targets::None,
    };
    Ok(nnmpi::data::kfold(&targets, n, k, seed))
}
