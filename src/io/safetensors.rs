//! Export to and import from [safetensors](https://huggingface.co/docs/safetensors), so a
//! PyTorch, NumPy or JAX user can load an nnmpi model (and nnmpi can load theirs).
//!
//! Tensors (`F32` unless said, little-endian, row-major):
//!
//! | name                 | shape             | meaning                                    |
//! |----------------------|-------------------|--------------------------------------------|
//! | `layers.{i}.weight`  | `[out_i, in_i]`   | layer `i`'s weights (`torch.nn.Linear`'s layout), a dense layer |
//! | `layers.{i}.weight.size` | `[2]`, `I64`  | a compact layer's `[out_i, in_i]`            |
//! | `layers.{i}.weight.crow_indices` | `[out_i + 1]`, `I64` | its row offsets (CSR)   |
//! | `layers.{i}.weight.col_indices` | `[nnz_i]`, `I64` | each connection's input          |
//! | `layers.{i}.weight.values` | `[nnz_i]`  | each connection's weight                     |
//! | `layers.{i}.bias`    | `[out_i]`         | layer `i`'s biases                         |
//! | `normalizer.offset`  | `[inputs]`        | subtracted from raw features (if any)      |
//! | `normalizer.scale`   | `[inputs]`        | then multiplied (if any)                   |
//!
//! A compact (pruned) layer is stored compressed, so the file's size follows its connections:
//! `torch.sparse_csr_tensor(crow_indices, col_indices, values, size)` rebuilds it in PyTorch,
//! `scipy.sparse.csr_matrix((values, col_indices, crow_indices), shape=size)` in SciPy.
//!
//! Metadata (strings): `nnmpi.version` (this layout, "2"; version 1, which stored every layer
//! dense, still reads), `nnmpi.writer`,
//! `nnmpi.activations` (comma-separated, e.g. `relu,relu,sigmoid`; `leaky-relu:0.1` carries its
//! slope), `nnmpi.normalizer` (`none`, `minmax` or `zscore`: `x' = (x - offset) · scale`),
//! `nnmpi.task` (`classification` or `regression`), `nnmpi.classes` (a JSON array of names)
//! and `nnmpi.sparse_layers` (comma-separated indices of the layers that were stored sparse),
//! and `nnmpi.metadata_crc32`: CRC-32 (8 hex digits) of the other `nnmpi.*` entries, sorted
//! by key, each as `key NUL value NUL` (safetensors has no checksum of its own, and a flipped
//! bit in a class name or activation would otherwise change the model silently).
//!
//! Importing checks the metadata: an unknown `nnmpi.*` key, a checksum mismatch (a key lost
//! or renamed changes it too), a layer index out of range, a repeated class name, or (in a
//! file with nnmpi metadata) a tensor the layout does not name is an error. Metadata that a
//! file written by other tools leaves out is taken at its default, and the defaults taken are
//! returned to be stated ([`Imported::assumed`]).
//! Compact layers round-trip exactly, their connections included (a connection whose weight
//! is 0 stays one). A version-1 file's layers listed in `nnmpi.sparse_layers` were written
//! dense; they are stored compact again with their nonzero weights as connections.

use super::atomic::write_atomic;
use crate::data::{NormKind, Normalizer};
use crate::error::{Error, Result};
use crate::model::{Activation, Format, Layer, Model, Network, Task};
use ndarray::{Array1, Array2};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;

/// Version of the names and metadata above.
pub const LAYOUT_VERSION: &str = "2";

/// The layouts this nnmpi reads.
const READABLE_VERSIONS: [&str; 2] = ["1", "2"];

/// The names of compact layer `i`'s tensors: size, row offsets, columns, values.
pub fn sparse_weight_names(i: usize) -> [String; 4] {
    ["size", "crow_indices", "col_indices", "values"].map(|t| format!("layers.{i}.weight.{t}"))
}

fn i64_bytes(v: impl IntoIterator<Item = u64>) -> Vec<u8> {
    v.into_iter()
        .flat_map(|x| (x as i64).to_le_bytes())
        .collect()
}

/// The metadata keys nnmpi writes; any other `nnmpi.*` key is an error on import.
const KEYS: [&str; 8] = [
    "nnmpi.version",
    "nnmpi.writer",
    "nnmpi.activations",
    "nnmpi.normalizer",
    "nnmpi.task",
    "nnmpi.classes",
    "nnmpi.sparse_layers",
    CRC_KEY,
];

/// The checksum of the other metadata.
const CRC_KEY: &str = "nnmpi.metadata_crc32";

/// CRC-32 of the `nnmpi.*` entries but the checksum, sorted by key, as 8 hex digits.
fn metadata_crc(meta: &HashMap<String, String>) -> String {
    let mut entries: Vec<(&String, &String)> = meta
        .iter()
        .filter(|(k, _)| k.starts_with("nnmpi.") && *k != CRC_KEY)
        .collect();
    entries.sort();
    let mut h = crc32fast::Hasher::new();
    for (k, v) in entries {
        for part in [k.as_bytes(), b"\0", v.as_bytes(), b"\0"] {
            h.update(part);
        }
    }
    format!("{:08x}", h.finalize())
}

/// Checks the `nnmpi.*` metadata as a whole (see the module's notes); returns whether the
/// file has any.
fn check_metadata(meta: &HashMap<String, String>) -> std::result::Result<bool, String> {
    let mut ours: Vec<&str> = meta
        .keys()
        .map(String::as_str)
        .filter(|k| k.starts_with("nnmpi."))
        .collect();
    ours.sort();
    if let Some(k) = ours.iter().find(|k| !KEYS.contains(k)) {
        return Err(format!(
            "unknown metadata key '{k}' (nnmpi writes {}): the file is damaged, or from a newer nnmpi",
            KEYS.join(", ")
        ));
    }
    if ours.is_empty() {
        return Ok(false);
    }
    if let Some(crc) = meta.get(CRC_KEY)
        && *crc != metadata_crc(meta)
    {
        return Err(format!(
            "the nnmpi metadata does not match its checksum {CRC_KEY}: the file is damaged (if you edited the metadata on purpose, remove {CRC_KEY})"
        ));
    }
    Ok(true)
}

/// A model read from safetensors, and what was assumed for metadata the file left out.
#[derive(Clone, Debug, PartialEq)]
pub struct Imported {
    /// The model.
    pub model: Model,
    /// The defaults taken for metadata the file did not have (empty for an nnmpi file).
    pub assumed: Vec<String>,
}

/// Name of layer `i`'s weight tensor.
pub fn weight_name(i: usize) -> String {
    format!("layers.{i}.weight")
}

/// Name of layer `i`'s bias tensor.
pub fn bias_name(i: usize) -> String {
    format!("layers.{i}.bias")
}

fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn norm_name(kind: NormKind) -> &'static str {
    match kind {
        NormKind::None => "none",
        NormKind::MinMax => "minmax",
        NormKind::ZScore => "zscore",
    }
}

fn join<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The model as safetensors bytes.
pub fn to_bytes(model: &Model) -> Result<Vec<u8>> {
    let net = &model.network;
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (i, l) in net.layers().iter().enumerate() {
        match l.weights().structure() {
            None => {
                let w = l.dense_weights();
                let w = w.as_standard_layout();
                let values = w.as_slice().expect("standard layout");
                let shape = vec![l.outputs(), l.inputs()];
                tensors.push((weight_name(i), Dtype::F32, shape, le_bytes(values)));
            }
            Some(s) => {
                let [size, crow, col, values] = sparse_weight_names(i);
                let dims = [l.outputs() as u64, l.inputs() as u64];
                tensors.push((size, Dtype::I64, vec![2], i64_bytes(dims)));
                let offsets = std::iter::once(0).chain(s.row_lens.iter().scan(0, |at, &n| {
                    *at += n;
                    Some(*at)
                }));
                tensors.push((crow, Dtype::I64, vec![l.outputs() + 1], i64_bytes(offsets)));
                let cols = s.cols.iter().map(|&c| u64::from(c));
                tensors.push((col, Dtype::I64, vec![s.cols.len()], i64_bytes(cols)));
                let v = l.weights().values();
                tensors.push((values, Dtype::F32, vec![v.len()], le_bytes(v)));
            }
        }
        tensors.push((
            bias_name(i),
            Dtype::F32,
            vec![l.outputs()],
            le_bytes(l.bias()),
        ));
    }
    let norm = &model.normalizer;
    if !norm.is_identity() {
        let n = norm.features();
        let offset = le_bytes(norm.offset());
        tensors.push(("normalizer.offset".into(), Dtype::F32, vec![n], offset));
        let scale = le_bytes(norm.scale());
        tensors.push(("normalizer.scale".into(), Dtype::F32, vec![n], scale));
    }
    let (task, classes) = match &model.task {
        Task::Classification { classes } => ("classification", classes.clone()),
        Task::Regression => ("regression", Vec::new()),
    };
    let sparse = net
        .layers()
        .iter()
        .enumerate()
        .filter(|(_, l)| l.weights().is_sparse())
        .map(|(i, _)| i);
    let mut meta = HashMap::from([
        ("nnmpi.version".to_string(), LAYOUT_VERSION.to_string()),
        (
            "nnmpi.writer".to_string(),
            format!("nnmpi {}", env!("CARGO_PKG_VERSION")),
        ),
        (
            "nnmpi.activations".to_string(),
            join(net.layers().iter().map(|l| l.activation())),
        ),
        (
            "nnmpi.normalizer".to_string(),
            norm_name(norm.kind()).to_string(),
        ),
        ("nnmpi.task".to_string(), task.to_string()),
        (
            "nnmpi.classes".to_string(),
            serde_json::to_string(&classes).expect("strings serialise"),
        ),
        ("nnmpi.sparse_layers".to_string(), join(sparse)),
    ]);
    meta.insert(CRC_KEY.to_string(), metadata_crc(&meta));
    let views = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            TensorView::new(*dtype, shape.clone(), data).map(|v| (name.clone(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::config(format!("cannot build a safetensors tensor: {e}")))?;
    let bytes = safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::config(format!("cannot serialise safetensors: {e}")))?;
    Ok(with_sorted_header(bytes))
}

/// The same file with its JSON header's keys in sorted order (the `safetensors` crate writes
/// the metadata in `HashMap` order, which changes from run to run), so that exporting a model
/// twice gives the same bytes. The tensors' offsets count from the end of the header, so only
/// the header and its length prefix change; the header stays padded with spaces to a
/// multiple of 8 bytes, as the format asks.
fn with_sorted_header(bytes: Vec<u8>) -> Vec<u8> {
    const LEN: usize = 8;
    let n = u64::from_le_bytes(bytes[..LEN].try_into().expect("8 bytes")) as usize;
    let header: serde_json::Value =
        serde_json::from_slice(&bytes[LEN..LEN + n]).expect("the crate wrote valid JSON");
    // serde_json's maps are ordered by key (BTreeMap) unless its preserve_order feature is on.
    let mut sorted = serde_json::to_vec(&header).expect("JSON serialises");
    sorted.resize(sorted.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(LEN + sorted.len() + bytes.len() - LEN - n);
    out.extend_from_slice(&(sorted.len() as u64).to_le_bytes());
    out.extend_from_slice(&sorted);
    out.extend_from_slice(&bytes[LEN + n..]);
    out
}

/// The items of the comma-separated metadata value at `key` (none if absent or empty), each
/// read by `parse`; an error names the key.
fn metadata_list<'m, T, E: std::fmt::Display>(
    get: impl Fn(&str) -> Option<&'m str>,
    key: &str,
    parse: impl Fn(&str) -> std::result::Result<T, E>,
) -> std::result::Result<Vec<T>, String> {
    match get(key) {
        Some("") | None => Ok(Vec::new()),
        Some(text) => text
            .split(',')
            .map(|item| parse(item).map_err(|e| format!("{key}: {e}")))
            .collect(),
    }
}

/// Writes the model to `path` as safetensors (temporary file, fsync, rename).
pub fn export(model: &Model, path: &Path) -> Result<()> {
    write_atomic(path, &to_bytes(model)?)
}

/// Reads a model written by [`export`] (or by anyone following the layout above); `path` is
/// only used in messages.
pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Imported> {
    let bad = |msg: String| Error::data(path, 0, msg);
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let st =
        SafeTensors::deserialize(bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let empty = HashMap::new();
    let meta = header.metadata().as_ref().unwrap_or(&empty);
    let ours = check_metadata(meta).map_err(bad)?;
    let get = |key: &str| meta.get(key).map(String::as_str);
    if let Some(v) = get("nnmpi.version").filter(|v| !READABLE_VERSIONS.contains(v)) {
        return Err(bad(format!(
            "layout version {v} is not supported (this nnmpi reads versions {})",
            READABLE_VERSIONS.join(" and ")
        )));
    }
    let tensor = |name: &str, shape: Option<&[usize]>| -> Result<(Vec<usize>, Vec<f32>)> {
        let t = st
            .tensor(name)
            .map_err(|_| bad(format!("no tensor '{name}'")))?;
        if t.dtype() != Dtype::F32 {
            return Err(bad(format!(
                "tensor '{name}' is {:?}; nnmpi reads F32",
                t.dtype()
            )));
        }
        if let Some(s) = shape.filter(|s| *s != t.shape()) {
            return Err(bad(format!(
                "tensor '{name}' has shape {:?}, expected {s:?}",
                t.shape()
            )));
        }
        let values = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        Ok((t.shape().to_vec(), values))
    };
    let has = |name: &str| st.names().contains(&name);
    let count = (0..)
        .take_while(|&i| has(&weight_name(i)) || has(&sparse_weight_names(i)[0]))
        .count();
    // A compact layer's integer tensors, as non-negative integers.
    let integers = |name: &str, len: Option<usize>| -> Result<Vec<u64>> {
        let t = st
            .tensor(name)
            .map_err(|_| bad(format!("no tensor '{name}'")))?;
        if t.dtype() != Dtype::I64 || t.shape().len() != 1 || len.is_some_and(|n| t.shape()[0] != n)
        {
            return Err(bad(format!(
                "tensor '{name}' is {:?} of shape {:?}, expected I64 of shape [{}]",
                t.dtype(),
                t.shape(),
                len.map_or("n".into(), |n| n.to_string())
            )));
        }
        t.data()
            .chunks_exact(8)
            .map(|b| {
                let v = i64::from_le_bytes(b.try_into().expect("8 bytes"));
                u64::try_from(v).map_err(|_| bad(format!("tensor '{name}' holds {v}, below 0")))
            })
            .collect()
    };
    if count == 0 {
        return Err(bad(
            "no tensor 'layers.0.weight': not an nnmpi-layout model".into(),
        ));
    }
    let mut assumed = Vec::new();
    let activations: Vec<Activation> = if get("nnmpi.activations").is_some() {
        metadata_list(get, "nnmpi.activations", str::parse).map_err(bad)?
    } else {
        assumed.push("activations relu, identity on the output layer".to_string());
        (0..count)
            .map(|i| {
                if i + 1 < count {
                    Activation::Relu
                } else {
                    Activation::Identity
                }
            })
            .collect()
    };
    if activations.len() != count {
        return Err(bad(format!(
            "nnmpi.activations names {} activations for {count} layers",
            activations.len()
        )));
    }
    let sparse: Vec<usize> = metadata_list(get, "nnmpi.sparse_layers", |i: &str| {
        i.parse::<usize>()
            .ok()
            .filter(|&i| i < count)
            .ok_or_else(|| format!("'{i}' is not the index of one of the {count} layers"))
    })
    .map_err(bad)?;
    let mut layers = Vec::with_capacity(count);
    let mut names: Vec<String> = Vec::new();
    for (i, act) in activations.into_iter().enumerate() {
        names.push(bias_name(i));
        if !has(&weight_name(i)) {
            let [size, crow, col, values] = sparse_weight_names(i);
            let dims = integers(&size, Some(2))?;
            let (out, inp) = (usize::try_from(dims[0]), usize::try_from(dims[1]));
            let (Ok(out), Ok(inp)) = (out, inp) else {
                return Err(bad(format!("tensor '{size}' is out of range")));
            };
            let offsets = integers(&crow, Some(out.saturating_add(1)))?;
            let cols = integers(&col, None)?;
            let (_, v) = tensor(&values, Some(&[cols.len()]))?;
            let cols = cols
                .into_iter()
                .map(|c| u32::try_from(c).ok().filter(|&c| (c as usize) < inp))
                .collect::<Option<Vec<u32>>>()
                .ok_or_else(|| bad(format!("tensor '{col}' names an input past {inp}")))?;
            let row_lens = offsets
                .windows(2)
                .map(|w| w[1].checked_sub(w[0]))
                .collect::<Option<Vec<u64>>>()
                .filter(|_| offsets.first() == Some(&0))
                .ok_or_else(|| {
                    bad(format!(
                        "tensor '{crow}' must start at 0 and never decrease"
                    ))
                })?;
            let structure = crate::model::Structure { row_lens, cols };
            let weights = crate::model::Weights::from_structure(out, inp, v, Some(structure))
                .map_err(|e| bad(format!("layer {i}: compact weights: {e}")))?;
            let (_, b) = tensor(&bias_name(i), Some(&[out]))?;
            layers.push(
                Layer::from_weights(weights, Array1::from(b), act)
                    .map_err(|e| bad(format!("layer {i}: {e}")))?,
            );
            names.extend([size, crow, col, values]);
            continue;
        }
        names.push(weight_name(i));
        let (shape, w) = tensor(&weight_name(i), None)?;
        if shape.len() != 2 {
            return Err(bad(format!(
                "tensor '{}' has shape {shape:?}, expected [out, in]",
                weight_name(i)
            )));
        }
        let (_, b) = tensor(&bias_name(i), Some(&shape[..1]))?;
        let w = Array2::from_shape_vec((shape[0], shape[1]), w).expect("shape checked");
        let layer =
            Layer::new(w, Array1::from(b), act).map_err(|e| bad(format!("layer {i}: {e}")))?;
        layers.push(if sparse.contains(&i) {
            layer.to_format(Format::Sparse)
        } else {
            layer
        });
    }
    let network = Network::from_layers(layers).map_err(|e| bad(e.to_string()))?;
    let kind = match get("nnmpi.normalizer") {
        None => {
            assumed.push("no normaliser: inputs are used as given".to_string());
            NormKind::None
        }
        Some("none") => NormKind::None,
        Some("minmax") => NormKind::MinMax,
        Some("zscore") => NormKind::ZScore,
        Some(other) => {
            return Err(bad(format!(
                "nnmpi.normalizer '{other}' is not none, minmax or zscore"
            )));
        }
    };
    let normalizer = if kind == NormKind::None {
        Normalizer::identity()
    } else {
        let n = network.inputs();
        let (_, offset) = tensor("normalizer.offset", Some(&[n]))?;
        let (_, scale) = tensor("normalizer.scale", Some(&[n]))?;
        names.extend(["normalizer.offset".into(), "normalizer.scale".into()]);
        Normalizer::from_parts(kind, offset, scale)
            .ok_or_else(|| bad("normalizer offset and scale do not match".into()))?
    };
    let mut unused: Vec<&str> = st
        .names()
        .into_iter()
        .filter(|n| !names.iter().any(|m| m == n))
        .collect();
    unused.sort();
    if let Some(name) = unused.first() {
        if ours {
            return Err(bad(format!(
                "tensor '{name}' is not part of the model's layout: the file is damaged"
            )));
        }
        assumed.push(format!("tensors ignored: {}", unused.join(", ")));
    }
    let task = match get("nnmpi.task") {
        None => {
            assumed.push("regression: the outputs are values".to_string());
            Task::Regression
        }
        Some("regression") => Task::Regression,
        Some("classification") => {
            let classes: Vec<String> =
                serde_json::from_str(get("nnmpi.classes").unwrap_or("[]"))
                    .map_err(|e| bad(format!("nnmpi.classes is not a JSON list of names: {e}")))?;
            let mut sorted: Vec<&String> = classes.iter().collect();
            sorted.sort();
            if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
                return Err(bad(format!("nnmpi.classes names '{}' twice", w[0])));
            }
            Task::Classification { classes }
        }
        Some(other) => {
            return Err(bad(format!(
                "nnmpi.task '{other}' is not classification or regression"
            )));
        }
    };
    let model = Model {
        network,
        normalizer,
        task,
    };
    model.validate().map_err(|e| bad(e.to_string()))?;
    Ok(Imported { model, assumed })
}

/// Reads a safetensors model from `path`. The file is mapped, not read whole: only the
/// tensors the model needs are touched, once, as they are converted.
pub fn import(path: &Path) -> Result<Imported> {
    from_bytes(path, &super::mapped::map_file(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 5-4-3 model whose first layer has pruned (zero) connections.
    fn model(format: Format) -> Model {
        let w0 = Array2::from_shape_fn((4, 5), |(i, j)| {
            if (i + j) % 3 == 0 {
                0.0
            } else {
                (i * 5 + j) as f32 * 0.1 - 0.7
            }
        });
        let w1 = Array2::from_shape_fn((3, 4), |(i, j)| (i as f32 - j as f32) * 0.25 + 0.01);
        let layers = vec![
            Layer::new(
                w0,
                Array1::from(vec![0.1, -0.2, 0.3, 0.0]),
                Activation::LeakyRelu(0.1),
            ),
            Layer::new(w1, Array1::from(vec![0.5; 3]), Activation::Softmax),
        ];
        let layers = layers
            .into_iter()
            .collect::<Result<Vec<_>>>()
            .expect("layers");
        let net = Network::from_layers(layers).expect("a network");
        Model {
            network: net.with_format(format),
            normalizer: Normalizer::from_parts(NormKind::ZScore, vec![0.5; 5], vec![2.0; 5])
                .expect("normaliser"),
            task: Task::Classification {
                classes: vec!["a".into(), "b, c".into(), "\"d\"".into()],
            },
        }
    }

    #[test]
    fn exporting_twice_gives_the_same_bytes() {
        // The metadata used to be written in HashMap order, different in every map.
        for format in [Format::Dense, Format::Sparse] {
            let m = model(format);
            let first = to_bytes(&m).expect("export");
            for _ in 0..8 {
                assert_eq!(to_bytes(&m).expect("export"), first);
            }
            assert_eq!(
                from_bytes(Path::new("m.safetensors"), &first)
                    .unwrap()
                    .model,
                m
            );
            let n = u64::from_le_bytes(first[..8].try_into().unwrap()) as usize;
            assert_eq!(n % 8, 0, "the header is padded to 8 bytes");
        }
    }

    #[test]
    fn round_trips_exactly_with_stable_names() {
        for format in [Format::Dense, Format::Sparse] {
            let m = model(format);
            let bytes = to_bytes(&m).expect("export");
            let back = from_bytes(Path::new("m.safetensors"), &bytes).expect("import");
            assert_eq!(back.model, m, "{format:?}");
            assert!(back.assumed.is_empty());
            let st = SafeTensors::deserialize(&bytes).expect("valid safetensors");
            let mut names = st.names();
            names.sort();
            let weights: Vec<String> = (0..2)
                .flat_map(|i| match format {
                    Format::Sparse => {
                        let mut n = sparse_weight_names(i).to_vec();
                        n.sort();
                        n
                    }
                    _ => vec![weight_name(i)],
                })
                .collect();
            let mut want = vec!["layers.0.bias", "layers.1.bias"];
            want.extend(weights.iter().map(String::as_str));
            want.extend(["normalizer.offset", "normalizer.scale"]);
            want.sort();
            assert_eq!(names, want);
            if format == Format::Sparse {
                let size = st.tensor("layers.0.weight.size").expect("size");
                assert_eq!(
                    (size.dtype(), size.data()),
                    (Dtype::I64, &i64_bytes([4, 5])[..])
                );
            } else {
                assert_eq!(st.tensor("layers.0.weight").expect("w").shape(), &[4, 5]);
            }
        }
    }

    #[test]
    fn compact_layers_stay_compact_and_keep_zero_connections() {
        // A 200 x 300 layer with 5% of its connections, one of them at exactly 0.
        let dense = Array2::from_shape_fn((200, 300), |(i, j)| {
            if (i * 300 + j) % 20 == 0 {
                ((i + j) % 7) as f32 - 3.0
            } else {
                0.0
            }
        });
        let layer = Layer::new(dense, Array1::zeros(200), Activation::CappedRelu(32.0))
            .unwrap()
            .to_format(Format::Sparse);
        let mut m = Model {
            network: Network::from_layers(vec![layer]).unwrap(),
            normalizer: Normalizer::identity(),
            task: Task::Regression,
        };
        m.network.layers_mut()[0].params_mut().0[0] = 0.0;
        let bytes = to_bytes(&m).unwrap();
        assert!(bytes.len() < 200 * 300 * 4 / 5, "{} bytes", bytes.len());
        let back = from_bytes(Path::new("m.safetensors"), &bytes)
            .unwrap()
            .model;
        assert_eq!(back, m);
        // The connection set to 0 is still one.
        let stored = |m: &Model| m.network.layers()[0].weights().stored();
        assert_eq!(stored(&back), stored(&m));
    }

    #[test]
    fn crafted_compact_tensors_are_refused() {
        let tensors = |crow: Vec<u64>, col: Vec<u64>| {
            let (out, nnz) = (crow.len() - 1, col.len());
            let views = [
                (
                    "layers.0.weight.size",
                    Dtype::I64,
                    vec![2],
                    i64_bytes([out as u64, 5]),
                ),
                (
                    "layers.0.weight.crow_indices",
                    Dtype::I64,
                    vec![out + 1],
                    i64_bytes(crow),
                ),
                (
                    "layers.0.weight.col_indices",
                    Dtype::I64,
                    vec![nnz],
                    i64_bytes(col),
                ),
                (
                    "layers.0.weight.values",
                    Dtype::F32,
                    vec![nnz],
                    le_bytes(&vec![1.0; nnz]),
                ),
                (
                    "layers.0.bias",
                    Dtype::F32,
                    vec![out],
                    le_bytes(&vec![0.0; out]),
                ),
            ];
            let views: Vec<_> = views
                .iter()
                .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
                .collect();
            let bytes = safetensors::serialize(views, None).unwrap();
            from_bytes(Path::new("x.safetensors"), &bytes)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert_eq!(tensors(vec![0, 1, 2], vec![0, 4]), Ok(()));
        let err = tensors(vec![0, 2, 1], vec![0, 4]).unwrap_err();
        assert!(err.contains("must start at 0 and never decrease"), "{err}");
        let err = tensors(vec![0, 1, 2], vec![0, 5]).unwrap_err();
        assert!(err.contains("names an input past 5"), "{err}");
        let err = tensors(vec![0, 1, 3], vec![0, 4]).unwrap_err();
        assert!(err.contains("end at the number of entries"), "{err}");
        let err = tensors(vec![0, 2, 2], vec![3, 1]).unwrap_err();
        assert!(err.contains("compact weights"), "{err}");
    }

    #[test]
    fn a_version_1_file_with_layers_written_dense_reads_them_compact() {
        // Version 1 wrote every layer dense and listed the compact ones.
        let sparse = model(Format::Sparse);
        let dense = Model {
            network: sparse.network.with_format(Format::Dense),
            ..sparse.clone()
        };
        let st_bytes = to_bytes(&dense).unwrap();
        let st = SafeTensors::deserialize(&st_bytes).unwrap();
        let (_, header) = SafeTensors::read_metadata(&st_bytes).unwrap();
        let mut meta = header.metadata().clone().unwrap();
        meta.insert("nnmpi.version".into(), "1".into());
        meta.insert("nnmpi.sparse_layers".into(), "0,1".into());
        meta.insert(CRC_KEY.into(), metadata_crc(&meta));
        let views: Vec<_> = st.tensors().into_iter().collect();
        let bytes = safetensors::serialize(views, Some(meta)).unwrap();
        let back = from_bytes(Path::new("v1.safetensors"), &bytes)
            .unwrap()
            .model;
        assert_eq!(back, sparse);
    }

    #[test]
    fn incomplete_or_inconsistent_files_are_refused_with_the_reason() {
        let data = le_bytes(&[1.0; 6]);
        let file = |tensors: Vec<(&str, Vec<usize>)>, meta: Option<HashMap<String, String>>| {
            let views = tensors.into_iter().map(|(name, shape)| {
                let n: usize = shape.iter().product();
                (
                    name,
                    TensorView::new(Dtype::F32, shape, &data[..4 * n]).expect("a view"),
                )
            });
            let bytes = safetensors::serialize(views, meta).expect("serialises");
            from_bytes(Path::new("x.safetensors"), &bytes).map_err(|e| e.to_string())
        };
        let no_bias = file(vec![("layers.0.weight", vec![2, 3])], None);
        assert!(no_bias.unwrap_err().contains("no tensor 'layers.0.bias'"));
        let bad_bias = file(
            vec![("layers.0.weight", vec![2, 3]), ("layers.0.bias", vec![3])],
            None,
        );
        assert!(bad_bias.unwrap_err().contains("expected [2]"));
        let layer = || vec![("layers.0.weight", vec![2, 3]), ("layers.0.bias", vec![2])];
        let meta = |pairs: &[(&str, &str)]| {
            Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<HashMap<_, _>>(),
            )
        };
        let full = [
            ("nnmpi.activations", "relu,relu"),
            ("nnmpi.normalizer", "none"),
            ("nnmpi.task", "regression"),
        ];
        let too_many = file(layer(), meta(&full));
        assert!(too_many.unwrap_err().contains("2 activations for 1 layers"));
        // Metadata written by hand may leave keys out: their defaults are stated.
        let mut partial = full[..1].to_vec();
        partial[0].1 = "tanh";
        let partial = file(layer(), meta(&partial)).expect("a model");
        assert_eq!(partial.assumed.len(), 2, "{:?}", partial.assumed);
        assert_eq!(partial.model.network.output_activation(), Activation::Tanh);
        let typo = file(layer(), meta(&[("nnmpi.taks", "regression")]));
        assert!(
            typo.unwrap_err()
                .contains("unknown metadata key 'nnmpi.taks'")
        );
        let mut bad = full.to_vec();
        bad.push(("nnmpi.sparse_layers", "1"));
        bad[0].1 = "relu";
        let out_of_range = file(layer(), meta(&bad));
        assert!(out_of_range.unwrap_err().contains("'1' is not the index"));
        let mut twice = full.to_vec();
        twice[0].1 = "sigmoid";
        twice[2].1 = "classification";
        twice.push(("nnmpi.classes", r#"["a","a"]"#));
        assert!(
            file(layer(), meta(&twice))
                .unwrap_err()
                .contains("names 'a' twice")
        );
        // Without metadata a lone layer is linear (identity), as documented, and what was
        // assumed is said.
        let plain = file(layer(), None).expect("a plain model");
        assert_eq!(
            plain.model.network.output_activation(),
            Activation::Identity
        );
        assert_eq!(plain.model.network.sizes(), vec![3, 2]);
        assert_eq!(plain.assumed.len(), 3, "{:?}", plain.assumed);
        // Its extra tensors are ignored, and said so; in an nnmpi file they are damage.
        let mut extra = layer();
        extra.push(("running_mean", vec![2]));
        let lenient = file(extra.clone(), None).expect("a plain model");
        assert!(lenient.assumed.iter().any(|a| a.contains("running_mean")));
        let mut ok = full.to_vec();
        ok[0].1 = "relu";
        assert!(
            file(extra, meta(&ok))
                .unwrap_err()
                .contains("'running_mean' is not part")
        );
    }

    #[test]
    fn every_bit_flip_in_the_header_is_an_error_or_changes_nothing() {
        // safetensors has no checksum: 130 of 1,024 header flips used to rename an nnmpi key
        // and import fell back to other activations, no normaliser, regression.
        for format in [Format::Dense, Format::Sparse] {
            let m = model(format);
            let bytes = to_bytes(&m).expect("export");
            let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            let (mut errors, mut same) = (0, 0);
            for bit in 0..8 * header {
                let mut b = bytes.clone();
                b[bit / 8] ^= 1 << (bit % 8);
                match from_bytes(Path::new("f.safetensors"), &b) {
                    Err(_) => errors += 1,
                    Ok(back) => {
                        // The sparse flag may flip: the same weights, stored otherwise.
                        let dense = |n: &Network| n.clone().with_format(Format::Dense);
                        assert_eq!(dense(&back.model.network), dense(&m.network), "bit {bit}");
                        assert_eq!(back.model.normalizer, m.normalizer, "bit {bit}");
                        assert_eq!(back.model.task, m.task, "bit {bit}");
                        same += 1;
                    }
                }
            }
            assert!(errors > same, "{errors} errors, {same} harmless flips");
        }
    }
}
