//! Per-feature normalisation whose statistics travel with the model.

use ndarray::{Array2, ArrayView2};
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

    /// Fits `kind` on features-major data `x` (`[features, samples]`).
    pub fn fit(kind: NormKind, x: ArrayView2<'_, f32>) -> Self {
        if kind == NormKind::None {
            return Self::identity();
        }
        let mut offset = Vec::with_capacity(x.nrows());
        let mut scale = Vec::with_capacity(x.nrows());
        for row in x.rows() {
            let (o, spread) = match kind {
                NormKind::MinMax => {
                    let min = row.iter().copied().fold(f32::INFINITY, f32::min);
                    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    (min, (max as f64 - min as f64))
                }
                _ => {
                    let n = row.len().max(1) as f64;
                    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
                    let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
                    (mean as f32, var.sqrt())
                }
            };
            let usable = spread.is_finite() && spread > 1e-12;
            offset.push(if o.is_finite() { o } else { 0.0 });
            scale.push(if usable { (1.0 / spread) as f32 } else { 0.0 });
        }
        Normalizer {
            kind,
            offset,
            scale,
        }
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
}
