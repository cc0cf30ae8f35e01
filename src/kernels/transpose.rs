//! Transposing copies: `[rows, cols]` row-major into `[cols, rows]`, for the engine's
//! features-major layout from data held sample by sample (and back). With AVX, 8 x 8 blocks
//! go through registers (eight loads, 24 shuffles, eight stores); elsewhere, and at the edges,
//! cache tiles of scalar copies.

/// Writes `from` (`[rows, cols]`, row-major) transposed into `to` (`[cols, rows]`).
///
/// # Panics
/// If either length is not `rows * cols`.
pub fn transpose(from: &[f32], rows: usize, cols: usize, to: &mut [f32]) {
    assert_eq!(
        from.len(),
        rows * cols,
        "transpose: from is not [rows, cols]"
    );
    assert_eq!(to.len(), rows * cols, "transpose: to is not [cols, rows]");
    transpose_strided(
        Strided {
            data: from,
            rows,
            cols,
            ld: cols,
        },
        to,
        rows,
    );
}

/// A `[rows, cols]` block of a row-major matrix whose rows are `ld` values apart.
#[derive(Clone, Copy, Debug)]
pub struct Strided<'a> {
    /// The values, from the block's first.
    pub data: &'a [f32],
    /// Rows of the block.
    pub rows: usize,
    /// Columns of the block.
    pub cols: usize,
    /// Distance between the starts of two rows.
    pub ld: usize,
}

/// Writes the block `from` transposed into `to`, whose rows (one per column of `from`) are
/// `ld_to` values apart; values of `to` outside the `[from.cols, from.rows]` block are left
/// as they are.
///
/// # Panics
/// If a block overruns its slice.
pub fn transpose_strided(from: Strided<'_>, to: &mut [f32], ld_to: usize) {
    let Strided { rows, cols, ld, .. } = from;
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(
        cols <= ld && (rows - 1) * ld + cols <= from.data.len(),
        "transpose: from overruns its slice"
    );
    assert!(
        rows <= ld_to && (cols - 1) * ld_to + rows <= to.len(),
        "transpose: to overruns its slice"
    );
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx") {
        // SAFETY: the CPU has AVX.
        unsafe { x86::transpose_avx(from, to, ld_to) };
        return;
    }
    tiles(from, to, ld_to, 0..rows, 0..cols);
}

/// The part `part_rows x part_cols` of the transpose, in square tiles that stay in the L1
/// cache (one element at a time, the writes a row apart missed the cache on every one).
fn tiles(
    from: Strided<'_>,
    to: &mut [f32],
    ld_to: usize,
    part_rows: std::ops::Range<usize>,
    part_cols: std::ops::Range<usize>,
) {
    const TILE: usize = 32;
    for r0 in part_rows.clone().step_by(TILE) {
        let r1 = (r0 + TILE).min(part_rows.end);
        for c0 in part_cols.clone().step_by(TILE) {
            let c1 = (c0 + TILE).min(part_cols.end);
            // A run along each output row, reading down the input's column.
            for c in c0..c1 {
                for r in r0..r1 {
                    to[c * ld_to + r] = from.data[r * from.ld + c];
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// [`super::transpose`] with 8 x 8 blocks in AVX registers; the edges (rows and columns
    /// past the last multiple of 8) by [`super::tiles`].
    #[target_feature(enable = "avx")]
    pub(super) fn transpose_avx(block: super::Strided<'_>, to: &mut [f32], ld_to: usize) {
        let super::Strided {
            data: from,
            rows,
            cols,
            ld,
        } = block;
        let (rows8, cols8) = (rows - rows % 8, cols - cols % 8);
        // Eight output rows at a time, down all the input's rows: the eight runs written
        // stay in L1 (a power-of-two row length puts them in one cache set; eight fit it).
        for c0 in (0..cols8).step_by(8) {
            for r0 in (0..rows8).step_by(8) {
                // SAFETY: rows r0..r0 + 8 and columns c0..c0 + 8 are inside both matrices
                // (r0 + 8 <= rows8 <= rows, c0 + 8 <= cols8 <= cols), as the slices below
                // check.
                unsafe {
                    let at = |i: usize| from[(r0 + i) * ld + c0..][..8].as_ptr();
                    let (a0, a1) = (_mm256_loadu_ps(at(0)), _mm256_loadu_ps(at(1)));
                    let (a2, a3) = (_mm256_loadu_ps(at(2)), _mm256_loadu_ps(at(3)));
                    let (a4, a5) = (_mm256_loadu_ps(at(4)), _mm256_loadu_ps(at(5)));
                    let (a6, a7) = (_mm256_loadu_ps(at(6)), _mm256_loadu_ps(at(7)));
                    let t0 = _mm256_unpacklo_ps(a0, a1);
                    let t1 = _mm256_unpackhi_ps(a0, a1);
                    let t2 = _mm256_unpacklo_ps(a2, a3);
                    let t3 = _mm256_unpackhi_ps(a2, a3);
                    let t4 = _mm256_unpacklo_ps(a4, a5);
                    let t5 = _mm256_unpackhi_ps(a4, a5);
                    let t6 = _mm256_unpacklo_ps(a6, a7);
                    let t7 = _mm256_unpackhi_ps(a6, a7);
                    let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                    let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                    let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                    let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                    let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                    let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                    let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                    let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                    let out = [
                        _mm256_permute2f128_ps::<0x20>(s0, s4),
                        _mm256_permute2f128_ps::<0x20>(s1, s5),
                        _mm256_permute2f128_ps::<0x20>(s2, s6),
                        _mm256_permute2f128_ps::<0x20>(s3, s7),
                        _mm256_permute2f128_ps::<0x31>(s0, s4),
                        _mm256_permute2f128_ps::<0x31>(s1, s5),
                        _mm256_permute2f128_ps::<0x31>(s2, s6),
                        _mm256_permute2f128_ps::<0x31>(s3, s7),
                    ];
                    for (j, v) in out.into_iter().enumerate() {
                        let run = &mut to[(c0 + j) * ld_to + r0..][..8];
                        _mm256_storeu_ps(run.as_mut_ptr(), v);
                    }
                }
            }
        }
        super::tiles(block, to, ld_to, rows8..rows, 0..cols);
        super::tiles(block, to, ld_to, 0..rows8, cols8..cols);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slow(from: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        let mut to = vec![0.0; rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                to[c * rows + r] = from[r * cols + c];
            }
        }
        to
    }

    #[test]
    fn every_shape_transposes_as_the_obvious_loop() {
        for (rows, cols) in [
            (1, 1),
            (1, 9),
            (9, 1),
            (7, 13),
            (8, 8),
            (16, 24),
            (17, 33),
            (64, 784),
            (1024, 60),
            (33, 1024),
        ] {
            let from = crate::kernels::test_values(rows * cols, 3);
            let want = slow(&from, rows, cols);
            let mut got = vec![f32::NAN; rows * cols];
            transpose(&from, rows, cols, &mut got);
            assert_eq!(got, want, "{rows} x {cols}");
            let mut scalar = vec![f32::NAN; rows * cols];
            let block = Strided {
                data: &from,
                rows,
                cols,
                ld: cols,
            };
            tiles(block, &mut scalar, rows, 0..rows, 0..cols);
            assert_eq!(scalar, want, "{rows} x {cols}, scalar tiles");
        }
    }

    #[test]
    fn a_strided_block_lands_in_a_strided_destination() {
        // A 11 x 13 block at (2, 3) of a 20 x 30 matrix into a 13 x 16 block of rows 40 apart.
        let m = crate::kernels::test_values(20 * 30, 5);
        let block = Strided {
            data: &m[2 * 30 + 3..],
            rows: 11,
            cols: 13,
            ld: 30,
        };
        let mut to = vec![-7.0f32; 13 * 40];
        transpose_strided(block, &mut to, 40);
        for c in 0..13 {
            for r in 0..40 {
                let want = if r < 11 {
                    m[(2 + r) * 30 + 3 + c]
                } else {
                    -7.0
                };
                assert_eq!(to[c * 40 + r], want, "({c}, {r})");
            }
        }
    }
}
