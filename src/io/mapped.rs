//! Files mapped into memory instead of read into a buffer: a checkpoint or a safetensors file
//! is decoded straight from the page cache, with no copy of its bytes and no memory that
//! stays charged to the process afterwards.

use memmap2::Mmap;
use std::fs::File;

/// Maps `file` read-only.
///
/// Mapping is `unsafe` in Rust because another process could change the file while it is
/// mapped. nnmpi itself never changes a file in place (checkpoints are written to a temporary
/// file and renamed over the old one, which leaves a mapped old file intact), and every byte
/// read through the map is validated (checksum, then every length and shape), so a change from
/// outside yields an error, not undefined values in a model. A file *truncated* by another
/// program while it is being decoded would end the process with SIGBUS, as it would for any
/// program that maps files (NumPy's `mmap_mode`, safetensors).
pub fn map(file: &File) -> std::io::Result<Mmap> {
    // SAFETY: see above; the map is read-only and lives no longer than its caller's use.
    unsafe { Mmap::map(file) }
}
