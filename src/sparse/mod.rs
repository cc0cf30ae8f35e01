//! The compact layout of a pruned layer: compressed sparse rows. See `README.md` here.

use serde::{Deserialize, Serialize};
use std::ops::Range;

/// A `[rows, cols]` matrix without its zeros: row `i`'s entries are
/// `col[row_ptr[i]..row_ptr[i + 1]]` (increasing) with values `val[..]` at the same places.
/// A row may be empty; every entry that is present is a connection of the network, even if
/// training has moved its value to zero (the structure is the pruning mask).
///
/// ```
/// use nnmpi::sparse::Csr;
/// let m = Csr::from_dense(&[0.0, 2.0, 0.0, 3.0, 0.0, 4.0], 2, 3);
/// assert_eq!(m.nnz(), 3);
/// assert_eq!(m.row(1), (&[0u32, 2][..], &[3.0f32, 4.0][..]));
/// assert_eq!(m.to_dense(), vec![0.0, 2.0, 0.0, 3.0, 0.0, 4.0]);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Csr {
    cols: usize,
    row_ptr: Vec<usize>,
    col: Vec<u32>,
    val: Vec<f32>,
}

impl Csr {
    /// The entries of a row-major `[rows, cols]` matrix that `keep(index, value)` accepts.
    ///
    /// # Panics
    /// If `dense.len() != rows * cols` or `cols` does not fit in `u32`.
    pub fn from_dense_where(
        dense: &[f32],
        rows: usize,
        cols: usize,
        mut keep: impl FnMut(usize, f32) -> bool,
    ) -> Self {
        assert_eq!(dense.len(), rows * cols, "Csr: dense is not [rows, cols]");
        assert!(u32::try_from(cols).is_ok(), "Csr: too many columns");
        let mut row_ptr = Vec::with_capacity(rows + 1);
        let (mut col, mut val) = (Vec::new(), Vec::new());
        row_ptr.push(0);
        for i in 0..rows {
            for j in 0..cols {
                let v = dense[i * cols + j];
                if keep(i * cols + j, v) {
                    col.push(j as u32);
                    val.push(v);
                }
            }
            row_ptr.push(col.len());
        }
        Csr {
            cols,
            row_ptr,
            col,
            val,
        }
    }

    /// The nonzero entries of a row-major `[rows, cols]` matrix.
    pub fn from_dense(dense: &[f32], rows: usize, cols: usize) -> Self {
        Csr::from_dense_where(dense, rows, cols, |_, v| v != 0.0)
    }

    /// A matrix from its parts, checked: `row_ptr` starts at 0, never decreases and ends at
    /// the number of entries; columns increase within a row and are below `cols`.
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
        for w in row_ptr.windows(2) {
            if w[1] < w[0] {
                return Err("row offsets decrease".into());
            }
            let row = &col[w[0]..w[1]];
            if row.windows(2).any(|c| c[1] <= c[0]) || row.iter().any(|&c| c as usize >= cols) {
                return Err(format!(
                    "a row's columns must increase and stay below {cols}"
                ));
            }
        }
        Ok(Csr {
            cols,
            row_ptr,
            col,
            val,
        })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.row_ptr.len() - 1
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.val.len()
    }

    /// Stored entries over `rows × cols`.
    pub fn density(&self) -> f64 {
        self.nnz() as f64 / (self.rows() * self.cols).max(1) as f64
    }

    /// Row offsets (`rows + 1` of them).
    pub fn row_ptr(&self) -> &[usize] {
        &self.row_ptr
    }

    /// Column of every entry.
    pub fn col(&self) -> &[u32] {
        &self.col
    }

    /// Value of every entry.
    pub fn val(&self) -> &[f32] {
        &self.val
    }

    /// Values, for training (the structure stays).
    pub fn val_mut(&mut self) -> &mut [f32] {
        &mut self.val
    }

    /// Columns and values of row `i`.
    pub fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let r = self.row_ptr[i]..self.row_ptr[i + 1];
        (&self.col[r.clone()], &self.val[r])
    }

    /// Entries per row.
    pub fn row_nnz(&self) -> Vec<usize> {
        self.row_ptr.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// Rows `rows` as a matrix of their own (a rank's shard).
    pub fn slice_rows(&self, rows: Range<usize>) -> Csr {
        let (a, b) = (self.row_ptr[rows.start], self.row_ptr[rows.end]);
        Csr {
            cols: self.cols,
            row_ptr: self.row_ptr[rows.start..=rows.end]
                .iter()
                .map(|p| p - a)
                .collect(),
            col: self.col[a..b].to_vec(),
            val: self.val[a..b].to_vec(),
        }
    }

    /// The entries for which `keep[k]` is true (`keep` has one flag per entry).
    ///
    /// # Panics
    /// If `keep.len() != nnz()`.
    pub fn retain(&self, keep: &[bool]) -> Csr {
        assert_eq!(keep.len(), self.nnz(), "Csr::retain: one flag per entry");
        let mut row_ptr = Vec::with_capacity(self.row_ptr.len());
        let (mut col, mut val) = (Vec::new(), Vec::new());
        row_ptr.push(0);
        for w in self.row_ptr.windows(2) {
            let entries = self.col[w[0]..w[1]].iter().zip(&self.val[w[0]..w[1]]);
            for ((&c, &v), _) in entries.zip(&keep[w[0]..w[1]]).filter(|(_, k)| **k) {
                col.push(c);
                val.push(v);
            }
            row_ptr.push(col.len());
        }
        Csr {
            cols: self.cols,
            row_ptr,
            col,
            val,
        }
    }

    /// The row-major dense matrix (absent entries are 0).
    pub fn to_dense(&self) -> Vec<f32> {
        let mut d = vec![0.0; self.rows() * self.cols];
        for i in 0..self.rows() {
            let (c, v) = self.row(i);
            for (&j, &w) in c.iter().zip(v) {
                d[i * self.cols + j as usize] = w;
            }
        }
        d
    }

    /// Bytes of the layout in memory (offsets as 8 bytes, columns and values as 4).
    pub fn bytes(&self) -> usize {
        self.row_ptr.len() * 8 + self.nnz() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_slices_and_checks() {
        let d = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 5.0, 6.0];
        let m = Csr::from_dense(&d, 3, 3);
        assert_eq!(m.row_ptr(), &[0, 1, 1, 3]);
        assert_eq!(m.to_dense(), d);
        assert_eq!(m.row_nnz(), vec![1, 0, 2]);
        let s = m.slice_rows(1..3);
        assert_eq!(s.row_ptr(), &[0, 0, 2]);
        assert_eq!(s.to_dense(), d[3..].to_vec());
        let parts = Csr::from_parts(3, m.row_ptr().to_vec(), m.col().to_vec(), m.val().to_vec());
        assert_eq!(parts, Ok(m.clone()));
        assert!(Csr::from_parts(3, vec![0, 2], vec![2, 1], vec![1.0, 1.0]).is_err());
        assert!(Csr::from_parts(3, vec![0, 1], vec![3], vec![1.0]).is_err());
        assert!(Csr::from_parts(3, vec![1, 1], vec![0], vec![1.0]).is_err());
        let kept = m.retain(&[false, true, true]);
        assert_eq!(
            kept.to_dense(),
            vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 5.0, 6.0]
        );
        assert_eq!(kept.row_ptr(), &[0, 0, 0, 2]);
    }
}
