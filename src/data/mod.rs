//! Data sets: loading (CSV, IDX, NPY), normalisation, splits.
//!
//! A [`Dataset`] gives its features features-major (`[features, samples]`), the layout the
//! engine consumes: a mini-batch is gathered column by column into `[features, batch]`, from
//! memory (CSV, IDX) or from a memory-mapped NPY file, read only for the samples gathered.

mod csv;
mod idx;
mod normalize;
mod npy;
mod sparse_samples;
mod split;

pub use csv::{CsvOptions, CsvSamples, HeaderMode, LabelColumn, Labels, load_csv};
pub use idx::{is_idx, load_idx};
pub use normalize::{NormKind, Normalizer, Overflow};
pub use npy::{
    MappedSamples, NPY_FEATURES, NPY_LABELS, NPY_MAGIC, NpyMatrix, NpyShards, NpyType,
    RELEASE_EVERY, is_npy, load_npy, load_npy_shards, mapped_samples_read, npy_directory,
};
pub use sparse_samples::SparseSamples;
pub use split::{kfold, train_val_split};

use crate::error::{Error, Result};
use ndarray::Array2;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// What a data set's labels are.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    /// No label column (prediction input).
    None,
    /// Class ids indexing `Dataset::classes`.
    Classes(Vec<u32>),
    /// Real-valued targets (regression).
    Values(Vec<f32>),
}

/// How labels are to be read.
#[derive(Clone, Debug, PartialEq)]
pub enum LabelKind {
    /// Class labels; with `Some(names)`, every label must be one of these (a model's classes),
    /// otherwise the classes are the distinct labels found (sorted numerically when all are
    /// numbers, else alphabetically).
    Classes(Option<Vec<String>>),
    /// Numbers (regression targets).
    Values,
}

/// Where a data set's features are.
#[derive(Clone, Debug, PartialEq)]
pub enum Features {
    /// In memory, `[features, samples]`.
    Resident(Array2<f32>),
    /// In a memory-mapped NPY file, read as samples are gathered.
    Mapped(MappedSamples),
}

impl From<Array2<f32>> for Features {
    fn from(x: Array2<f32>) -> Self {
        Features::Resident(x)
    }
}

impl Features {
    /// The features in memory (`[features, samples]`), `None` for a mapped file.
    pub fn resident(&self) -> Option<&Array2<f32>> {
        match self {
            Features::Resident(x) => Some(x),
            Features::Mapped(_) => None,
        }
    }

    /// Number of features per sample.
    pub fn n_features(&self) -> usize {
        match self {
            Features::Resident(x) => x.nrows(),
            Features::Mapped(m) => m.file().features(),
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        match self {
            Features::Resident(x) => x.ncols(),
            Features::Mapped(m) => m.len(),
        }
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All the features in memory, `[features, samples]` (a mapped file is read whole).
    pub fn to_resident(&self) -> Result<Array2<f32>> {
        match self {
            Features::Resident(x) => Ok(x.as_standard_layout().into_owned()),
            Features::Mapped(m) => {
                let n = m.len();
                let mut x = Array2::zeros((self.n_features(), n));
                let all: Vec<usize> = (0..n).collect();
                m.gather(&all, x.as_slice_mut().expect("a new array is contiguous"))?;
                Ok(x)
            }
        }
    }
}

/// Features and labels of one data set.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// `[features, samples]`, in memory or mapped.
    pub features: Features,
    /// The labels, if any.
    pub targets: Targets,
    /// Class names indexed by class id (empty unless `targets` is `Classes`).
    pub classes: Vec<String>,
    /// Where the data came from, for messages.
    pub origin: PathBuf,
}

impl Dataset {
    /// A data set of `features` (`[features, samples]`) labelled with a class name per
    /// sample; its classes are the distinct labels, ordered as a CSV file's are (numerically
    /// when every label is a number, else alphabetically), so the same labels give the same
    /// class ids whichever front end read them.
    pub fn labelled<S: AsRef<str>>(
        features: Array2<f32>,
        labels: &[S],
        origin: impl Into<PathBuf>,
    ) -> Result<Dataset> {
        let origin = origin.into();
        let features = Features::Resident(features);
        if labels.len() != features.len() {
            return Err(Error::data(
                &origin,
                0,
                format!(
                    "{} labels for {} samples: give one label per sample",
                    labels.len(),
                    features.len()
                ),
            ));
        }
        let classes = sorted_classes(labels.iter().map(AsRef::as_ref));
        let id_of: std::collections::HashMap<&str, u32> = (classes.iter())
            .enumerate()
            .map(|(id, name)| (name.as_str(), id as u32))
            .collect();
        let ids = labels.iter().map(|l| id_of[l.as_ref()]).collect();
        Ok(Dataset {
            features,
            targets: Targets::Classes(ids),
            classes,
            origin,
        })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.features.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of features per sample.
    pub fn n_features(&self) -> usize {
        self.features.n_features()
    }

    /// The samples at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let features = match &self.features {
            Features::Resident(x) => Features::Resident(x.select(ndarray::Axis(1), indices)),
            Features::Mapped(m) => Features::Mapped(m.subset(indices)),
        };
        let targets = match &self.targets {
            Targets::None => Targets::None,
            Targets::Classes(c) => Targets::Classes(indices.iter().map(|&i| c[i]).collect()),
            Targets::Values(v) => Targets::Values(indices.iter().map(|&i| v[i]).collect()),
        };
        Dataset {
            features,
            targets,
            classes: self.classes.clone(),
            origin: self.origin.clone(),
        }
    }

    /// Normalises the features with `normalizer`; an error names the file and the feature
    /// whose value overflows (see [`Normalizer::apply`]). Mapped features are normalised as
    /// they are read (and the error comes from the gather that reads the value).
    pub fn normalize(&mut self, normalizer: &Normalizer) -> Result<()> {
        match &mut self.features {
            Features::Resident(x) => normalizer
                .apply(x)
                .map_err(|e| Error::data(&self.origin, 0, e.to_string())),
            Features::Mapped(m) => {
                *m = m.normalized(normalizer);
                Ok(())
            }
        }
    }

    /// The samples in `rows` (0-based, end exclusive), e.g. the first 8000 of 10000.
    pub fn rows(&self, rows: Range<usize>) -> Result<Dataset> {
        if rows.start >= rows.end || rows.end > self.len() {
            return Err(rows_do_not_fit(&rows, &self.origin, self.len()));
        }
        Ok(self.subset(&rows.collect::<Vec<_>>()))
    }

    /// Re-expresses class labels as ids into `classes` (a model's class list).
    pub fn with_classes(mut self, classes: &[String]) -> Result<Dataset> {
        if let Targets::Classes(ids) = &mut self.targets {
            for (sample, id) in ids.iter_mut().enumerate() {
                let name = &self.classes[*id as usize];
                *id = csv::class_id(&self.origin, 0, name, classes).map_err(|e| {
                    Error::data(
                        &self.origin,
                        0,
                        format!("sample {}: {}", sample + 1, data_message(e)),
                    )
                })?;
            }
        }
        self.classes = classes.to_vec();
        Ok(self)
    }

    /// A hash of the sample count, the labels and the class names (FNV-1a): two ranks that
    /// read the same labels get the same number.
    pub fn fingerprint(&self) -> u64 {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
            }
        };
        eat(&(self.len() as u64).to_le_bytes());
        match &self.targets {
            Targets::None => {}
            Targets::Classes(ids) => ids.iter().for_each(|i| eat(&i.to_le_bytes())),
            Targets::Values(v) => v.iter().for_each(|x| eat(&x.to_le_bytes())),
        }
        for c in &self.classes {
            eat(c.as_bytes());
            eat(&[0]);
        }
        h
    }

    /// Copies the features of samples `indices` into `out` as `[features, indices.len()]`.
    /// Only mapped features can fail (a value the normaliser cannot bring into f32).
    ///
    /// # Panics
    /// If `out.len() != n_features * indices.len()` or an index is out of range.
    pub fn gather_features(&self, indices: &[usize], out: &mut [f32]) -> Result<()> {
        let batch = indices.len();
        assert_eq!(
            out.len(),
            self.n_features() * batch,
            "gather_features: bad buffer"
        );
        let x = match &self.features {
            Features::Resident(x) => x,
            Features::Mapped(m) => return m.gather(indices, out),
        };
        for (row, dst) in x.rows().into_iter().zip(out.chunks_exact_mut(batch.max(1))) {
            for (d, &i) in dst.iter_mut().zip(indices) {
                *d = row[i];
            }
        }
        Ok(())
    }
}

fn data_message(e: Error) -> String {
    match e {
        Error::Data { message, .. } => message,
        other => other.to_string(),
    }
}

/// Whether the file at `path` (plain or gzipped) starts like an IDX file.
pub fn looks_like_idx(path: &Path) -> Result<bool> {
    let mut head = [0u8; 4];
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let n = read_up_to(&mut f, &mut head).map_err(|e| Error::io(path, e))?;
    if n >= 2 && head[..2] == [0x1f, 0x8b] {
        let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut gz = flate2::read::GzDecoder::new(f);
        let n = read_up_to(&mut gz, &mut head).unwrap_or(0);
        return Ok(n == 4 && is_idx(&head));
    }
    Ok(n == 4 && is_idx(&head))
}

/// Whether the file at `path` starts like an NPY file (`\x93NUMPY`).
pub fn looks_like_npy(path: &Path) -> Result<bool> {
    let mut head = [0u8; 6];
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let n = read_up_to(&mut f, &mut head).map_err(|e| Error::io(path, e))?;
    Ok(is_npy(&head[..n]))
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..])? {
            0 => break,
            k => filled += k,
        }
    }
    Ok(filled)
}

/// Opens a file for reading, transparently gunzipping it when it starts with the gzip magic.
pub fn open_maybe_gz(path: &Path) -> Result<Box<dyn Read>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut file = std::io::BufReader::with_capacity(1 << 20, file);
    let head = std::io::BufRead::fill_buf(&mut file).map_err(|e| Error::io(path, e))?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(GzipErrorsNamed(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(file)
    })
}

/// A gzip stream whose read errors say the file is not valid gzip.
struct GzipErrorsNamed<R>(R);

impl<R: Read> Read for GzipErrorsNamed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        (self.0.read(buf))
            .map_err(|e| std::io::Error::new(e.kind(), format!("not a valid gzip file: {e}")))
    }
}

/// Reads a whole file, transparently gunzipping it when it starts with the gzip magic.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::data(path, 0, format!("not a valid gzip file: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// The error of a `--rows` range that does not fit the `samples` of `origin`.
pub fn rows_do_not_fit(rows: &Range<usize>, origin: &Path, samples: usize) -> Error {
    // An END left out (to the last sample) is shown left out.
    let end = Some(rows.end)
        .filter(|&e| e != usize::MAX)
        .map_or(String::new(), |e| e.to_string());
    Error::parameter(
        "rows",
        format!(
            "{}:{end} does not fit {} ({samples} samples): expected START:END with START < END <= {samples}",
            rows.start,
            origin.display(),
        ),
    )
}

/// Parses `START:END` (0-based, end exclusive) for `--rows`.
pub fn parse_row_range(s: &str) -> std::result::Result<Range<usize>, String> {
    let (a, b) = s
        .split_once(':')
        .ok_or_else(|| format!("'{s}' is not START:END (e.g. 0:8000)"))?;
    let start = if a.is_empty() {
        0
    } else {
        a.parse()
            .map_err(|_| format!("'{a}' in '{s}' is not a row number"))?
    };
    let end = if b.is_empty() {
        usize::MAX
    } else {
        b.parse()
            .map_err(|_| format!("'{b}' in '{s}' is not a row number"))?
    };
    Ok(start..end)
}

/// Class list from distinct labels: numeric order when every label is a number, else text order.
pub(crate) fn sorted_classes<'a>(labels: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut distinct: Vec<String> = labels.map(str::to_owned).collect();
    distinct.sort();
    distinct.dedup();
    let numbers: Option<Vec<f64>> = distinct.iter().map(|s| s.parse::<f64>().ok()).collect();
    if let Some(nums) = numbers {
        let mut pairs: Vec<(f64, String)> = nums.into_iter().zip(distinct).collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        pairs.into_iter().map(|(_, s)| s).collect()
    } else {
        distinct
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_sort_numerically_when_numeric() {
        let c = sorted_classes(["10", "2", "1", "2"].into_iter());
        assert_eq!(c, vec!["1", "2", "10"]);
        let c = sorted_classes(["R", "M", "R"].into_iter());
        assert_eq!(c, vec!["M", "R"]);
    }

    #[test]
    fn row_ranges_parse() {
        assert_eq!(parse_row_range("0:8000").unwrap(), 0..8000);
        assert_eq!(parse_row_range("8000:").unwrap(), 8000..usize::MAX);
        assert!(parse_row_range("8000").is_err());
        assert!(parse_row_range("a:3").is_err());
    }
}
