//! Data sets written as NPY files (`nnmpi convert`): a directory holding `features.npy`
//! (`[samples, features]`, float32, C order) and, when the data set has labels, `labels.npy`
//! (`[samples]`: class names as int64 when every name is an integer, float32 when every name
//! is a number, text otherwise; regression targets as float32), which NumPy's `np.load`
//! reads as they are and `nnmpi train --data DIR` maps.

use super::atomic::{write_atomic_seekable, write_atomic_with};
use crate::data::{Dataset, NPY_FEATURES, NPY_LABELS, Targets};
use crate::error::{Error, Result};
use ndarray_npy::npy::header::{Header, Layout};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

/// Writes `data` into the directory `dir` (created if missing) as [`NPY_FEATURES`] and
/// [`NPY_LABELS`], each through a temporary file renamed into place; the features go one
/// sample at a time, so memory beyond `data` stays one row.
pub fn write_dataset(data: &Dataset, dir: &Path) -> Result<()> {
    let mut s = 0;
    write_features(dir, data.n_features(), |row| {
        if s == data.len() {
            return Ok(false);
        }
        data.gather_features(&[s], row)?;
        s += 1;
        Ok(true)
    })?;
    write_labels(dir, &data.targets, &data.classes)
}

/// Writes [`NPY_FEATURES`] (`[samples, features]`, float32) into the directory `dir` (created
/// if missing) through a temporary file renamed into place, from samples read one at a time:
/// `next` fills a row and returns `false` when there is none left. The sample count goes into
/// the header at the end (room for any count is kept), so memory stays one row whatever the
/// data set's size. Returns the samples written.
pub fn write_features(
    dir: &Path,
    features: usize,
    mut next: impl FnMut(&mut [f32]) -> Result<bool>,
) -> Result<usize> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(NPY_FEATURES);
    let reserved = header("<f4", &[usize::MAX, features]).len();
    let (mut row, mut bytes) = (vec![0.0f32; features], Vec::with_capacity(4 * features));
    let (mut samples, mut failed) = (0, None);
    write_atomic_seekable(&path, |w| {
        w.write_all(&vec![b' '; reserved])?;
        loop {
            match next(&mut row) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    failed = Some(e);
                    return Err(std::io::Error::other("a sample could not be read"));
                }
            }
            bytes.clear();
            bytes.extend(row.iter().flat_map(|v| v.to_le_bytes()));
            w.write_all(&bytes)?;
            samples += 1;
        }
        w.seek(SeekFrom::Start(0))?;
        w.write_all(&padded(header("<f4", &[samples, features]), reserved))
    })
    .map_err(|e| failed.take().unwrap_or(e))?;
    Ok(samples)
}

/// Writes [`NPY_LABELS`] for `targets` into `dir` through a temporary file renamed into
/// place, or removes a labels file left there when there are no targets (it would pair
/// wrongly with the new features).
pub fn write_labels(dir: &Path, targets: &Targets, classes: &[String]) -> Result<()> {
    let labels = dir.join(NPY_LABELS);
    let (n, (descr, bytes)) = match targets {
        Targets::None => {
            return match std::fs::remove_file(&labels) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&labels, e)),
                _ => Ok(()),
            };
        }
        Targets::Values(v) => (
            v.len(),
            (
                "<f4".to_string(),
                le_bytes(v.iter().map(|x| x.to_le_bytes())),
            ),
        ),
        Targets::Classes(ids) => (ids.len(), class_labels(classes, ids)),
    };
    write_atomic_with(&labels, |w| {
        w.write_all(&header(&descr, &[n]))?;
        w.write_all(&bytes)
    })
}

/// The type descriptor and bytes of class labels: int64 or float32 when every class name is
/// such a number (so NumPy users get numbers), else text of the longest name's length.
fn class_labels(classes: &[String], ids: &[u32]) -> (String, Vec<u8>) {
    let names = || ids.iter().map(|&i| classes[i as usize].as_str());
    let integers: Option<Vec<i64>> = classes.iter().map(|c| c.parse().ok()).collect();
    if let Some(ints) = integers {
        return (
            "<i8".into(),
            le_bytes(ids.iter().map(|&i| ints[i as usize].to_le_bytes())),
        );
    }
    // A float label must read back as the same name (`label` prints the shortest form).
    let floats: Option<Vec<f32>> = (classes.iter())
        .map(|c| c.parse::<f32>().ok().filter(|v| v.to_string() == *c))
        .collect();
    if let Some(floats) = floats {
        return (
            "<f4".into(),
            le_bytes(ids.iter().map(|&i| floats[i as usize].to_le_bytes())),
        );
    }
    let chars = names().map(|n| n.chars().count()).max().unwrap_or(1).max(1);
    let mut bytes = Vec::with_capacity(4 * chars * ids.len());
    for name in names() {
        let mut code: Vec<u32> = name.chars().map(u32::from).collect();
        code.resize(chars, 0);
        bytes.extend(code.iter().flat_map(|c| c.to_le_bytes()));
    }
    (format!("<U{chars}"), bytes)
}

fn le_bytes<const N: usize>(values: impl Iterator<Item = [u8; N]>) -> Vec<u8> {
    values.flatten().collect()
}

/// `header` made `len` bytes long with spaces before its closing newline (NumPy pads its
/// headers so), its length field set to match.
fn padded(mut header: Vec<u8>, len: usize) -> Vec<u8> {
    let newline = header.pop().expect("a header ends with a newline");
    header.resize(len - 1, b' ');
    header.push(newline);
    // Version 1 keeps the length of what follows the 10-byte preamble in 2 bytes, later
    // versions in 4 after a 12-byte one.
    let (field, preamble) = if header[6] == 1 { (2, 10) } else { (4, 12) };
    let rest = ((len - preamble) as u32).to_le_bytes();
    header[8..8 + field].copy_from_slice(&rest[..field]);
    header
}

fn header(descr: &str, shape: &[usize]) -> Vec<u8> {
    Header {
        type_descriptor: format!("'{descr}'")
            .parse()
            .expect("the type descriptors written here parse"),
        layout: Layout::Standard,
        shape: shape.to_vec(),
    }
    .to_bytes()
    .expect("a header of a descriptor and a shape formats")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{LabelKind, load_npy};
    use ndarray::array;

    fn dataset(classes: &[&str], ids: Vec<u32>) -> Dataset {
        Dataset {
            features: array![[1.5f32, -2.0, 0.25], [3.0, 4.0, 1e-3]].into(),
            targets: Targets::Classes(ids),
            classes: classes.iter().map(|c| c.to_string()).collect(),
            origin: "x.csv".into(),
        }
    }

    #[test]
    fn a_converted_data_set_loads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        for classes in [&["M", "Rock"][..], &["3", "10"], &["0.5", "2.25"]] {
            let d = dataset(classes, vec![1, 0, 1]);
            write_dataset(&d, dir.path()).unwrap();
            let back = load_npy(
                &dir.path().join(NPY_FEATURES),
                Some(&dir.path().join(NPY_LABELS)),
                &LabelKind::Classes(None),
            )
            .unwrap();
            assert_eq!(
                back.features.to_resident().unwrap(),
                d.features.to_resident().unwrap()
            );
            assert_eq!((&back.targets, &back.classes), (&d.targets, &d.classes));
        }
        let mut r = dataset(&[], vec![]);
        r.targets = Targets::Values(vec![0.1, -7.0, 3.5]);
        write_dataset(&r, dir.path()).unwrap();
        let back = load_npy(
            &dir.path().join(NPY_FEATURES),
            Some(&dir.path().join(NPY_LABELS)),
            &LabelKind::Values,
        )
        .unwrap();
        assert_eq!(back.targets, r.targets);
    }
}
