//! Files mapped into memory instead of read into a buffer: a checkpoint or a safetensors file
//! is decoded straight from the page cache, with no copy of its bytes and no memory that
//! stays charged to the process afterwards.

use crate::error::{Error, Result};
use memmap2::Mmap;
use std::fs::File;
use std::path::Path;

/// A file's bytes, mapped (or none, for an empty file, which cannot be mapped).
pub enum FileBytes {
    /// An empty file.
    Empty,
    /// The mapped file.
    Mapped(Mmap),
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Empty => &[],
            FileBytes::Mapped(m) => m,
        }
    }
}

/// Maps the file at `path` read-only; errors name the path.
///
/// Mapping is `unsafe` in Rust because another process could change the file while it is
/// mapped. nnmpi itself never changes a file in place (checkpoints are written to a temporary
/// file and renamed over the old one, which leaves a mapped old file intact), and every byte
/// read through the map is validated (checksum, then every length and shape), so a change from
/// outside yields an error, not undefined values in a model. A file *truncated* by another
/// program while it is being decoded would end the process with SIGBUS, as it would for any
/// program that maps files (NumPy's `mmap_mode`, safetensors).
pub fn map_file(path: &Path) -> Result<FileBytes> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        let e = std::io::Error::new(std::io::ErrorKind::InvalidInput, "a directory, not a file");
        return Err(Error::io(path, e));
    }
    if meta.len() == 0 {
        return Ok(FileBytes::Empty);
    }
    // SAFETY: see above; the map is read-only and lives no longer than its caller's use.
    let map = unsafe { Mmap::map(&file) };
    map.map(FileBytes::Mapped).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_files_and_names_what_is_not_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.bin");
        std::fs::write(&file, b"nnmpi").unwrap();
        assert_eq!(&*map_file(&file).unwrap(), b"nnmpi");
        std::fs::write(&file, b"").unwrap();
        assert!(matches!(map_file(&file).unwrap(), FileBytes::Empty));
        let err = map_file(dir.path()).err().unwrap().to_string();
        assert!(err.contains("a directory, not a file"), "{err}");
        let err = map_file(&dir.path().join("none"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("none"), "{err}");
    }
}
