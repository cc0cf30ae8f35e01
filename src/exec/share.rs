//! Handing the data set rank 0 read to every rank.

use crate::cluster::Comm;
use crate::data::{Dataset, Targets};
use ndarray::Array2;
use std::path::PathBuf;

/// Copies the data set of rank `root` (`Some` there, ignored elsewhere) to every rank.
///
/// # Panics
/// If `data` is `None` on the root, or its features are a mapped file (every rank maps the
/// file itself instead).
pub fn broadcast_dataset<C: Comm>(comm: &C, root: usize, data: Option<Dataset>) -> Dataset {
    let at_root = comm.rank() == root;
    let data = if at_root {
        data.map(|d| {
            let x = (d.features.resident())
                .expect("broadcast_dataset: mapped features are read by every rank, not broadcast")
                .as_standard_layout()
                .into_owned();
            (x, d)
        })
    } else {
        None
    };
    // [features, samples, targets kind, text bytes]
    let mut text = Vec::new();
    let mut head = [0u64; 4];
    if let Some((_, d)) = &data {
        text = [
            d.classes.join("\n"),
            d.origin.to_string_lossy().into_owned(),
        ]
        .join("\n")
        .into_bytes();
        head = [
            d.n_features() as u64,
            d.len() as u64,
            match d.targets {
                Targets::None => 0,
                Targets::Classes(_) => 1,
                Targets::Values(_) => 2,
            },
            d.classes.len() as u64,
        ];
    } else {
        assert!(!at_root, "broadcast_dataset: the root has no data set");
    }
    comm.broadcast(root, &mut head);
    comm.broadcast_bytes(root, &mut text);
    let [features, samples, kind, classes] = head.map(|v| v as usize);
    let (mut x, targets) = match data {
        Some((x, d)) => (x.into_raw_vec_and_offset().0, d.targets),
        None => (
            vec![0.0; features * samples],
            match kind {
                1 => Targets::Classes(vec![0; samples]),
                2 => Targets::Values(vec![0.0; samples]),
                _ => Targets::None,
            },
        ),
    };
    comm.broadcast(root, &mut x);
    let targets = match targets {
        Targets::Classes(mut ids) => {
            comm.broadcast(root, &mut ids);
            Targets::Classes(ids)
        }
        Targets::Values(mut v) => {
            comm.broadcast(root, &mut v);
            Targets::Values(v)
        }
        Targets::None => Targets::None,
    };
    let text = String::from_utf8_lossy(&text).into_owned();
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let origin = PathBuf::from(lines.pop().unwrap_or_default());
    lines.truncate(classes);
    Dataset {
        features: Array2::from_shape_vec((features, samples), x)
            .expect("the broadcast features are [features, samples]")
            .into(),
        targets,
        classes: lines,
        origin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::SelfComm;

    #[test]
    fn one_rank_gets_its_own_data_back() {
        let d = Dataset {
            features: Array2::from_shape_vec((2, 3), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
                .unwrap()
                .into(),
            targets: Targets::Classes(vec![0, 1, 0]),
            classes: vec!["M".into(), "R".into()],
            origin: PathBuf::from("data/x.csv"),
        };
        assert_eq!(broadcast_dataset(&SelfComm, 0, Some(d.clone())), d);
    }
}
