//! Files: checkpoints (versioned, checksummed, atomically written, size-checked on read;
//! written periodically during training) and
//! safetensors export/import for other frameworks.

mod atomic;
pub mod challenge;
mod checkpoint;
mod mapped;
pub mod npy;
mod periodic;
mod records;
pub mod safetensors;

pub use atomic::{check_writable, write_atomic, write_atomic_with};
pub use checkpoint::{
    Checkpoint, FORMAT_VERSION, MAGIC, TrainingCheckpoint, decode, encode, load, save,
};
pub use periodic::PeriodicCheckpoints;
