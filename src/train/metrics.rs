//! Target encoding, predictions and evaluation (loss, accuracy, confusion matrix).

use super::loss::Loss;
use crate::cluster::{Comm, Partition};
use crate::data::{Dataset, Targets};
use crate::error::{Error, Result};
use crate::exec::Engine;
use std::ops::Range;

/// Checks that a network with `outputs` outputs can learn `data`'s targets.
pub fn check_targets(outputs: usize, data: &Dataset) -> Result<()> {
    match &data.targets {
        Targets::None => Err(Error::data(
            &data.origin,
            0,
            "the data has no label column: training and evaluation need labels",
        )),
        Targets::Classes(_) => {
            let k = data.classes.len();
            if outputs == k || (outputs == 1 && k <= 2) {
                Ok(())
            } else {
                Err(Error::config(format!(
                    "{} has {k} classes but the network has {outputs} outputs (use {} outputs, or 1 for two classes)",
                    data.origin.display(),
                    k
                )))
            }
        }
        Targets::Values(_) if outputs == 1 => Ok(()),
        Targets::Values(_) => Err(Error::config(format!(
            "regression targets are one value per sample, but the network has {outputs} outputs"
        ))),
    }
}

/// Writes the targets of samples `indices` as `[outputs, batch]`: the class id (0/1) for a
/// single-output binary classifier, one-hot rows otherwise, or the value for regression.
pub fn encode_targets(targets: &Targets, indices: &[usize], outputs: usize, out: &mut [f32]) {
    let batch = indices.len();
    match targets {
        Targets::Classes(ids) if outputs == 1 => {
            for (o, &i) in out.iter_mut().zip(indices) {
                *o = ids[i] as f32;
            }
        }
        Targets::Classes(ids) => {
            out.fill(0.0);
            for (col, &i) in indices.iter().enumerate() {
                out[ids[i] as usize * batch + col] = 1.0;
            }
        }
        Targets::Values(v) => {
            for (o, &i) in out.iter_mut().zip(indices) {
                *o = v[i];
            }
        }
        Targets::None => out.fill(0.0),
    }
}

/// The class predicted for sample `col` of an output block `[outputs, batch]`: threshold 0.5
/// for a single output, the largest output otherwise.
pub fn predicted_class(y: &[f32], batch: usize, col: usize) -> usize {
    let outputs = y.len() / batch;
    if outputs == 1 {
        usize::from(y[col] >= 0.5)
    } else {
        (0..outputs)
            .max_by(|&a, &b| y[a * batch + col].total_cmp(&y[b * batch + col]))
            .unwrap_or(0)
    }
}

/// How a model does on a data set.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// Samples evaluated.
    pub samples: usize,
    /// Mean loss per sample.
    pub loss: f64,
    /// Fraction classified correctly (classification only).
    pub accuracy: Option<f64>,
    /// `confusion[true][predicted]` counts (classification only).
    pub confusion: Option<Vec<Vec<u64>>>,
}

/// The samples data group `groups.rank()` of `groups.size()` handles: an even, contiguous
/// share of `0..n`.
fn my_rows<C: Comm>(groups: &C, n: usize) -> Range<usize> {
    Partition::share(n, groups.size(), groups.rank())
}

/// Runs samples `rows` of `data` through `engine` in order, `batch` at a time, and calls
/// `visit(sample_indices, outputs)` with each batch's output `[outputs, batch]`; an error is
/// a sample that cannot be read.
fn for_each_batch<C: Comm>(
    engine: &mut Engine<C>,
    data: &Dataset,
    rows: Range<usize>,
    batch: usize,
    mut visit: impl FnMut(&[usize], &[f32]),
) -> Result<()> {
    let inputs = engine.inputs();
    let batch = batch.clamp(1, rows.len().max(1));
    let mut x = vec![0.0; inputs * batch];
    let indices: Vec<usize> = rows.collect();
    for chunk in indices.chunks(batch) {
        let b = chunk.len();
        data.gather_features(chunk, &mut x[..inputs * b])?;
        visit(chunk, engine.forward(&x[..inputs * b], b));
    }
    Ok(())
}

/// Runs `data` through `engine` in batches of `batch` and scores it with `loss`. The samples
/// are shared out among the data-parallel `groups` (pass `&SelfComm` for one process) and
/// every rank gets the totals.
pub fn evaluate<C: Comm>(
    engine: &mut Engine<C>,
    groups: &C,
    data: &Dataset,
    loss: Loss,
    batch: usize,
) -> Result<Evaluation> {
    let outputs = engine.outputs();
    check_targets(outputs, data)?;
    let n_classes = data.classes.len();
    // [loss sum, confusion matrix row by row], summed over the groups.
    let mut totals = vec![0.0f64; 1 + n_classes * n_classes];
    let mut t = vec![0.0; outputs * batch.clamp(1, data.len().max(1))];
    let rows = my_rows(groups, data.len());
    for_each_batch(engine, data, rows, batch, |chunk, y| {
        let b = chunk.len();
        encode_targets(&data.targets, chunk, outputs, &mut t[..outputs * b]);
        totals[0] += loss.sum(y, &t[..outputs * b]);
        if let Targets::Classes(ids) = &data.targets {
            for (col, &i) in chunk.iter().enumerate() {
                totals[1 + ids[i] as usize * n_classes + predicted_class(y, b, col)] += 1.0;
            }
        }
    })?;
    groups.all_reduce_sum(&mut totals);
    let confusion: Vec<Vec<u64>> = totals[1..]
        .chunks(n_classes.max(1))
        .map(|row| row.iter().map(|&c| c as u64).collect())
        .collect();
    let n = data.len();
    let classification = matches!(data.targets, Targets::Classes(_));
    let correct: u64 = (0..n_classes).map(|c| confusion[c][c]).sum();
    Ok(Evaluation {
        samples: n,
        loss: totals[0] / n.max(1) as f64,
        accuracy: classification.then(|| correct as f64 / n.max(1) as f64),
        confusion: classification.then_some(confusion),
    })
}

/// Outputs for every sample of `data`, sample-major `[samples, outputs]`, on rank 0 of the
/// data-parallel `groups` (`None` elsewhere); the samples are shared out among the groups.
/// An error is a sample that cannot be read.
pub fn predict_all<C: Comm>(
    engine: &mut Engine<C>,
    groups: &C,
    data: &Dataset,
    batch: usize,
) -> Result<Option<Vec<f32>>> {
    let outputs = engine.outputs();
    let rows = my_rows(groups, data.len());
    let first = rows.start;
    let mut mine = vec![0.0; rows.len() * outputs];
    for_each_batch(engine, data, rows, batch, |chunk, y| {
        let b = chunk.len();
        for (col, &i) in chunk.iter().enumerate() {
            for o in 0..outputs {
                mine[(i - first) * outputs + o] = y[o * b + col];
            }
        }
    })?;
    let at_root = groups.rank() == 0;
    let mut all = vec![0.0; if at_root { data.len() * outputs } else { 0 }];
    let counts = Partition::even(data.len(), groups.size()).counts_times(outputs);
    groups.gather_varcount(0, &mine, &mut all, &counts);
    Ok(at_root.then_some(all))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hot_and_binary_encoding() {
        let t = Targets::Classes(vec![2, 0, 1]);
        let mut out = [9.0; 6];
        encode_targets(&t, &[0, 2], 3, &mut out);
        assert_eq!(out, [0.0, 0.0, 0.0, 1.0, 1.0, 0.0]);
        let mut bin = [9.0; 2];
        encode_targets(&Targets::Classes(vec![1, 0]), &[1, 0], 1, &mut bin);
        assert_eq!(bin, [0.0, 1.0]);
        // [3 outputs, 2 samples]: sample 0 is (0.2, 0.1, 0.7), sample 1 is (0.7, 0.2, 0.1).
        assert_eq!(predicted_class(&[0.2, 0.7, 0.1, 0.2, 0.7, 0.1], 2, 0), 2);
        assert_eq!(predicted_class(&[0.2, 0.7, 0.1, 0.2, 0.7, 0.1], 2, 1), 0);
        assert_eq!(predicted_class(&[0.49, 0.5], 2, 1), 1);
    }
}
