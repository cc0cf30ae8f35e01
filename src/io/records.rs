//! The checkpoint payload's own record types. bincode writes an enum as the position of its
//! variant, so the order of the variants below *is* the file format: a new variant goes at
//! the end of its enum, never between others, and nothing here changes meaning when the live
//! types ([`Activation`], [`Loss`], [`OptimizerConfig`], ...) gain, lose or reorder variants.
//! Each record converts from and to its live type by an explicit `match`, so a live variant
//! without a record is a compile error here, not a silently different file.
//!
//! The records encode exactly as format version 2 encoded the live types of its day, so every
//! version-2 file still reads (tested with a file kept from then,
//! `tests/fixtures/v2-sonar-sparse-adam.nnmpi`). Version 3 changed only how a layer's weights
//! and columns are stored ([`LeVec`]).

use crate::model::{Activation, StreamPosition};
use crate::train::{Loss, OptimizerConfig, OptimizerState, TrainConfig};
use serde::{Deserialize, Serialize};

/// A vector stored as one block of little-endian bytes (its length in bytes, then the bytes).
/// A layer's weights and columns are read in one pass over the block this way, instead of
/// element by element.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct LeVec<T>(pub Vec<T>);

/// A fixed-size number as little-endian bytes.
pub(super) trait LeWord: Copy {
    /// Bytes of one value.
    const SIZE: usize;
    /// Appends the value's bytes to `out`.
    fn put(self, out: &mut Vec<u8>);
    /// The value of exactly [`LeWord::SIZE`] bytes.
    fn get(bytes: &[u8]) -> Self;
}

macro_rules! le_word {
    ($($t:ty),*) => {$(
        impl LeWord for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn get(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().expect("LeWord::SIZE bytes"))
            }
        }
    )*};
}
le_word!(f32, u32, u16);

impl<T: LeWord> Serialize for LeVec<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::with_capacity(self.0.len() * T::SIZE);
        self.0.iter().for_each(|v| v.put(&mut bytes));
        s.serialize_bytes(&bytes)
    }
}

impl<'de, T: LeWord> Deserialize<'de> for LeVec<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Block<T>(std::marker::PhantomData<T>);
        impl<T: LeWord> serde::de::Visitor<'_> for Block<T> {
            type Value = LeVec<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "a block of {}-byte little-endian values", T::SIZE)
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<LeVec<T>, E> {
                if !bytes.len().is_multiple_of(T::SIZE) {
                    return Err(E::invalid_length(bytes.len(), &self));
                }
                Ok(LeVec(bytes.chunks_exact(T::SIZE).map(T::get).collect()))
            }
        }
        d.deserialize_bytes(Block(std::marker::PhantomData))
    }
}

/// An activation. Append only.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub(super) enum ActivationRecord {
    Sigmoid,
    Tanh,
    Relu,
    LeakyRelu(f32),
    Identity,
    Softmax,
    Gelu,
    Silu,
    CappedRelu(f32),
}

impl From<Activation> for ActivationRecord {
    fn from(a: Activation) -> Self {
        match a {
            Activation::Sigmoid => ActivationRecord::Sigmoid,
            Activation::Tanh => ActivationRecord::Tanh,
            Activation::Relu => ActivationRecord::Relu,
            Activation::LeakyRelu(alpha) => ActivationRecord::LeakyRelu(alpha),
            Activation::Identity => ActivationRecord::Identity,
            Activation::Softmax => ActivationRecord::Softmax,
            Activation::Gelu => ActivationRecord::Gelu,
            Activation::Silu => ActivationRecord::Silu,
            Activation::CappedRelu(cap) => ActivationRecord::CappedRelu(cap),
        }
    }
}

impl From<ActivationRecord> for Activation {
    fn from(a: ActivationRecord) -> Self {
        match a {
            ActivationRecord::Sigmoid => Activation::Sigmoid,
            ActivationRecord::Tanh => Activation::Tanh,
            ActivationRecord::Relu => Activation::Relu,
            ActivationRecord::LeakyRelu(alpha) => Activation::LeakyRelu(alpha),
            ActivationRecord::Identity => Activation::Identity,
            ActivationRecord::Softmax => Activation::Softmax,
            ActivationRecord::Gelu => Activation::Gelu,
            ActivationRecord::Silu => Activation::Silu,
            ActivationRecord::CappedRelu(cap) => Activation::CappedRelu(cap),
        }
    }
}

/// A loss. Append only.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
enum LossRecord {
    Mse,
    BinaryCrossEntropy,
    SoftmaxCrossEntropy,
}

impl From<Loss> for LossRecord {
    fn from(l: Loss) -> Self {
        match l {
            Loss::Mse => LossRecord::Mse,
            Loss::BinaryCrossEntropy => LossRecord::BinaryCrossEntropy,
            Loss::SoftmaxCrossEntropy => LossRecord::SoftmaxCrossEntropy,
        }
    }
}

impl From<LossRecord> for Loss {
    fn from(l: LossRecord) -> Self {
        match l {
            LossRecord::Mse => Loss::Mse,
            LossRecord::BinaryCrossEntropy => Loss::BinaryCrossEntropy,
            LossRecord::SoftmaxCrossEntropy => Loss::SoftmaxCrossEntropy,
        }
    }
}

/// An optimiser's hyper-parameters. Append only (variants and fields).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
enum OptimizerRecord {
    Sgd {
        lr: f32,
        momentum: f32,
        weight_decay: f32,
    },
    Adam {
        lr: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        weight_decay: f32,
    },
}

impl From<OptimizerConfig> for OptimizerRecord {
    fn from(o: OptimizerConfig) -> Self {
        match o {
            OptimizerConfig::Sgd {
                lr,
                momentum,
                weight_decay,
            } => OptimizerRecord::Sgd {
                lr,
                momentum,
                weight_decay,
            },
            OptimizerConfig::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            } => OptimizerRecord::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            },
        }
    }
}

impl From<OptimizerRecord> for OptimizerConfig {
    fn from(o: OptimizerRecord) -> Self {
        match o {
            OptimizerRecord::Sgd {
                lr,
                momentum,
                weight_decay,
            } => OptimizerConfig::Sgd {
                lr,
                momentum,
                weight_decay,
            },
            OptimizerRecord::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            } => OptimizerConfig::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            },
        }
    }
}

/// How a run trains (counts as u64, which bincode writes as it wrote `usize`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct TrainConfigRecord {
    epochs: u64,
    batch_size: u64,
    loss: LossRecord,
    optimizer: OptimizerRecord,
    seed: u64,
    patience: Option<u64>,
    shuffle: bool,
}

impl From<&TrainConfig> for TrainConfigRecord {
    fn from(c: &TrainConfig) -> Self {
        TrainConfigRecord {
            epochs: c.epochs as u64,
            batch_size: c.batch_size as u64,
            loss: c.loss.into(),
            optimizer: c.optimizer.into(),
            seed: c.seed,
            patience: c.patience.map(|p| p as u64),
            shuffle: c.shuffle,
        }
    }
}

impl From<TrainConfigRecord> for TrainConfig {
    fn from(c: TrainConfigRecord) -> Self {
        TrainConfig {
            epochs: c.epochs as usize,
            batch_size: c.batch_size as usize,
            loss: c.loss.into(),
            optimizer: c.optimizer.into(),
            seed: c.seed,
            patience: c.patience.map(|p| p as usize),
            shuffle: c.shuffle,
        }
    }
}

/// Where the run's random stream is.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct StreamRecord {
    seed: u64,
    stream: u64,
    word_pos: u128,
}

impl From<StreamPosition> for StreamRecord {
    fn from(p: StreamPosition) -> Self {
        StreamRecord {
            seed: p.seed,
            stream: p.stream,
            word_pos: p.word_pos,
        }
    }
}

impl From<StreamRecord> for StreamPosition {
    fn from(p: StreamRecord) -> Self {
        StreamPosition {
            seed: p.seed,
            stream: p.stream,
            word_pos: p.word_pos,
        }
    }
}

/// What the optimiser remembers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct OptimizerStateRecord {
    step: u64,
    first: Vec<Vec<f32>>,
    second: Vec<Vec<f32>>,
}

impl From<OptimizerState> for OptimizerStateRecord {
    fn from(s: OptimizerState) -> Self {
        OptimizerStateRecord {
            step: s.step,
            first: s.first,
            second: s.second,
        }
    }
}

impl From<OptimizerStateRecord> for OptimizerState {
    fn from(s: OptimizerStateRecord) -> Self {
        OptimizerState {
            step: s.step,
            first: s.first,
            second: s.second,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes<T: Serialize>(v: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec(v, bincode::config::standard()).unwrap()
    }

    /// A live enum after a variant was inserted in the middle: its tags move.
    #[derive(Serialize)]
    enum Inserted {
        Sigmoid,
        Gelu,
        Tanh,
    }

    #[test]
    fn records_keep_their_tags_whatever_the_live_types_do() {
        // Format version 2's tags: Sigmoid 0, Tanh 1, Relu 2, LeakyRelu 3, Identity 4,
        // Softmax 5; losses Mse 0, Bce 1, Ce 2.
        let act = |a| bytes(&ActivationRecord::from(a));
        assert_eq!(act(Activation::Tanh), [1]);
        assert_eq!(act(Activation::Identity), [4]);
        assert_eq!(act(Activation::Softmax), [5]);
        assert_eq!(act(Activation::Gelu), [6]);
        assert_eq!(act(Activation::Silu), [7]);
        assert_eq!(act(Activation::LeakyRelu(0.5)), [3, 0, 0, 0, 0x3f]);
        assert_eq!(act(Activation::CappedRelu(2.0)), [8, 0, 0, 0, 0x40]);
        assert_eq!(bytes(&LossRecord::from(Loss::SoftmaxCrossEntropy)), [2]);
        // Had the file followed the live enum, Tanh would now read as 2.
        assert_eq!(bytes(&Inserted::Tanh), [2]);
        let _ = (Inserted::Sigmoid, Inserted::Gelu);
        for a in [
            Activation::Sigmoid,
            Activation::Tanh,
            Activation::Relu,
            Activation::LeakyRelu(0.1),
            Activation::Identity,
            Activation::Softmax,
            Activation::Gelu,
            Activation::Silu,
            Activation::CappedRelu(32.0),
        ] {
            assert_eq!(Activation::from(ActivationRecord::from(a)), a);
        }
    }
}
