//! General matrix product `C = A·B` on strided operands, with the rows of `C` split over rayon
//! threads. `C` is always row-major and contiguous.
//!
//! The blocked product is nnmpi's own (see `src/kernels/README.md`): operands are packed into
//! panels and an `MR x NR` register tile of `C` is accumulated by a microkernel chosen at run
//! time for the CPU (AVX-512, AVX2 with FMA, or portable code).
//!
//! **Bits.** Every element of `C` is one chain of fused multiply-adds over `p = 0, 1, .., k-1`
//! in order, starting from zero: `c = fma(a[i,p], b[p,j], c)`. The cache blocking only decides
//! where the running sum waits between steps (a register or `C` itself), never the order of
//! operations, so a row's bits do not depend on the block of rows it is computed in, the
//! thread count, the tile sizes, or which microkernel the CPU gets (tested: every variant
//! equals the scalar FMA chain bit for bit). Matrix-vector shapes (`n == 1`) use the direct
//! loops below instead, with their own (equally fixed) order.

use super::Par;
use super::transpose::{Strided, transpose_strided};
use rayon::prelude::*;
use std::cell::RefCell;
use std::sync::OnceLock;

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

    /// Element `(i, j)`.
    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.rs + j * self.cs]
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

/// Below this much work (multiply-adds of the tiled product, ~0.1 ms on one core) a dense
/// product runs on one thread: waking a sleeping rayon worker costs tens of microseconds in a
/// VM, and a training step of small layers runs ~8 products. With the old threshold (2^17) a
/// 784-256-256-10 epoch at batch 32 took 1.33 s on 2 threads against 1.08 s on 1.
const GEMM_PAR_MIN_WORK: usize = 1 << 23;
/// A matrix-vector multiply-add (batch 1) counts as this many of the tiled product's: it waits
/// on memory (~0.17 ns each where a tile's take ~0.014 ns).
const GEMV_WEIGHT: usize = 12;

/// `C[m, n] = A[m, k] · B[k, n]`, then `epilogue(first_row, rows_of_c)` on blocks of finished
/// rows while they are still in cache (each row exactly once; blocks may be as small as one
/// register tile). `C` need not be initialised (NaN in it is ignored).
///
/// # Panics
/// If `c.len() != m * n` or an operand's strides reach past its data.
///
/// ```
/// use nnmpi::kernels::{Par, gemm::{gemm, Mat}};
/// let a = [1.0, 2.0, 3.0, 4.0]; // [[1, 2], [3, 4]]
/// let b = [5.0, 6.0];           // [[5], [6]]
/// let mut c = [0.0; 2];
/// gemm(Par::Seq, 2, 2, 1, Mat::row_major(&a, 2), Mat::row_major(&b, 1), &mut c, |_, _| {});
/// assert_eq!(c, [17.0, 39.0]);
/// ```
#[allow(clippy::too_many_arguments)]
pub fn gemm<F>(
    par: Par,
    m: usize,
    k: usize,
    n: usize,
    a: Mat<'_>,
    b: Mat<'_>,
    c: &mut [f32],
    epilogue: F,
) where
    F: Fn(usize, &mut [f32]) + Sync,
{
    a.check(m, k, "A");
    split_rows(
        Micro::detect(),
        par,
        ASource::Mat(a),
        m,
        k,
        n,
        b,
        c,
        &epilogue,
    );
}

/// The microkernel [`gemm`] runs on this CPU, as `name MRxNR` (e.g. `avx512 12x32`).
pub fn microkernel() -> String {
    let micro = Micro::detect();
    format!("{} {}x{}", micro.name, micro.mr, micro.nr)
}

/// A row-major `[m, k]` matrix packed once for many products by [`gemm_packed`] (a layer's
/// weights while it serves predictions): every panel of rows the microkernel reads is one
/// contiguous run, in the order the product reads them, so the whole matrix streams from
/// memory in one sequential pass that the hardware prefetchers keep ahead of.
#[derive(Clone, Debug)]
pub struct PackedRows {
    micro: Micro,
    m: usize,
    k: usize,
    /// For each pass of depth `p0..p0 + kc` ([`Micro::depth_step`]), for each panel of `mr` rows
    /// (zero rows past `m`), `kc` steps of `mr` values: `(p0, panel)` starts at
    /// `p0 * m_padded + panel * kc * mr`.
    data: Vec<f32>,
}

impl PackedRows {
    /// Packs the row-major `[m, k]` matrix `a` for this CPU's microkernel.
    ///
    /// # Panics
    /// If `a.len() != m * k`.
    pub fn new(a: &[f32], m: usize, k: usize) -> Self {
        Self::for_micro(Micro::detect(), a, m, k)
    }

    /// Packs `a` for the microkernel `micro`.
    fn for_micro(micro: Micro, a: &[f32], m: usize, k: usize) -> Self {
        assert_eq!(
            a.len(),
            m * k,
            "PackedRows: A has {} values, expected {m}x{k}",
            a.len()
        );
        let mr = micro.mr;
        let padded = m.next_multiple_of(mr);
        let mut data = vec![0.0f32; padded * k];
        if k > 0 {
            let step = micro.depth_step(k);
            for p0 in (0..k).step_by(step) {
                let kc = step.min(k - p0);
                let pass = &mut data[p0 * padded..(p0 + kc) * padded];
                for (panel, dst) in pass.chunks_exact_mut(kc * mr).enumerate() {
                    for (p, step_values) in dst.chunks_exact_mut(mr).enumerate() {
                        for (i, v) in step_values.iter_mut().enumerate() {
                            let row = panel * mr + i;
                            if row < m {
                                *v = a[row * k + p0 + p];
                            }
                        }
                    }
                }
            }
        }
        PackedRows { micro, m, k, data }
    }

    /// Rows of the matrix.
    pub fn rows(&self) -> usize {
        self.m
    }

    /// Columns of the matrix.
    pub fn cols(&self) -> usize {
        self.k
    }

    /// The values of the panel of rows `i0..i0 + mr` (`i0` a multiple of `mr`) over depth
    /// `p0..p0 + kc`, step by step.
    fn panel_values(&self, i0: usize, p0: usize, kc: usize) -> &[f32] {
        let mr = self.micro.mr;
        let at = p0 * self.m.next_multiple_of(mr) + i0 / mr * kc * mr;
        &self.data[at..at + kc * mr]
    }
}

/// `C[m, n] = A · B` for a packed `A` (`[m, k]`), with the bits of [`gemm`] on the unpacked
/// matrix for `n > 1` (the same chain of fused multiply-adds per element) and its epilogue
/// contract. Matrix-vector products (`n == 1`) are better served by [`gemm`] on the unpacked
/// matrix (its direct loops).
///
/// # Panics
/// If `c.len() != m * n` or B's strides reach past its data.
pub fn gemm_packed<F>(par: Par, a: &PackedRows, n: usize, b: Mat<'_>, c: &mut [f32], epilogue: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    let (m, k) = (a.m, a.k);
    split_rows(a.micro, par, ASource::Packed(a), m, k, n, b, c, &epilogue);
}

/// Where the rows of A come from.
#[derive(Clone, Copy)]
enum ASource<'a> {
    /// A strided matrix, read in place or copied panel by panel.
    Mat(Mat<'a>),
    /// A packed matrix.
    Packed(&'a PackedRows),
}

impl ASource<'_> {
    /// The packed panel at row `i0` over depth `p0..p0 + kc`, if A is packed and `i0 < end`.
    fn next_packed(&self, i0: usize, end: usize, p0: usize, kc: usize) -> Option<&[f32]> {
        match (*self, i0 < end) {
            (ASource::Packed(packed), true) => Some(packed.panel_values(i0, p0, kc)),
            _ => None,
        }
    }

    /// Rows `i0..i0 + rows` of A over depth `p0..p0 + kc`, for `tiles` register tiles, copied
    /// into `buf` when they must be or when a copy pays.
    #[allow(clippy::too_many_arguments)]
    fn panel<'p>(
        &'p self,
        i0: usize,
        rows: usize,
        p0: usize,
        kc: usize,
        mr: usize,
        tiles: usize,
        buf: &'p mut [f32],
    ) -> APanel<'p> {
        match *self {
            ASource::Packed(packed) => APanel::Steps {
                data: packed.panel_values(i0, p0, kc),
                stride: mr,
            },
            // Row-major A is read in place: copying it cost 15% of 4096x4096x256 and 25% of
            // 1024x1024x64 (each value is reused only n / NR times, and the copy waits for
            // memory where the kernel overlaps it).
            ASource::Mat(a) if a.cs == 1 && rows == mr => APanel::Rows {
                data: &a.data[i0 * a.rs + p0..],
                stride: a.rs,
            },
            // A transposed row-major matrix (the input gradient's Wᵀ) is read in place when the
            // panel serves few tiles: step p of the panel is `mr` contiguous values (copying
            // it cost as much as the product at batch 32, where each panel serves one tile).
            // Its steps lie a row of W apart, often a multiple of 4 KiB, so they share a few
            // sets of L1: with more tiles the copy pays (below).
            ASource::Mat(a) if a.rs == 1 && rows == mr && tiles <= STEPS_IN_PLACE_MAX_TILES => {
                APanel::Steps {
                    data: &a.data[p0 * a.cs + i0..],
                    stride: a.cs,
                }
            }
            ASource::Mat(a) => pack_a(a, i0, rows, p0, kc, mr, buf),
        }
    }
}

/// Splits the rows of C over the threads `par` allows and runs [`product`] on each block.
#[allow(clippy::too_many_arguments)]
fn split_rows(
    micro: Micro,
    par: Par,
    a: ASource<'_>,
    m: usize,
    k: usize,
    n: usize,
    b: Mat<'_>,
    c: &mut [f32],
    epilogue: &(dyn Fn(usize, &mut [f32]) + Sync),
) {
    assert_eq!(
        c.len(),
        m * n,
        "gemm: C has {} values, expected {m}x{n}",
        c.len()
    );
    b.check(k, n, "B");
    if m == 0 || n == 0 {
        return;
    }
    let threads = match par {
        Par::Seq => 1,
        Par::Rayon(t) if m * k * n * if n == 1 { GEMV_WEIGHT } else { 1 } >= GEMM_PAR_MIN_WORK => {
            t.get().min(m.div_ceil(micro.mr))
        }
        Par::Rayon(_) => 1,
    };
    let block = |first: usize, cb: &mut [f32]| {
        product(micro, a, first, k, n, b, cb, &|r0, rows| {
            epilogue(first + r0, rows)
        });
    };
    if threads <= 1 {
        block(0, c);
    } else {
        // Whole register tiles per thread, so that no thread pays for a padded tile but the
        // last (and packed panels start where blocks do).
        let rows = m.div_ceil(threads).next_multiple_of(micro.mr);
        c.par_chunks_mut(rows * n)
            .enumerate()
            .for_each(|(i, cb)| block(i * rows, cb));
    }
}

/// Most depth steps per pass over C for the AVX-512 and portable kernels: a `KC x NR` panel of
/// B and `MR` rows of A of this depth stay in L1 while a register tile is computed (48 + 18 KiB
/// for 12 x 32: the panel of B streams, the rows of A are reused by every panel). Measured on
/// an Intel Xeon (family 6, model 207: Emerald Rapids, 2 MiB L2) for 4096x4096x256 and
/// 1024x1024x64: 128 was 10% slower, 256/384/512 within the machine's noise of each other.
const KC: usize = 384;
/// Most depth steps per pass for the AVX2 kernel (6 x 16). Measured on an AMD EPYC 7003 (Zen 3,
/// family 25 model 1, 512 KiB L2), 1 thread, depths alternating in one process, 12 rounds,
/// against 384: A in place 1.09x (4096x4096x256), 1.06x (1024x784x1024), 1.10x (1024x1024x64),
/// 1.15x (1024x1024x32); packed 1.01-1.04x. Fewer passes load and store C less often, and each
/// row of A read in place is a longer run for the hardware prefetcher; 192 and 256 were 4-18%
/// slower, 2048 and 4096 within 3% of 1024 on the one shape deep enough to tell.
const KC_AVX2: usize = 1024;
/// Most register tiles a panel of a transposed A (steps `mr` contiguous values, rows of the
/// weights apart) serves read in place; above, it is copied first. Measured on an AMD EPYC
/// 7003 (Zen 3, AVX2), 1 thread, both ways alternating in one process, the input gradient's
/// `Wᵀ · delta`: copying was 0.57x at 2 tiles (784x1024x32), 0.95x at 4 (1024x1024x64),
/// 1.07-1.09x at 6 and 8, 1.41x and 1.61x at 16 (1024x1024x256, 4096x4096x256). Not measured
/// with AVX-512's 32-column tiles, where 4 tiles are batch 128.
const STEPS_IN_PLACE_MAX_TILES: usize = 4;
/// Most columns of B packed at once: a `KC x NC` block (768 KiB at AVX-512's depth) stays in L2
/// (1 MiB on Zen 4/5, 2 MiB on Sapphire and Emerald Rapids) while every row of A meets it. At
/// AVX2's depth the block is 2 MiB, more than a Zen 3's 512 KiB L2: its panels come from L3,
/// and the deeper pass was still the faster (above).
const NC: usize = 512;

/// One thread's product of rows `first..first + c.len() / n` of A (`c` is those rows of C).
#[allow(clippy::too_many_arguments)]
fn product(
    micro: Micro,
    source: ASource<'_>,
    first: usize,
    k: usize,
    n: usize,
    b: Mat<'_>,
    c: &mut [f32],
    epilogue: &dyn Fn(usize, &mut [f32]),
) {
    let m = c.len() / n;
    if k == 0 {
        c.fill(0.0);
        return epilogue(0, c);
    }
    if let (1, ASource::Mat(a)) = (n, source) {
        let a = Mat {
            data: &a.data[first * a.rs..],
            ..a
        };
        if a.cs == 1 && b.rs == 1 {
            rows_dot(a.data, a.rs, &b.data[..k], c);
            return epilogue(0, c);
        }
        if a.rs == 1 {
            // Columns of A are contiguous (A is a transposed row-major matrix): sum of scaled
            // columns.
            c.fill(0.0);
            for p in 0..k {
                axpy(b.data[p * b.rs], &a.data[p * a.cs..p * a.cs + m], c);
            }
            return epilogue(0, c);
        }
    }
    let (mr, nr) = (micro.mr, micro.nr);
    let step = micro.depth_step(k);
    PACKS.with_borrow_mut(|packs| {
        let (a_pack, b_pack) = packs.split(mr * micro.kc, micro.kc * NC.next_multiple_of(nr));
        for j0 in (0..n).step_by(NC) {
            let nc = NC.min(n - j0);
            for p0 in (0..k).step_by(step) {
                let kc = step.min(k - p0);
                let panels = nc.div_ceil(nr);
                pack_b(b, p0, kc, j0, nc, nr, b_pack);
                for i0 in (0..m).step_by(mr) {
                    let rows = mr.min(m - i0);
                    let a_panel = source.panel(first + i0, rows, p0, kc, mr, panels, a_pack);
                    let next = source.next_packed(first + i0 + mr, first + m, p0, kc);
                    for (q, panel) in b_pack[..panels * kc * nr].chunks_exact(kc * nr).enumerate() {
                        let j = j0 + q * nr;
                        let tile = Tile {
                            rows,
                            cols: nr.min(n - j),
                            ldc: n,
                        };
                        let ahead = next.map_or(Ahead::NONE, |n| Ahead::part(n, (q, panels), kc));
                        micro.run(
                            tile,
                            kc,
                            a_panel,
                            panel,
                            &mut c[i0 * n + j..],
                            p0 > 0,
                            ahead,
                        );
                    }
                    if nc == n && p0 + kc == k {
                        epilogue(i0, &mut c[i0 * n..(i0 + rows) * n]);
                    }
                }
            }
        }
        if n > NC {
            epilogue(0, c);
        }
    });
}

/// `mr` rows of A over one pass of depth, as the microkernels read them.
#[derive(Clone, Copy, Debug)]
enum APanel<'a> {
    /// Row `i` starts at `data[i * stride]` (A itself, or a copy).
    Rows { data: &'a [f32], stride: usize },
    /// Step `p` is `data[p * stride..p * stride + mr]` (a copy, packed or not, or A itself).
    Steps { data: &'a [f32], stride: usize },
}

/// Copies rows `i0..i0 + rows` and depth `p0..p0 + kc` of A, with zero rows after `rows`
/// (the last tile of a block), in the layout that copies fastest from A's: a row-major A row
/// by row, any other step by step (contiguous copies for a transposed A).
fn pack_a<'p>(
    a: Mat<'_>,
    i0: usize,
    rows: usize,
    p0: usize,
    kc: usize,
    mr: usize,
    out: &'p mut [f32],
) -> APanel<'p> {
    if a.cs == 1 {
        // `out` holds `mr` rows of the deepest pass.
        let stride = out.len() / mr;
        for (i, dst) in out.chunks_exact_mut(stride).enumerate() {
            if i < rows {
                dst[..kc].copy_from_slice(&a.data[(i0 + i) * a.rs + p0..][..kc]);
            } else {
                dst[..kc].fill(0.0);
            }
        }
        return APanel::Rows { data: out, stride };
    }
    for (p, dst) in out[..kc * mr].chunks_exact_mut(mr).enumerate() {
        if a.rs == 1 {
            dst[..rows].copy_from_slice(&a.data[(p0 + p) * a.cs + i0..][..rows]);
        } else {
            for (i, d) in dst[..rows].iter_mut().enumerate() {
                *d = a.at(i0 + i, p0 + p);
            }
        }
        dst[rows..].fill(0.0);
    }
    APanel::Steps {
        data: out,
        stride: mr,
    }
}

/// Packs depth `p0..p0 + kc` and columns `j0..j0 + nc` of B into panels of `nr` columns,
/// `out[q * kc * nr + p * nr + j]`, with zeros past column `nc` (the last panel).
fn pack_b(b: Mat<'_>, p0: usize, kc: usize, j0: usize, nc: usize, nr: usize, out: &mut [f32]) {
    for (q, panel) in out[..nc.div_ceil(nr) * kc * nr]
        .chunks_exact_mut(kc * nr)
        .enumerate()
    {
        let (jq, cols) = (j0 + q * nr, nr.min(nc - q * nr));
        if cols < nr {
            panel.fill(0.0);
        }
        if b.cs == 1 {
            // Row-major B: one contiguous copy per depth step.
            for (p, dst) in panel.chunks_exact_mut(nr).enumerate() {
                dst[..cols].copy_from_slice(&b.data[(p0 + p) * b.rs + jq..][..cols]);
            }
        } else if b.rs == 1 {
            // Transposed B (a weight gradient's xᵀ, or sample-major input): its columns are
            // contiguous runs, and the panel is their transpose (8 x 8 blocks in registers;
            // one value at a time, this pack cost as much as a small product).
            let columns = Strided {
                data: &b.data[jq * b.cs + p0..],
                rows: cols,
                cols: kc,
                ld: b.cs,
            };
            transpose_strided(columns, panel, nr);
        } else {
            for j in 0..cols {
                for p in 0..kc {
                    panel[p * nr + j] = b.at(p0 + p, jq + j);
                }
            }
        }
    }
}

/// Where a register tile lands in `C`: its valid rows and columns and `C`'s row stride.
#[derive(Clone, Copy)]
struct Tile {
    rows: usize,
    cols: usize,
    ldc: usize,
}

/// The largest register tile of any microkernel (its scratch for edge tiles).
const MAX_TILE: usize = 12 * 32;

/// A kernel on one register tile: `tile(kc, a, lda, b, c, ldc, load)` accumulates the
/// `mr x nr` product of a panel of A (rows `lda` apart, or steps of `mr` values `lda` apart: see
/// [`APanel`]) and a packed panel of B into a full tile of C at `c` (row stride `ldc`),
/// starting from C when `load`, else from zero.
///
/// Safety contract (checked by [`Micro::run`], the only caller): A holds
/// `(mr - 1) * lda + kc` values (rows) or `(kc - 1) * lda + mr` (steps), B `kc * nr`, and the `mr` rows of
/// `nr` values at `c` lie inside one allocation; the CPU has the kernel's target features.
type TileFn = unsafe fn(usize, *const f32, usize, *const f32, *mut f32, usize, bool, Ahead);

/// What a kernel prefetches while it computes: the next packed panel of A, one cache line
/// every `every` depth steps (never when 0) from `at` on, so that the panel arrives spread over
/// the current panel's work instead of in one burst when the kernel first reads it (9-12%
/// faster on 4096x4096x256 and 1024x1024x64 than no prefetch; the same for A read in place,
/// from rows far apart, gained nothing). A prefetch is a hint: any address is allowed.
#[derive(Clone, Copy, Debug)]
struct Ahead {
    at: *const f32,
    every: usize,
}

impl Ahead {
    const NONE: Ahead = Ahead {
        at: std::ptr::null(),
        every: 0,
    };

    /// Part `part` of `parts` of the cache lines of `next`, over a kernel call of `kc` steps.
    fn part(next: &[f32], (part, parts): (usize, usize), kc: usize) -> Ahead {
        let per_call = next.len().div_ceil(16).div_ceil(parts);
        match per_call {
            0 => Ahead::NONE,
            _ => Ahead {
                at: next.as_ptr().wrapping_add(part * per_call * 16),
                every: (kc / per_call).max(1),
            },
        }
    }

    /// Prefetches the next cache line (call after every `every` depth steps).
    #[inline(always)]
    fn prefetch_next(&mut self) {
        prefetch(self.at);
        self.at = self.at.wrapping_add(16);
    }
}

/// Asks the CPU to bring the cache line holding `at` into L1 (a hint: it never faults).
#[inline(always)]
fn prefetch(at: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch instruction does not access memory architecturally; any address is
    // allowed.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(at.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// A microkernel: its tile shape and its kernels for each layout of the panel of A.
#[derive(Clone, Copy, Debug)]
struct Micro {
    name: &'static str,
    mr: usize,
    nr: usize,
    /// The deepest pass over C.
    kc: usize,
    /// For [`APanel::Rows`].
    rows: TileFn,
    /// For [`APanel::Steps`].
    steps: TileFn,
}

impl Micro {
    /// The depth of each pass for a product of depth `k`: equal passes of at most `kc` (a
    /// short last pass would load and store C for little work). The bits do not depend on it.
    fn depth_step(&self, k: usize) -> usize {
        k.div_ceil(k.div_ceil(self.kc))
    }

    /// The microkernels this CPU can run, fastest first.
    fn candidates() -> impl Iterator<Item = Micro> {
        #[cfg(target_arch = "x86_64")]
        let simd = [
            (x86::AVX512, is_x86_feature_detected!("avx512f")),
            (
                x86::AVX2,
                is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            ),
        ];
        #[cfg(not(target_arch = "x86_64"))]
        let simd: [(Micro, bool); 0] = [];
        simd.into_iter()
            .filter_map(|(micro, runs)| runs.then_some(micro))
            .chain(std::iter::once(PORTABLE))
    }

    /// The fastest microkernel this CPU can run, chosen once per process (asked on every
    /// product: choosing it each time moved the candidates' records through the stack and
    /// stalled on store forwarding; a 60-3-1 forward pass at batch 1, two products, took
    /// 0.34-0.38 µs with it and 0.19 µs without on an AMD EPYC Zen 3).
    fn detect() -> Micro {
        static CHOSEN: OnceLock<Micro> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            Self::candidates()
                .next()
                .expect("the portable microkernel always runs")
        })
    }

    /// Every microkernel this CPU can run (the tests run them all).
    #[cfg(test)]
    fn available() -> Vec<Micro> {
        Self::candidates().collect()
    }

    /// Accumulates `a · b` over `kc` steps into a tile of C that may be cut short by C's
    /// edges (`c` starts at the tile's first element), starting from C when `load`.
    ///
    /// # Panics
    /// If a panel or C is too short for the tile (checked here, so that the kernels, which
    /// read through raw pointers, stay inside them).
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        tile: Tile,
        kc: usize,
        a: APanel<'_>,
        b: &[f32],
        c: &mut [f32],
        load: bool,
        ahead: Ahead,
    ) {
        assert!(kc >= 1, "gemm: empty depth pass");
        let (kernel, a, lda) = match a {
            APanel::Rows { data, stride } => {
                assert!(kc <= stride && data.len() >= (self.mr - 1) * stride + kc);
                (self.rows, data, stride)
            }
            APanel::Steps { data, stride } => {
                assert!(stride >= self.mr && data.len() >= (kc - 1) * stride + self.mr);
                (self.steps, data, stride)
            }
        };
        assert!(b.len() >= kc * self.nr, "gemm: short panel of B");
        assert!(tile.rows >= 1 && tile.rows <= self.mr && tile.cols >= 1 && tile.cols <= self.nr);
        assert!(
            c.len() >= (tile.rows - 1) * tile.ldc + tile.cols,
            "gemm: tile past C"
        );
        if tile.rows == self.mr && tile.cols == self.nr {
            // SAFETY: the panels and the full tile of C were checked above; `self` is one of
            // `Micro::available()`, whose features this CPU has.
            return unsafe {
                kernel(
                    kc,
                    a.as_ptr(),
                    lda,
                    b.as_ptr(),
                    c.as_mut_ptr(),
                    tile.ldc,
                    load,
                    ahead,
                )
            };
        }
        // An edge tile: compute the whole tile in scratch, copy back what lies inside C.
        let mut scratch = [0.0f32; MAX_TILE];
        let nr = self.nr;
        if load {
            for i in 0..tile.rows {
                scratch[i * nr..i * nr + tile.cols]
                    .copy_from_slice(&c[i * tile.ldc..i * tile.ldc + tile.cols]);
            }
        }
        // SAFETY: scratch holds MAX_TILE >= mr x nr values with row stride nr; the panels as
        // above.
        unsafe {
            kernel(
                kc,
                a.as_ptr(),
                lda,
                b.as_ptr(),
                scratch.as_mut_ptr(),
                nr,
                load,
                ahead,
            )
        };
        for i in 0..tile.rows {
            c[i * tile.ldc..i * tile.ldc + tile.cols]
                .copy_from_slice(&scratch[i * nr..i * nr + tile.cols]);
        }
    }
}

/// Per-thread packing buffers, kept between calls so that a product allocates only the first
/// time a thread runs one.
#[derive(Default)]
struct Packs {
    a: Vec<f32>,
    b: Vec<f32>,
}

thread_local! {
    static PACKS: RefCell<Packs> = RefCell::new(Packs::default());
}

impl Packs {
    /// Buffers of `a_len` and `b_len` values, each starting on a 64-byte boundary (a cache
    /// line: whole-vector loads of a panel never straddle two).
    fn split(&mut self, a_len: usize, b_len: usize) -> (&mut [f32], &mut [f32]) {
        (aligned(&mut self.a, a_len), aligned(&mut self.b, b_len))
    }
}

fn aligned(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    const LINE: usize = 64 / std::mem::size_of::<f32>();
    if buf.len() < len + LINE {
        buf.resize(len + LINE, 0.0);
    }
    let skip = buf.as_ptr().align_offset(64).min(LINE);
    &mut buf[skip..skip + len]
}

/// Where element `(i, p)` of a panel of A lies, rows or steps `lda` apart (see [`APanel`]).
#[inline(always)]
fn a_offset<const MR: usize, const ROWS: bool>(i: usize, p: usize, lda: usize) -> usize {
    if ROWS { i * lda + p } else { p * lda + i }
}

/// The portable microkernel: 4 x 16, one `mul_add` per element and step (the same FMA chain
/// as the vector kernels, so the same bits).
const PORTABLE: Micro = Micro {
    name: "portable",
    mr: 4,
    nr: 16,
    kc: KC,
    rows: portable_tile::<true>,
    steps: portable_tile::<false>,
};

/// # Safety
/// The [`TileFn`] contract for a 4 x 16 tile.
#[allow(clippy::too_many_arguments)]
unsafe fn portable_tile<const ROWS: bool>(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    load: bool,
    _: Ahead,
) {
    const MR: usize = 4;
    const NR: usize = 16;
    // SAFETY: the TileFn contract: these are the extents of A and B.
    let (a, b) = unsafe {
        (
            std::slice::from_raw_parts(
                a,
                if ROWS {
                    (MR - 1) * lda + kc
                } else {
                    (kc - 1) * lda + MR
                },
            ),
            std::slice::from_raw_parts(b, kc * NR),
        )
    };
    let mut acc = [[0.0f32; NR]; MR];
    if load {
        for (i, row) in acc.iter_mut().enumerate() {
            // SAFETY: row i of the tile lies inside C (caller's contract).
            row.copy_from_slice(unsafe { std::slice::from_raw_parts(c.add(i * ldc), NR) });
        }
    }
    for (p, bp) in b.chunks_exact(NR).enumerate() {
        for (i, row) in acc.iter_mut().enumerate() {
            let ai = a[a_offset::<MR, ROWS>(i, p, lda)];
            for (s, &bj) in row.iter_mut().zip(bp) {
                *s = ai.mul_add(bj, *s);
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: as above.
        unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), NR) }.copy_from_slice(row);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The x86-64 microkernels: `MR` rows of `NV` vectors each, the sums in registers, one
    //! broadcast of A and `NV` loads of B per depth step.
    use super::{Ahead, KC, KC_AVX2, Micro, a_offset};
    use std::arch::x86_64::*;

    /// AVX-512: 12 x 32 (24 accumulators of the 32 zmm registers). Timed in one process on a
    /// Xeon (family 6, model 207; two 512-bit FMA ports), 1 thread, A in place and packed,
    /// for 4096x4096x256, 1024x1024x64 and 1024x784x1024: 12 x 32, 14 x 32 and 6 x 64 within
    /// 3% of one another (145/146/151 GFLOP/s packed on the first), 8 x 48 13-30% slower
    /// where n is not a multiple of 48; 6 x 64 would waste half of every tile at batch 32.
    pub(super) const AVX512: Micro = Micro {
        name: "avx512",
        mr: 12,
        nr: 32,
        kc: KC,
        rows: tile_avx512::<12, 2, true>,
        steps: tile_avx512::<12, 2, false>,
    };

    /// AVX2 + FMA: 6 x 16 (12 accumulators of the 16 ymm registers).
    pub(super) const AVX2: Micro = Micro {
        name: "avx2",
        mr: 6,
        nr: 16,
        kc: KC_AVX2,
        rows: tile_avx2::<6, 2, true>,
        steps: tile_avx2::<6, 2, false>,
    };

    /// Defines a register-tile kernel for one vector width from its intrinsics.
    macro_rules! tile_kernel {
        ($(#[$m:meta])* $name:ident, $features:literal, $vec:ty, $w:literal,
         $zero:ident, $load:ident, $store:ident, $set1:ident, $fmadd:ident) => {
            $(#[$m])*
            #[target_feature(enable = $features)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn $name<const MR: usize, const NV: usize, const ROWS: bool>(
                kc: usize,
                a: *const f32,
                lda: usize,
                b: *const f32,
                c: *mut f32,
                ldc: usize,
                load: bool,
                ahead: Ahead,
            ) {
                const W: usize = $w;
                let mut acc: [[$vec; NV]; MR] = [[$zero(); NV]; MR];
                // SAFETY (every pointer access below): the TileFn contract — A, B and the
                // tile of C hold every element read or written here.
                unsafe {
                    if load {
                        for (i, row) in acc.iter_mut().enumerate() {
                            for (v, s) in row.iter_mut().enumerate() {
                                *s = $load(c.add(i * ldc + v * W));
                            }
                        }
                    }
                    // One depth step: NV loads of B, MR broadcasts of A, MR x NV FMAs.
                    let mut step = |p: usize| {
                        let bp = b.add(p * NV * W);
                        let bv: [$vec; NV] = std::array::from_fn(|v| $load(bp.add(v * W)));
                        for (i, row) in acc.iter_mut().enumerate() {
                            let ai = $set1(*a.add(a_offset::<MR, ROWS>(i, p, lda)));
                            for (s, bv) in row.iter_mut().zip(&bv) {
                                *s = $fmadd(ai, *bv, *s);
                            }
                        }
                    };
                    // The steps in runs of `ahead.every` (one prefetch after each), each run
                    // unrolled by 4: no per-step bookkeeping beside the FMAs.
                    let mut ahead = ahead;
                    let run = if ahead.every == 0 { kc } else { ahead.every };
                    let mut p = 0;
                    while p < kc {
                        let end = (p + run).min(kc);
                        while p + 4 <= end {
                            step(p);
                            step(p + 1);
                            step(p + 2);
                            step(p + 3);
                            p += 4;
                        }
                        while p < end {
                            step(p);
                            p += 1;
                        }
                        if ahead.every != 0 {
                            ahead.prefetch_next();
                        }
                    }
                    for (i, row) in acc.iter().enumerate() {
                        for (v, s) in row.iter().enumerate() {
                            $store(c.add(i * ldc + v * W), *s);
                        }
                    }
                }
            }
        };
    }

    tile_kernel!(
        /// # Safety
        /// The [`TileFn`](super::TileFn) contract for an `MR x 16·NV` tile, with AVX-512F.
        tile_avx512, "avx512f", __m512, 16,
        _mm512_setzero_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps
    );
    tile_kernel!(
        /// # Safety
        /// The [`TileFn`](super::TileFn) contract for an `MR x 8·NV` tile, with AVX2 and FMA.
        tile_avx2, "avx2,fma", __m256, 8,
        _mm256_setzero_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps
    );
}

multiversion! {
    /// Row-major `a` (row stride `rs`) times the vector `x`: one dot product per row of `c`,
    /// compiled for the widest vectors the CPU has (the lanes' order of operations, and so
    /// the bits, are the same at every width).
    fn rows_dot(a: &[f32], rs: usize, x: &[f32], c: &mut [f32]) {
        let k = x.len();
        for (i, ci) in c.iter_mut().enumerate() {
            *ci = dot(&a[i * rs..i * rs + k], x);
        }
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

    /// The obvious triple loop in f64, and a bound on the f32 rounding error of each element
    /// (k steps of relative error 2^-24 on the sum of |a·b|).
    fn reference(m: usize, k: usize, n: usize, a: Mat, b: Mat) -> (Vec<f64>, Vec<f64>) {
        let mut out = vec![0.0f64; m * n];
        let mut bound = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let (mut s, mut mag) = (0.0f64, 0.0f64);
                for p in 0..k {
                    let t = a.at(i, p) as f64 * b.at(p, j) as f64;
                    s += t;
                    mag += t.abs();
                }
                out[i * n + j] = s;
                bound[i * n + j] = (k as f64 + 1.0) * mag * f32::EPSILON as f64 + 1e-30;
            }
        }
        (out, bound)
    }

    /// Each element as the chain of fused multiply-adds the kernels promise, in f32.
    fn fma_chain(m: usize, k: usize, n: usize, a: Mat, b: Mat) -> Vec<f32> {
        let mut out = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).fold(0.0f32, |s, p| a.at(i, p).mul_add(b.at(p, j), s));
            }
        }
        out
    }

    /// `C = A·B` with the microkernel `micro`.
    fn gemm_with(micro: Micro, m: usize, k: usize, n: usize, a: Mat, b: Mat, c: &mut [f32]) {
        split_rows(micro, Par::Seq, ASource::Mat(a), m, k, n, b, c, &|_, _| {});
    }

    /// `C = A·B` for row-major A `[m, k]` and B `[k, n]`.
    fn product(par: Par, m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
        gemm(
            par,
            m,
            k,
            n,
            Mat::row_major(a, k),
            Mat::row_major(b, n),
            c,
            |_, _| {},
        );
    }

    /// Operands of every layout: (A, B) row-major or transposed.
    fn layouts<'a>(
        m: usize,
        k: usize,
        n: usize,
        a: &'a [f32],
        b: &'a [f32],
    ) -> [(Mat<'a>, Mat<'a>); 4] {
        let am = |t: bool| {
            if t {
                Mat::transposed(a, m)
            } else {
                Mat::row_major(a, k)
            }
        };
        let bm = |t: bool| {
            if t {
                Mat::transposed(b, k)
            } else {
                Mat::row_major(b, n)
            }
        };
        [
            (am(false), bm(false)),
            (am(true), bm(false)),
            (am(false), bm(true)),
            (am(true), bm(true)),
        ]
    }

    /// Awkward shapes: single rows and columns, sizes just past and short of the tiles and
    /// panels, depth not a multiple of anything and deeper than one pass (`Micro::kc`), more
    /// columns than one packed block (NC).
    const SHAPES: [(usize, usize, usize); 11] = [
        (1, 1, 1),
        (3, 60, 1),
        (1, 513, 513),
        (7, 17, 7),
        (17, 1, 513),
        (37, 19, 5),
        (511, 513, 7),
        (513, 17, 511),
        (20, 600, 1100),
        (64, 1, 9),
        (13, 2100, 20),
    ];

    #[test]
    fn every_microkernel_matches_the_f64_reference_at_awkward_shapes() {
        for micro in Micro::available() {
            for &(m, k, n) in &SHAPES {
                let (a_data, b_data) = (values(m * k, 1), values(k * n, 2));
                for (li, (a, b)) in layouts(m, k, n, &a_data, &b_data).into_iter().enumerate() {
                    let (want, bound) = reference(m, k, n, a, b);
                    let mut c = vec![f32::NAN; m * n];
                    gemm_with(micro, m, k, n, a, b, &mut c);
                    for (e, ((got, want), bound)) in c.iter().zip(&want).zip(&bound).enumerate() {
                        assert!(
                            (*got as f64 - want).abs() <= *bound,
                            "{} {m}x{k}x{n} layout {li} element {e}: {got} vs {want}",
                            micro.name
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn every_microkernel_gives_the_bits_of_one_fma_chain_per_element() {
        // What makes the bits independent of the CPU, the tile sizes and the blocking.
        let micros = Micro::available();
        assert_eq!(micros.last().map(|m| m.name), Some("portable"));
        for &(m, k, n) in &SHAPES {
            let (a_data, b_data) = (values(m * k, 3), values(k * n, 4));
            for (li, (a, b)) in layouts(m, k, n, &a_data, &b_data).into_iter().enumerate() {
                if n == 1 && (a.cs == 1 || a.rs == 1) && b.rs == 1 {
                    continue; // matrix-vector shapes take the direct loops
                }
                let want = fma_chain(m, k, n, a, b);
                for micro in &micros {
                    let mut c = vec![f32::NAN; m * n];
                    gemm_with(*micro, m, k, n, a, b, &mut c);
                    assert!(
                        c.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()),
                        "{} {m}x{k}x{n} layout {li}",
                        micro.name
                    );
                }
            }
        }
    }

    #[test]
    fn packed_rows_give_the_bits_of_one_fma_chain_per_element() {
        for micro in Micro::available() {
            for &(m, k, n) in &SHAPES {
                let (a, b) = (values(m * k, 5), values(k * n, 6));
                let packed = PackedRows::for_micro(micro, &a, m, k);
                let (a, b) = (Mat::row_major(&a, k), Mat::row_major(&b, n));
                let want = fma_chain(m, k, n, a, b);
                for threads in [1, 3] {
                    let mut got = vec![f32::NAN; m * n];
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    pool.install(|| {
                        split_rows(
                            micro,
                            Par::threads(threads),
                            ASource::Packed(&packed),
                            m,
                            k,
                            n,
                            b,
                            &mut got,
                            &|_, _| {},
                        )
                    });
                    assert!(
                        got.iter()
                            .zip(&want)
                            .all(|(x, y)| x.to_bits() == y.to_bits()),
                        "{} {m}x{k}x{n}, {threads} threads",
                        micro.name
                    );
                }
            }
        }
    }

    #[test]
    fn nan_in_c_is_ignored_and_threads_do_not_change_bits() {
        let (m, k, n) = (257, 300, 64);
        let a = values(m * k, 5);
        let b = values(k * n, 6);
        let mut seq = vec![f32::NAN; m * n];
        product(Par::Seq, m, k, n, &a, &b, &mut seq);
        assert!(seq.iter().all(|v| v.is_finite()));
        for threads in [2, 3, 4] {
            let mut par = vec![f32::NAN; m * n];
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| product(Par::threads(threads), m, k, n, &a, &b, &mut par));
            assert_eq!(seq, par, "{threads} threads");
        }
    }

    #[test]
    fn the_epilogue_sees_every_row_once_after_its_product() {
        for (m, k, n) in [(50, 300, 40), (30, 20, 1100), (9, 5, 1)] {
            let a = values(m * k, 7);
            let b = values(k * n, 8);
            let mut want = vec![0.0; m * n];
            product(Par::Seq, m, k, n, &a, &b, &mut want);
            let seen = std::sync::Mutex::new(vec![0u32; m]);
            let mut c = vec![0.0; m * n];
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap();
            pool.install(|| {
                gemm(
                    Par::threads(2),
                    m,
                    k,
                    n,
                    Mat::row_major(&a, k),
                    Mat::row_major(&b, n),
                    &mut c,
                    |first, rows| {
                        // The rows handed over are finished: equal to the whole product's.
                        assert_eq!(rows, &want[first * n..first * n + rows.len()]);
                        for r in first..first + rows.len() / n {
                            seen.lock().unwrap()[r] += 1;
                        }
                        rows.iter_mut().for_each(|v| *v += 1.0);
                    },
                )
            });
            assert!(
                seen.into_inner().unwrap().iter().all(|&s| s == 1),
                "{m}x{k}x{n}"
            );
            assert!(c.iter().zip(&want).all(|(c, w)| *c == w + 1.0));
        }
    }

    #[test]
    fn a_row_block_gives_the_same_bits_as_the_whole_product() {
        // What makes results independent of how rows are split over threads or ranks.
        // k above every kernel's deepest pass checks the depth blocking; 1-row blocks are a
        // padded register tile.
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
            Mat::row_major(&a, 3),
            Mat::row_major(&b, 1),
            &mut c,
            |_, _| {},
        );
    }
}
