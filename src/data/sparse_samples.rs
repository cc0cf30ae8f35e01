//! Samples stored sparsely (only their nonzero features), as sparse-network benchmarks give
//! them.

/// Sparse samples: each sample's nonzero features, in CSR over samples.
#[derive(Clone, Debug, PartialEq)]
pub struct SparseSamples {
    /// Features per sample.
    pub features: usize,
    /// `offsets[s]..offsets[s + 1]` index sample `s`'s entries (`samples + 1` offsets).
    pub offsets: Vec<usize>,
    /// Feature of each entry, increasing within a sample.
    pub feature: Vec<u32>,
    /// Value of each entry.
    pub value: Vec<f32>,
}

impl SparseSamples {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Samples `which` as dense rows, samples-major `[which.len(), features]`.
    ///
    /// # Panics
    /// If a sample index is out of range.
    pub fn dense_rows(&self, which: &[usize]) -> Vec<f32> {
        let mut x = Vec::new();
        self.dense_rows_into(which, &mut x);
        x
    }

    /// [`SparseSamples::dense_rows`] into `x` (its old contents are dropped, its memory kept).
    ///
    /// # Panics
    /// If a sample index is out of range.
    pub fn dense_rows_into(&self, which: &[usize], x: &mut Vec<f32>) {
        x.clear();
        x.resize(self.features * which.len(), 0.0);
        for (row, &s) in x.chunks_exact_mut(self.features).zip(which) {
            for k in self.offsets[s]..self.offsets[s + 1] {
                row[self.feature[k] as usize] = self.value[k];
            }
        }
    }
}
