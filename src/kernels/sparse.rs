//! A sparse (CSR) fully connected layer, or a block of its rows, on features-major
//! activations: the kernels skip absent connections.
//!
//! Shapes: `w` is a [`Csr`] `[out, in]`, `b` is `[out]`, `x` is `[in, batch]`, `y` and `delta`
//! are `[out, batch]`, `batch >= 1`. Every output element is a chain of fused multiply-adds
//! over its row's entries in column order, so its bits do not depend on how rows are split
//! over threads or ranks, nor on the SIMD width.

use super::Par;
use super::activation::Activation;
use super::activation::{bias_activation, bias_activation_by_sample};
use crate::sparse::{ColumnBuffer, Csr, PANEL, QUAD};
use rayon::prelude::*;
use std::ops::Range;

/// Below this many multiply-adds a sparse product runs on one thread.
const PAR_MIN_MACS: usize = 1 << 17;

/// Batch columns a row's sums are accumulated over at once: 128 floats stay in eight AVX-512
/// registers while the row's entries stream past (measured on 4096x4096, batch 256: 64 and
/// 256 were slower; 256 spills).
const STRIP: usize = 128;

/// Entries ahead whose strip of `x` is fetched into cache early (its row is a random one, so
/// the hardware cannot guess it).
const PREFETCH_AHEAD: usize = 6;

/// Asks the CPU to start loading the strip of `x` at `start` (its first cache line; the
/// hardware follows on to the next lines of the contiguous strip). Measured on 4096x4096,
/// batch 256: fetching every line of the strip, or 12 entries ahead, was no faster.
#[inline(always)]
fn prefetch_strip(x: &[f32], start: usize) {
    #[cfg(target_arch = "x86_64")]
    if start < x.len() {
        // SAFETY: the address is inside `x` (checked); a prefetch never faults or writes.
        unsafe {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            _mm_prefetch::<_MM_HINT_T0>(x.as_ptr().add(start).cast());
        }
    }
}

/// Tiles of the sparse product: `ROW_TILE` output rows (their sums, `ROW_TILE · batch`
/// values) and a block of inputs whose rows of `x` take at most `X_BLOCK_BYTES` stay in the
/// core's L2 cache (1 MiB on Zen 4) together while the tile's entries stream past. Measured
/// on 4096x4096, batch 256, alternating runs: 512 KiB blocks run 95% sparsity 25% faster than
/// 256 KiB ones (which left it to the untiled path), and 90% alike; 768 KiB was no better.
const ROW_TILE: usize = 128;
const X_BLOCK_BYTES: usize = 512 * 1024;
/// Entries a row should have in a block, on average, to pay for loading and storing its sums
/// (measured on 4096x4096, batch 256: blocks help at 50–95% sparsity; at 99%, 4 entries a
/// block ran no faster tiled than untiled).
const MIN_ENTRIES_PER_BLOCK: f64 = 16.0;

multiversion! {
    /// `y[r, :] = Σ_k val[k] · x[col[k], :]` for the rows of `w` (rows `first..` of a block),
    /// tile by tile (see `ROW_TILE`); within a tile, a row's sums for a strip of batch columns
    /// stay in registers. Every output value is the same chain of fused multiply-adds, in
    /// column order, as without tiles.
    fn rows_times(w: &Csr, rows: Range<usize>, x: &[f32], batch: usize, y: &mut [f32]) {
        y.fill(0.0);
        if w.mostly_quads() {
            return rows_in_quads(w, rows, x, batch, y);
        }
        // Blocks of inputs that fit the cache budget pay off only when a row has enough
        // entries in each (its sums are loaded and stored once per block); sparser matrices
        // take all inputs at once.
        let block_panels = (X_BLOCK_BYTES / (batch * 4 * PANEL)).max(1);
        let per_row = w.nnz() as f64 / w.rows().max(1) as f64;
        let per_block = per_row * (block_panels * PANEL) as f64 / w.cols().max(1) as f64;
        if per_block < MIN_ENTRIES_PER_BLOCK {
            if batch.is_multiple_of(STRIP) || x.len() * 4 <= STRIP_MAJOR_MIN_X_BYTES {
                return rows_in_pairs(w, rows, x, batch, y);
            }
            return strips_of_rows(w, rows, x, batch, y);
        }
        let mut buf = ColumnBuffer::for_matrix(w);
        for (t, y_tile) in y.chunks_mut(ROW_TILE * batch).enumerate() {
            let first = rows.start + t * ROW_TILE;
            for p0 in (0..w.panels()).step_by(block_panels) {
                let panels = p0..(p0 + block_panels).min(w.panels());
                for (r, yr) in y_tile.chunks_exact_mut(batch).enumerate() {
                    let (cols, vals) = w.row_cols(first + r, panels.clone(), &mut buf);
                    if !vals.is_empty() {
                        accumulate_row(cols, vals, x, batch, yr);
                    }
                }
            }
        }
    }
}

/// The shape rules of the forward kernels: an element-wise `act`, a batch of at least one,
/// `b` of `out`, `x` of `inputs × batch` and `y` of `out × batch` values (in either layout).
fn check_forward(
    kernel: &str,
    act: Activation,
    batch: usize,
    (inputs, out): (usize, usize),
    b: &[f32],
    x: &[f32],
    y: &[f32],
) {
    assert!(
        act.is_elementwise(),
        "sparse::{kernel}: softmax is applied by the caller"
    );
    assert!(batch > 0, "sparse::{kernel}: empty batch");
    assert_eq!(b.len(), out, "sparse::{kernel}: bias is not [out]");
    assert_eq!(
        x.len(),
        inputs * batch,
        "sparse::{kernel}: x is not in x batch"
    );
    assert_eq!(
        y.len(),
        out * batch,
        "sparse::{kernel}: y is not out x batch"
    );
}

/// Inputs `x` larger than this, in batches that are not whole strips, are read a strip of
/// batch columns at a time by every row ([`strips_of_rows`]), so that only one strip of `x`
/// (`in × STRIP` floats) competes for the cache. Whole strips go in pairs of rows (measured
/// on 4096x4096 at 99% sparsity, batch 256: 6.4 ms in pairs, 7.2 ms strip by strip).
const STRIP_MAJOR_MIN_X_BYTES: usize = 1 << 20;

/// Strip by strip of batch columns, every row for each: a strip's sums stay in registers
/// while the row's entries stream past, and the rows reuse the same strip of `x`.
#[inline(always)]
fn strips_of_rows(w: &Csr, rows: Range<usize>, x: &[f32], batch: usize, y: &mut [f32]) {
    let mut buf = ColumnBuffer::for_matrix(w);
    let all = 0..w.panels();
    for at in (0..batch).step_by(STRIP) {
        let width = STRIP.min(batch - at);
        for (r, yr) in y.chunks_exact_mut(batch).enumerate() {
            let (cols, vals) = w.row_cols(rows.start + r, all.clone(), &mut buf);
            accumulate_strip(cols, vals, x, batch, at, &mut yr[at..at + width]);
        }
    }
}

/// All inputs at once, two rows at a time: the two rows' input rows are fetched together, so
/// twice as many independent loads are in flight (each row's chain is unchanged).
#[inline(always)]
fn rows_in_pairs(w: &Csr, rows: Range<usize>, x: &[f32], batch: usize, y: &mut [f32]) {
    let (mut buf_a, mut buf_b) = (ColumnBuffer::for_matrix(w), ColumnBuffer::for_matrix(w));
    let all = 0..w.panels();
    for (p, pair) in y.chunks_mut(2 * batch).enumerate() {
        let i = rows.start + 2 * p;
        if pair.len() < 2 * batch || !batch.is_multiple_of(STRIP) {
            for (r, yr) in pair.chunks_exact_mut(batch).enumerate() {
                let (c, v) = w.row_cols(i + r, all.clone(), &mut buf_a);
                accumulate_row(c, v, x, batch, yr);
            }
            continue;
        }
        let (ca, va) = w.row_cols(i, all.clone(), &mut buf_a);
        let (cb, vb) = w.row_cols(i + 1, all.clone(), &mut buf_b);
        let (ya, yb) = pair.split_at_mut(batch);
        for (s, (sa, sb)) in ya
            .chunks_exact_mut(STRIP)
            .zip(yb.chunks_exact_mut(STRIP))
            .enumerate()
        {
            let at = s * STRIP;
            let sa: &mut [f32; STRIP] = sa.try_into().expect("a full strip");
            let sb: &mut [f32; STRIP] = sb.try_into().expect("a full strip");
            let (mut acc_a, mut acc_b) = (*sa, *sb);
            let both = ca.len().min(cb.len());
            let strip = |j: u32| -> &[f32; STRIP] {
                let start = j as usize * batch + at;
                x[start..start + STRIP].try_into().expect("a full strip")
            };
            for k in 0..both {
                if let (Some(&na), Some(&nb)) =
                    (ca.get(k + PREFETCH_AHEAD), cb.get(k + PREFETCH_AHEAD))
                {
                    prefetch_strip(x, na as usize * batch + at);
                    prefetch_strip(x, nb as usize * batch + at);
                }
                let (xa, xb) = (strip(ca[k]), strip(cb[k]));
                for l in 0..STRIP {
                    acc_a[l] = va[k].mul_add(xa[l], acc_a[l]);
                    acc_b[l] = vb[k].mul_add(xb[l], acc_b[l]);
                }
            }
            for k in both..ca.len() {
                let xa = strip(ca[k]);
                for l in 0..STRIP {
                    acc_a[l] = va[k].mul_add(xa[l], acc_a[l]);
                }
            }
            for k in both..cb.len() {
                let xb = strip(cb[k]);
                for l in 0..STRIP {
                    acc_b[l] = vb[k].mul_add(xb[l], acc_b[l]);
                }
            }
            (*sa, *sb) = (acc_a, acc_b);
        }
    }
}

/// Batch columns a quad's sums are accumulated over at once: 4 rows × 64 floats fill 16
/// AVX-512 registers. Sparser rows take 32 (measured on 4096x4096, batch 256, rows in
/// quads: 64 ran 90% sparsity 1.2x faster than 32, 32 ran 99% 1.3x faster than 64).
const QUAD_STRIP: usize = 64;
const QUAD_STRIP_SPARSE: usize = 32;
/// Entries per row below which [`QUAD_STRIP_SPARSE`] is used.
const QUAD_SPARSE_ENTRIES: usize = 128;

/// All inputs at once, quad by quad: each fetched strip of an input row is multiplied into
/// the four rows' sums. Rows outside quads go one at a time. Every output value is the
/// same chain of fused multiply-adds, in column order, as in the other paths.
#[inline(always)]
fn rows_in_quads(w: &Csr, rows: Range<usize>, x: &[f32], batch: usize, y: &mut [f32]) {
    let mut buf = ColumnBuffer::for_matrix(w);
    let all = 0..w.panels();
    let mut i = rows.start;
    while i < rows.end {
        let yr = &mut y[(i - rows.start) * batch..];
        if i + QUAD <= rows.end && w.quad_at(i) {
            let (cols, _) = w.row_cols(i, all.clone(), &mut buf);
            let vals: [&[f32]; QUAD] = std::array::from_fn(|r| w.row_values(i + r));
            let yq = &mut yr[..QUAD * batch];
            if cols.len() < QUAD_SPARSE_ENTRIES {
                quad_strips::<QUAD_STRIP_SPARSE>(cols, vals, x, batch, yq);
            } else {
                quad_strips::<QUAD_STRIP>(cols, vals, x, batch, yq);
            }
            i += QUAD;
        } else {
            let (cols, vals) = w.row_cols(i, all.clone(), &mut buf);
            accumulate_row(cols, vals, x, batch, &mut yr[..batch]);
            i += 1;
        }
    }
}

/// `y[r, :] += Σ_k vals[r][k] · x[cols[k], :]` for the four rows `r` of a quad (`y` is
/// `[4, batch]`), `L` batch columns at a time held in registers.
#[inline(always)]
fn quad_strips<const L: usize>(
    cols: &[u32],
    vals: [&[f32]; QUAD],
    x: &[f32],
    batch: usize,
    y: &mut [f32],
) {
    let n = cols.len();
    let vals = vals.map(|v| &v[..n]);
    let full = batch / L * L;
    for at in (0..full).step_by(L) {
        let mut acc = [[0.0f32; L]; QUAD];
        for (r, a) in acc.iter_mut().enumerate() {
            a.copy_from_slice(&y[r * batch + at..r * batch + at + L]);
        }
        for k in 0..n {
            if let Some(&ahead) = cols.get(k + PREFETCH_AHEAD) {
                prefetch_strip(x, ahead as usize * batch + at);
            }
            let start = cols[k] as usize * batch + at;
            let xs: &[f32; L] = x[start..start + L].try_into().expect("a full strip");
            for (a, v) in acc.iter_mut().zip(&vals) {
                let v = v[k];
                for l in 0..L {
                    a[l] = v.mul_add(xs[l], a[l]);
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            y[r * batch + at..r * batch + at + L].copy_from_slice(a);
        }
    }
    if full < batch {
        for (r, v) in vals.iter().enumerate() {
            accumulate_columns(
                cols,
                v,
                x,
                batch,
                full,
                &mut y[r * batch + full..(r + 1) * batch],
            );
        }
    }
}

/// `yr += Σ_k vals[k] · x[cols[k], :]`, one fused multiply-add per entry and value, strip by
/// strip of batch columns held in registers.
#[inline(always)]
fn accumulate_row(cols: &[u32], vals: &[f32], x: &[f32], batch: usize, yr: &mut [f32]) {
    for (s, ys) in yr.chunks_mut(STRIP).enumerate() {
        accumulate_strip(cols, vals, x, batch, s * STRIP, ys);
    }
}

/// `ys += Σ_k vals[k] · x[cols[k], at..at + ys.len()]` for one strip of at most [`STRIP`]
/// batch columns, held in registers when it is a whole strip.
#[inline(always)]
fn accumulate_strip(
    cols: &[u32],
    vals: &[f32],
    x: &[f32],
    batch: usize,
    at: usize,
    ys: &mut [f32],
) {
    let Ok(ys) = <&mut [f32; STRIP]>::try_from(&mut *ys) else {
        return accumulate_columns(cols, vals, x, batch, at, ys);
    };
    let mut acc = *ys;
    for (k, (&j, &v)) in cols.iter().zip(vals).enumerate() {
        if let Some(&ahead) = cols.get(k + PREFETCH_AHEAD) {
            prefetch_strip(x, ahead as usize * batch + at);
        }
        let start = j as usize * batch + at;
        let xs: &[f32; STRIP] = x[start..start + STRIP].try_into().expect("a full strip");
        for l in 0..STRIP {
            acc[l] = v.mul_add(xs[l], acc[l]);
        }
    }
    *ys = acc;
}

/// `ys += Σ_k vals[k] · x[cols[k], at..at + ys.len()]`: the batch columns left after the last
/// full strip, one column at a time.
#[inline(always)]
fn accumulate_columns(
    cols: &[u32],
    vals: &[f32],
    x: &[f32],
    batch: usize,
    at: usize,
    ys: &mut [f32],
) {
    let width = ys.len();
    for (&j, &v) in cols.iter().zip(vals) {
        let start = j as usize * batch + at;
        for (a, &xi) in ys.iter_mut().zip(&x[start..start + width]) {
            *a = v.mul_add(xi, *a);
        }
    }
}

multiversion! {
    /// `dval[k] = delta[i, :] · x[col[k], :]` for the entries of rows `rows`, and
    /// `db[i] = Σ delta[i, :]`.
    fn entry_gradients(
        w: &Csr,
        rows: Range<usize>,
        delta: &[f32],
        x: &[f32],
        batch: usize,
        dval: &mut [f32],
        db: &mut [f32],
    ) {
        let mut buf = ColumnBuffer::for_matrix(w);
        let all = 0..w.panels();
        let delta_row = |i: usize| &delta[i * batch..(i + 1) * batch];
        let mut k = 0;
        let mut i = rows.start;
        while i < rows.end {
            let (cols, _) = w.row_cols(i, all.clone(), &mut buf);
            let n = cols.len();
            if i + QUAD <= rows.end && w.quad_at(i) {
                // One input row read for the four rows' gradients (the same bits as one by one).
                let d: [&[f32]; QUAD] = std::array::from_fn(|r| delta_row(i + r));
                for (e, &j) in cols.iter().enumerate() {
                    let xr = &x[j as usize * batch..(j as usize + 1) * batch];
                    for (r, g) in super::gemm::dots(d, xr).into_iter().enumerate() {
                        dval[k + r * n + e] = g;
                    }
                }
                for (r, dr) in d.iter().enumerate() {
                    db[i - rows.start + r] = dr.iter().sum();
                }
                (i, k) = (i + QUAD, k + QUAD * n);
            } else {
                let dr = delta_row(i);
                db[i - rows.start] = dr.iter().sum();
                for (e, &j) in cols.iter().enumerate() {
                    let xr = &x[j as usize * batch..(j as usize + 1) * batch];
                    dval[k + e] = super::gemm::dot(dr, xr);
                }
                (i, k) = (i + 1, k + n);
            }
        }
    }
}

multiversion! {
    /// `dx[:, cols] = Σ_i Σ_k val[k] · delta[i, cols]` scattered into `dx` rows `col[k]`,
    /// for the batch columns `cols` only.
    fn scatter_columns(w: &Csr, delta: &[f32], batch: usize, cols: Range<usize>, dx: DxColumns) {
        for i in 0..w.rows() {
            let dr = &delta[i * batch + cols.start..i * batch + cols.end];
            for (j, v) in w.row_entries(i) {
                // SAFETY: see DxColumns: this call owns columns `cols` of every row of dx.
                let out = unsafe { dx.row(j, &cols) };
                for (o, &d) in out.iter_mut().zip(dr) {
                    *o = v.mul_add(d, *o);
                }
            }
        }
    }
}

/// `dx` shared between threads that each own a range of its batch columns.
#[derive(Clone, Copy)]
struct DxColumns {
    ptr: *mut f32,
    batch: usize,
    rows: usize,
}

// SAFETY: threads only touch disjoint column ranges of dx (see `backward_input`).
unsafe impl Send for DxColumns {}
unsafe impl Sync for DxColumns {}

impl DxColumns {
    /// Row `j`, columns `cols` of dx.
    ///
    /// # Safety
    /// No other live reference may cover these elements: each thread has its own `cols`.
    #[allow(clippy::mut_from_ref)]
    unsafe fn row(&self, j: usize, cols: &Range<usize>) -> &mut [f32] {
        assert!(
            j < self.rows && cols.end <= self.batch,
            "DxColumns: out of range"
        );
        // SAFETY: in bounds (checked); exclusive by the caller's contract.
        unsafe {
            std::slice::from_raw_parts_mut(self.ptr.add(j * self.batch + cols.start), cols.len())
        }
    }
}

/// How many threads a product of `work` multiply-adds deserves.
fn threads(par: Par, work: usize) -> usize {
    match par {
        Par::Rayon(t) if work >= PAR_MIN_MACS => t.get(),
        _ => 1,
    }
}

/// Splits `buf` (`per_row` values per row of `w`) into the blocks of `ranges`.
fn split_rows<'a>(
    mut buf: &'a mut [f32],
    ranges: &[Range<usize>],
    per_row: usize,
) -> Vec<&'a mut [f32]> {
    ranges
        .iter()
        .map(|r| {
            let (head, tail) = std::mem::take(&mut buf).split_at_mut(r.len() * per_row);
            buf = tail;
            head
        })
        .collect()
}

/// `y = f(w · x + b)` for an element-wise `f` (softmax is the caller's, as in
/// [`super::dense::forward`]). Threads take row blocks of equal entry counts.
///
/// # Panics
/// If `act` is softmax, `batch` is 0 or the shapes do not match.
pub fn forward(
    par: Par,
    w: &Csr,
    b: &[f32],
    x: &[f32],
    batch: usize,
    act: Activation,
    y: &mut [f32],
) {
    check_forward("forward", act, batch, (w.cols(), w.rows()), b, x, y);
    let t = threads(par, w.nnz() * batch);
    let block = |rows: Range<usize>, yb: &mut [f32]| {
        rows_times(w, rows.clone(), x, batch, yb);
        bias_activation(yb, &b[rows], batch, act);
    };
    if t <= 1 {
        return block(0..w.rows(), y);
    }
    let ranges = w.balanced_rows(t);
    let blocks = split_rows(y, &ranges, batch);
    ranges
        .into_par_iter()
        .zip(blocks)
        .for_each(|(r, yb)| block(r, yb));
}

/// A sparse matrix in plain CSR (no panels, 32-bit indices), for the kernels of sparse
/// inference whose batches are too narrow, or whose inputs too sparse, to pay for decoding
/// panels.
#[derive(Clone, Copy, Debug)]
pub struct Plain<'a> {
    /// `offsets[i]..offsets[i + 1]` are row `i`'s entries (`rows + 1` offsets).
    pub offsets: &'a [usize],
    /// The column of each entry, increasing within a row.
    pub index: &'a [u32],
    /// The value of each entry.
    pub values: &'a [f32],
    /// Columns.
    pub cols: usize,
}

impl Plain<'_> {
    fn rows(&self) -> usize {
        self.offsets.len() - 1
    }

    fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.offsets[i], self.offsets[i + 1]);
        (&self.index[a..b], &self.values[a..b])
    }
}

/// Batches up to this many columns run [`forward_narrow`]'s register-resident kernel.
pub const NARROW_MAX: usize = 64;

/// `y = f(w · x + b)` for a narrow features-major batch (`1 <= batch <=` [`NARROW_MAX`]):
/// `x` is `[in, batch]`, `y` is `[out, batch]`. Each row's sums stay in registers, several
/// rows at a time so that their chains of multiply-adds overlap. Every output value is the
/// same chain of fused multiply-adds, in column order, as in [`forward`].
///
/// `scratch` holds a copy of `x` followed by zeros (every entry loads a whole vector of
/// lanes from its input row; the zeros keep those loads inside the buffer); pass the same
/// one to every call, so it is allocated once.
///
/// # Panics
/// If `act` is softmax, the batch is 0 or wider than [`NARROW_MAX`], or the shapes do not
/// match.
#[allow(clippy::too_many_arguments)]
pub fn forward_narrow(
    par: Par,
    w: Plain,
    b: &[f32],
    x: &[f32],
    batch: usize,
    act: Activation,
    y: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    check_forward("forward_narrow", act, batch, (w.cols, w.rows()), b, x, y);
    assert!(batch <= NARROW_MAX, "sparse::forward_narrow: batch {batch}");
    scratch.clear();
    scratch.extend_from_slice(x);
    scratch.resize(x.len() + NARROW_MAX, 0.0);
    let x = &scratch[..];
    let block = |first: usize, yb: &mut [f32]| {
        rows_narrow(w, first, x, batch, yb);
        let rows = yb.len() / batch;
        bias_activation(yb, &b[first..first + rows], batch, act);
    };
    let t = threads(par, w.values.len() * batch);
    if t <= 1 {
        return block(0, y);
    }
    let rows = w.rows().div_ceil(t);
    y.par_chunks_mut(rows * batch)
        .enumerate()
        .for_each(|(i, yb)| block(i * rows, yb));
}

multiversion! {
    /// [`forward_narrow`]'s product for the rows from `first` (`y` holds them), on one thread.
    fn rows_narrow(w: Plain, first: usize, x: &[f32], batch: usize, y: &mut [f32]) {
        match batch {
            1..=16 => narrow_tiles::<16, 8>(w, first, x, batch, y),
            17..=32 => narrow_tiles::<32, 4>(w, first, x, batch, y),
            _ => narrow_tiles::<NARROW_MAX, 2>(w, first, x, batch, y),
        }
    }
}

/// `R` rows at a time, each row's `batch` sums in `L` register lanes (`batch <= L`): the `R`
/// chains are independent, so they overlap instead of each waiting for the latency of the
/// last (one row of 16 lanes alone ran at a quarter of the FMA rate). Rows left over after
/// the last whole group of `R` go one at a time.
#[inline(always)]
fn narrow_tiles<const L: usize, const R: usize>(
    w: Plain,
    first: usize,
    x: &[f32],
    batch: usize,
    y: &mut [f32],
) {
    let done = (y.len() / batch) / R * R;
    let mut groups = y.chunks_exact_mut(R * batch);
    for (g, yg) in (&mut groups).enumerate() {
        narrow_tile::<L, R>(w, first + g * R, x, batch, yg);
    }
    for (r, yr) in groups.into_remainder().chunks_exact_mut(batch).enumerate() {
        narrow_tile::<L, 1>(w, first + done + r, x, batch, yr);
    }
}

/// Rows `first..first + R` into `y` (`[R, batch]`); see [`narrow_tiles`]. Each entry loads
/// `L` values of its input row (lanes past `batch` read the next row, or the zeros padding
/// `x`, and are dropped), so no lane needs a mask.
#[inline(always)]
fn narrow_tile<const L: usize, const R: usize>(
    w: Plain,
    first: usize,
    x: &[f32],
    batch: usize,
    y: &mut [f32],
) {
    let rows: [(&[u32], &[f32]); R] = std::array::from_fn(|r| w.row(first + r));
    #[cfg(target_arch = "x86_64")]
    if L == 16 && is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F, and `x` has `NARROW_MAX` values after its last row.
        return unsafe { narrow16_avx512(rows, x, batch, y) };
    }
    narrow_sums::<L, R>(rows, batch, y, |start| {
        x[start..start + L].try_into().expect("L values")
    })
}

/// [`narrow_sums`] for 16 lanes in AVX-512 registers, written with intrinsics: the portable
/// code kept its sums on the stack (measured: a layer of 1024 rows × 32 entries at batch 2
/// took 65-100 µs).
///
/// # Safety
/// The CPU must have AVX-512F, and `x` must hold 16 values from `j · batch` for every column
/// `j` of `rows`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn narrow16_avx512<const R: usize>(
    rows: [(&[u32], &[f32]); R],
    x: &[f32],
    batch: usize,
    y: &mut [f32],
) {
    use std::arch::x86_64::{
        __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
        _mm512_storeu_ps,
    };
    let lanes = |j: u32| -> __m512 {
        // SAFETY: the caller guarantees 16 values of `x` from `j · batch`.
        unsafe { _mm512_loadu_ps(x.as_ptr().add(j as usize * batch)) }
    };
    let common = rows.iter().map(|e| e.0.len()).min().unwrap_or(0);
    let mut acc = [_mm512_setzero_ps(); R];
    for k in 0..common {
        for r in 0..R {
            let (cols, vals) = rows[r];
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(vals[k]), lanes(cols[k]), acc[r]);
        }
    }
    for (r, (cols, vals)) in rows.into_iter().enumerate() {
        for (&j, &v) in cols[common..].iter().zip(&vals[common..]) {
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(v), lanes(j), acc[r]);
        }
        let mut out = [0.0f32; 16];
        // SAFETY: `out` has room for 16 values.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), acc[r]) };
        y[r * batch..(r + 1) * batch].copy_from_slice(&out[..batch]);
    }
}

/// The sums of [`narrow_tile`], `load(start)` giving the `L` lanes from `x[start]`.
#[inline(always)]
fn narrow_sums<const L: usize, const R: usize>(
    rows: [(&[u32], &[f32]); R],
    batch: usize,
    y: &mut [f32],
    load: impl Fn(usize) -> [f32; L],
) {
    let common = rows.iter().map(|e| e.0.len()).min().unwrap_or(0);
    let cols: [&[u32]; R] = std::array::from_fn(|r| &rows[r].0[..common]);
    let vals: [&[f32]; R] = std::array::from_fn(|r| &rows[r].1[..common]);
    let mut acc = [[0.0f32; L]; R];
    for k in 0..common {
        for r in 0..R {
            let (v, xs) = (vals[r][k], load(cols[r][k] as usize * batch));
            for l in 0..L {
                acc[r][l] = v.mul_add(xs[l], acc[r][l]);
            }
        }
    }
    for (r, (a, (c, v))) in acc.iter_mut().zip(rows).enumerate() {
        for (&j, &v) in c[common..].iter().zip(&v[common..]) {
            let xs = load(j as usize * batch);
            for l in 0..L {
                a[l] = v.mul_add(xs[l], a[l]);
            }
        }
        y[r * batch..(r + 1) * batch].copy_from_slice(&a[..batch]);
    }
}

/// `y_s = f(W x_s + b)` for every sample `s` of a **samples-major** batch, visiting only the
/// nonzero inputs: `x` is `[batch, in]`, `y` is `[batch, out]`, and `wt` is `Wᵀ` (`[in,
/// out]`: row `i` lists the neurons input `i` feeds). Pays when inputs are mostly zero
/// (sparse networks' activations). Each output is the chain of fused multiply-adds over its
/// row's entries in column order with the zero inputs' terms left out, which changes nothing
/// but possibly the sign of an exactly zero sum (a term `w · 0` added to `-0` gives `+0`),
/// for finite weights.
///
/// # Panics
/// If `act` is softmax, the batch is 0, the shapes do not match or a neuron index is out of
/// range.
pub fn forward_by_sample(
    par: Par,
    wt: Plain,
    b: &[f32],
    x: &[f32],
    batch: usize,
    act: Activation,
    y: &mut [f32],
) {
    let (inputs, out) = (wt.rows(), wt.cols);
    check_forward("forward_by_sample", act, batch, (inputs, out), b, x, y);
    let t = threads(par, wt.values.len() * batch / 4);
    if t <= 1 {
        return samples_by_input(wt, b, x, act, y);
    }
    let chunk = batch.div_ceil(t);
    x.par_chunks(chunk * inputs)
        .zip(y.par_chunks_mut(chunk * out))
        .for_each(|(xs, ys)| samples_by_input(wt, b, xs, act, ys));
}

multiversion! {
    /// [`forward_by_sample`] for whole samples on one thread.
    fn samples_by_input(wt: Plain, b: &[f32], x: &[f32], act: Activation, y: &mut [f32]) {
        let (inputs, out) = (wt.rows(), wt.cols);
        let mut nonzero = vec![0u32; inputs];
        for (xs, ys) in x.chunks_exact(inputs).zip(y.chunks_exact_mut(out)) {
            let mut n = 0;
            for (i, &v) in xs.iter().enumerate() {
                nonzero[n] = i as u32;
                n += usize::from(v != 0.0);
            }
            ys.fill(0.0);
            for &i in &nonzero[..n] {
                let xi = xs[i as usize];
                let (neurons, weights) = wt.row(i as usize);
                for (&j, &w) in neurons.iter().zip(weights) {
                    let yj = &mut ys[j as usize];
                    *yj = w.mul_add(xi, *yj);
                }
            }
        }
        bias_activation_by_sample(y, b, act);
    }
}

/// Differentiates `z = w · x + b` for the parameters that exist: `dval[k] = delta[i, :] ·
/// x[col[k], :]` for every entry `k` (row `i`), and `db = Σ_batch delta`.
///
/// # Panics
/// If the shapes do not match.
pub fn backward_params(
    par: Par,
    w: &Csr,
    delta: &[f32],
    x: &[f32],
    batch: usize,
    dval: &mut [f32],
    db: &mut [f32],
) {
    assert!(batch > 0, "sparse::backward_params: empty batch");
    assert_eq!(
        delta.len(),
        w.rows() * batch,
        "sparse::backward_params: delta shape"
    );
    assert_eq!(
        x.len(),
        w.cols() * batch,
        "sparse::backward_params: x shape"
    );
    assert_eq!(
        (dval.len(), db.len()),
        (w.nnz(), w.rows()),
        "sparse::backward_params: gradient shapes"
    );
    let t = threads(par, w.nnz() * batch);
    if t <= 1 {
        return entry_gradients(w, 0..w.rows(), delta, x, batch, dval, db);
    }
    let ranges = w.balanced_rows(t);
    let mut dvals = Vec::with_capacity(ranges.len());
    let mut rest = dval;
    for r in &ranges {
        let n = w.row_start(r.end) - w.row_start(r.start);
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(n);
        dvals.push(head);
        rest = tail;
    }
    let dbs = split_rows(db, &ranges, 1);
    ranges
        .into_par_iter()
        .zip(dvals)
        .zip(dbs)
        .for_each(|((r, dv), dbb)| entry_gradients(w, r, delta, x, batch, dv, dbb));
}

/// Differentiates `z = w · x + b` for the input: `dx = wᵀ · delta` (`[in, batch]`), by
/// scattering every entry's contribution; threads take ranges of batch columns.
///
/// # Panics
/// If the shapes do not match.
pub fn backward_input(par: Par, w: &Csr, delta: &[f32], batch: usize, dx: &mut [f32]) {
    assert!(batch > 0, "sparse::backward_input: empty batch");
    assert_eq!(
        delta.len(),
        w.rows() * batch,
        "sparse::backward_input: delta shape"
    );
    assert_eq!(
        dx.len(),
        w.cols() * batch,
        "sparse::backward_input: dx shape"
    );
    dx.fill(0.0);
    let target = DxColumns {
        ptr: dx.as_mut_ptr(),
        batch,
        rows: w.cols(),
    };
    let t = threads(par, w.nnz() * batch).min(batch.div_ceil(16));
    if t <= 1 {
        return scatter_columns(w, delta, batch, 0..batch, target);
    }
    let width = batch.div_ceil(t).next_multiple_of(16);
    (0..batch.div_ceil(width)).into_par_iter().for_each(|c| {
        let cols = c * width..((c + 1) * width).min(batch);
        scatter_columns(w, delta, batch, cols, target);
    });
}

#[cfg(test)]
mod tests {
    use super::super::dense;
    use super::super::test_values as values;
    use super::*;

    /// A `[rows, cols]` matrix with about `keep` of its entries non-zero.
    fn pruned(rows: usize, cols: usize, keep: f32, seed: u32) -> Vec<f32> {
        let mut w = values(rows * cols, seed);
        for (i, v) in w.iter_mut().enumerate() {
            if ((i as u32).wrapping_mul(40503).wrapping_add(seed) % 1000) as f32 >= keep * 1000.0 {
                *v = 0.0;
            }
        }
        w
    }

    /// Like [`pruned`], but connections kept or pruned for rows `4q..4q+4` together (quads,
    /// see `QUAD`), except in row 6 (which breaks quad 1).
    fn pruned_in_quads(rows: usize, cols: usize, keep: f32, seed: u32) -> Vec<f32> {
        let quads = pruned(rows.div_ceil(QUAD), cols, keep, seed);
        let mut w = values(rows * cols, seed + 1);
        for (k, v) in w.iter_mut().enumerate() {
            let (i, j) = (k / cols, k % cols);
            if quads[i / QUAD * cols + j] == 0.0 && i != 6 {
                *v = 0.0;
            } else if *v == 0.0 {
                *v = 0.5; // kept: a zero would read as absent
            }
        }
        w
    }

    fn close(a: &[f32], b: &[f32], what: &str) {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-6 * (1.0 + y.abs()) * 10.0,
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    #[test]
    fn equals_the_dense_kernels_on_the_masked_weights() {
        for &(rows, cols, batch, keep) in &[
            (37, 19, 5, 0.3),
            (64, 300, 33, 0.1),
            (5, 7, 1, 0.9),
            (200, 150, 64, 0.05),
            (131, 257, 128, 0.03),
        ] {
            for d in [
                pruned(rows, cols, keep, 3),
                pruned_in_quads(rows, cols, 3.0 * keep, 3),
            ] {
                let w = Csr::from_dense(&d, rows, cols);
                let b = values(rows, 4);
                let x = values(cols * batch, 5);
                let delta = values(rows * batch, 6);
                for par in [Par::Seq, Par::threads(2)] {
                    let (mut ys, mut yd) = (vec![0.0; rows * batch], vec![0.0; rows * batch]);
                    forward(par, &w, &b, &x, batch, Activation::Tanh, &mut ys);
                    let input = dense::Input::FeaturesMajor(&x);
                    dense::forward(par, &d, &b, input, batch, Activation::Tanh, &mut yd);
                    close(&ys, &yd, "y");
                    let (mut dv, mut dbs) = (vec![0.0; w.nnz()], vec![0.0; rows]);
                    let (mut dw, mut dbd) = (vec![0.0; rows * cols], vec![0.0; rows]);
                    backward_params(par, &w, &delta, &x, batch, &mut dv, &mut dbs);
                    dense::backward_params(par, &delta, &x, batch, &mut dw, &mut dbd);
                    let dw_at_entries = Csr::from_dense_where(&dw, rows, cols, |k, _| d[k] != 0.0);
                    close(&dv, dw_at_entries.val(), "dw");
                    close(&dbs, &dbd, "db");
                    let (mut dxs, mut dxd) =
                        (vec![f32::NAN; cols * batch], vec![0.0; cols * batch]);
                    backward_input(par, &w, &delta, batch, &mut dxs);
                    dense::backward_input(par, &d, &delta, batch, &mut dxd);
                    close(&dxs, &dxd, "dx");
                }
            }
        }
    }

    #[test]
    fn rows_have_the_same_bits_in_any_block_and_thread_count() {
        // Quads: the whole matrix runs quads from row 0, the slices below from another row
        // (their first quads are cut) and the threads' blocks cut some: the bits must agree.
        for (batch, keep, quads) in [
            (64, 0.2, false),
            (256, 0.02, false),
            (100, 0.5, true),
            (256, 0.05, true),
        ] {
            let (rows, cols) = (301, 400);
            let d = if quads {
                pruned_in_quads(rows, cols, keep, 9)
            } else {
                pruned(rows, cols, keep, 9)
            };
            let w = Csr::from_dense(&d, rows, cols);
            assert_eq!(w.quad_rows() >= 280, quads, "quads found");
            let x = values(cols * batch, 2);
            let b = vec![0.0; rows];
            let mut whole = vec![0.0; rows * batch];
            forward(
                Par::Seq,
                &w,
                &b,
                &x,
                batch,
                Activation::Identity,
                &mut whole,
            );
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(3)
                .build()
                .unwrap();
            let mut threaded = vec![0.0; rows * batch];
            pool.install(|| {
                forward(
                    Par::threads(3),
                    &w,
                    &b,
                    &x,
                    batch,
                    Activation::Identity,
                    &mut threaded,
                )
            });
            assert_eq!(threaded, whole);
            for r in [0..1, 1..77, 77..301] {
                let part = w.slice_rows(r.clone());
                let mut y = vec![0.0; r.len() * batch];
                forward(
                    Par::Seq,
                    &part,
                    &b[r.clone()],
                    &x,
                    batch,
                    Activation::Identity,
                    &mut y,
                );
                assert_eq!(
                    y,
                    whole[r.start * batch..r.end * batch],
                    "batch {batch} rows {r:?}"
                );
            }
        }
    }

    #[test]
    fn quad_gradients_have_the_bits_of_one_row_at_a_time() {
        let (rows, cols, batch) = (37, 90, 70);
        let d = pruned_in_quads(rows, cols, 0.3, 5);
        let w = Csr::from_dense(&d, rows, cols);
        assert!(w.mostly_quads());
        let (x, delta) = (values(cols * batch, 6), values(rows * batch, 7));
        let (mut dval, mut db) = (vec![0.0; w.nnz()], vec![0.0; rows]);
        backward_params(Par::Seq, &w, &delta, &x, batch, &mut dval, &mut db);
        let mut k = 0;
        for i in 0..rows {
            let dr = &delta[i * batch..(i + 1) * batch];
            assert_eq!(
                db[i].to_bits(),
                dr.iter().sum::<f32>().to_bits(),
                "db row {i}"
            );
            for (j, _) in w.row_entries(i) {
                let one = super::super::gemm::dot(dr, &x[j * batch..(j + 1) * batch]);
                assert_eq!(dval[k].to_bits(), one.to_bits(), "row {i}, column {j}");
                k += 1;
            }
        }
    }
}
