//! The compact layout of a pruned layer: compressed sparse rows in column panels. See
//! `README.md` here.

use std::ops::Range;

/// Columns per panel: a column is stored as its panel (implied by where the entry sits) and
/// a one-byte offset inside it.
pub const PANEL: usize = 256;

/// Rows the kernels take together when they share their columns (a *quad*: rows `4q..4q+4`,
/// as block pruning of 4 or a multiple leaves them): one fetched input row then serves four
/// output rows.
pub const QUAD: usize = 4;

/// A `[rows, cols]` matrix without its zeros, as compressed sparse rows whose columns are
/// split into panels of [`PANEL`]: entry `k` of row `i` in panel `p` (`k` in
/// `ptr[i·panels + p]..ptr[i·panels + p + 1]`) has column `p·PANEL + col[k]` and value
/// `val[k]`. Entries are ordered by row, then column, exactly as in plain CSR, so a row's
/// entries are one contiguous range. A row may be empty; every entry that is present is a
/// connection of the network, even if training has moved its value to zero (the structure is
/// the pruning mask).
///
/// ```
/// use nnmpi::sparse::Csr;
/// let m = Csr::from_dense(&[0.0, 2.0, 0.0, 3.0, 0.0, 4.0], 2, 3);
/// assert_eq!(m.nnz(), 3);
/// assert_eq!(m.row_entries(1).collect::<Vec<_>>(), vec![(0, 3.0), (2, 4.0)]);
/// assert_eq!(m.to_dense(), vec![0.0, 2.0, 0.0, 3.0, 0.0, 4.0]);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Csr {
    cols: usize,
    panels: usize,
    ptr: Vec<u32>,
    col: Vec<u8>,
    val: Vec<f32>,
    /// Quads start at rows `quad_phase + 4q` (the phase that finds most of them: a rank's
    /// shard may start inside one); derived from the structure.
    quad_phase: usize,
    /// Whether the quad starting at row `quad_phase + 4q` has one column pattern.
    quads: Vec<bool>,
}

/// Columns decoded at once by [`Csr::row_cols`].
const DECODE: usize = 16;

/// Room for one row's plain column indices (see [`Csr::row_cols`]).
pub struct ColumnBuffer(Vec<u32>);

impl ColumnBuffer {
    /// A buffer for the rows of `m`.
    pub fn for_matrix(m: &Csr) -> Self {
        ColumnBuffer(vec![0; m.cols + DECODE])
    }
}

/// Builds a [`Csr`] entry by entry, rows and columns in increasing order.
struct Builder {
    m: Csr,
    row: usize,
}

impl Builder {
    fn new(cols: usize) -> Self {
        Builder {
            m: Csr {
                cols,
                panels: cols.div_ceil(PANEL).max(1),
                ptr: vec![0],
                col: Vec::new(),
                val: Vec::new(),
                quad_phase: 0,
                quads: Vec::new(),
            },
            row: 0,
        }
    }

    /// Closes panels up to (not including) panel `p` of the current row.
    fn close_panels_before(&mut self, p: usize) {
        let n = u32::try_from(self.m.val.len()).expect("Csr: more than 2^32 entries");
        let target = self.row * self.m.panels + p;
        while self.m.ptr.len() <= target {
            self.m.ptr.push(n);
        }
    }

    /// Adds entry `(current row, j)`; `j` must exceed the row's previous column and be below
    /// `cols`.
    fn push(&mut self, j: usize, v: f32) {
        self.close_panels_before(j / PANEL);
        self.m.col.push((j % PANEL) as u8);
        self.m.val.push(v);
    }

    /// Ends the current row.
    fn end_row(&mut self) {
        self.close_panels_before(self.m.panels);
        self.row += 1;
    }

    fn finish(self) -> Csr {
        self.m.with_quads()
    }
}

impl Csr {
    /// The entries of a row-major `[rows, cols]` matrix that `keep(index, value)` accepts.
    ///
    /// # Panics
    /// If `dense.len() != rows * cols` or there are 2^32 entries or more.
    pub fn from_dense_where(
        dense: &[f32],
        rows: usize,
        cols: usize,
        mut keep: impl FnMut(usize, f32) -> bool,
    ) -> Self {
        assert_eq!(dense.len(), rows * cols, "Csr: dense is not [rows, cols]");
        let mut b = Builder::new(cols);
        for i in 0..rows {
            for j in 0..cols {
                let v = dense[i * cols + j];
                if keep(i * cols + j, v) {
                    b.push(j, v);
                }
            }
            b.end_row();
        }
        b.finish()
    }

    /// The nonzero entries of a row-major `[rows, cols]` matrix.
    pub fn from_dense(dense: &[f32], rows: usize, cols: usize) -> Self {
        Csr::from_dense_where(dense, rows, cols, |_, v| v != 0.0)
    }

    /// A matrix from plain CSR parts, checked: `row_ptr` starts at 0, never decreases and ends
    /// at the number of entries; columns increase within a row and are below `cols`.
    pub fn from_parts(
        cols: usize,
        row_ptr: Vec<usize>,
        col: Vec<u32>,
        val: Vec<f32>,
    ) -> Result<Self, String> {
        if row_ptr.first() != Some(&0) || row_ptr.last() != Some(&col.len()) {
            return Err("row offsets must start at 0 and end at the number of entries".into());
        }
        if col.len() != val.len() {
            return Err(format!("{} columns but {} values", col.len(), val.len()));
        }
        if u32::try_from(col.len()).is_err() {
            return Err(format!("{} entries: at most 2^32 - 1 fit", col.len()));
        }
        // Every offset is checked before any is used: with offsets that never decrease and
        // end at the number of entries, every row's range lies inside `col` and `val`.
        if row_ptr.windows(2).any(|w| w[1] < w[0]) {
            return Err("row offsets decrease".into());
        }
        // One pass: check each row, narrow its columns to their panel offsets and close the
        // panels it skips; the values are taken as they are.
        let panels = cols.div_ceil(PANEL).max(1);
        let mut ptr = Vec::with_capacity((row_ptr.len() - 1) * panels + 1);
        let mut offsets = Vec::with_capacity(col.len());
        ptr.push(0u32);
        for w in row_ptr.windows(2) {
            let row = &col[w[0]..w[1]];
            let increasing = row.windows(2).all(|c| c[0] < c[1]);
            if !increasing || row.last().is_some_and(|&j| j as usize >= cols) {
                return Err(format!(
                    "a row's columns must increase and stay below {cols}"
                ));
            }
            for p in 1..=panels {
                let starts = row.partition_point(|&j| (j as usize) < p * PANEL);
                ptr.push((w[0] + starts) as u32);
            }
            offsets.extend(row.iter().map(|&j| (j as usize % PANEL) as u8));
        }
        let m = Csr {
            cols,
            panels,
            ptr,
            col: offsets,
            val,
            quad_phase: 0,
            quads: Vec::new(),
        };
        Ok(m.with_quads())
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        (self.ptr.len() - 1) / self.panels
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Number of column panels (`cols / PANEL`, rounded up; at least 1).
    pub fn panels(&self) -> usize {
        self.panels
    }

    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.val.len()
    }

    /// Stored entries over `rows × cols`.
    pub fn density(&self) -> f64 {
        self.nnz() as f64 / (self.rows() * self.cols).max(1) as f64
    }

    /// Index of row `i`'s first entry (`i` may be `rows()`: then the number of entries).
    pub fn row_start(&self, i: usize) -> usize {
        self.ptr[i * self.panels] as usize
    }

    /// Row ranges with about equal numbers of entries (`parts` of them, some maybe empty). A
    /// quad cut by a boundary runs row by row (the bits are the same either way).
    pub fn balanced_rows(&self, parts: usize) -> Vec<Range<usize>> {
        let (rows, nnz) = (self.rows(), self.nnz());
        let mut bounds = vec![0];
        for p in 1..parts {
            let goal = nnz * p / parts;
            // The first row whose start reaches `goal` (row starts never decrease).
            let (mut lo, mut hi) = (0, rows + 1);
            while lo < hi {
                let mid = (lo + hi) / 2;
                if self.row_start(mid) < goal {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            bounds.push(lo.min(rows).max(*bounds.last().unwrap_or(&0)));
        }
        bounds.push(rows);
        bounds.windows(2).map(|b| b[0]..b[1]).collect()
    }

    /// Plain CSR row offsets (`rows + 1` of them).
    pub fn row_offsets(&self) -> Vec<usize> {
        (0..=self.rows()).map(|i| self.row_start(i)).collect()
    }

    /// Plain column index of every entry.
    pub fn col_indices(&self) -> Vec<u32> {
        let mut buf = ColumnBuffer::for_matrix(self);
        let mut out = Vec::with_capacity(self.nnz());
        for i in 0..self.rows() {
            out.extend_from_slice(self.row_cols(i, 0..self.panels, &mut buf).0);
        }
        out
    }

    /// Value of every entry.
    pub fn val(&self) -> &[f32] {
        &self.val
    }

    /// Values, for training (the structure stays).
    pub fn val_mut(&mut self) -> &mut [f32] {
        &mut self.val
    }

    /// The plain columns (in `buf`) and values of row `i`'s entries in panels `panels`.
    #[inline]
    pub fn row_cols<'b>(
        &self,
        i: usize,
        panels: Range<usize>,
        buf: &'b mut ColumnBuffer,
    ) -> (&'b [u32], &[f32]) {
        let cell = i * self.panels;
        let (a, b) = (
            self.ptr[cell + panels.start] as usize,
            self.ptr[cell + panels.end] as usize,
        );
        assert!(buf.0.len() >= b - a + DECODE, "row_cols: buffer too small");
        let mut k = a;
        for p in panels {
            let end = self.ptr[cell + p + 1] as usize;
            let base = (p * PANEL) as u32;
            // Whole groups of DECODE columns, the last one overrunning into the next
            // panel's places (rewritten next) or the buffer's slack: at high sparsity a panel
            // holds a few entries, and one fixed-width step beats a loop of unknown length.
            while k < end {
                let dst: &mut [u32; DECODE] = (&mut buf.0[k - a..k - a + DECODE])
                    .try_into()
                    .expect("a group");
                match self.col.get(k..k + DECODE) {
                    Some(src) => {
                        for (d, &c) in dst.iter_mut().zip(src) {
                            *d = base + c as u32;
                        }
                    }
                    None => {
                        for (d, &c) in dst.iter_mut().zip(&self.col[k..]) {
                            *d = base + c as u32;
                        }
                    }
                }
                k += DECODE;
            }
            k = end;
        }
        (&buf.0[..b - a], &self.val[a..b])
    }

    /// Row `i`'s entries as (column, value), in column order.
    pub fn row_entries(&self, i: usize) -> impl Iterator<Item = (usize, f32)> + '_ {
        (0..self.panels).flat_map(move |p| {
            let cell = i * self.panels + p;
            let r = self.ptr[cell] as usize..self.ptr[cell + 1] as usize;
            self.col[r.clone()]
                .iter()
                .zip(&self.val[r])
                .map(move |(&c, &v)| (p * PANEL + c as usize, v))
        })
    }

    /// Entries per row.
    pub fn row_nnz(&self) -> Vec<usize> {
        (0..self.rows())
            .map(|i| self.row_start(i + 1) - self.row_start(i))
            .collect()
    }

    /// Rows `rows` as a matrix of their own (a rank's shard).
    pub fn slice_rows(&self, rows: Range<usize>) -> Csr {
        let (a, b) = (self.row_start(rows.start), self.row_start(rows.end));
        let cells = rows.start * self.panels..=rows.end * self.panels;
        Csr {
            cols: self.cols,
            panels: self.panels,
            ptr: self.ptr[cells].iter().map(|&p| p - a as u32).collect(),
            col: self.col[a..b].to_vec(),
            val: self.val[a..b].to_vec(),
            quad_phase: 0,
            quads: Vec::new(),
        }
        .with_quads()
    }

    /// Finds the quads whose rows share one column pattern, at the phase that finds most.
    fn with_quads(mut self) -> Self {
        let cells = |i: usize, p: usize| {
            let cell = i * self.panels + p;
            self.ptr[cell] as usize..self.ptr[cell + 1] as usize
        };
        let rows = self.rows();
        let same_as_next: Vec<bool> = (0..rows.saturating_sub(1))
            .map(|i| (0..self.panels).all(|p| self.col[cells(i, p)] == self.col[cells(i + 1, p)]))
            .collect();
        let quads_at = |phase: usize| -> Vec<bool> {
            (phase..rows.saturating_sub(QUAD - 1))
                .step_by(QUAD)
                .map(|s| same_as_next[s..s + QUAD - 1].iter().all(|&b| b))
                .collect()
        };
        let count = |q: &[bool]| q.iter().filter(|&&b| b).count();
        let (phase, quads) = (0..QUAD)
            .map(|p| (p, quads_at(p)))
            .max_by_key(|(p, q)| (count(q), std::cmp::Reverse(*p)))
            .expect("four phases");
        (self.quad_phase, self.quads) = (phase, quads);
        self
    }

    /// Whether rows `i..i+4` form a quad sharing one column pattern (see [`QUAD`]).
    pub fn quad_at(&self, i: usize) -> bool {
        i >= self.quad_phase
            && (i - self.quad_phase).is_multiple_of(QUAD)
            && self
                .quads
                .get((i - self.quad_phase) / QUAD)
                .copied()
                .unwrap_or(false)
    }

    /// Rows that lie in quads sharing their pattern.
    pub fn quad_rows(&self) -> usize {
        QUAD * self.quads.iter().filter(|&&s| s).count()
    }

    /// Whether at least half the rows lie in quads: the kernels then run quad by quad.
    pub fn mostly_quads(&self) -> bool {
        2 * self.quad_rows() >= self.rows().max(1)
    }

    /// Values of row `i`'s entries, in column order.
    pub fn row_values(&self, i: usize) -> &[f32] {
        &self.val[self.row_start(i)..self.row_start(i + 1)]
    }

    /// The entries for which `keep[k]` is true (`keep` has one flag per entry).
    ///
    /// # Panics
    /// If `keep.len() != nnz()`.
    pub fn retain(&self, keep: &[bool]) -> Csr {
        assert_eq!(keep.len(), self.nnz(), "Csr::retain: one flag per entry");
        let mut b = Builder::new(self.cols);
        let mut k = 0;
        for i in 0..self.rows() {
            for (j, v) in self.row_entries(i) {
                if keep[k] {
                    b.push(j, v);
                }
                k += 1;
            }
            b.end_row();
        }
        b.finish()
    }

    /// The row-major dense matrix (absent entries are 0).
    pub fn to_dense(&self) -> Vec<f32> {
        let mut d = vec![0.0; self.rows() * self.cols];
        for i in 0..self.rows() {
            for (j, w) in self.row_entries(i) {
                d[i * self.cols + j] = w;
            }
        }
        d
    }

    /// Bytes of the layout in memory: 5 an entry (a one-byte column in its panel, an `f32`
    /// value) and 4 a (row, panel) offset.
    pub fn bytes(&self) -> usize {
        self.ptr.len() * 4 + self.nnz() * 5
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_rows_split_entries_evenly() {
        // Rows 0..50 hold 10 entries each, rows 50..100 one each: 550 entries.
        let mut d = vec![0.0f32; 100 * 10];
        for i in 0..100 {
            let n = if i < 50 { 10 } else { 1 };
            d[i * 10..i * 10 + n].fill(1.0);
        }
        let w = Csr::from_dense(&d, 100, 10);
        let ranges = w.balanced_rows(2);
        assert_eq!(ranges, vec![0..28, 28..100]);
        assert_eq!(w.balanced_rows(1), vec![0..100]);
        assert_eq!(Csr::from_dense(&[1.0], 1, 1).balanced_rows(3).len(), 3);
    }

    #[test]
    fn round_trip_slices_and_checks() {
        let d = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 5.0, 6.0];
        let m = Csr::from_dense(&d, 3, 3);
        assert_eq!(m.row_offsets(), vec![0, 1, 1, 3]);
        assert_eq!(m.col_indices(), vec![0, 1, 2]);
        assert_eq!(m.to_dense(), d);
        assert_eq!(m.row_nnz(), vec![1, 0, 2]);
        let s = m.slice_rows(1..3);
        assert_eq!(s.row_offsets(), vec![0, 0, 2]);
        assert_eq!(s.to_dense(), d[3..].to_vec());
        let parts = Csr::from_parts(3, m.row_offsets(), m.col_indices(), m.val().to_vec());
        assert_eq!(parts, Ok(m.clone()));
        assert!(Csr::from_parts(3, vec![0, 2], vec![2, 1], vec![1.0, 1.0]).is_err());
        assert!(Csr::from_parts(3, vec![0, 1], vec![3], vec![1.0]).is_err());
        assert!(Csr::from_parts(3, vec![1, 1], vec![0], vec![1.0]).is_err());
        // An offset beyond the entries, in a row before the one that decreases (a crafted
        // checkpoint did this and the loader panicked slicing the columns).
        assert!(Csr::from_parts(3, vec![0, 5, 1], vec![0], vec![1.0]).is_err());
        let kept = m.retain(&[false, true, true]);
        assert_eq!(
            kept.to_dense(),
            vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 5.0, 6.0]
        );
        assert_eq!(kept.row_offsets(), vec![0, 0, 0, 2]);
    }

    #[test]
    fn columns_past_a_panel_keep_their_place() {
        // 3 rows × 700 columns (3 panels), entries on panel edges and in empty panels.
        let (rows, cols) = (3, 700);
        let mut d = vec![0.0f32; rows * cols];
        for &(i, j) in &[(0, 0), (0, 255), (0, 256), (0, 699), (2, 511), (2, 512)] {
            d[i * cols + j] = (i * cols + j) as f32 + 0.5;
        }
        let m = Csr::from_dense(&d, rows, cols);
        assert_eq!(m.panels(), 3);
        assert_eq!(m.to_dense(), d);
        assert_eq!(m.col_indices(), vec![0, 255, 256, 699, 511, 512]);
        assert_eq!(m.row_offsets(), vec![0, 4, 4, 6]);
        let mut buf = ColumnBuffer::for_matrix(&m);
        let (js, vals) = m.row_cols(0, 1..3, &mut buf);
        assert_eq!(js, &[256, 699]);
        assert_eq!(vals, &[256.5, 699.5]);
        // A row with more entries than a decoding step, across panels.
        let wide: Vec<f32> = (0..cols)
            .map(|j| if j % 7 == 0 { j as f32 + 1.0 } else { 0.0 })
            .collect();
        let w = Csr::from_dense(&wide, 1, cols);
        let mut buf = ColumnBuffer::for_matrix(&w);
        let expected: Vec<u32> = (0..cols as u32).filter(|j| j % 7 == 0).collect();
        assert_eq!(w.row_cols(0, 0..3, &mut buf).0, &expected[..]);
        assert_eq!(w.row_cols(0, 1..2, &mut buf).0, &expected[37..74]);
        // The example of README.md.
        let r = Csr::from_parts(600, vec![0, 2, 2, 5], vec![3, 300, 0, 4, 599], vec![1.0; 5]);
        let r = r.expect("valid parts");
        assert_eq!(r.ptr, vec![0, 1, 2, 2, 2, 2, 2, 4, 4, 5]);
        assert_eq!(r.col, vec![3, 44, 0, 4, 87]);
        let tail = m.slice_rows(1..3);
        assert_eq!(tail.to_dense(), d[cols..].to_vec());
        assert_eq!(tail.bytes(), (2 * 3 + 1) * 4 + 2 * 5);
    }

    #[test]
    fn quads_are_found_at_any_phase() {
        // Rows 0..3 one pattern, rows 3..7 another (a quad from row 3), row 7 alone.
        let pattern = |i: usize| -> [f32; 4] {
            match i {
                0..3 => [1.0, 0.0, 2.0, 0.0],
                3..7 => [0.0, 3.0, 0.0, 4.0],
                _ => [5.0, 5.0, 5.0, 5.0],
            }
        };
        let d: Vec<f32> = (0..8).flat_map(pattern).collect();
        let m = Csr::from_dense(&d, 8, 4);
        assert_eq!(m.quad_rows(), 4);
        assert!(m.quad_at(3) && !m.quad_at(0) && !m.quad_at(4));
        assert!(m.mostly_quads());
        // A shard starting at row 1 finds the same quad at its row 2.
        let s = m.slice_rows(1..8);
        assert!(s.quad_at(2) && !s.quad_at(3));
        // Equal values do not matter, only the columns: one quad of four rows.
        let e = Csr::from_dense(&[1.0, 0.0, 2.0, 0.0, 3.0, 0.0, 4.0, 0.0], 4, 2);
        assert!(e.quad_at(0));
        assert!(!Csr::from_dense(&[1.0; 3], 3, 1).mostly_quads());
    }
}
