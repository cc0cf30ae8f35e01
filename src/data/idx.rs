//! IDX files (the MNIST format), plain or gzipped: `images` is IDX3 (or any rank ≥ 2) of
//! unsigned bytes, `labels` IDX1 of unsigned bytes.

use super::{Dataset, Targets, read_maybe_gz, sorted_classes};
use crate::error::{Error, Result};
use ndarray::Array2;
use std::path::Path;

/// Largest number of values an IDX file may declare (guards against crafted headers).
const MAX_VALUES: u64 = 1 << 34;

/// Whether `bytes` start like an IDX file of unsigned bytes.
pub fn is_idx(bytes: &[u8]) -> bool {
    bytes.len() >= 4
        && bytes[0] == 0
        && bytes[1] == 0
        && bytes[2] == 0x08
        && (1..=4).contains(&bytes[3])
}

/// Parses an IDX header and returns (dims, payload); checks that the payload size matches.
fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<(Vec<usize>, &'a [u8])> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(Error::data(
            path,
            0,
            "not an IDX file: expected the magic 00 00 08 0N",
        ));
    }
    if bytes[2] != 0x08 {
        return Err(Error::data(
            path,
            0,
            format!(
                "IDX element type 0x{:02x} is not supported: expected 0x08 (unsigned byte)",
                bytes[2]
            ),
        ));
    }
    let rank = bytes[3] as usize;
    let header = 4 + 4 * rank;
    if rank == 0 || bytes.len() < header {
        return Err(Error::data(
            path,
            0,
            format!("IDX header for {rank} dimensions is truncated"),
        ));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|d| {
            u32::from_be_bytes(bytes[4 + 4 * d..8 + 4 * d].try_into().expect("4 bytes")) as usize
        })
        .collect();
    let count = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .filter(|&c| c <= MAX_VALUES);
    let payload = &bytes[header..];
    match count {
        Some(c) if c == payload.len() as u64 => Ok((dims, payload)),
        Some(c) => Err(Error::data(
            path,
            0,
            format!(
                "IDX dimensions {dims:?} need {c} bytes of data, the file has {}",
                payload.len()
            ),
        )),
        None => Err(Error::data(
            path,
            0,
            format!("IDX dimensions {dims:?} are too large"),
        )),
    }
}

/// Loads images (each flattened to one feature per pixel, raw 0..255 values) and, if given,
/// their labels (classes named by the label values, in numeric order).
pub fn load_idx(images: &Path, labels: Option<&Path>) -> Result<Dataset> {
    let img_bytes = read_maybe_gz(images)?;
    let (dims, pixels) = parse(images, &img_bytes)?;
    if dims.len() < 2 {
        return Err(Error::data(
            images,
            0,
            "an IDX image file needs at least 2 dimensions (count, pixels...)",
        ));
    }
    let n = dims[0];
    let per = dims[1..].iter().product::<usize>();
    let mut features = Array2::<f32>::zeros((per, n));
    for (s, image) in pixels.chunks_exact(per.max(1)).enumerate() {
        for (f, &p) in image.iter().enumerate() {
            features[[f, s]] = p as f32;
        }
    }
    let (targets, classes) = match labels {
        None => (Targets::None, Vec::new()),
        Some(lp) => {
            let lab_bytes = read_maybe_gz(lp)?;
            let (ldims, values) = parse(lp, &lab_bytes)?;
            if ldims.len() != 1 || ldims[0] != n {
                return Err(Error::data(
                    lp,
                    0,
                    format!(
                        "label file has dimensions {ldims:?}, expected [{n}] to match {}",
                        images.display()
                    ),
                ));
            }
            let names: Vec<String> = values.iter().map(|v| v.to_string()).collect();
            let classes = sorted_classes(names.iter().map(String::as_str));
            let ids = names
                .iter()
                .map(|name| {
                    classes
                        .iter()
                        .position(|c| c == name)
                        .expect("class list built from these labels") as u32
                })
                .collect();
            (Targets::Classes(ids), classes)
        }
    };
    Ok(Dataset {
        features: features.into(),
        targets,
        classes,
        origin: images.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn parses_and_rejects_size_mismatch() {
        let ok = idx(&[2, 2, 2], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(is_idx(&ok));
        let (dims, data) = parse(Path::new("a"), &ok).unwrap();
        assert_eq!(dims, vec![2, 2, 2]);
        assert_eq!(data.len(), 8);
        let short = idx(&[2, 2, 2], &[1, 2, 3]);
        let err = parse(Path::new("a"), &short).unwrap_err().to_string();
        assert!(err.contains("need 8 bytes"), "{err}");
        let huge = idx(&[u32::MAX, u32::MAX, u32::MAX], &[]);
        assert!(
            parse(Path::new("a"), &huge)
                .unwrap_err()
                .to_string()
                .contains("too large")
        );
    }
}
