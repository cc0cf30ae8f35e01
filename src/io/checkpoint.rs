//! The checkpoint format.
//!
//! ```text
//! offset  size  field
//! 0       8     magic "NNMPI\x00CK"
//! 8       4     format version (u32 LE)
//! 12      8     payload length in bytes (u64 LE)
//! 20      4     CRC-32 of the payload (u32 LE)
//! 24      n     payload: bincode (standard config) of the records below
//! ```
//! The payload holds the writer's crate version, the model (layers — a sparse layer as its
//! row offsets, columns and values, so its size follows its connections; weights and columns
//! as blocks of little-endian bytes, read in one pass — normaliser, task) and,
//! optionally, the training state for an exact `--resume`. Nothing in it depends on the
//! number of processes. Reading checks magic, version, length and checksum before decoding,
//! decodes with a size limit, and validates every shape before building the model.

use super::atomic::write_atomic;
use super::records::{
    ActivationRecord, LeVec, OptimizerStateRecord, StreamRecord, TrainConfigRecord,
};
use crate::data::{NormKind, Normalizer};
use crate::error::{Error, Result};
use crate::model::{Layer, Model, Network, Structure, Task, Weights};
use crate::train::{Best, EpochProgress, TrainConfig, TrainState};
use ndarray::Array1;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// First bytes of every checkpoint.
pub const MAGIC: [u8; 8] = *b"NNMPI\x00CK";
/// Version of the layout above and of the records in the payload. Version 2 added sparse
/// layers; version 3 stores a layer's weights and columns as byte blocks; version 4 adds to
/// the training state the run's first loss and an interrupted epoch's progress. Files of
/// versions 1 (dense only) to 3 are still read.
pub const FORMAT_VERSION: u32 = 4;
const HEADER_LEN: usize = 24;
/// Largest payload a checkpoint may declare (64 GiB).
const MAX_PAYLOAD: u64 = 1 << 36;

/// A model and, optionally, the state to resume its training.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The model.
    pub model: Model,
    /// Training state, for `--resume`.
    pub training: Option<TrainingCheckpoint>,
}

/// What a resumed training run needs besides the model.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainingCheckpoint {
    /// Hyper-parameters of the run.
    pub config: TrainConfig,
    /// Fraction of the data held out for validation.
    pub validation_split: f64,
    /// Epoch, optimiser and random state.
    pub state: TrainState,
}

/// A layer in format version 3: `weights` are the stored values (all of them row-major, or
/// the present connections when `sparse` gives their positions).
#[derive(Serialize, Deserialize)]
struct LayerRecord {
    outputs: u64,
    inputs: u64,
    activation: ActivationRecord,
    weights: LeVec<f32>,
    bias: Vec<f32>,
    sparse: Option<SparseRecord>,
}

/// Where a sparse layer's values sit: CSR row offsets and columns.
#[derive(Serialize, Deserialize)]
struct SparseRecord {
    row_ptr: Vec<u64>,
    col: Columns,
}

/// A sparse layer's column indices, in 2 bytes each when the layer has at most 65536 inputs.
#[derive(Serialize, Deserialize)]
enum Columns {
    Narrow(LeVec<u16>),
    Wide(LeVec<u32>),
}

impl Columns {
    /// The narrowest form that holds every index below `inputs`.
    fn new(cols: Vec<u32>, inputs: usize) -> Columns {
        if inputs <= 1 << 16 {
            Columns::Narrow(LeVec(cols.into_iter().map(|j| j as u16).collect()))
        } else {
            Columns::Wide(LeVec(cols))
        }
    }

    fn into_u32(self) -> Vec<u32> {
        match self {
            Columns::Narrow(c) => c.0.into_iter().map(u32::from).collect(),
            Columns::Wide(c) => c.0,
        }
    }
}

/// A layer in format version 2: as version 3, with weights and columns element by element.
#[derive(Serialize, Deserialize)]
struct LayerRecordV2 {
    outputs: u64,
    inputs: u64,
    activation: ActivationRecord,
    weights: Vec<f32>,
    bias: Vec<f32>,
    sparse: Option<SparseRecordV2>,
}

/// [`SparseRecord`] in format version 2.
#[derive(Serialize, Deserialize)]
struct SparseRecordV2 {
    row_ptr: Vec<u64>,
    col: Vec<u32>,
}

impl From<LayerRecordV2> for LayerRecord {
    fn from(r: LayerRecordV2) -> Self {
        LayerRecord {
            outputs: r.outputs,
            inputs: r.inputs,
            activation: r.activation,
            weights: LeVec(r.weights),
            bias: r.bias,
            sparse: r.sparse.map(|s| SparseRecord {
                row_ptr: s.row_ptr,
                col: Columns::Wide(LeVec(s.col)),
            }),
        }
    }
}

/// A layer in format version 1 (always dense).
#[derive(Serialize, Deserialize)]
struct LayerRecordV1 {
    outputs: u64,
    inputs: u64,
    activation: ActivationRecord,
    weights: Vec<f32>,
    bias: Vec<f32>,
}

impl From<LayerRecordV1> for LayerRecord {
    fn from(r: LayerRecordV1) -> Self {
        LayerRecord {
            outputs: r.outputs,
            inputs: r.inputs,
            activation: r.activation,
            weights: LeVec(r.weights),
            bias: r.bias,
            sparse: None,
        }
    }
}

#[derive(Serialize, Deserialize)]
enum TaskRecord {
    Classification(Vec<String>),
    Regression,
}

#[derive(Serialize, Deserialize)]
struct NormRecord {
    kind: u8,
    offset: Vec<f32>,
    scale: Vec<f32>,
}

#[derive(Serialize, Deserialize)]
struct BestRecord<L> {
    epoch: u64,
    val_loss: f64,
    layers: Vec<L>,
}

/// The training state; `L` is the layer record of the format version, `C` what version 4
/// added ([`Continuation`]; nothing before).
#[derive(Serialize, Deserialize)]
struct TrainingRecord<L, C> {
    config: TrainConfigRecord,
    validation_split: f64,
    epoch: u64,
    rng: StreamRecord,
    optimizer: OptimizerStateRecord,
    best: Option<BestRecord<L>>,
    bad_epochs: u64,
    continuation: C,
}

/// What format version 4 added to the training state, to resume exactly where a run stopped,
/// also inside an epoch.
#[derive(Serialize, Deserialize, Default)]
struct Continuation {
    start_loss: Option<f64>,
    progress: Option<ProgressRecord>,
}

/// An interrupted epoch ([`EpochProgress`]).
#[derive(Serialize, Deserialize)]
struct ProgressRecord {
    batches: u64,
    shuffle: StreamRecord,
    totals: [f64; 3],
}

/// The training state's [`Continuation`] in format versions 1 to 3: absent (no bytes).
#[derive(Serialize, Deserialize)]
struct Absent;

impl From<Absent> for Continuation {
    fn from(_: Absent) -> Self {
        Continuation::default()
    }
}

/// The payload; `L` is the layer record of the format version, `C` its training state's
/// continuation.
#[derive(Serialize, Deserialize)]
struct Payload<L, C = Continuation> {
    writer: String,
    layers: Vec<L>,
    normalizer: NormRecord,
    task: TaskRecord,
    training: Option<TrainingRecord<L, C>>,
}

impl<L: Into<LayerRecord>, C: Into<Continuation>> Payload<L, C> {
    /// The same payload in today's records.
    fn upgrade(self) -> Payload<LayerRecord> {
        let layers = |v: Vec<L>| v.into_iter().map(L::into).collect();
        Payload {
            writer: self.writer,
            layers: layers(self.layers),
            normalizer: self.normalizer,
            task: self.task,
            training: self.training.map(|t| TrainingRecord {
                config: t.config,
                validation_split: t.validation_split,
                epoch: t.epoch,
                rng: t.rng,
                optimizer: t.optimizer,
                best: t.best.map(|b| BestRecord {
                    epoch: b.epoch,
                    val_loss: b.val_loss,
                    layers: layers(b.layers),
                }),
                bad_epochs: t.bad_epochs,
                continuation: t.continuation.into(),
            }),
        }
    }
}

fn layer_records(net: &Network) -> Vec<LayerRecord> {
    net.layers()
        .iter()
        .map(|l| LayerRecord {
            outputs: l.outputs() as u64,
            inputs: l.inputs() as u64,
            activation: l.activation().into(),
            weights: LeVec(l.weight_slice().to_vec()),
            bias: l.bias().to_vec(),
            // The format stores a sparse layer's row offsets: the running sum of its row
            // lengths, from 0.
            sparse: l.weights().structure().map(|s| SparseRecord {
                row_ptr: std::iter::once(0)
                    .chain(s.row_lens.iter().scan(0u64, |at, &n| {
                        *at += n;
                        Some(*at)
                    }))
                    .collect(),
                col: Columns::new(s.cols, l.inputs()),
            }),
        })
        .collect()
}

/// The layers of `records`, each checked before it is built. `panel_budget` bounds what a
/// sparse layer's panel offsets (one per neuron and 256 inputs, present or not) may take, so a
/// crafted input count in a small file cannot ask for gigabytes.
fn network_from(
    records: Vec<LayerRecord>,
    panel_budget: usize,
    bad: &dyn Fn(String) -> Error,
) -> Result<Network> {
    let mut layers = Vec::with_capacity(records.len());
    for (i, r) in records.into_iter().enumerate() {
        let (out, inp) = (r.outputs as usize, r.inputs as usize);
        let weights = match r.sparse {
            None => {
                let expected = out
                    .checked_mul(inp)
                    .ok_or_else(|| bad(format!("layer {i}: shape {out}x{inp} overflows")))?;
                if r.weights.0.len() != expected || r.bias.len() != out {
                    return Err(bad(format!(
                        "layer {i}: {} weights and {} biases do not fit its shape {out}x{inp}",
                        r.weights.0.len(),
                        r.bias.len()
                    )));
                }
                Weights::from_structure(out, inp, r.weights.0, None)
                    .map_err(|e| bad(format!("layer {i}: {e}")))?
            }
            Some(sp) => {
                let cells = out.saturating_mul(inp.div_ceil(crate::sparse::PANEL));
                if cells > panel_budget {
                    return Err(bad(format!(
                        "layer {i}: a sparse {out}x{inp} layer is out of proportion to the file's size"
                    )));
                }
                if sp.row_ptr.len() != out + 1 || r.bias.len() != out {
                    return Err(bad(format!(
                        "layer {i}: {} row offsets and {} biases do not fit its {out} neurons",
                        sp.row_ptr.len(),
                        r.bias.len()
                    )));
                }
                let sparse_error = |e: String| bad(format!("layer {i}: sparse weights: {e}"));
                if sp.row_ptr.first() != Some(&0) {
                    return Err(sparse_error("row offsets must start at 0".into()));
                }
                let row_lens = sp
                    .row_ptr
                    .windows(2)
                    .map(|w| w[1].checked_sub(w[0]))
                    .collect::<Option<Vec<u64>>>()
                    .ok_or_else(|| sparse_error("row offsets decrease".into()))?;
                let structure = Structure {
                    row_lens,
                    cols: sp.col.into_u32(),
                };
                Weights::from_structure(out, inp, r.weights.0, Some(structure))
                    .map_err(sparse_error)?
            }
        };
        layers.push(
            Layer::from_weights(weights, Array1::from(r.bias), r.activation.into())
                .map_err(|e| bad(format!("layer {i}: {e}")))?,
        );
    }
    Network::from_layers(layers).map_err(|e| bad(e.to_string()))
}

fn norm_code(kind: NormKind) -> u8 {
    match kind {
        NormKind::None => 0,
        NormKind::MinMax => 1,
        NormKind::ZScore => 2,
    }
}

/// Serialises a checkpoint to bytes (header + payload).
/// A model with NaN or infinite parameters is refused: such a file could only mislead.
pub fn encode(ckpt: &Checkpoint) -> Result<Vec<u8>> {
    let m = &ckpt.model;
    m.validate()?;
    if let Some(best) = ckpt.training.as_ref().and_then(|t| t.state.best.as_ref()) {
        best.network.check_finite()?;
    }
    let payload = Payload {
        writer: format!("nnmpi {}", env!("CARGO_PKG_VERSION")),
        layers: layer_records(&m.network),
        normalizer: NormRecord {
            kind: norm_code(m.normalizer.kind()),
            offset: m.normalizer.offset().to_vec(),
            scale: m.normalizer.scale().to_vec(),
        },
        task: match &m.task {
            Task::Classification { classes } => TaskRecord::Classification(classes.clone()),
            Task::Regression => TaskRecord::Regression,
        },
        training: ckpt.training.as_ref().map(|t| TrainingRecord {
            config: (&t.config).into(),
            validation_split: t.validation_split,
            epoch: t.state.epoch as u64,
            rng: t.state.rng.into(),
            optimizer: t.state.optimizer.clone().into(),
            best: t.state.best.as_ref().map(|b| BestRecord {
                epoch: b.epoch as u64,
                val_loss: b.val_loss,
                layers: layer_records(&b.network),
            }),
            bad_epochs: t.state.bad_epochs as u64,
            continuation: Continuation {
                start_loss: t.state.start_loss,
                progress: t.state.progress.as_ref().map(|p| ProgressRecord {
                    batches: p.batches as u64,
                    shuffle: p.shuffle.into(),
                    totals: p.totals,
                }),
            },
        }),
    };
    let body = bincode::serde::encode_to_vec(&payload, bincode::config::standard())
        .map_err(|e| Error::config(format!("cannot encode checkpoint: {e}")))?;
    Ok(frame(FORMAT_VERSION, &body))
}

/// The header for `body` in format `version`, then `body`.
fn frame(version: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Parses checkpoint bytes; `path` is only used in messages.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<Checkpoint> {
    let bad = |msg: String| Error::checkpoint(path, msg);
    if bytes.len() < HEADER_LEN {
        return Err(bad(format!(
            "{} bytes is too short for a checkpoint header ({HEADER_LEN} bytes): truncated or not a checkpoint",
            bytes.len()
        )));
    }
    if bytes[..8] != MAGIC {
        return Err(bad("not an nnmpi checkpoint (wrong magic bytes)".into()));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if !(1..=FORMAT_VERSION).contains(&version) {
        return Err(bad(format!(
            "format version {version} is not supported (this nnmpi reads versions 1 to {FORMAT_VERSION})"
        )));
    }
    let declared = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let actual = (bytes.len() - HEADER_LEN) as u64;
    if declared > MAX_PAYLOAD {
        return Err(bad(format!(
            "declared payload of {declared} bytes exceeds the limit of {MAX_PAYLOAD}: corrupt or crafted file"
        )));
    }
    if declared != actual {
        return Err(bad(format!(
            "declares {declared} payload bytes but holds {actual}: the file is truncated or corrupt"
        )));
    }
    let body = &bytes[HEADER_LEN..];
    let crc = u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"));
    if crc32fast::hash(body) != crc {
        return Err(bad("checksum mismatch: the file is corrupt".into()));
    }
    let cannot = |e: bincode::error::DecodeError| bad(format!("cannot decode payload: {e}"));
    let (p, used) = match version {
        1 => decode_bounded::<Payload<LayerRecordV1, Absent>>(body).map(|(p, n)| (p.upgrade(), n)),
        2 => decode_bounded::<Payload<LayerRecordV2, Absent>>(body).map(|(p, n)| (p.upgrade(), n)),
        3 => decode_bounded::<Payload<LayerRecord, Absent>>(body).map(|(p, n)| (p.upgrade(), n)),
        _ => decode_bounded::<Payload<LayerRecord>>(body),
    }
    .map_err(cannot)?;
    if used != body.len() {
        return Err(bad(format!(
            "{} trailing bytes after the payload",
            body.len() - used
        )));
    }
    let panel_budget = body.len().saturating_mul(64).max(1 << 22);
    from_payload(p, panel_budget, &bad)
}

/// Decodes `body` with a memory limit of a small multiple of its length. bincode counts the
/// bytes each value claims (8 for a varint `u64` that may take 1 byte in the file) and
/// allocates a string or byte vector of a declared length before reading it, so without a
/// limit tied to the payload a crafted length in a small file asks for gigabytes. bincode's
/// limit is a type parameter: the smallest of the powers of 4 from 1 MiB that is at least 8×
/// the payload is taken, so loading needs at most 32× the file size.
fn decode_bounded<'a, T: Deserialize<'a>>(
    body: &'a [u8],
) -> std::result::Result<(T, usize), bincode::error::DecodeError> {
    macro_rules! ladder {
        ($($shift:literal)*) => {
            $(
                if body.len().saturating_mul(8) <= 1usize << $shift {
                    let config = bincode::config::standard().with_limit::<{ 1usize << $shift }>();
                    return bincode::serde::borrow_decode_from_slice(body, config);
                }
            )*
        };
    }
    ladder!(20 22 24 26 28 30 32 34 36 38 40);
    Err(bincode::error::DecodeError::LimitExceeded)
}

fn from_payload(
    p: Payload<LayerRecord>,
    panel_budget: usize,
    bad: &dyn Fn(String) -> Error,
) -> Result<Checkpoint> {
    let network = network_from(p.layers, panel_budget, bad)?;
    let kind = match p.normalizer.kind {
        0 => NormKind::None,
        1 => NormKind::MinMax,
        2 => NormKind::ZScore,
        k => return Err(bad(format!("unknown normaliser kind {k}"))),
    };
    let normalizer = Normalizer::from_parts(kind, p.normalizer.offset, p.normalizer.scale)
        .ok_or_else(|| bad("normaliser statistics have inconsistent lengths".into()))?;
    let task = match p.task {
        TaskRecord::Classification(classes) => Task::Classification { classes },
        TaskRecord::Regression => Task::Regression,
    };
    let model = Model {
        network,
        normalizer,
        task,
    };
    model.validate().map_err(|e| bad(e.to_string()))?;
    let training = match p.training {
        None => None,
        Some(t) => {
            let best = match t.best {
                None => None,
                Some(b) => {
                    let net = network_from(b.layers, panel_budget, bad)?;
                    if net.sizes() != model.network.sizes() {
                        return Err(bad(
                            "the early-stopping snapshot has a different shape from the model"
                                .into(),
                        ));
                    }
                    Some(Best {
                        epoch: b.epoch as usize,
                        val_loss: b.val_loss,
                        network: net,
                    })
                }
            };
            Some(TrainingCheckpoint {
                config: t.config.into(),
                validation_split: t.validation_split,
                state: TrainState {
                    epoch: t.epoch as usize,
                    rng: t.rng.into(),
                    optimizer: t.optimizer.into(),
                    best,
                    bad_epochs: t.bad_epochs as usize,
                    start_loss: t.continuation.start_loss,
                    progress: t.continuation.progress.map(|p| EpochProgress {
                        batches: p.batches as usize,
                        shuffle: p.shuffle.into(),
                        totals: p.totals,
                    }),
                },
            })
        }
    };
    Ok(Checkpoint { model, training })
}

/// Writes `ckpt` to `path` atomically (temp file, fsync, rename).
pub fn save(path: &Path, ckpt: &Checkpoint) -> Result<()> {
    write_atomic(path, &encode(ckpt)?)
}

/// Reads and validates the checkpoint at `path`. The file is mapped, not copied, while it is
/// decoded; the header is checked against the file size before the payload is touched.
pub fn load(path: &Path) -> Result<Checkpoint> {
    decode(path, &super::mapped::map_file(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Activation, Init};
    use crate::sparse::Csr;

    fn model(network: Network) -> Checkpoint {
        Checkpoint {
            model: Model {
                network,
                normalizer: Normalizer::identity(),
                task: Task::Regression,
            },
            training: None,
        }
    }

    #[test]
    fn version_1_files_are_still_read() {
        let net = Network::new(
            &[3, 2, 1],
            Activation::Tanh,
            Activation::Identity,
            Init::Xavier,
            5,
        )
        .unwrap();
        let v1: Payload<LayerRecordV1, Absent> = Payload {
            writer: "nnmpi 0.1.0".into(),
            layers: net
                .layers()
                .iter()
                .map(|l| LayerRecordV1 {
                    outputs: l.outputs() as u64,
                    inputs: l.inputs() as u64,
                    activation: l.activation().into(),
                    weights: l.weight_slice().to_vec(),
                    bias: l.bias().to_vec(),
                })
                .collect(),
            normalizer: NormRecord {
                kind: 0,
                offset: vec![],
                scale: vec![],
            },
            task: TaskRecord::Regression,
            training: None,
        };
        let body = bincode::serde::encode_to_vec(&v1, bincode::config::standard()).unwrap();
        let read = decode(Path::new("v1.nnmpi"), &frame(1, &body)).unwrap();
        assert_eq!(read, model(net));
    }

    #[test]
    fn version_3_training_state_reads_without_the_continuation_version_4_added() {
        let net = Network::new(
            &[2, 3, 1],
            Activation::Relu,
            Activation::Sigmoid,
            Init::He,
            9,
        )
        .unwrap();
        let config = crate::train::TrainConfig {
            epochs: 10,
            batch_size: 4,
            loss: crate::train::Loss::BinaryCrossEntropy,
            optimizer: crate::train::OptimizerConfig::adam(0.01),
            seed: 3,
            patience: None,
            shuffle: true,
        };
        let rng = crate::model::UniformStream::new(3, 21).position();
        let v3: Payload<LayerRecord, Absent> = Payload {
            writer: "nnmpi 0.1.0".into(),
            layers: layer_records(&net),
            normalizer: NormRecord {
                kind: 0,
                offset: vec![],
                scale: vec![],
            },
            task: TaskRecord::Regression,
            training: Some(TrainingRecord {
                config: (&config).into(),
                validation_split: 0.25,
                epoch: 4,
                rng: rng.into(),
                optimizer: crate::train::OptimizerState::default().into(),
                best: None,
                bad_epochs: 0,
                continuation: Absent,
            }),
        };
        let body = bincode::serde::encode_to_vec(&v3, bincode::config::standard()).unwrap();
        let read = decode(Path::new("v3.nnmpi"), &frame(3, &body)).unwrap();
        let training = read.training.unwrap();
        assert_eq!((training.state.epoch, training.state.rng), (4, rng));
        assert_eq!(training.config, config);
        assert_eq!(
            (training.state.start_loss, training.state.progress),
            (None, None)
        );
        // Read as version 4, the same bytes lack the continuation's fields.
        assert!(decode(Path::new("v3.nnmpi"), &frame(4, &body)).is_err());
    }

    #[test]
    fn a_sparse_layer_round_trips_and_its_size_follows_its_connections() {
        let net = Network::new(
            &[400, 300, 2],
            Activation::Relu,
            Activation::Softmax,
            Init::He,
            1,
        )
        .unwrap();
        let dense_bytes = encode(&model(net.clone())).unwrap().len();
        let mut layers = net.layers().to_vec();
        let w = layers[0].weight_slice();
        // Keep every 10th connection of the big layer.
        let csr = Csr::from_dense_where(w, 300, 400, |k, _| k % 10 == 0);
        layers[0] = Layer::from_weights(
            Weights::Sparse(csr),
            Array1::from(layers[0].bias().to_vec()),
            Activation::Relu,
        )
        .unwrap();
        let sparse = model(Network::from_layers(layers).unwrap());
        let bytes = encode(&sparse).unwrap();
        assert_eq!(decode(Path::new("s.nnmpi"), &bytes).unwrap(), sparse);
        let ratio = bytes.len() as f64 / dense_bytes as f64;
        assert!(
            ratio < 0.2,
            "a 90%-sparse checkpoint is {ratio:.2} of the dense one"
        );
    }

    #[test]
    fn columns_past_65536_inputs_round_trip() {
        // Rows of a 70000-input layer with connections on both sides of 2^16.
        let (rows, cols) = (3, 70_000);
        let mut dense = vec![0.0f32; rows * cols];
        for (k, &j) in [0usize, 65_535, 65_536, 69_999].iter().enumerate() {
            dense[(k % rows) * cols + j] = 0.5 + k as f32;
        }
        let layer = Layer::from_weights(
            Weights::Sparse(Csr::from_dense(&dense, rows, cols)),
            Array1::from(vec![0.1, -0.2, 0.3]),
            Activation::Relu,
        )
        .unwrap();
        let net = model(Network::from_layers(vec![layer]).unwrap());
        let bytes = encode(&net).unwrap();
        assert_eq!(decode(Path::new("wide.nnmpi"), &bytes).unwrap(), net);
    }
}
