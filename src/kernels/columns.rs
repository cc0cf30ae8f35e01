//! Fingerprints of activation columns: a hash of each column's bits and its count of nonzero
//! values, so that equal columns can be found (and computed once) and dead ones counted.
//! Equal columns always get equal hashes; callers confirm a match by comparing the values.

/// Each column's hash and number of nonzero values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fingerprints {
    /// Hash of each column's bits.
    pub hash: Vec<u64>,
    /// Nonzero values of each column.
    pub nonzero: Vec<u32>,
}

const SEED_A: u32 = 0x811c_9dc5;
const SEED_B: u32 = 0x9e37_79b9;
const PRIME_A: u32 = 0x0100_0193;
const PRIME_B: u32 = 0x85eb_ca6b;

/// Two 32-bit FNV-style lanes (32-bit multiplies vectorise where 64-bit ones do not).
#[inline(always)]
fn step(h: (u32, u32), v: f32) -> (u32, u32) {
    let bits = v.to_bits();
    (
        (h.0 ^ bits).wrapping_mul(PRIME_A),
        (h.1 ^ bits.rotate_left(16)).wrapping_mul(PRIME_B),
    )
}

fn join(h: (u32, u32)) -> u64 {
    (u64::from(h.0) << 32) | u64::from(h.1)
}

multiversion! {
    /// Fingerprints of the `n` columns of a features-major block `x` (`[rows, n]`).
    fn by_feature_into(x: &[f32], n: usize, a: &mut [u32], b: &mut [u32], nonzero: &mut [u32]) {
        for row in x.chunks_exact(n) {
            for (((a, b), z), &v) in a.iter_mut().zip(b.iter_mut()).zip(nonzero.iter_mut()).zip(row) {
                (*a, *b) = step((*a, *b), v);
                *z += u32::from(v != 0.0);
            }
        }
    }
}

/// Fingerprints of the `n` columns of a features-major block `x` (`[rows, n]`).
///
/// # Panics
/// If `x.len()` is not a multiple of `n`.
pub fn by_feature(x: &[f32], n: usize) -> Fingerprints {
    assert!(
        n > 0 && x.len().is_multiple_of(n),
        "columns::by_feature: x is not [rows, n]"
    );
    let (mut a, mut b, mut nonzero) = (vec![SEED_A; n], vec![SEED_B; n], vec![0u32; n]);
    by_feature_into(x, n, &mut a, &mut b, &mut nonzero);
    Fingerprints {
        hash: a.iter().zip(&b).map(|(&a, &b)| join((a, b))).collect(),
        nonzero,
    }
}

/// Lanes a samples-major column is hashed in (then folded): independent multiplies overlap.
const LANES: usize = 16;

multiversion! {
    /// Fingerprint of one contiguous column.
    fn contiguous(col: &[f32], out: &mut (u64, u32)) {
        let mut a = [SEED_A; LANES];
        let mut b = [SEED_B; LANES];
        let mut z = [0u32; LANES];
        let mut chunks = col.chunks_exact(LANES);
        for chunk in &mut chunks {
            for l in 0..LANES {
                (a[l], b[l]) = step((a[l], b[l]), chunk[l]);
                z[l] += u32::from(chunk[l] != 0.0);
            }
        }
        let mut h = (SEED_A, SEED_B);
        for l in 0..LANES {
            h = step(h, f32::from_bits(a[l]));
            h = step(h, f32::from_bits(b[l]));
        }
        let mut nonzero: u32 = z.iter().sum();
        for &v in chunks.remainder() {
            h = step(h, v);
            nonzero += u32::from(v != 0.0);
        }
        *out = (join(h), nonzero);
    }
}

/// Fingerprints of the columns of a samples-major block `x` (`[n, rows]`: column after
/// column).
///
/// # Panics
/// If `x.len()` is not a multiple of `rows`.
pub fn by_sample(x: &[f32], rows: usize) -> Fingerprints {
    assert!(
        rows > 0 && x.len().is_multiple_of(rows),
        "columns::by_sample: x is not [n, rows]"
    );
    let mut f = Fingerprints::default();
    for col in x.chunks_exact(rows) {
        let mut one = (0, 0);
        contiguous(col, &mut one);
        f.hash.push(one.0);
        f.nonzero.push(one.1);
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_layouts_agree_on_equality_and_counts() {
        // 5 columns of 37 rows: columns 0 and 3 equal, column 4 zero, column 2 differs from
        // column 0 in one value's sign of zero only.
        let rows = 37;
        let col = |c: usize| -> Vec<f32> {
            (0..rows)
                .map(|i| match c {
                    0 | 3 => (i % 5) as f32 - 2.0,
                    1 => i as f32,
                    2 if i == 2 => -0.0,
                    2 => (i % 5) as f32 - 2.0,
                    _ => 0.0,
                })
                .collect()
        };
        let by_s: Vec<f32> = (0..5).flat_map(col).collect();
        let by_f: Vec<f32> = (0..rows * 5).map(|k| col(k % 5)[k / 5]).collect();
        for f in [by_sample(&by_s, rows), by_feature(&by_f, 5)] {
            assert_eq!(f.hash[0], f.hash[3]);
            assert_ne!(f.hash[0], f.hash[1]);
            assert_ne!(f.hash[0], f.hash[2], "-0.0 and +0.0 differ in bits");
            let want: Vec<u32> = (0..5)
                .map(|c| col(c).iter().filter(|v| **v != 0.0).count() as u32)
                .collect();
            assert_eq!(f.nonzero, want);
        }
    }
}
