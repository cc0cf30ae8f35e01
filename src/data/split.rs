//! Seeded train/validation splits and (stratified) k-fold cross-validation.

use super::Targets;
use crate::rng::UniformStream;

/// Random stream numbers, so that splits and training shuffles never share random numbers.
const SPLIT_STREAM: u64 = 11;
const KFOLD_STREAM: u64 = 12;

/// Splits `0..n` into (train, validation) with `round(n * fraction)` validation samples,
/// chosen at random from `seed`. Both parts keep ascending order.
pub fn train_val_split(n: usize, fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..n).collect();
    UniformStream::new(seed, SPLIT_STREAM).shuffle(&mut idx);
    let n_val = ((n as f64) * fraction.clamp(0.0, 1.0)).round() as usize;
    let (val, train) = idx.split_at(n_val.min(n));
    let (mut train, mut val) = (train.to_vec(), val.to_vec());
    train.sort_unstable();
    val.sort_unstable();
    (train, val)
}

/// `k` (train, test) index pairs covering `0..targets.len()`; each sample is tested exactly
/// once. Classes are spread evenly over the folds (stratified) when the targets are classes.
pub fn kfold(targets: &Targets, n: usize, k: usize, seed: u64) -> Vec<(Vec<usize>, Vec<usize>)> {
    let mut idx: Vec<usize> = (0..n).collect();
    UniformStream::new(seed, KFOLD_STREAM).shuffle(&mut idx);
    if let Targets::Classes(c) = targets {
        idx.sort_by_key(|&i| c[i]); // stable: shuffled order within each class
    }
    let mut folds = vec![Vec::new(); k];
    for (pos, &i) in idx.iter().enumerate() {
        folds[pos % k].push(i);
    }
    (0..k)
        .map(|f| {
            let mut test = folds[f].clone();
            let mut train: Vec<usize> = folds
                .iter()
                .enumerate()
                .filter(|&(g, _)| g != f)
                .flat_map(|(_, v)| v.iter().copied())
                .collect();
            test.sort_unstable();
            train.sort_unstable();
            (train, test)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_a_partition_of_the_right_size() {
        let (tr, va) = train_val_split(101, 0.2, 5);
        assert_eq!(va.len(), 20);
        let mut all: Vec<usize> = tr.iter().chain(&va).copied().collect();
        all.sort();
        assert_eq!(all, (0..101).collect::<Vec<_>>());
        assert_eq!(train_val_split(101, 0.2, 5), (tr, va));
    }

    #[test]
    fn kfold_tests_each_sample_once_and_stratifies() {
        let labels: Vec<u32> = (0..50).map(|i| if i < 40 { 0 } else { 1 }).collect();
        let folds = kfold(&Targets::Classes(labels.clone()), 50, 5, 1);
        let mut tested: Vec<usize> = folds.iter().flat_map(|(_, t)| t.clone()).collect();
        tested.sort();
        assert_eq!(tested, (0..50).collect::<Vec<_>>());
        for (train, test) in &folds {
            assert_eq!(train.len() + test.len(), 50);
            assert_eq!(test.iter().filter(|&&i| labels[i] == 1).count(), 2);
        }
    }
}
