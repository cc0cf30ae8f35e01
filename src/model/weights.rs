//! A layer's weights in either storage format, and everything that differs between the
//! formats: reading, slicing, pruning and the kernels each one runs. Code outside `model`
//! and `sparse` asks these methods and never opens a CSR, so a new layout is added here.

use crate::kernels::activation::Activation;
use crate::kernels::dense::Input;
use crate::kernels::gemm::PackedRows;
use crate::kernels::{Par, dense, sparse};
use crate::sparse::Csr;
use ndarray::Array2;
use std::ops::Range;

/// A layer's weights `[out, in]`: all of them, or only the connections that survived pruning
/// (the [`Csr`] structure is then the pruning mask: training changes values, never which
/// connections exist).
#[derive(Clone, Debug, PartialEq)]
pub enum Weights {
    /// Every connection, row-major `[out, in]`.
    Dense(Array2<f32>),
    /// Only the present connections.
    Sparse(Csr),
}

impl Weights {
    /// Number of rows (neurons).
    pub fn rows(&self) -> usize {
        match self {
            Weights::Dense(w) => w.nrows(),
            Weights::Sparse(c) => c.rows(),
        }
    }

    /// Number of columns (inputs).
    pub fn cols(&self) -> usize {
        match self {
            Weights::Dense(w) => w.ncols(),
            Weights::Sparse(c) => c.cols(),
        }
    }

    /// Stored weights: every one for dense, the present connections for sparse.
    pub fn stored(&self) -> usize {
        self.values().len()
    }

    /// Weights that are not zero.
    pub fn nonzeros(&self) -> usize {
        self.values().iter().filter(|&&v| v != 0.0).count()
    }

    /// Whether this is the compact layout.
    pub fn is_sparse(&self) -> bool {
        matches!(self, Weights::Sparse(_))
    }

    /// How these weights are stored: [`Format::Sparse`] or [`Format::Dense`].
    pub fn format(&self) -> Format {
        if self.is_sparse() {
            Format::Sparse
        } else {
            Format::Dense
        }
    }

    /// The stored values (row-major for dense, entry order for sparse).
    pub fn values(&self) -> &[f32] {
        match self {
            Weights::Dense(w) => w.as_slice().expect("weights are standard layout"),
            Weights::Sparse(c) => c.val(),
        }
    }

    /// The stored values, for training.
    pub fn values_mut(&mut self) -> &mut [f32] {
        match self {
            Weights::Dense(w) => w.as_slice_mut().expect("weights are standard layout"),
            Weights::Sparse(c) => c.val_mut(),
        }
    }

    /// All weights as a dense matrix (absent connections are 0).
    pub fn to_dense(&self) -> Array2<f32> {
        match self {
            Weights::Dense(w) => w.clone(),
            Weights::Sparse(c) => Array2::from_shape_vec((c.rows(), c.cols()), c.to_dense())
                .expect("a CSR matrix is rows x cols"),
        }
    }

    /// Rows `rows` (a rank's shard; may be empty).
    pub fn slice_rows(&self, rows: Range<usize>) -> Weights {
        match self {
            Weights::Dense(w) => Weights::Dense(w.slice(ndarray::s![rows, ..]).to_owned()),
            Weights::Sparse(c) => Weights::Sparse(c.slice_rows(rows)),
        }
    }

    /// Bytes the weights take in memory.
    pub fn bytes(&self) -> usize {
        match self {
            Weights::Dense(w) => w.len() * 4,
            Weights::Sparse(c) => c.bytes(),
        }
    }

    /// Where the stored values sit, for moving or saving them without knowing the layout:
    /// `None` for dense weights (every position, row-major), else each row's number of
    /// entries and every entry's column. The structures of consecutive row blocks, and their
    /// [`Weights::values`], concatenate into those of the stacked rows.
    pub fn structure(&self) -> Option<Structure> {
        match self {
            Weights::Dense(_) => None,
            Weights::Sparse(c) => Some(Structure {
                row_lens: c.row_nnz().iter().map(|&n| n as u64).collect(),
                cols: c.col_indices(),
            }),
        }
    }

    /// Weights of `rows` × `cols` from their stored `values` and their [`Weights::structure`];
    /// an error says what does not fit (for data from files and other ranks).
    pub fn from_structure(
        rows: usize,
        cols: usize,
        values: Vec<f32>,
        structure: Option<Structure>,
    ) -> std::result::Result<Weights, String> {
        match structure {
            None => Array2::from_shape_vec((rows, cols), values)
                .map(Weights::Dense)
                .map_err(|_| format!("weights do not fit the shape {rows}x{cols}")),
            Some(s) => {
                if s.row_lens.len() != rows {
                    return Err(format!("{} row lengths for {rows} rows", s.row_lens.len()));
                }
                let mut row_ptr = Vec::with_capacity(rows + 1);
                row_ptr.push(0usize);
                for &n in &s.row_lens {
                    let end = usize::try_from(n)
                        .ok()
                        .and_then(|n| row_ptr[row_ptr.len() - 1].checked_add(n))
                        .ok_or("row lengths overflow")?;
                    row_ptr.push(end);
                }
                Csr::from_parts(cols, row_ptr, s.cols, values).map(Weights::Sparse)
            }
        }
    }
}

/// What differs between the formats beyond storage: rows' entries, pruning, work balance.
impl Weights {
    /// Calls `f(column, value)` for each stored weight of row `i`, in column order.
    pub fn for_each_in_row(&self, i: usize, mut f: impl FnMut(usize, f32)) {
        match self {
            Weights::Dense(d) => d.row(i).iter().enumerate().for_each(|(j, &v)| f(j, v)),
            Weights::Sparse(c) => c.row_entries(i).for_each(|(j, v)| f(j, v)),
        }
    }

    /// The compact layout with only the stored weights flagged in `keep` (one flag per
    /// stored weight, in the order of [`Weights::values`]).
    pub fn retain(&self, keep: &[bool]) -> Weights {
        Weights::Sparse(match self {
            Weights::Dense(d) => {
                let values = d.as_slice().expect("standard layout");
                Csr::from_dense_where(values, d.nrows(), d.ncols(), |i, _| keep[i])
            }
            Weights::Sparse(c) => c.retain(keep),
        })
    }

    /// `w` stored in this format (the compact layout keeps its nonzero weights).
    pub fn in_same_format(&self, w: Array2<f32>) -> Weights {
        match self {
            Weights::Dense(_) => Weights::Dense(w),
            Weights::Sparse(_) => {
                let (rows, cols) = w.dim();
                let w = w.as_standard_layout();
                Weights::Sparse(Csr::from_dense(
                    w.as_slice().expect("standard layout"),
                    rows,
                    cols,
                ))
            }
        }
    }

    /// Stored weights in the rows before row `i` (`i` may be `rows()`).
    pub fn stored_before(&self, i: usize) -> usize {
        match self {
            Weights::Dense(d) => i * d.ncols(),
            Weights::Sparse(c) => c.row_start(i),
        }
    }

    /// `parts` contiguous row ranges with about equal work, or `None` when every row costs
    /// the same (then an even split is balanced).
    pub fn balanced_rows(&self, parts: usize) -> Option<Vec<Range<usize>>> {
        match self {
            Weights::Dense(_) => None,
            Weights::Sparse(c) => Some(c.balanced_rows(parts)),
        }
    }

    /// The share of rows the compact layout runs four at a time (rows sharing their
    /// columns), or `None` for dense weights.
    pub fn quad_share(&self) -> Option<f64> {
        match self {
            Weights::Dense(_) => None,
            Weights::Sparse(c) => Some(c.quad_rows() as f64 / c.rows().max(1) as f64),
        }
    }
}

/// Dense layers with at least this many weights (256 KiB) are packed for inference.
const PACK_MIN_WEIGHTS: usize = 1 << 16;

/// The kernels each format runs (`x`, `y`, `delta` are `[_, batch]`, row-major).
impl Weights {
    /// These weights packed for repeated forward passes, when that pays: dense layers of at
    /// least [`PACK_MIN_WEIGHTS`] weights (smaller ones stay in cache anyway).
    pub fn pack(&self) -> Option<PackedRows> {
        match self {
            Weights::Dense(w) if w.len() >= PACK_MIN_WEIGHTS => Some(PackedRows::new(
                w.as_slice().expect("standard layout"),
                w.nrows(),
                w.ncols(),
            )),
            _ => None,
        }
    }

    /// `y = f(W x + b)` (`f` element-wise), from `packed` (these weights, [`Weights::pack`]ed)
    /// when given. Sparse weights read features-major input only.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        par: Par,
        packed: Option<&PackedRows>,
        bias: &[f32],
        x: Input<'_>,
        batch: usize,
        act: Activation,
        y: &mut [f32],
    ) {
        match (self, packed) {
            (Weights::Dense(_), Some(w)) => dense::forward_packed(par, w, bias, x, batch, act, y),
            (Weights::Dense(w), None) => dense::forward(
                par,
                w.as_slice().expect("standard layout"),
                bias,
                x,
                batch,
                act,
                y,
            ),
            (Weights::Sparse(w), _) => match x {
                Input::FeaturesMajor(x) => sparse::forward(par, w, bias, x, batch, act, y),
                Input::SampleMajor(_) => {
                    panic!("Weights::forward: the sparse kernels read features-major input")
                }
            },
        }
    }

    /// Gradients of the stored weights (`dw`, in the order of [`Weights::values`]) and of the
    /// biases (`db`), from the output gradient `delta` and the input `x`.
    pub fn backward_params(
        &self,
        par: Par,
        delta: &[f32],
        x: &[f32],
        batch: usize,
        dw: &mut [f32],
        db: &mut [f32],
    ) {
        match self {
            Weights::Dense(_) => dense::backward_params(par, delta, x, batch, dw, db),
            Weights::Sparse(w) => sparse::backward_params(par, w, delta, x, batch, dw, db),
        }
    }

    /// The input gradient `dx = Wᵀ delta`.
    pub fn backward_input(&self, par: Par, delta: &[f32], batch: usize, dx: &mut [f32]) {
        match self {
            Weights::Dense(w) => dense::backward_input(
                par,
                w.as_slice().expect("standard layout"),
                delta,
                batch,
                dx,
            ),
            Weights::Sparse(w) => sparse::backward_input(par, w, delta, batch, dx),
        }
    }
}

/// Plain CSR parts (offsets, 32-bit indices, values).
#[derive(Clone, Debug, PartialEq)]
struct PlainParts {
    offsets: Vec<usize>,
    index: Vec<u32>,
    values: Vec<f32>,
    cols: usize,
}

impl PlainParts {
    fn of(c: &Csr) -> Self {
        PlainParts {
            offsets: c.row_offsets(),
            index: c.col_indices(),
            values: c.val().to_vec(),
            cols: c.cols(),
        }
    }

    /// The transpose (`[cols, rows]`): row `j` lists the rows that have column `j`, in order.
    fn transpose(&self) -> Self {
        let rows = self.offsets.len() - 1;
        let mut offsets = vec![0usize; self.cols + 1];
        for &j in &self.index {
            offsets[j as usize + 1] += 1;
        }
        for j in 0..self.cols {
            offsets[j + 1] += offsets[j];
        }
        let mut next = offsets.clone();
        let (mut index, mut values) = (vec![0u32; self.index.len()], vec![0.0; self.values.len()]);
        for i in 0..rows {
            for k in self.offsets[i]..self.offsets[i + 1] {
                let j = self.index[k] as usize;
                (index[next[j]], values[next[j]]) = (i as u32, self.values[k]);
                next[j] += 1;
            }
        }
        PlainParts {
            offsets,
            index,
            values,
            cols: rows,
        }
    }

    fn view(&self) -> sparse::Plain<'_> {
        sparse::Plain {
            offsets: &self.offsets,
            index: &self.index,
            values: &self.values,
            cols: self.cols,
        }
    }
}

/// Compact weights unpacked for sparse inference: by row with plain column indices (for
/// narrow batches) and, built on first use, by input (`Wᵀ`, for inputs that are mostly zero;
/// only the first layers of a sparse network need it). The kernels give the values
/// [`Weights::forward`] gives.
#[derive(Clone, Debug)]
pub struct Unpacked {
    by_row: PlainParts,
    by_input: std::sync::OnceLock<PlainParts>,
}

impl Unpacked {
    /// `y = f(W x + b)` for a narrow features-major batch (`1 <= batch <= 64`; `x` is
    /// `[in, batch]`, `y` is `[out, batch]`), sums held in registers; `scratch` is reused
    /// from call to call (see `kernels::sparse::forward_narrow`).
    #[allow(clippy::too_many_arguments)]
    pub fn forward_narrow(
        &self,
        par: Par,
        bias: &[f32],
        x: &[f32],
        batch: usize,
        act: Activation,
        y: &mut [f32],
        scratch: &mut Vec<f32>,
    ) {
        sparse::forward_narrow(par, self.by_row.view(), bias, x, batch, act, y, scratch)
    }

    /// `y_s = f(W x_s + b)` for each sample of a samples-major batch (`x` is `[batch, in]`,
    /// `y` is `[batch, out]`), visiting only nonzero inputs (see
    /// `kernels::sparse::forward_by_sample` for the one difference: the sign of a zero sum).
    pub fn forward_by_sample(
        &self,
        par: Par,
        bias: &[f32],
        x: &[f32],
        batch: usize,
        act: Activation,
        y: &mut [f32],
    ) {
        let by_input = self.by_input.get_or_init(|| self.by_row.transpose());
        sparse::forward_by_sample(par, by_input.view(), bias, x, batch, act, y)
    }
}

/// The neurons of a layer that repeat an earlier one: the same inputs, the same weights in
/// the same order and the same bias, so the same output bit for bit whatever the input.
/// (RadiX-Net layers, like the GraphChallenge's, come in groups of 16 or 32 such neurons.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedRows {
    /// The first neuron of each group, increasing.
    pub distinct: Vec<usize>,
    /// Each neuron's group: its output is that of neuron `distinct[of_row[i]]`.
    pub of_row: Vec<u32>,
}

impl Unpacked {
    /// Groups the rows that equal an earlier one (columns, weights and `bias` bit for bit).
    pub fn shared_rows(&self, bias: &[f32]) -> SharedRows {
        let p = &self.by_row;
        let rows = p.offsets.len() - 1;
        assert_eq!(bias.len(), rows, "Unpacked::shared_rows: one bias per row");
        let entries = |i: usize| p.offsets[i]..p.offsets[i + 1];
        let same = |a: usize, b: usize| {
            bias[a].to_bits() == bias[b].to_bits()
                && p.index[entries(a)] == p.index[entries(b)]
                && p.values[entries(a)]
                    .iter()
                    .zip(&p.values[entries(b)])
                    .all(|(u, v)| u.to_bits() == v.to_bits())
        };
        // A quick mix of the row's words (equal rows are confirmed word by word after).
        let hash = |i: usize| {
            let words = p.index[entries(i)]
                .iter()
                .copied()
                .chain(p.values[entries(i)].iter().map(|v| v.to_bits()));
            words.fold(u64::from(bias[i].to_bits()), |h, w| {
                (h.rotate_left(5) ^ u64::from(w)).wrapping_mul(0x517c_c1b7_2722_0a95)
            })
        };
        let mut groups: std::collections::HashMap<u64, Vec<u32>> = Default::default();
        let mut distinct = Vec::new();
        let of_row = (0..rows)
            .map(|i| {
                let candidates = groups.entry(hash(i)).or_default();
                if let Some(&g) = candidates.iter().find(|&&g| same(distinct[g as usize], i)) {
                    return g;
                }
                candidates.push(distinct.len() as u32);
                distinct.push(i);
                distinct.len() as u32 - 1
            })
            .collect();
        SharedRows { distinct, of_row }
    }

    /// The compact weights of rows `rows` only, in that order.
    pub fn select_rows(&self, rows: &[usize]) -> Weights {
        let p = &self.by_row;
        let mut offsets = vec![0usize];
        let (mut index, mut values) = (Vec::new(), Vec::new());
        for &i in rows {
            index.extend_from_slice(&p.index[p.offsets[i]..p.offsets[i + 1]]);
            values.extend_from_slice(&p.values[p.offsets[i]..p.offsets[i + 1]]);
            offsets.push(index.len());
        }
        let csr = Csr::from_parts(p.cols, offsets, index, values)
            .expect("rows of a valid matrix form a valid matrix");
        Weights::Sparse(csr)
    }
}

impl Weights {
    /// These weights unpacked for sparse inference; `None` for dense weights (every input
    /// feeds every neuron: nothing to skip).
    pub fn unpacked(&self) -> Option<Unpacked> {
        match self {
            Weights::Dense(_) => None,
            Weights::Sparse(c) => Some(Unpacked {
                by_row: PlainParts::of(c),
                by_input: std::sync::OnceLock::new(),
            }),
        }
    }
}

/// The positions of a sparse layer's stored values (see [`Weights::structure`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Structure {
    /// Entries in each row.
    pub row_lens: Vec<u64>,
    /// Column of every entry, row by row.
    pub cols: Vec<u32>,
}

/// How a layer's weights are stored and run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Sparse when the layer's density is below [`SPARSE_BELOW_DENSITY`] (or below
    /// [`QUAD_SPARSE_BELOW_DENSITY`] when its rows mostly share columns in fours), else dense.
    Auto,
    /// Every weight (a sparse layer's absent connections become zeros, and lose the mask).
    Dense,
    /// Only the nonzero weights (a dense layer's zeros are dropped).
    Sparse,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Format::Auto),
            "dense" => Ok(Format::Dense),
            "sparse" => Ok(Format::Sparse),
            _ => Err(format!(
                "unknown format '{s}': expected auto, dense or sparse"
            )),
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Auto => "auto",
            Format::Dense => "dense",
            Format::Sparse => "sparse",
        })
    }
}
