//! Crash-safe file replacement: write a temporary file beside the target, fsync it, rename it
//! over the target, fsync the directory. A reader sees the old file or the new one, never a
//! half-written one.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Atomically replaces `path` with `bytes`. Temporaries of `path` that killed writers left
/// behind are removed first (see `remove_stale_temps`).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Atomically replaces `path` with what `write` writes (through a buffer), for files too large
/// to hold in memory first; as [`write_atomic`] otherwise.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    write_atomic_seekable(path, |w| write(w))
}

/// As [`write_atomic_with`], for a writer that goes back to fill in what it learns at the end
/// (a header's length field): the buffered file can seek.
pub fn write_atomic_seekable(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<()> {
    remove_stale_temps(path);
    let tmp = temp_path(path);
    let result = write_synced(&tmp, write)
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    sync_parent(path);
    Ok(())
}

/// Checks, before long work, that `path` can be written: its directory exists and accepts a
/// new file (a probe file is created and removed; `path` itself is not touched).
pub fn check_writable(path: &Path) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let probe = path.with_file_name(format!(".{name}.probe-{}", std::process::id()));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| Error::io(path, e))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "checkpoint".into());
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// A temporary this much older than now, whose process is gone, was left by a killed writer.
/// The age guards writers on other hosts of a shared filesystem, whose process ids mean
/// nothing here: a live writer renames its temporary within seconds of writing it.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// Removes the temporaries `.NAME.tmp-PID` of `path` whose process no longer runs on this host
/// and which were last written over [`STALE_AFTER`] ago (best effort: errors are ignored).
fn remove_stale_temps(path: &Path) {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let prefix = format!(".{name}.tmp-");
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(pid) = file
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= STALE_AFTER);
        if old && pid != std::process::id() && !process_exists(pid) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether a process with this id runs on this host (or whether that cannot be known, on
/// systems without `kill`).
fn process_exists(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: signal 0 only checks that the process exists and may be signalled.
        let found = unsafe { libc::kill(pid, 0) } == 0;
        found || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

fn write_synced(
    tmp: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)
        .map_err(|e| Error::io(tmp, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    write(&mut w)
        .and_then(|()| w.flush())
        .map_err(|e| Error::io(tmp, e))?;
    let f = w.into_inner().map_err(|e| Error::io(tmp, e.into_error()))?;
    f.sync_all().map_err(|e| Error::io(tmp, e))
}

/// Makes the rename durable; best effort (not every filesystem allows fsync on a directory).
fn sync_parent(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.nnmpi");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn temporaries_of_killed_writers_are_removed_on_the_next_save() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.nnmpi");
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        let temp = |pid: u32, old: bool| {
            let t = dir.path().join(format!(".m.nnmpi.tmp-{pid}"));
            let f = File::create(&t).unwrap();
            if old {
                f.set_modified(hour_ago).unwrap();
            }
            t
        };
        // No process has id 2^30 (Linux's pid_max is at most 2^22).
        let (dead, dead_young, live) = (
            temp(1 << 30, true),
            temp((1 << 30) + 1, false),
            temp(1, true),
        );
        let other_target = dir.path().join(".other.nnmpi.tmp-1073741824");
        File::create(&other_target)
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
        write_atomic(&p, b"model").unwrap();
        assert!(!dead.exists(), "a killed writer's old temporary is removed");
        assert!(
            dead_young.exists(),
            "a recent temporary may belong to another host's writer"
        );
        assert!(live.exists(), "a live process's temporary is kept");
        assert!(
            other_target.exists(),
            "another target's temporary is not ours"
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"model");
    }

    #[test]
    fn writability_is_checked_without_touching_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.nnmpi");
        check_writable(&p).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(check_writable(&dir.path().join("missing/m.nnmpi")).is_err());
    }

    #[test]
    fn failure_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.nnmpi");
        write_atomic(&p, b"old").unwrap();
        // A directory where the temp file would go makes the write fail before the rename.
        std::fs::create_dir(temp_path(&p)).unwrap();
        assert!(write_atomic(&p, b"new").is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
    }
}
