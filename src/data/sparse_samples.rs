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
        let mut x = vec![0.0; self.features * which.len()];
        for (row, &s) in x.chunks_exact_mut(self.features).zip(which) {
            for k in self.offsets[s]..self.offsets[s + 1] {
                row[self.feature[k] as usize] = self.value[k];
            }
        }
        x
    }
}
