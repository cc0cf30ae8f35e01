//! NPY files (NumPy's `.npy`): features `[samples, features]` as float32, float64 or uint8,
//! labels `[samples]` as integers or floats.
//!
//! A features file is memory-mapped and never read whole: [`MappedSamples::gather`] decodes
//! the rows of the samples a batch needs, so a process touches only the rows it uses (counted
//! in [`NpyMatrix::samples_read`]). Pages of the mapping that have been read are handed back to
//! the kernel every [`RELEASE_EVERY`] bytes, so the resident memory of a pass over a file
//! larger than the machine's memory stays bounded (the page cache keeps what fits).
//! The header is parsed by `ndarray-npy`.

use super::{Dataset, Features, LabelKind, Normalizer, Targets, sorted_classes};
use crate::error::{Error, Result};
use memmap2::{Mmap, UncheckedAdvice};
use ndarray_npy::npy::header::{Header, Layout};
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The features file in a directory of NPY files (`nnmpi convert`'s output).
pub const NPY_FEATURES: &str = "features.npy";
/// The labels file in a directory of NPY files.
pub const NPY_LABELS: &str = "labels.npy";

/// The magic bytes every NPY file starts with.
pub const NPY_MAGIC: &[u8] = b"\x93NUMPY";

/// Bytes of a mapping read between two releases of its pages: the bound on the resident
/// memory that reading a features file adds (page cache aside).
pub const RELEASE_EVERY: u64 = 64 << 20;

/// What one page fault may map beyond the bytes read: Linux maps cached pages around a
/// faulting one, a whole large folio of the page cache at a time (up to 2 MiB), so a 4 KiB
/// row read at random can add up to 2 MiB to the resident memory. Measured (kernel 6.18):
/// 200,000 rows of 4 KiB read in a shuffled order reached 750 MiB resident when a row
/// counted its own bytes, or its bytes and 64 KiB.
const FAULT_AROUND: u64 = 2 << 20;

/// Samples this process has decoded from mapped NPY files, all files together.
static SAMPLES_READ: AtomicU64 = AtomicU64::new(0);

/// Samples this process has decoded from mapped NPY files so far (what `--log-dir` reports
/// per epoch: under data parallelism, only the samples of this rank's shares).
pub fn mapped_samples_read() -> u64 {
    SAMPLES_READ.load(Ordering::Relaxed)
}

/// Whether `head` (a file's first bytes) starts like an NPY file.
pub fn is_npy(head: &[u8]) -> bool {
    head.starts_with(NPY_MAGIC)
}

/// Element types nnmpi reads from NPY files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NpyType {
    /// `<f4` (or `>f4`).
    F32 { little: bool },
    /// `<f8` (or `>f8`).
    F64 { little: bool },
    /// `|u1`.
    U8,
    /// Integers of 1, 2, 4 or 8 bytes, signed or not (labels only).
    Int {
        bytes: usize,
        signed: bool,
        little: bool,
    },
    /// Text of up to `chars` characters, `<U{chars}` (class names; labels only).
    Text { chars: usize, little: bool },
}

impl NpyType {
    fn parse(descr: &str) -> Option<NpyType> {
        let (order, code) = descr.split_at(1.min(descr.len()));
        let little = match order {
            "<" => true,
            ">" => false,
            "|" | "=" => cfg!(target_endian = "little"),
            _ => return None,
        };
        let (kind, size) = code.split_at(1.min(code.len()));
        let n: usize = size.parse().ok()?;
        Some(match (kind, n) {
            ("f", 4) => NpyType::F32 { little },
            ("f", 8) => NpyType::F64 { little },
            ("u", 1) | ("b", 1) => NpyType::U8,
            ("i" | "u", 1 | 2 | 4 | 8) => NpyType::Int {
                bytes: n,
                signed: kind == "i",
                little,
            },
            ("U", 1..) => NpyType::Text { chars: n, little },
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            NpyType::F32 { .. } => 4,
            NpyType::F64 { .. } => 8,
            NpyType::U8 => 1,
            NpyType::Int { bytes, .. } => bytes,
            NpyType::Text { chars, .. } => 4 * chars,
        }
    }

    /// The element at the start of `b` as f64 (exact for every type but 64-bit integers
    /// beyond 2^53).
    fn value(self, b: &[u8]) -> f64 {
        fn bytes<const N: usize>(b: &[u8], little: bool) -> [u8; N] {
            let mut a: [u8; N] = b[..N].try_into().expect("N bytes");
            if !little {
                a.reverse();
            }
            a
        }
        match self {
            NpyType::F32 { little } => f32::from_le_bytes(bytes(b, little)) as f64,
            NpyType::F64 { little } => f64::from_le_bytes(bytes(b, little)),
            NpyType::U8 => b[0] as f64,
            NpyType::Int {
                bytes: n,
                signed,
                little,
            } => {
                let mut a = [0u8; 8];
                a[..n].copy_from_slice(&b[..n]);
                if !little {
                    a[..n].reverse();
                }
                let raw = u64::from_le_bytes(a);
                if signed {
                    let shift = 64 - 8 * n as u32;
                    (((raw << shift) as i64) >> shift) as f64
                } else {
                    raw as f64
                }
            }
            NpyType::Text { .. } => f64::NAN,
        }
    }

    /// The element at the start of `b` as a label: text as it is, a number as its shortest
    /// decimal form (`3`, `0.5`), as a CSV file would hold it.
    fn label(self, b: &[u8]) -> String {
        match self {
            NpyType::Text { chars, little } => (b[..4 * chars].chunks_exact(4))
                .map(|c| {
                    let c: [u8; 4] = c.try_into().expect("4 bytes");
                    if little {
                        u32::from_le_bytes(c)
                    } else {
                        u32::from_be_bytes(c)
                    }
                })
                .take_while(|&c| c != 0)
                .map(|c| char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect(),
            NpyType::F32 { .. } => (self.value(b) as f32).to_string(),
            _ => self.value(b).to_string(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            NpyType::F32 { .. } => "float32",
            NpyType::F64 { .. } => "float64",
            NpyType::U8 => "uint8",
            NpyType::Int { .. } => "integer",
            NpyType::Text { .. } => "text",
        }
    }
}

/// A mapped NPY array: its element type, shape and layout, and where its data starts.
pub struct NpyMatrix {
    path: PathBuf,
    map: Mmap,
    start: usize,
    dtype: NpyType,
    shape: Vec<usize>,
    fortran: bool,
    samples_read: AtomicU64,
    read_since_release: AtomicU64,
}

impl fmt::Debug for NpyMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NpyMatrix({}, {} {:?}{})",
            self.path.display(),
            self.dtype.name(),
            self.shape,
            if self.fortran { ", Fortran order" } else { "" }
        )
    }
}

impl NpyMatrix {
    /// Maps `path` and checks its header: an array of 1 or 2 dimensions whose data fills
    /// the rest of the file exactly.
    pub fn open(path: &Path) -> Result<NpyMatrix> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len == 0 {
            return Err(Error::data(path, 0, "an empty file, not an NPY array"));
        }
        // SAFETY: read-only map; every length is checked against the header below. A file
        // truncated by another program while it is mapped ends the process with SIGBUS, as
        // for any program that maps files (NumPy's mmap_mode included).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let mut rest: &[u8] = &map;
        let header = Header::from_reader(&mut rest)
            .map_err(|e| Error::data(path, 0, format!("not a readable NPY header: {e}")))?;
        let start = map.len() - rest.len();
        let descr = header.type_descriptor.to_string();
        let descr = descr.trim_matches(|c| c == '\'' || c == '"');
        let dtype = NpyType::parse(descr).ok_or_else(|| {
            Error::data(
                path,
                0,
                format!(
                    "element type {descr} is not supported: expected float32 (<f4), float64 (<f8), uint8 (|u1) or, for labels, an integer type"
                ),
            )
        })?;
        let Header { shape, layout, .. } = header;
        if shape.is_empty() || shape.len() > 2 {
            return Err(Error::data(
                path,
                0,
                format!("an array of shape {shape:?}: expected [samples, features] or [samples]"),
            ));
        }
        let bytes = shape
            .iter()
            .try_fold(dtype.size() as u64, |acc, &d| acc.checked_mul(d as u64));
        if bytes != Some(rest.len() as u64) {
            return Err(Error::data(
                path,
                0,
                format!(
                    "the header's shape {shape:?} of {} needs {} bytes of data, the file has {}",
                    dtype.name(),
                    bytes.map_or("more than 2^64".into(), |b| b.to_string()),
                    rest.len()
                ),
            ));
        }
        Ok(NpyMatrix {
            path: path.to_path_buf(),
            map,
            start,
            dtype,
            shape,
            fortran: layout == Layout::Fortran,
            samples_read: AtomicU64::new(0),
            read_since_release: AtomicU64::new(0),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The element type.
    pub fn dtype(&self) -> NpyType {
        self.dtype
    }

    /// Number of samples (the first dimension).
    pub fn samples(&self) -> usize {
        self.shape[0]
    }

    /// Values per sample (the second dimension; 1 for a one-dimensional array).
    pub fn features(&self) -> usize {
        self.shape.get(1).copied().unwrap_or(1)
    }

    /// Samples decoded so far by this process (every gather counts its samples).
    pub fn samples_read(&self) -> u64 {
        self.samples_read.load(Ordering::Relaxed)
    }

    fn data(&self) -> &[u8] {
        &self.map[self.start..]
    }

    /// Every element of a one-dimensional (or one-column) array as a number: regression
    /// targets. Text is an error naming the file.
    pub fn values(&self) -> Result<Vec<f64>> {
        if let NpyType::Text { .. } = self.dtype {
            return Err(Error::data(
                &self.path,
                0,
                "text labels, where this model needs numbers (regression targets)",
            ));
        }
        let size = self.dtype.size();
        Ok((self.data().chunks_exact(size))
            .map(|b| self.dtype.value(b))
            .collect())
    }

    /// Every element of a one-dimensional (or one-column) array as a label: class names.
    pub fn labels(&self) -> Vec<String> {
        let size = self.dtype.size();
        (self.data().chunks_exact(size))
            .map(|b| self.dtype.label(b))
            .collect()
    }

    /// Decodes sample `sample` into `row` (f32, one value per feature).
    fn decode_row(&self, sample: usize, row: &mut [f32]) {
        let (size, features) = (self.dtype.size(), self.features());
        let data = self.data();
        if self.fortran {
            let samples = self.samples();
            for (f, v) in row.iter_mut().enumerate() {
                let at = (f * samples + sample) * size;
                *v = self.dtype.value(&data[at..at + size]) as f32;
            }
            return;
        }
        let bytes = &data[sample * features * size..(sample + 1) * features * size];
        match self.dtype {
            NpyType::F32 { little: true } => {
                for (v, b) in row.iter_mut().zip(bytes.chunks_exact(4)) {
                    *v = f32::from_le_bytes(b.try_into().expect("4 bytes"));
                }
            }
            NpyType::U8 => {
                for (v, &b) in row.iter_mut().zip(bytes) {
                    *v = b as f32;
                }
            }
            dtype => {
                for (v, b) in row.iter_mut().zip(bytes.chunks_exact(size)) {
                    *v = dtype.value(b) as f32;
                }
            }
        }
    }

    fn count_read(&self, samples: usize) {
        self.samples_read
            .fetch_add(samples as u64, Ordering::Relaxed);
        SAMPLES_READ.fetch_add(samples as u64, Ordering::Relaxed);
        let row_bytes = (self.features() * self.dtype.size()) as u64 + FAULT_AROUND;
        let read = self
            .read_since_release
            .fetch_add(samples as u64 * row_bytes, Ordering::Relaxed);
        if read + samples as u64 * row_bytes >= RELEASE_EVERY {
            self.read_since_release.store(0, Ordering::Relaxed);
            // SAFETY: a read-only shared mapping of a file: dropping its pages loses nothing
            // (the next read faults them in from the page cache or the file), whatever another
            // thread reads meanwhile. A failure only leaves the pages mapped.
            let _ = unsafe { self.map.unchecked_advise(UncheckedAdvice::DontNeed) };
        }
    }
}

/// Loads `features` (an NPY array `[samples, features]` of float32, float64, uint8 or an
/// integer type), mapped, and the labels in `labels` (an NPY array `[samples]`: class names as
/// text or numbers, or regression targets), read whole. The features stay in the file: a
/// gather decodes the samples it is asked for.
pub fn load_npy(features: &Path, labels: Option<&Path>, kind: &LabelKind) -> Result<Dataset> {
    let labels: Vec<PathBuf> = labels.into_iter().map(Path::to_path_buf).collect();
    load_npy_shards(features, &[features.to_path_buf()], &labels, kind)
}

/// As [`load_npy`] for a data set in several files (`origin` names it in messages): the
/// samples of `features` one file after the other, with the same number of features in
/// each, and their labels in `labels`, one file after the other (none: no labels), as many
/// in all as there are samples.
pub fn load_npy_shards(
    origin: &Path,
    features: &[PathBuf],
    labels: &[PathBuf],
    kind: &LabelKind,
) -> Result<Dataset> {
    let x = NpyShards::open(origin, features)?;
    let n = x.samples();
    let (targets, classes) = if labels.is_empty() {
        (Targets::None, Vec::new())
    } else {
        let (mut names, mut values, mut count) = (Vec::new(), Vec::new(), 0);
        for path in labels {
            let y = NpyMatrix::open(path)?;
            if y.features() != 1 || y.shape.len() > 2 {
                return Err(Error::data(
                    path,
                    0,
                    format!("labels of shape {:?}: expected [samples]", y.shape),
                ));
            }
            match kind {
                LabelKind::Values => values.extend(y.values()?.into_iter().map(|v| v as f32)),
                LabelKind::Classes(_) => names.extend(y.labels()),
            }
            count += y.samples();
        }
        if count != n {
            return Err(Error::data(
                labels.last().expect("labels"),
                0,
                format!(
                    "labels for {count} samples{}, expected [{n}] to match {}",
                    if labels.len() > 1 { " in all" } else { "" },
                    origin.display()
                ),
            ));
        }
        match kind {
            LabelKind::Values => (Targets::Values(values), Vec::new()),
            LabelKind::Classes(_) => {
                let classes = sorted_classes(names.iter().map(String::as_str));
                let id: HashMap<&str, u32> = (classes.iter().enumerate())
                    .map(|(i, c)| (c.as_str(), i as u32))
                    .collect();
                let ids = names.iter().map(|l| id[l.as_str()]).collect();
                (Targets::Classes(ids), classes)
            }
        }
    };
    let data = Dataset {
        features: Features::Mapped(MappedSamples::new(x)),
        targets,
        classes,
        origin: origin.to_path_buf(),
    };
    match kind {
        LabelKind::Classes(Some(model_classes)) if !labels.is_empty() => {
            data.with_classes(model_classes)
        }
        _ => Ok(data),
    }
}

/// The features and labels files of a directory of NPY files: [`NPY_FEATURES`] (what
/// `nnmpi convert` writes), or shards `features-NAME.npy` taken in name order; the labels are
/// `labels` when given, else [`NPY_LABELS`], else the shards `labels-NAME.npy`, one beside
/// each features shard; none of them: no labels.
pub fn npy_directory(dir: &Path, labels: Option<&Path>) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let single = dir.join(NPY_FEATURES);
    let shards = |prefix: &str| -> Result<Vec<(String, PathBuf)>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if let Some(tag) = name
                .strip_prefix(prefix)
                .and_then(|n| n.strip_suffix(".npy"))
            {
                found.push((tag.to_owned(), path.clone()));
            }
        }
        found.sort();
        Ok(found)
    };
    let features = if single.exists() {
        vec![(String::new(), single)]
    } else {
        shards("features-")?
    };
    if features.is_empty() {
        return Err(Error::data(
            dir,
            0,
            format!(
                "a directory without {NPY_FEATURES} or features-*.npy shards: expected what nnmpi convert writes (features.npy, labels.npy)"
            ),
        ));
    }
    let single_labels = dir.join(NPY_LABELS);
    let labels = match labels {
        Some(l) => vec![l.to_path_buf()],
        None if single_labels.exists() => vec![single_labels],
        None => {
            let labels = shards("labels-")?;
            let tags = |files: &[(String, PathBuf)]| {
                files.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>()
            };
            if !labels.is_empty() && tags(&labels) != tags(&features) {
                let missing = (features.iter())
                    .find(|(t, _)| !labels.iter().any(|(l, _)| l == t))
                    .map_or_else(
                        || "labels shards without features shards".to_owned(),
                        |(t, _)| format!("no labels-{t}.npy for features-{t}.npy"),
                    );
                return Err(Error::data(
                    dir,
                    0,
                    format!("{missing}: expected a labels-NAME.npy beside every features-NAME.npy"),
                ));
            }
            labels.into_iter().map(|(_, p)| p).collect()
        }
    };
    Ok((features.into_iter().map(|(_, p)| p).collect(), labels))
}

/// The samples of one or more mapped NPY feature files, one file after the other.
#[derive(Debug)]
pub struct NpyShards {
    origin: PathBuf,
    files: Vec<NpyMatrix>,
    /// The first sample of each file, and the total after the last.
    starts: Vec<usize>,
}

impl NpyShards {
    /// Maps every file of `files` (at least one) and checks each holds numbers of shape
    /// `[samples, features]`, the same number of features in each; `origin` names the whole.
    pub fn open(origin: &Path, files: &[PathBuf]) -> Result<NpyShards> {
        let mut starts = vec![0];
        let mut opened: Vec<NpyMatrix> = Vec::with_capacity(files.len());
        for path in files {
            let x = NpyMatrix::open(path)?;
            if x.shape.len() != 2 || matches!(x.dtype, NpyType::Text { .. }) {
                return Err(Error::data(
                    path,
                    0,
                    format!(
                        "features of {} {:?}: expected numbers of shape [samples, features]",
                        x.dtype.name(),
                        x.shape
                    ),
                ));
            }
            if let Some(first) = opened.first()
                && first.features() != x.features()
            {
                return Err(Error::data(
                    path,
                    0,
                    format!(
                        "{} features per sample, where {} has {}: every file of {} needs the same",
                        x.features(),
                        first.path.display(),
                        first.features(),
                        origin.display()
                    ),
                ));
            }
            starts.push(starts.last().expect("a start") + x.samples());
            opened.push(x);
        }
        assert!(!opened.is_empty(), "NpyShards::open needs a file");
        Ok(NpyShards {
            origin: origin.to_path_buf(),
            files: opened,
            starts,
        })
    }

    /// The file, or the directory of files.
    pub fn path(&self) -> &Path {
        &self.origin
    }

    /// The mapped files.
    pub fn files(&self) -> &[NpyMatrix] {
        &self.files
    }

    /// Number of samples in all files.
    pub fn samples(&self) -> usize {
        *self.starts.last().expect("a total")
    }

    /// Values per sample.
    pub fn features(&self) -> usize {
        self.files[0].features()
    }

    /// Samples decoded so far by this process from these files.
    pub fn samples_read(&self) -> u64 {
        self.files.iter().map(NpyMatrix::samples_read).sum()
    }

    /// Calls `visit(position, row)` with the decoded f32 values of every sample in `samples`
    /// (positions count from 0 in `samples`' order), reusing one row buffer.
    pub fn for_each_row(&self, samples: &[usize], mut visit: impl FnMut(usize, &mut [f32])) {
        let mut row = vec![0.0f32; self.features()];
        let mut read = vec![0usize; self.files.len()];
        for (pos, &s) in samples.iter().enumerate() {
            let file = self.starts.partition_point(|&start| start <= s) - 1;
            self.files[file].decode_row(s - self.starts[file], &mut row);
            read[file] += 1;
            visit(pos, &mut row);
        }
        for (file, n) in self.files.iter().zip(read) {
            if n > 0 {
                file.count_read(n);
            }
        }
    }
}

/// Samples of a mapped NPY file: which rows (all, or a selection in order) and the
/// normaliser applied as they are read.
#[derive(Clone, Debug)]
pub struct MappedSamples {
    file: Arc<NpyShards>,
    rows: Option<Arc<[usize]>>,
    normalizer: Option<Arc<Normalizer>>,
}

impl PartialEq for MappedSamples {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.file, &other.file)
            && self.rows == other.rows
            && self.normalizer == other.normalizer
    }
}

impl MappedSamples {
    fn new(file: NpyShards) -> Self {
        MappedSamples {
            file: Arc::new(file),
            rows: None,
            normalizer: None,
        }
    }

    /// The mapped files.
    pub fn file(&self) -> &NpyShards {
        &self.file
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.rows.as_ref().map_or(self.file.samples(), |r| r.len())
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The samples at `indices` (positions in this selection), in that order.
    pub fn subset(&self, indices: &[usize]) -> MappedSamples {
        let rows: Arc<[usize]> = match &self.rows {
            Some(r) => indices.iter().map(|&i| r[i]).collect(),
            None => indices.into(),
        };
        MappedSamples {
            rows: Some(rows),
            ..self.clone()
        }
    }

    /// The same samples read through `normalizer` (which replaces any earlier one: the
    /// file's values are raw).
    pub fn normalized(&self, normalizer: &Normalizer) -> MappedSamples {
        MappedSamples {
            normalizer: (!normalizer.is_identity()).then(|| Arc::new(normalizer.clone())),
            ..self.clone()
        }
    }

    /// Writes the (normalised) features of the samples at `indices` into `out`
    /// (`[features, indices.len()]`); a value whose normalised value overflows f32 is an
    /// error naming the sample and the feature.
    pub fn gather(&self, indices: &[usize], out: &mut [f32]) -> Result<()> {
        let batch = indices.len();
        let rows: Vec<usize> = match &self.rows {
            Some(r) => indices.iter().map(|&i| r[i]).collect(),
            None => indices.to_vec(),
        };
        let mut failed = None;
        self.file.for_each_row(&rows, |col, row| {
            if failed.is_some() {
                return;
            }
            if let Some(norm) = &self.normalizer
                && let Err(e) = norm.apply_samples(row)
            {
                failed = Some((rows[col], e));
                return;
            }
            for (f, &v) in row.iter().enumerate() {
                out[f * batch + col] = v;
            }
        });
        match failed {
            Some((sample, e)) => Err(Error::data(
                self.file.path(),
                0,
                format!("sample {}: {e}", sample + 1),
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &[usize], fortran: bool, data: &[u8]) -> Vec<u8> {
        let header = Header {
            type_descriptor: format!("'{descr}'").parse().unwrap(),
            layout: if fortran {
                Layout::Fortran
            } else {
                Layout::Standard
            },
            shape: shape.to_vec(),
        };
        let mut v = header.to_bytes().unwrap();
        v.extend_from_slice(data);
        v
    }

    fn open(bytes: &[u8]) -> Result<NpyMatrix> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        std::fs::write(&p, bytes).unwrap();
        NpyMatrix::open(&p)
    }

    /// The files of `files` as shards, in that order.
    fn open_all(files: &[Vec<u8>]) -> Result<NpyShards> {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (files.iter().enumerate())
            .map(|(i, bytes)| {
                let p = dir.path().join(format!("features-{i}.npy"));
                std::fs::write(&p, bytes).unwrap();
                p
            })
            .collect();
        NpyShards::open(dir.path(), &paths)
    }

    fn rows(m: &NpyShards, samples: &[usize]) -> Vec<Vec<f32>> {
        let mut out = Vec::new();
        m.for_each_row(samples, |_, r| out.push(r.to_vec()));
        out
    }

    #[test]
    fn decodes_every_type_and_layout_to_the_same_values() {
        // The matrix [[1, 2, 3], [4, 5, 250]] in each element type, then Fortran order.
        let values = [1.0f64, 2.0, 3.0, 4.0, 5.0, 250.0];
        let f32le: Vec<u8> = values
            .iter()
            .flat_map(|&v| (v as f32).to_le_bytes())
            .collect();
        let f32be: Vec<u8> = values
            .iter()
            .flat_map(|&v| (v as f32).to_be_bytes())
            .collect();
        let f64le: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let u8s: Vec<u8> = values.iter().map(|&v| v as u8).collect();
        let cols = [0usize, 3, 1, 4, 2, 5].map(|i| values[i] as u8);
        let want = vec![vec![4.0f32, 5.0, 250.0], vec![1.0, 2.0, 3.0]];
        for file in [
            npy("<f4", &[2, 3], false, &f32le),
            npy(">f4", &[2, 3], false, &f32be),
            npy("<f8", &[2, 3], false, &f64le),
            npy("|u1", &[2, 3], false, &u8s),
            npy("|u1", &[2, 3], true, &cols),
        ] {
            let m = open_all(&[file]).unwrap();
            assert_eq!((m.samples(), m.features()), (2, 3));
            assert_eq!(rows(&m, &[1, 0]), want, "{m:?}");
            assert_eq!(m.samples_read(), 2);
        }
    }

    #[test]
    fn shards_read_as_one_file_and_count_their_own_rows() {
        let f32s: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let m = open_all(&[
            npy("<f4", &[2, 2], false, &f32s),
            npy("|u1", &[3, 2], false, &[5, 6, 7, 8, 9, 10]),
        ])
        .unwrap();
        assert_eq!((m.samples(), m.features()), (5, 2));
        let want = [[9.0, 10.0], [1.0, 2.0], [5.0, 6.0], [3.0, 4.0], [7.0, 8.0]];
        assert_eq!(rows(&m, &[4, 0, 2, 1, 3]), want.map(|r| r.to_vec()));
        let read: Vec<u64> = m.files().iter().map(NpyMatrix::samples_read).collect();
        assert_eq!((read, m.samples_read()), (vec![2, 3], 5));
        let e = open_all(&[
            npy("<f4", &[2, 2], false, &f32s),
            npy("|u1", &[2, 3], false, &[0; 6]),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("3 features per sample") && e.contains("features-0.npy has 2"),
            "{e}"
        );
    }

    #[test]
    fn labels_of_integer_types_read_exactly() {
        let i64s: Vec<u8> = [-3i64, 7, 1 << 40]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(
            open(&npy("<i8", &[3], false, &i64s))
                .unwrap()
                .values()
                .unwrap(),
            vec![-3.0, 7.0, (1u64 << 40) as f64]
        );
        let i16s: Vec<u8> = [-2i16, 300].iter().flat_map(|v| v.to_be_bytes()).collect();
        assert_eq!(
            open(&npy(">i2", &[2], false, &i16s))
                .unwrap()
                .values()
                .unwrap(),
            vec![-2.0, 300.0]
        );
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let err = |bytes: &[u8]| open(bytes).unwrap_err().to_string();
        assert!(err(b"").contains("empty"));
        assert!(err(b"\x93NUMPY garbage").contains("NPY header"));
        let e = err(&npy("<f4", &[2, 3], false, &[0; 20]));
        assert!(e.contains("needs 24 bytes") && e.contains("has 20"), "{e}");
        let e = err(&npy("<c8", &[1], false, &[0; 8]));
        assert!(e.contains("<c8 is not supported"), "{e}");
        let e = err(&npy("<f4", &[1, 1, 1], false, &[0; 4]));
        assert!(e.contains("[1, 1, 1]"), "{e}");
    }
}
