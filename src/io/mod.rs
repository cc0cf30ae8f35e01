//! Files: checkpoints (versioned, checksummed, atomically written, size-checked on read).

mod atomic;
mod checkpoint;

pub use atomic::write_atomic;
pub use checkpoint::{
    Checkpoint, FORMAT_VERSION, MAGIC, TrainingCheckpoint, decode, encode, load, save,
};
