//! General matrix product `C = alpha * A·B + beta * C` on strided operands, with the rows of
//! `C` split over rayon threads. `C` is always row-major and contiguous.
//!
//! The blocked product is the `gemm` crate's (runtime-dispatched AVX-512/AVX2/FMA kernels): on
//! the training shapes (batch 32) it is up to 2.5x faster than `matrixmultiply` and never slower
//! (see `benches/kernels.rs`, group `gemm_backends`). Matrix-vector shapes use the direct
//! loops below.
//!
//! Each row of `C` is computed by the same sequence of operations whichever block it falls in,
//! so results do not depend on the number of threads.

use super::Par;
use rayon::prelude::*;

/// A read-only strided matrix operand: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a> {
    /// Backing storage.
    pub data: &'a [f32],
    /// Row stride.
    pub rs: usize,
    /// Column stride.
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major matrix with `cols` columns.
    pub fn row_major(data: &'a [f32], cols: usize) -> Self {
        Mat {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        Mat {
            data,
            rs: 1,
            cs: cols,
        }
    }

    fn check(&self, rows: usize, cols: usize, name: &str) {
        if rows == 0 || cols == 0 {
            return;
        }
        let last = (rows - 1) * self.rs + (cols - 1) * self.cs;
        assert!(
            last < self.data.len(),
            "gemm: operand {name} ({rows}x{cols}, strides {}/{}) needs {} values, has {}",
            self.rs,
            self.cs,
            last + 1,
            self.data.len()
        );
    }
}

/// Below this many multiply-adds a product runs on one thread.
pub(crate) const PAR_MIN_MACS: usize = 1 << 17;
/// Row blocks are multiples of this (the widest microkernel's row count).
const ROW_ALIGN: usize = 16;

/// `C[m, n] = alpha * A[m, k] · B[k, n] + beta * C`, then `epilogue(first_row, rows_of_c)` on
/// each row block while it is still in cache. With `beta == 0`, `C` need not be initialised
/// (NaN in it is ignored).
///
/// # Panics
/// If `c.len() != m * n` or an operand's strides reach past its data.
///
/// ```
/// use nnmpi::kernels::{Par, gemm::{gemm, Mat}};
/// let a = [1.0, 2.0, 3.0, 4.0]; // [[1, 2], [3, 4]]
/// let b = [5.0, 6.0];           // [[5], [6]]
/// let mut c = [0.0; 2];
/// gemm(Par::Seq, 2, 2, 1, 1.0, Mat::row_major(&a, 2), Mat::row_major(&b, 1), 0.0, &mut c, |_, _| {});
/// assert_eq!(c, [17.0, 39.0]);
/// ```
#[allow(clippy::too_many_arguments)]
pub fn gemm<F>(
    par: Par,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: Mat<'_>,
    b: Mat<'_>,
    beta: f32,
    c: &mut [f32],
    epilogue: F,
) where
    F: Fn(usize, &mut [f32]) + Sync,
{
    assert_eq!(
        c.len(),
        m * n,
        "gemm: C has {} values, expected {m}x{n}",
        c.len()
    );
    a.check(m, k, "A");
    b.check(k, n, "B");
    if m == 0 || n == 0 {
        return;
    }
    let threads = match par {
        Par::Seq => 1,
        Par::Rayon if m * k * n >= PAR_MIN_MACS => {
            rayon::current_num_threads().min(m.div_ceil(ROW_ALIGN))
        }
        Par::Rayon => 1,
    };
    let block = |first: usize, cb: &mut [f32]| {
        let rows = cb.len() / n;
        let a_block = Mat {
            data: &a.data[first * a.rs..],
            ..a
        };
        gemm_block(rows, k, n, alpha, a_block, b, beta, cb);
        epilogue(first, cb);
    };
    if threads <= 1 {
        block(0, c);
    } else {
        let rows = m.div_ceil(threads).next_multiple_of(ROW_ALIGN);
        c.par_chunks_mut(rows * n)
            .enumerate()
            .for_each(|(i, cb)| block(i * rows, cb));
    }
}

multiversion! {
    /// Row-major `a` (row stride `rs`) times the vector `x`: one dot product per row of `c`,
    /// compiled for the widest vectors the CPU has (the lanes' order of operations, and so
    /// the bits, are the same at every width).
    fn rows_dot(a: &[f32], rs: usize, x: &[f32], alpha: f32, beta: f32, c: &mut [f32]) {
        let k = x.len();
        for (i, ci) in c.iter_mut().enumerate() {
            let d = alpha * dot(&a[i * rs..i * rs + k], x);
            *ci = if beta == 0.0 { d } else { d + beta * *ci };
        }
    }
}

/// Depth slice of the blocked product (see `gemm_block`); the library's own choice for
/// these shapes is 512 too, so the fixed slices cost nothing.
const DEPTH_BLOCK: usize = 512;

/// One thread's product; picks a direct loop for matrix-vector shapes, sgemm otherwise.
#[allow(clippy::too_many_arguments)]
fn gemm_block(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: Mat<'_>,
    b: Mat<'_>,
    beta: f32,
    c: &mut [f32],
) {
    if k == 0 {
        scale(c, beta);
        return;
    }
    if n == 1 && a.cs == 1 && b.rs == 1 {
        return rows_dot(a.data, a.rs, &b.data[..k], alpha, beta, c);
    }
    if n == 1 && a.rs == 1 {
        // Columns of A are contiguous (A is a transposed row-major matrix): sum of scaled columns.
        scale(c, beta);
        for p in 0..k {
            axpy(alpha * b.data[p * b.rs], &a.data[p * a.cs..p * a.cs + m], c);
        }
        return;
    }
    if m == 1 {
        // The library computes a single row with its matrix-vector code, whose rounding differs
        // from its blocked kernel; a copy of the row as a 2-row product keeps the bits equal to
        // those the row gets inside a bigger block (a rank or thread owning one neuron).
        // Scratch per thread, so that a 1-row product (a one-neuron output layer) does not
        // allocate on every call.
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.clear();
            scratch.extend((0..2 * k).map(|i| a.data[(i % k) * a.cs]));
            scratch.extend_from_slice(c);
            scratch.extend_from_slice(c);
            let (twice, c2) = scratch.split_at_mut(2 * k);
            gemm_block(2, k, n, alpha, Mat::row_major(twice, k), b, beta, c2);
            c.copy_from_slice(&c2[..n]);
        });
        return;
    }
    // The depth is cut into fixed slices of at most DEPTH_BLOCK, accumulated into C in order.
    // The library picks its own depth blocking from the shape (a block of few rows gets another
    // one than the whole product), which would change the rounding; with fixed slices every row
    // of C gets the same bits whatever block of rows it is computed in.
    for p0 in (0..k).step_by(DEPTH_BLOCK) {
        let depth = DEPTH_BLOCK.min(k - p0);
        let (c_scale, read_c) = if p0 == 0 {
            (beta, beta != 0.0)
        } else {
            (1.0, true)
        };
        // SAFETY: the operand extents were checked against their slices in `gemm` (the block of
        // A starts at a row inside A; columns p0..p0+depth of A and rows p0..p0+depth of B lie
        // inside them), C is exactly m x n row-major, and all strides are non-negative.
        // `gemm` computes dst = c_scale * dst + alpha * lhs·rhs; with read_dst false, dst is
        // not read.
        unsafe {
            gemm::gemm(
                m,
                n,
                depth,
                c.as_mut_ptr(),
                1,
                n as isize,
                read_c,
                a.data.as_ptr().add(p0 * a.cs),
                a.cs as isize,
                a.rs as isize,
                b.data.as_ptr().add(p0 * b.rs),
                b.cs as isize,
                b.rs as isize,
                c_scale,
                alpha,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    }
}

fn scale(c: &mut [f32], beta: f32) {
    if beta == 0.0 {
        c.fill(0.0);
    } else if beta != 1.0 {
        c.iter_mut().for_each(|v| *v *= beta);
    }
}

/// `y += alpha * x`.
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// Dot product with 64 independent partial sums (then 16 for the rest), so the compiler can
/// vectorise it with enough independent additions in flight to hide their latency (16 sums
/// alone took 2.25 times as long on a 784-1024-1024-10 network at batch 1).
///
/// # Panics
/// If the slices differ in length.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot: lengths differ");
    const WIDE: usize = 64;
    const NARROW: usize = 16;
    let mut sums = [0.0f32; NARROW];
    let wide = a.len() - a.len() % WIDE;
    if wide > 0 {
        let mut acc = [0.0f32; WIDE];
        for (ca, cb) in a[..wide]
            .chunks_exact(WIDE)
            .zip(b[..wide].chunks_exact(WIDE))
        {
            for l in 0..WIDE {
                acc[l] += ca[l] * cb[l];
            }
        }
        for l in 0..NARROW {
            sums[l] = (acc[l] + acc[l + 16]) + (acc[l + 32] + acc[l + 48]);
        }
    }
    // What is left (all of a short vector) goes 16 lanes at a time.
    let narrow = wide + (a.len() - wide) / NARROW * NARROW;
    for (ca, cb) in a[wide..narrow]
        .chunks_exact(NARROW)
        .zip(b[wide..narrow].chunks_exact(NARROW))
    {
        for l in 0..NARROW {
            sums[l] += ca[l] * cb[l];
        }
    }
    let mut width = NARROW;
    while width > 1 {
        width /= 2;
        for l in 0..width {
            sums[l] += sums[l + width];
        }
    }
    let tail: f32 = a[narrow..]
        .iter()
        .zip(&b[narrow..])
        .map(|(x, y)| x * y)
        .sum();
    sums[0] + tail
}

/// `[a[0] · b, a[1] · b, ..]` reading `b` once for all of them; each result has the bits of
/// [`dot`] (the same partial sums, added in the same order; tested).
///
/// # Panics
/// If the slices differ in length.
#[inline(always)]
pub fn dots<const N: usize>(a: [&[f32]; N], b: &[f32]) -> [f32; N] {
    const WIDE: usize = 64;
    const NARROW: usize = 16;
    assert!(a.iter().all(|a| a.len() == b.len()), "dots: lengths differ");
    let mut sums = [[0.0f32; NARROW]; N];
    let wide = b.len() - b.len() % WIDE;
    if wide > 0 {
        let mut acc = [[0.0f32; WIDE]; N];
        for at in (0..wide).step_by(WIDE) {
            let cb = &b[at..at + WIDE];
            for (acc, a) in acc.iter_mut().zip(&a) {
                let ca = &a[at..at + WIDE];
                for l in 0..WIDE {
                    acc[l] += ca[l] * cb[l];
                }
            }
        }
        for (sums, acc) in sums.iter_mut().zip(&acc) {
            for l in 0..NARROW {
                sums[l] = (acc[l] + acc[l + 16]) + (acc[l + 32] + acc[l + 48]);
            }
        }
    }
    let narrow = wide + (b.len() - wide) / NARROW * NARROW;
    for at in (wide..narrow).step_by(NARROW) {
        for (sums, a) in sums.iter_mut().zip(&a) {
            for l in 0..NARROW {
                sums[l] += a[at + l] * b[at + l];
            }
        }
    }
    std::array::from_fn(|n| {
        let mut width = NARROW;
        while width > 1 {
            width /= 2;
            for l in 0..width {
                sums[n][l] += sums[n][l + width];
            }
        }
        let tail: f32 = a[n][narrow..]
            .iter()
            .zip(&b[narrow..])
            .map(|(x, y)| x * y)
            .sum();
        sums[n][0] + tail
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_values as values;
    use super::*;

    #[test]
    fn dots_have_the_bits_of_dot() {
        for len in [1, 15, 16, 37, 64, 100, 256, 300] {
            let b = values(len, 1);
            let a: Vec<Vec<f32>> = (0..4).map(|r| values(len, 2 + r)).collect();
            let four = dots([&a[0][..], &a[1], &a[2], &a[3]], &b);
            for (r, d) in four.iter().enumerate() {
                assert_eq!(
                    d.to_bits(),
                    dot(&a[r], &b).to_bits(),
                    "length {len}, row {r}"
                );
            }
        }
    }

    /// The obvious triple loop in f64.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        m: usize,
        k: usize,
        n: usize,
        alpha: f32,
        a: Mat,
        b: Mat,
        beta: f32,
        c: &[f32],
    ) -> Vec<f64> {
        let mut out = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for p in 0..k {
                    s += a.data[i * a.rs + p * a.cs] as f64 * b.data[p * b.rs + j * b.cs] as f64;
                }
                out[i * n + j] = alpha as f64 * s + beta as f64 * c[i * n + j] as f64;
            }
        }
        out
    }

    /// `C = A·B` for row-major A `[m, k]` and B `[k, n]`.
    fn product(par: Par, m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
        gemm(
            par,
            m,
            k,
            n,
            1.0,
            Mat::row_major(a, k),
            Mat::row_major(b, n),
            0.0,
            c,
            |_, _| {},
        );
    }

    #[test]
    fn matches_reference_for_all_layouts_and_shapes() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (3, 60, 1),
            (37, 19, 5),
            (70, 33, 1),
            (300, 700, 3),
            (64, 1, 9),
        ] {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let a_data = values(m * k, 1);
                let b_data = values(k * n, 2);
                let a = if ta {
                    Mat::transposed(&a_data, m)
                } else {
                    Mat::row_major(&a_data, k)
                };
                let b = if tb {
                    Mat::transposed(&b_data, k)
                } else {
                    Mat::row_major(&b_data, n)
                };
                for &(alpha, beta) in &[(1.0, 0.0), (-0.5, 1.0), (2.0, 0.25)] {
                    for par in [Par::Seq, Par::Rayon] {
                        let c0 = values(m * n, 3);
                        let mut c = c0.clone();
                        gemm(par, m, k, n, alpha, a, b, beta, &mut c, |_, _| {});
                        let want = reference(m, k, n, alpha, a, b, beta, &c0);
                        for (got, want) in c.iter().zip(&want) {
                            assert!(
                                (*got as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()),
                                "{m}x{k}x{n} ta={ta} tb={tb}: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn beta_zero_ignores_nan_in_c_and_threads_do_not_change_bits() {
        let (m, k, n) = (257, 300, 64);
        let a = values(m * k, 5);
        let b = values(k * n, 6);
        let mut seq = vec![f32::NAN; m * n];
        let mut par = vec![f32::NAN; m * n];
        product(Par::Seq, m, k, n, &a, &b, &mut seq);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        pool.install(|| product(Par::Rayon, m, k, n, &a, &b, &mut par));
        assert!(seq.iter().all(|v| v.is_finite()));
        assert_eq!(seq, par);
    }

    #[test]
    fn a_row_block_gives_the_same_bits_as_the_whole_product() {
        // What makes results independent of how rows are split over threads or ranks.
        // k above 512 checks the depth blocking; 1-row blocks take the library's gemv path.
        let m = 150;
        for (k, n) in [
            (300, 1),
            (300, 7),
            (300, 32),
            (300, 64),
            (1000, 7),
            (1000, 100),
            (1500, 256),
        ] {
            let a = values(m * k, 8);
            let b = values(k * n, 9);
            let mut whole = vec![0.0; m * n];
            product(Par::Seq, m, k, n, &a, &b, &mut whole);
            for (r0, r1) in [
                (0, 1),
                (1, 4),
                (4, 20),
                (20, 37),
                (37, 100),
                (99, 150),
                (149, 150),
            ] {
                let rows = r1 - r0;
                let mut part = vec![0.0; rows * n];
                let a_rows = &a[r0 * k..r1 * k];
                product(Par::Seq, rows, k, n, a_rows, &b, &mut part);
                assert_eq!(part, whole[r0 * n..r1 * n], "k={k} rows {r0}..{r1}, n={n}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "operand A")]
    fn short_operand_panics_with_its_name() {
        let a = [1.0; 5];
        let b = [1.0; 3];
        let mut c = [0.0; 2];
        gemm(
            Par::Seq,
            2,
            3,
            1,
            1.0,
            Mat::row_major(&a, 3),
            Mat::row_major(&b, 1),
            0.0,
            &mut c,
            |_, _| {},
        );
    }
}
