//! Per-feature normalisation whose statistics travel with the model.

use super::Dataset;
use crate::cluster::{Comm, Partition, SelfComm};
use crate::error::Result as DataResult;
use ndarray::{Array2, ArrayView1, ArrayView2, s};
use std::fmt;
use std::str::FromStr;

/// Which statistics a [`Normalizer`] is fitted with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormKind {
    /// Features are used as they are.
    None,
    /// `(x - min) / (max - min)`: training values land in [0, 1].
    MinMax,
    /// `(x - mean) / std`.
    ZScore,
}

impl fmt::Display for NormKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NormKind::None => "none",
            NormKind::MinMax => "minmax",
            NormKind::ZScore => "zscore",
        })
    }
}

impl FromStr for NormKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "off" => Ok(NormKind::None),
            "minmax" | "min-max" => Ok(NormKind::MinMax),
            "zscore" | "z-score" | "standard" => Ok(NormKind::ZScore),
            _ => Err(format!(
                "unknown normalisation '{s}': expected none, minmax or zscore"
            )),
        }
    }
}

/// `x' = (x - offset[f]) * scale[f]` for every feature `f`. A feature that is constant in
/// the fitting data gets scale 0, so it cannot inject noise the network never learned from.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalizer {
    kind: NormKind,
    offset: Vec<f32>,
    scale: Vec<f32>,
}

impl Normalizer {
    /// The identity.
    pub fn identity() -> Self {
        Normalizer {
            kind: NormKind::None,
            offset: Vec::new(),
            scale: Vec::new(),
        }
    }

    /// Rebuilds a normaliser from stored statistics (both of the same length).
    pub fn from_parts(kind: NormKind, offset: Vec<f32>, scale: Vec<f32>) -> Option<Self> {
        let consistent =
            offset.len() == scale.len() && (kind != NormKind::None || offset.is_empty());
        consistent.then_some(Normalizer {
            kind,
            offset,
            scale,
        })
    }

    /// Fits `kind` on features-major data `x` (`[features, samples]`), to the bits
    /// [`Normalizer::fit_dataset`] gives on any number of ranks.
    pub fn fit(kind: NormKind, x: ArrayView2<'_, f32>) -> Self {
        let blocks = x.ncols().div_ceil(STATS_BLOCK);
        let block = |b: usize, visit: &mut dyn FnMut(ArrayView2<'_, f32>)| {
            let lo = b * STATS_BLOCK;
            visit(x.slice(s![.., lo..(lo + STATS_BLOCK).min(x.ncols())]));
            Ok(())
        };
        fit_blocks(kind, x.nrows(), x.ncols(), blocks, &SelfComm, block)
            .expect("reading features in memory cannot fail")
    }

    /// Fits `kind` on the samples of `data`, shared out among the data-parallel `groups`:
    /// each rank reads the blocks of [`STATS_BLOCK`] samples it is dealt (a mapped file is
    /// read only there) and the blocks' sums are combined in block order, so every rank gets
    /// the normaliser one process fits. An error is a sample that cannot be read.
    pub fn fit_dataset<C: Comm>(kind: NormKind, data: &Dataset, groups: &C) -> DataResult<Self> {
        if let Some(x) = data.features.resident() {
            return Ok(Self::fit(kind, x.view()));
        }
        let (features, n) = (data.n_features(), data.len());
        let mut buf = Vec::new();
        let block = |b: usize, visit: &mut dyn FnMut(ArrayView2<'_, f32>)| {
            let rows: Vec<usize> = (b * STATS_BLOCK..((b + 1) * STATS_BLOCK).min(n)).collect();
            buf.resize(features * rows.len(), 0.0);
            data.gather_features(&rows, &mut buf)?;
            visit(ArrayView2::from_shape((features, rows.len()), &buf).expect("sized above"));
            Ok(())
        };
        fit_blocks(kind, features, n, n.div_ceil(STATS_BLOCK), groups, block)
    }

    /// The statistics' kind.
    pub fn kind(&self) -> NormKind {
        self.kind
    }

    /// Per-feature offsets (empty for the identity).
    pub fn offset(&self) -> &[f32] {
        &self.offset
    }

    /// Per-feature scales (empty for the identity).
    pub fn scale(&self) -> &[f32] {
        &self.scale
    }

    /// Whether this leaves features unchanged.
    pub fn is_identity(&self) -> bool {
        self.kind == NormKind::None
    }

    /// Number of features it was fitted on (0 for the identity).
    pub fn features(&self) -> usize {
        self.offset.len()
    }

    /// Normalises features-major data in place. A value so far outside the fitted range that
    /// its normalised value is not an f32 (a feature nearly constant in training, then 1e30
    /// in new data) is an error naming it: the network would only turn it into NaN.
    pub fn apply(&self, x: &mut Array2<f32>) -> std::result::Result<(), Overflow> {
        if self.is_identity() {
            return Ok(());
        }
        if x.as_slice().is_none() {
            *x = x.as_standard_layout().into_owned();
        }
        let samples = x.ncols().max(1);
        let values = x.as_slice_mut().expect("standard layout");
        if samples == 1 {
            // One sample: its features are contiguous, as in sample-major data (by feature,
            // it is 60 rows of one value each, whose loop overhead cost as much as the work).
            return self.apply_samples(values);
        }
        for (f, row) in values.chunks_exact_mut(samples).enumerate() {
            let (o, s) = (self.offset[f], self.scale[f]);
            for v in row.iter_mut() {
                normalise_in_place(v, f, o, s)?;
            }
        }
        Ok(())
    }

    /// Normalises sample-major data (`[samples, features]`, one sample after the other) in
    /// place, to the bits [`Normalizer::apply`] gives; a value whose normalised value is not
    /// an f32 is the same error.
    ///
    /// # Panics
    /// If the length is not a multiple of the fitted feature count.
    pub fn apply_samples(&self, x: &mut [f32]) -> std::result::Result<(), Overflow> {
        if self.is_identity() {
            return Ok(());
        }
        let (offset, scale) = (&self.offset, &self.scale);
        let features = offset.len();
        assert!(
            x.len().is_multiple_of(features.max(1)),
            "Normalizer::apply_samples: not whole samples"
        );
        for sample in x.chunks_exact_mut(features.max(1)) {
            let pairs = || offset.iter().zip(scale);
            let in_f32 = |(v, (o, s)): (&f32, (&f32, &f32))| {
                let d = v - o;
                d.is_finite() && (d * s).is_finite()
            };
            if sample.iter().zip(pairs()).all(in_f32) {
                // Checked first (read-only): one pass the compiler vectorises.
                for (v, (o, s)) in sample.iter_mut().zip(pairs()) {
                    *v = (*v - o) * s;
                }
                continue;
            }
            for (f, (v, (&o, &s))) in sample.iter_mut().zip(pairs()).enumerate() {
                normalise_in_place(v, f, o, s)?;
            }
        }
        Ok(())
    }

    /// Normalises one sample `x` into `out` (no allocation).
    ///
    /// # Panics
    /// If the lengths differ from each other or from the fitted feature count.
    pub fn apply_sample(&self, x: &[f32], out: &mut [f32]) {
        assert_eq!(x.len(), out.len(), "apply_sample: lengths differ");
        if self.is_identity() {
            out.copy_from_slice(x);
            return;
        }
        assert_eq!(
            x.len(),
            self.offset.len(),
            "apply_sample: wrong feature count"
        );
        for (((o, &v), &off), &s) in out.iter_mut().zip(x).zip(&self.offset).zip(&self.scale) {
            *o = normalise(v, off, s);
        }
    }
}

/// Samples per block of the statistics: a rank reads whole blocks, and the blocks' partial
/// sums are added in block order whatever the number of ranks.
pub const STATS_BLOCK: usize = 4096;

/// The statistics of `kind` over `samples` samples of `features` features, in `blocks`
/// blocks of which this rank of `groups` reads its even share through `block(b, visit)`
/// (which hands `visit` block `b` as `[features, samples of the block]`).
fn fit_blocks<C: Comm>(
    kind: NormKind,
    features: usize,
    samples: usize,
    blocks: usize,
    groups: &C,
    mut block: impl FnMut(usize, &mut dyn FnMut(ArrayView2<'_, f32>)) -> DataResult<()>,
) -> DataResult<Normalizer> {
    if kind == NormKind::None {
        return Ok(Normalizer::identity());
    }
    let mine = Partition::share(blocks, groups.size(), groups.rank());
    // Each pass: `width` values per feature per block, then all blocks of every rank in
    // block order on every rank.
    // `stat(feature, values, out)` writes one block's `width` statistics of one feature.
    type Stat<'a> = &'a dyn Fn(usize, ArrayView1<'_, f32>, &mut [f64]);
    let mut pass = |width: usize, stat: Stat<'_>| -> DataResult<Vec<f64>> {
        let mut local = vec![0.0f64; mine.len() * features * width];
        for (k, b) in mine.clone().enumerate() {
            let out = &mut local[k * features * width..(k + 1) * features * width];
            block(b, &mut |x| {
                for (f, (row, o)) in x
                    .rows()
                    .into_iter()
                    .zip(out.chunks_exact_mut(width))
                    .enumerate()
                {
                    stat(f, row, o);
                }
            })?;
        }
        let counts: Vec<usize> = (0..groups.size())
            .map(|r| Partition::share(blocks, groups.size(), r).len() * features * width)
            .collect();
        let mut all = vec![0.0f64; blocks * features * width];
        groups.all_gather_varcount(&local, &mut all, &counts);
        Ok(all)
    };
    fn per_feature(
        all: &[f64],
        (blocks, features, width): (usize, usize, usize),
        f: usize,
    ) -> impl Iterator<Item = &[f64]> {
        (0..blocks).map(move |b| &all[(b * features + f) * width..(b * features + f + 1) * width])
    }
    let (offset, spread): (Vec<f32>, Vec<f64>) = match kind {
        NormKind::MinMax => {
            let all = pass(2, &|_, row, o| {
                o[0] = row.iter().copied().fold(f32::INFINITY, f32::min) as f64;
                o[1] = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            })?;
            (0..features)
                .map(|f| {
                    let (min, max) = per_feature(&all, (blocks, features, 2), f)
                        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
                            (lo.min(v[0] as f32), hi.max(v[1] as f32))
                        });
                    (min, max as f64 - min as f64)
                })
                .unzip()
        }
        _ => {
            let n = samples.max(1) as f64;
            let sums = pass(1, &|_, row, o| o[0] = row.iter().map(|&v| v as f64).sum())?;
            let mean: Vec<f64> = (0..features)
                .map(|f| {
                    per_feature(&sums, (blocks, features, 1), f)
                        .map(|v| v[0])
                        .sum::<f64>()
                        / n
                })
                .collect();
            let squares = pass(1, &|f, row, o| {
                o[0] = row.iter().map(|&v| (v as f64 - mean[f]).powi(2)).sum();
            })?;
            (0..features)
                .map(|f| {
                    let var = per_feature(&squares, (blocks, features, 1), f)
                        .map(|v| v[0])
                        .sum::<f64>()
                        / n;
                    (mean[f] as f32, var.sqrt())
                })
                .unzip()
        }
    };
    let usable = |d: f64| d.is_finite() && d > 1e-12;
    Ok(Normalizer {
        kind,
        offset: (offset.iter())
            .map(|&o| if o.is_finite() { o } else { 0.0 })
            .collect(),
        scale: (spread.iter())
            .map(|&d| if usable(d) { (1.0 / d) as f32 } else { 0.0 })
            .collect(),
    })
}

/// A raw value whose normalised value overflows f32.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Overflow {
    /// 0-based feature (column among the features).
    pub feature: usize,
    /// The raw value.
    pub value: f32,
}

impl std::fmt::Display for Overflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "feature {}: the value {} is so far outside the range the model's normaliser was fitted on that its normalised value overflows f32",
            self.feature + 1,
            self.value
        )
    }
}

/// Normalises `v` (of feature `f`) in place, or the error naming it when the result is not
/// an f32.
fn normalise_in_place(v: &mut f32, f: usize, offset: f32, scale: f32) -> Result<(), Overflow> {
    let n = normalise(*v, offset, scale);
    if !n.is_finite() {
        return Err(Overflow {
            feature: f,
            value: *v,
        });
    }
    *v = n;
    Ok(())
}

/// `(v - offset) * scale`, in f32 as other frameworks compute it; in f64 where the f32
/// difference overflows (features spanning most of the f32 range, e.g. ±3e38, whose min-max
/// range 6e38 is not an f32 but whose normalised values are).
#[inline]
fn normalise(v: f32, offset: f32, scale: f32) -> f32 {
    let d = v - offset;
    if d.is_finite() {
        d * scale
    } else {
        ((v as f64 - offset as f64) * scale as f64) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn features_spanning_the_f32_range_normalise_to_finite_values() {
        // Min-max used to compute 3e38 - (-3e38) in f32: infinity, then every loss was inf.
        let x = array![[-3e38f32, 0.0, 3e38], [1.0, 2.0, 3.0]];
        for kind in [NormKind::MinMax, NormKind::ZScore] {
            let n = Normalizer::fit(kind, x.view());
            let mut y = x.clone();
            n.apply(&mut y).unwrap();
            assert!(y.iter().all(|v| v.is_finite()), "{kind}: {y:?}");
            let mut out = [0.0f32; 2];
            n.apply_sample(&[3e38, 3.0], &mut out);
            assert!(out.iter().all(|v| v.is_finite()), "{kind}: {out:?}");
        }
        let mm = Normalizer::fit(NormKind::MinMax, x.view());
        let mut y = x.clone();
        mm.apply(&mut y).unwrap();
        for (got, want) in y.row(0).iter().zip([0.0, 0.5, 1.0]) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
    }

    #[test]
    fn minmax_and_zscore_by_hand() {
        // Two features (rows) over four samples.
        let x = array![[1.0f32, 3.0, 5.0, 7.0], [2.0, 2.0, 2.0, 2.0]];
        let mm = Normalizer::fit(NormKind::MinMax, x.view());
        let mut y = x.clone();
        mm.apply(&mut y).unwrap();
        assert_eq!(
            y,
            array![[0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0], [0.0, 0.0, 0.0, 0.0]]
        );

        let z = Normalizer::fit(NormKind::ZScore, x.view());
        // mean 4, population std sqrt(5)
        let mut out = [0.0f32; 2];
        z.apply_sample(&[4.0 + 5f32.sqrt(), 9.0], &mut out);
        assert!((out[0] - 1.0).abs() < 1e-6);
        assert_eq!(out[1], 0.0, "a constant feature is switched off");
        assert!(Normalizer::identity().is_identity());
    }

    #[test]
    fn one_sample_and_a_batch_normalise_alike_and_overflow_names_the_feature() {
        let fit = array![
            [1.0f32, 3.0, 5.0],
            [-3e38, 0.0, 3e38],
            [2.0, 2.0, 2.0000002]
        ];
        let n = Normalizer::fit(NormKind::MinMax, fit.view());
        let batch = array![[2.0f32, 4.0], [1e38, -2e38], [2.0, 2.0000001]];
        let mut all = batch.clone();
        n.apply(&mut all).unwrap();
        for s in 0..2 {
            let mut one = batch.column(s).to_owned().insert_axis(ndarray::Axis(1));
            n.apply(&mut one).unwrap();
            let mut by_sample = [0.0f32; 3];
            n.apply_sample(&batch.column(s).to_vec(), &mut by_sample);
            for f in 0..3 {
                assert_eq!(
                    one[[f, 0]].to_bits(),
                    all[[f, s]].to_bits(),
                    "sample {s} feature {f}"
                );
                assert_eq!(by_sample[f].to_bits(), all[[f, s]].to_bits());
            }
        }
        // Feature 3 spans 2.4e-7 in training: 1e33 normalises beyond f32, alone or in a batch.
        let mut one = array![[2.0f32], [0.0], [1e33]];
        let err = n.apply(&mut one).unwrap_err();
        assert_eq!(
            err,
            Overflow {
                feature: 2,
                value: 1e33
            }
        );
        let mut two = array![[2.0f32, 2.0], [0.0, 0.0], [2.0, 1e33]];
        assert_eq!(n.apply(&mut two).unwrap_err(), err);
        // Sample-major: the same bits and the same error.
        let mut rows = batch.t().as_standard_layout().into_owned();
        n.apply_samples(rows.as_slice_mut().unwrap()).unwrap();
        assert_eq!(rows.t(), all);
        let mut rows = [2.0f32, 0.0, 2.0, 2.0, 0.0, 1e33];
        assert_eq!(n.apply_samples(&mut rows).unwrap_err(), err);
    }

    /// A mapped NPY file of `x` (`[features, samples]`) written sample-major, as float32.
    fn mapped(x: &Array2<f32>, dir: &std::path::Path) -> Dataset {
        let path = dir.join("x.npy");
        let sample_major = x.t().as_standard_layout().into_owned();
        ndarray_npy::write_npy(&path, &sample_major).unwrap();
        crate::data::load_npy(&path, None, &crate::data::LabelKind::Classes(None)).unwrap()
    }

    #[test]
    fn a_mapped_file_on_any_number_of_ranks_fits_what_one_process_fits_in_memory() {
        use crate::cluster::ThreadComm;
        // 3 blocks and a bit, values whose sums round differently in another order.
        let n = 2 * STATS_BLOCK + 1234;
        let x = Array2::from_shape_fn((3, n), |(f, s)| {
            ((s * 7919 + f * 104_729) % 10_007) as f32 * 0.013 + 1e4 * f as f32
        });
        let dir = tempfile::tempdir().unwrap();
        let data = mapped(&x, dir.path());
        for kind in [NormKind::MinMax, NormKind::ZScore] {
            let want = Normalizer::fit(kind, x.view());
            assert_eq!(
                Normalizer::fit_dataset(kind, &data, &SelfComm).unwrap(),
                want
            );
            for ranks in [2, 3, 5] {
                let mut before = 0;
                if let crate::data::Features::Mapped(m) = &data.features {
                    before = m.file().samples_read();
                }
                let fitted = ThreadComm::run(ranks, |comm| {
                    Normalizer::fit_dataset(kind, &data, &comm).unwrap()
                });
                assert!(fitted.iter().all(|f| *f == want), "{kind} on {ranks} ranks");
                // Every sample is read once per pass, by one rank: 1 pass for min-max, 2
                // for the mean and the variance.
                if let crate::data::Features::Mapped(m) = &data.features {
                    let passes = if kind == NormKind::MinMax { 1 } else { 2 };
                    assert_eq!(m.file().samples_read() - before, passes * n as u64);
                }
            }
        }
        // And the sums are good ones: the mean of one feature against an exact sum.
        let z = Normalizer::fit(NormKind::ZScore, x.view());
        let exact: f64 = x.row(0).iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        assert!((z.offset()[0] as f64 - exact).abs() <= exact * 1e-7);
    }

    #[test]
    fn mapped_samples_normalise_as_they_are_read() {
        let x = array![[1.0f32, 5.0, 3.0], [10.0, 20.0, 30.0]];
        let dir = tempfile::tempdir().unwrap();
        let mut data = mapped(&x, dir.path());
        let n = Normalizer::fit(NormKind::MinMax, x.view());
        data.normalize(&n).unwrap();
        let mut resident = x.clone();
        n.apply(&mut resident).unwrap();
        assert_eq!(data.features.to_resident().unwrap(), resident);
        let sub = data.subset(&[2, 0]);
        let mut out = [0.0f32; 4];
        sub.gather_features(&[1, 0], &mut out).unwrap();
        assert_eq!(
            out,
            [
                resident[[0, 0]],
                resident[[0, 2]],
                resident[[1, 0]],
                resident[[1, 2]]
            ]
        );
        // A value the normaliser cannot bring into f32 is an error naming the sample.
        let tiny =
            Normalizer::from_parts(NormKind::MinMax, vec![0.0, 0.0], vec![1e38, 1.0]).unwrap();
        data.normalize(&tiny).unwrap();
        let err = data
            .gather_features(&[1], &mut [0.0; 2])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sample 2") && err.contains("feature 1"),
            "{err}"
        );
    }
}
