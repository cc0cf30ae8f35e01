//! The files of the MIT/IEEE/Amazon GraphChallenge "Sparse Deep Neural Network" benchmark
//! (Kepner et al., HPEC 2019): weight layers, input images and truth categories, as TSV
//! triples (`row<TAB>col<TAB>value`, 1-based) or MatrixMarket coordinate files, plain or
//! gzipped (recognised by content, not name).
//!
//! Orientation: the challenge multiplies row vectors, `Y·W`, so its `W(i, j)` is the edge
//! from input `i` to neuron `j`; nnmpi stores a layer `[out, in]`, so that entry becomes row
//! `j`, column `i`. Every index is checked against the declared or expected size before use.

use crate::data::{SparseSamples, read_maybe_gz};
use crate::error::{Error, Result};
use crate::kernels::Par;
use crate::model::{Activation, Layer, Network, Weights};
use crate::rng::UniformStream;
use crate::sparse::Csr;
use ndarray::Array1;
use rayon::prelude::*;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One entry of a sparse matrix file, 0-based.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Entry {
    /// Row (the challenge's input or sample index).
    pub row: u32,
    /// Column (the challenge's neuron or feature index).
    pub col: u32,
    /// Value (1 for a MatrixMarket pattern file or a TSV line of two fields).
    pub value: f32,
}

/// A sparse matrix as read: its size and entries in file order.
#[derive(Clone, Debug, PartialEq)]
pub struct Triples {
    /// Rows: declared by a MatrixMarket file, else the expected size given to the reader.
    pub rows: usize,
    /// Columns, likewise.
    pub cols: usize,
    /// The entries.
    pub entries: Vec<Entry>,
}

/// Reads a TSV triple file or a MatrixMarket coordinate file (plain or gzipped) of at most
/// `rows × cols` (`None`: any size for TSV, sized by the largest index). A MatrixMarket file
/// declares its size, which must fit the expected one.
pub fn read_triples(path: &Path, rows: Option<usize>, cols: Option<usize>) -> Result<Triples> {
    let bytes = read_maybe_gz(path)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| Error::data(path, 0, format!("not text (UTF-8): {e}")))?;
    if text.starts_with("%%MatrixMarket") {
        matrix_market(path, text, rows, cols)
    } else {
        tsv(path, text, rows, cols)
    }
}

/// A 1-based index field, checked against `limit`, as 0-based.
fn index(path: &Path, line: usize, field: Option<&str>, what: &str, limit: usize) -> Result<u32> {
    let bad = |m: String| Error::data(path, line, m);
    let f = field.ok_or_else(|| bad(format!("missing the {what} index")))?;
    let i: u64 = f
        .parse()
        .map_err(|_| bad(format!("{what} index '{f}' is not a whole number from 1")))?;
    if i == 0 || i as usize > limit || i > u64::from(u32::MAX) {
        return Err(bad(format!("{what} index {i} is outside 1..={limit}")));
    }
    Ok((i - 1) as u32)
}

fn value(path: &Path, line: usize, field: Option<&str>) -> Result<f32> {
    match field {
        None => Ok(1.0),
        Some(f) => f
            .parse::<f32>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| Error::data(path, line, format!("value '{f}' is not a finite number"))),
    }
}

fn tsv(path: &Path, text: &str, rows: Option<usize>, cols: Option<usize>) -> Result<Triples> {
    let (row_limit, col_limit) = (
        rows.unwrap_or(u32::MAX as usize),
        cols.unwrap_or(u32::MAX as usize),
    );
    let mut entries = Vec::with_capacity(text.len() / 16);
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('%') || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_ascii_whitespace();
        let row = index(path, n + 1, fields.next(), "row", row_limit)?;
        let col = index(path, n + 1, fields.next(), "column", col_limit)?;
        let value = value(path, n + 1, fields.next())?;
        if fields.next().is_some() {
            return Err(Error::data(
                path,
                n + 1,
                "expected `row col [value]`: more than 3 fields",
            ));
        }
        entries.push(Entry { row, col, value });
    }
    let size =
        |given: Option<usize>, max: Option<u32>| given.unwrap_or(max.map_or(0, |m| m as usize + 1));
    Ok(Triples {
        rows: size(rows, entries.iter().map(|e| e.row).max()),
        cols: size(cols, entries.iter().map(|e| e.col).max()),
        entries,
    })
}

fn matrix_market(
    path: &Path,
    text: &str,
    rows: Option<usize>,
    cols: Option<usize>,
) -> Result<Triples> {
    let mut lines = text.lines().enumerate();
    let header = lines
        .next()
        .map(|(_, l)| l.to_ascii_lowercase())
        .unwrap_or_default();
    let words: Vec<&str> = header.split_ascii_whitespace().collect();
    if words.get(1) != Some(&"matrix") || words.get(2) != Some(&"coordinate") {
        return Err(Error::data(
            path,
            1,
            "expected a MatrixMarket `matrix coordinate` header",
        ));
    }
    let pattern = match words.get(3) {
        Some(&"pattern") => true,
        Some(&"real" | &"integer") => false,
        other => {
            return Err(Error::data(
                path,
                1,
                format!(
                    "MatrixMarket field {} is not supported: expected pattern, real or integer",
                    other.unwrap_or(&"(none)")
                ),
            ));
        }
    };
    if words.get(4).is_some_and(|s| *s != "general") {
        return Err(Error::data(
            path,
            1,
            format!(
                "MatrixMarket symmetry {} is not supported: expected general",
                words[4]
            ),
        ));
    }
    let mut lines = lines.filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('%'));
    let (n, size) = lines
        .next()
        .ok_or_else(|| Error::data(path, 0, "no size line (`rows cols entries`)"))?;
    let dims: Vec<usize> = size
        .split_ascii_whitespace()
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| {
            Error::data(
                path,
                n + 1,
                format!("size line '{size}' is not `rows cols entries`"),
            )
        })?;
    let [r, c, nnz] = dims[..] else {
        return Err(Error::data(
            path,
            n + 1,
            format!("size line '{size}' is not `rows cols entries`"),
        ));
    };
    for (declared, expected, what) in [(r, rows, "rows"), (c, cols, "columns")] {
        if let Some(e) = expected
            && declared > e
        {
            return Err(Error::data(
                path,
                n + 1,
                format!("declares {declared} {what}, expected at most {e}"),
            ));
        }
    }
    let mut entries = Vec::with_capacity(nnz.min(text.len() / 4));
    for (n, line) in lines {
        let mut fields = line.split_ascii_whitespace();
        let row = index(path, n + 1, fields.next(), "row", r)?;
        let col = index(path, n + 1, fields.next(), "column", c)?;
        let value = if pattern {
            1.0
        } else {
            value(path, n + 1, Some(fields.next().unwrap_or("")))?
        };
        if fields.next().is_some() {
            return Err(Error::data(
                path,
                n + 1,
                "more fields than the header's field type has",
            ));
        }
        entries.push(Entry { row, col, value });
    }
    if entries.len() != nnz {
        return Err(Error::data(
            path,
            0,
            format!("declares {nnz} entries but has {}", entries.len()),
        ));
    }
    Ok(Triples {
        rows: rows.unwrap_or(r),
        cols: cols.unwrap_or(c),
        entries,
    })
}

/// The challenge's bias for networks of `neurons` neurons (its published values).
pub fn challenge_bias(neurons: usize) -> Option<f32> {
    match neurons {
        1024 => Some(-0.3),
        4096 => Some(-0.35),
        16384 => Some(-0.4),
        65536 => Some(-0.45),
        _ => None,
    }
}

/// The challenge's name of layer `k` (1-based) of a `neurons`-neuron network in `dir`:
/// `n{neurons}-l{k}.tsv`, `.tsv.gz`, `.mtx` or `.mtx.gz`, the first that exists.
pub fn layer_file(dir: &Path, neurons: usize, k: usize) -> Result<PathBuf> {
    let stem = format!("n{neurons}-l{k}");
    ["tsv", "tsv.gz", "mtx", "mtx.gz"]
        .iter()
        .map(|ext| dir.join(format!("{stem}.{ext}")))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::io(
                dir.join(format!("{stem}.tsv")),
                std::io::Error::new(std::io::ErrorKind::NotFound, format!("layer {k} of the sequence is missing (looked for {stem}.tsv, .tsv.gz, .mtx, .mtx.gz)")),
            )
        })
}

/// One challenge weight layer of `neurons × neurons` as nnmpi's compact `[out, in]` layer:
/// the file's `W(i, j)` (input `i` to neuron `j`) is row `j`, column `i`.
pub fn read_layer(path: &Path, neurons: usize, bias: f32, act: Activation) -> Result<Layer> {
    let t = read_triples(path, Some(neurons), Some(neurons))?;
    let mut by_out: Vec<(u32, u32, f32)> =
        t.entries.iter().map(|e| (e.col, e.row, e.value)).collect();
    by_out.sort_unstable_by_key(|&(j, i, _)| (j, i));
    if let Some(w) = by_out
        .windows(2)
        .find(|w| (w[0].0, w[0].1) == (w[1].0, w[1].1))
    {
        return Err(Error::data(
            path,
            0,
            format!("the edge {} -> {} appears twice", w[0].1 + 1, w[0].0 + 1),
        ));
    }
    let mut row_ptr = vec![0usize; neurons + 1];
    for &(j, _, _) in &by_out {
        row_ptr[j as usize + 1] += 1;
    }
    for j in 0..neurons {
        row_ptr[j + 1] += row_ptr[j];
    }
    let cols = by_out.iter().map(|e| e.1).collect();
    let vals = by_out.iter().map(|e| e.2).collect();
    let csr = Csr::from_parts(neurons, row_ptr, cols, vals).map_err(|m| Error::data(path, 0, m))?;
    Layer::from_weights(Weights::Sparse(csr), Array1::from_elem(neurons, bias), act)
}

/// The network of `layers` challenge layers of `neurons` neurons in `dir` (read in parallel
/// over `par`'s threads), every layer with bias `bias` and activation `act` (the challenge's
/// is `relu-cap:32`).
pub fn read_network(
    dir: &Path,
    neurons: usize,
    layers: usize,
    bias: f32,
    act: Activation,
    par: Par,
) -> Result<Network> {
    Network::from_layers(read_network_rows(
        dir,
        neurons,
        layers,
        bias,
        act,
        0..neurons,
        par,
    )?)
}

/// Neurons `rows` of every layer of a challenge network (a rank's share of a network split by
/// neurons): as [`read_network`], each layer cut to `rows` as soon as it is read, so only the
/// share and the layers being read are ever in memory.
pub fn read_network_rows(
    dir: &Path,
    neurons: usize,
    layers: usize,
    bias: f32,
    act: Activation,
    rows: Range<usize>,
    par: Par,
) -> Result<Vec<Layer>> {
    check_rows(&rows, neurons)?;
    let files = (1..=layers)
        .map(|k| layer_file(dir, neurons, k))
        .collect::<Result<Vec<_>>>()?;
    let read = |p: &PathBuf| {
        let layer = read_layer(p, neurons, bias, act)?;
        Ok(if rows == (0..neurons) {
            layer
        } else {
            layer.neurons(rows.clone())
        })
    };
    match par {
        Par::Seq => files.iter().map(read).collect(),
        Par::Rayon(_) => files.par_iter().map(read).collect(),
    }
}

/// Checks that `rows` lies inside `0..neurons`.
fn check_rows(rows: &Range<usize>, neurons: usize) -> Result<()> {
    if rows.start > rows.end || rows.end > neurons {
        return Err(Error::parameter(
            "neurons",
            format!("rows {rows:?} do not lie inside the {neurons} neurons"),
        ));
    }
    Ok(())
}

/// Connections in and out of every neuron of the challenge's networks.
pub const CHALLENGE_FAN: usize = 32;

/// A stand-in for a challenge network that cannot be downloaded here: `layers` layers of
/// `neurons` neurons, every neuron with exactly [`CHALLENGE_FAN`] inputs and outputs, every
/// weight 1/16, bias `bias` and activation `act`, drawn from `seed`. Layer `l` connects
/// input `i` to neurons `σ((π(i) + d_m) mod N)` for 32 distinct offsets `d_m` and random
/// permutations `π`, `σ` (so no edge repeats and every in- and out-degree is exactly 32). The
/// real networks come from a different generator (RadiX-Net); these have their size, degree
/// and weights, not their structure.
pub fn generate_network(
    neurons: usize,
    layers: usize,
    bias: f32,
    act: Activation,
    seed: u64,
) -> Result<Network> {
    Network::from_layers(generate_network_rows(
        neurons,
        layers,
        bias,
        act,
        seed,
        0..neurons,
    )?)
}

/// Neurons `rows` of every layer of [`generate_network`]'s network (a rank's share of a
/// network split by neurons), made without the other rows.
pub fn generate_network_rows(
    neurons: usize,
    layers: usize,
    bias: f32,
    act: Activation,
    seed: u64,
    rows: Range<usize>,
) -> Result<Vec<Layer>> {
    check_rows(&rows, neurons)?;
    if neurons < CHALLENGE_FAN {
        return Err(Error::parameter(
            "neurons",
            format!("must be at least {CHALLENGE_FAN} (got {neurons})"),
        ));
    }
    (0..layers)
        .map(|l| {
            let mut rng = UniformStream::new(seed, l as u64);
            let mut pi: Vec<usize> = (0..neurons).collect();
            let mut sigma = pi.clone();
            rng.shuffle(&mut pi);
            rng.shuffle(&mut sigma);
            let mut offsets: Vec<usize> = (0..neurons).collect();
            rng.shuffle(&mut offsets);
            offsets.truncate(CHALLENGE_FAN);
            // Row j (a neuron) lists the inputs i with σ((π(i) + d) mod N) = j for some d.
            let mut inverse_pi = vec![0usize; neurons];
            for (i, &p) in pi.iter().enumerate() {
                inverse_pi[p] = i;
            }
            let mut row_ptr = Vec::with_capacity(rows.len() + 1);
            let (mut cols, mut vals) = (Vec::with_capacity(rows.len() * CHALLENGE_FAN), Vec::new());
            row_ptr.push(0);
            let mut inverse_sigma = vec![0usize; neurons];
            for (k, &s) in sigma.iter().enumerate() {
                inverse_sigma[s] = k;
            }
            // Neuron j = σ(t) reads the inputs i with π(i) = t - d.
            for &t in &inverse_sigma[rows.clone()] {
                let mut row: Vec<u32> = offsets
                    .iter()
                    .map(|&d| inverse_pi[(t + neurons - d) % neurons] as u32)
                    .collect();
                row.sort_unstable();
                cols.extend_from_slice(&row);
                vals.resize(cols.len(), 1.0 / 16.0);
                row_ptr.push(cols.len());
            }
            let csr = Csr::from_parts(neurons, row_ptr, cols, vals).map_err(Error::config)?;
            Layer::from_weights(
                Weights::Sparse(csr),
                Array1::from_elem(rows.len(), bias),
                act,
            )
        })
        .collect()
}

/// Stand-in inputs: `samples` binary samples of `features` features, drawn from `seed`.
/// Sample `s` has its own density `d_s`, uniform in `density` (`lo..=hi`), and each of its
/// features is on with probability `d_s`. The challenge's images are binary and about 10% on;
/// these have a density, not the images' structure. A spread of densities makes samples die
/// out at different layers, as the challenge's do (the densities that do so depend on the
/// network).
pub fn generate_inputs(
    samples: usize,
    features: usize,
    density: (f64, f64),
    seed: u64,
) -> SparseSamples {
    let mut rng = UniformStream::new(seed, u64::MAX);
    let (mut offsets, mut feature) = (vec![0usize], Vec::new());
    let (lo, hi) = density;
    for _ in 0..samples {
        let density = lo + (hi - lo) * f64::from(rng.next_unit());
        for f in 0..features {
            if f64::from(rng.next_unit()) < density {
                feature.push(f as u32);
            }
        }
        offsets.push(feature.len());
    }
    SparseSamples {
        features,
        offsets,
        value: vec![1.0; feature.len()],
        feature,
    }
}

/// Challenge inputs (one row per sample, `features` columns): TSV triples or MatrixMarket,
/// binary or valued. Samples are numbered by the largest index seen (TSV) or the declared
/// rows (MatrixMarket); a sample without entries is an all-zero input.
pub fn read_inputs(path: &Path, features: usize) -> Result<SparseSamples> {
    let t = read_triples(path, None, Some(features))?;
    let mut entries = t.entries;
    entries.sort_unstable_by_key(|e| (e.row, e.col));
    if let Some(w) = entries
        .windows(2)
        .find(|w| (w[0].row, w[0].col) == (w[1].row, w[1].col))
    {
        return Err(Error::data(
            path,
            0,
            format!("sample {} has feature {} twice", w[0].row + 1, w[0].col + 1),
        ));
    }
    let mut offsets = vec![0usize; t.rows + 1];
    for e in &entries {
        offsets[e.row as usize + 1] += 1;
    }
    for s in 0..t.rows {
        offsets[s + 1] += offsets[s];
    }
    Ok(SparseSamples {
        features,
        offsets,
        feature: entries.iter().map(|e| e.col).collect(),
        value: entries.iter().map(|e| e.value).collect(),
    })
}

/// Truth categories: the 0-based sample indices listed, increasing. A TSV file lists one
/// 1-based index per line; a MatrixMarket file has one entry per category (its row).
pub fn read_truth(path: &Path) -> Result<Vec<usize>> {
    let bytes = read_maybe_gz(path)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| Error::data(path, 0, format!("not text (UTF-8): {e}")))?;
    let mut rows: Vec<usize> = if text.starts_with("%%MatrixMarket") {
        matrix_market(path, text, None, None)?
            .entries
            .iter()
            .map(|e| e.row as usize)
            .collect()
    } else {
        let mut v = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if line.split_ascii_whitespace().count() != 1 {
                return Err(Error::data(
                    path,
                    n + 1,
                    format!("expected one sample index per line, got '{line}'"),
                ));
            }
            v.push(index(path, n + 1, Some(line), "sample", u32::MAX as usize)? as usize);
        }
        v
    };
    rows.sort_unstable();
    rows.dedup();
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let d =
                std::env::temp_dir().join(format!("nnmpi-challenge-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&d).unwrap();
            Dir(d)
        }

        fn file(&self, name: &str, text: &str) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, text).unwrap();
            p
        }

        fn gz(&self, name: &str, text: &str) -> PathBuf {
            let p = self.0.join(name);
            let mut e = flate2::write::GzEncoder::new(
                std::fs::File::create(&p).unwrap(),
                flate2::Compression::fast(),
            );
            e.write_all(text.as_bytes()).unwrap();
            e.finish().unwrap();
            p
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn message(e: Error) -> String {
        e.to_string()
    }

    #[test]
    fn a_layer_is_transposed_into_out_by_in() {
        let d = Dir::new("layer");
        // Edges 1->2 (0.5), 3->2 (0.25), 2->1 (-1): neuron 2 reads inputs 1 and 3.
        let p = d.gz("n3-l1.tsv.gz", "1\t2\t0.5\n3\t2\t0.25\n2\t1\t-1\n");
        let layer = read_layer(&p, 3, -0.3, Activation::CappedRelu(32.0)).unwrap();
        let w = layer.weights().to_dense().into_raw_vec_and_offset().0;
        assert_eq!(w, vec![0.0, -1.0, 0.0, 0.5, 0.0, 0.25, 0.0, 0.0, 0.0]);
        assert_eq!(layer.bias(), &[-0.3, -0.3, -0.3]);
        // The same edges as MatrixMarket read alike.
        let mm = d.file("n3-l2.mtx", "%%MatrixMarket matrix coordinate real general\n% c\n3 3 3\n1 2 0.5\n3 2 0.25\n2 1 -1\n");
        let again = read_layer(&mm, 3, -0.3, Activation::CappedRelu(32.0)).unwrap();
        assert_eq!(again.weights(), layer.weights());
        let net = read_network(&d.0, 3, 2, -0.3, Activation::CappedRelu(32.0), Par::Seq).unwrap();
        assert_eq!(net.layers().len(), 2);
    }

    #[test]
    fn inputs_and_truth_in_either_format() {
        let d = Dir::new("inputs");
        let tsv = d.file("in.tsv", "1\t2\t1\n1\t3\t1\n3\t1\t0.5\n");
        let x = read_inputs(&tsv, 4).unwrap();
        assert_eq!(x.len(), 3, "sample 2 has no entries but counts");
        assert_eq!(
            x.dense_rows(&[0, 2]),
            vec![0.0, 1.0, 1.0, 0.0, 0.5, 0.0, 0.0, 0.0]
        );
        let mm = d.gz(
            "in.mtx.gz",
            "%%MatrixMarket matrix coordinate pattern general\n3 4 3\n1 2\n1 3\n3 1\n",
        );
        let y = read_inputs(&mm, 4).unwrap();
        assert_eq!((y.len(), y.offsets.clone()), (3, vec![0, 2, 2, 3]));
        let truth = d.file("t.tsv", "5\n2\n\n9\n");
        assert_eq!(read_truth(&truth).unwrap(), vec![1, 4, 8]);
        let truth = d.file(
            "t.mtx",
            "%%MatrixMarket matrix coordinate pattern general\n10 1 2\n9 1\n2 1\n",
        );
        assert_eq!(read_truth(&truth).unwrap(), vec![1, 8]);
    }

    #[test]
    fn bad_files_name_the_line_and_what_was_expected() {
        let d = Dir::new("bad");
        let layer = |text: &str| {
            let p = d.file("n4-l1.tsv", text);
            message(read_layer(&p, 4, -0.3, Activation::Relu).unwrap_err())
        };
        assert!(
            layer("1\t2\t0.5\n0\t1\t1\n").ends_with(":2: row index 0 is outside 1..=4"),
            "{}",
            layer("0\t1\t1\n")
        );
        assert!(layer("1\t5\t0.5\n").contains(":1: column index 5 is outside 1..=4"));
        assert!(layer("1\t-2\t0.5\n").contains("column index '-2' is not a whole number from 1"));
        assert!(layer("1\t2\tabc\n").contains(":1: value 'abc' is not a finite number"));
        assert!(layer("1\t2\t1\t7\n").contains("more than 3 fields"));
        assert!(layer("1\t2\t1\n1\t2\t3\n").contains("the edge 1 -> 2 appears twice"));
        let missing =
            message(read_network(&d.0, 4, 3, -0.3, Activation::Relu, Par::Seq).unwrap_err());
        assert!(
            missing.contains("layer 2 of the sequence is missing"),
            "{missing}"
        );
        let mm = d.file(
            "x.mtx",
            "%%MatrixMarket matrix coordinate pattern general\n5 4 3\n1 1\n2 2\n",
        );
        assert!(message(read_inputs(&mm, 4).unwrap_err()).contains("declares 3 entries but has 2"));
        let mm = d.file(
            "y.mtx",
            "%%MatrixMarket matrix coordinate pattern general\n5 9 1\n1 1\n",
        );
        assert!(
            message(read_inputs(&mm, 4).unwrap_err())
                .contains("declares 9 columns, expected at most 4")
        );
        let mm = d.file(
            "z.mtx",
            "%%MatrixMarket matrix array real general\n2 2\n1\n2\n3\n4\n",
        );
        assert!(message(read_inputs(&mm, 4).unwrap_err()).contains("matrix coordinate"));
        let truth = d.file("t.tsv", "3\t1\n");
        assert!(
            message(read_truth(&truth).unwrap_err())
                .contains(":1: expected one sample index per line")
        );
        let feature = d.file("f.tsv", "1\t5\t1\n");
        assert!(
            message(read_inputs(&feature, 4).unwrap_err())
                .contains("column index 5 is outside 1..=4")
        );
    }

    #[test]
    fn generated_networks_have_the_challenge_degrees() {
        let net = generate_network(256, 3, -0.3, Activation::CappedRelu(32.0), 7).unwrap();
        for layer in net.layers() {
            let w = layer.weights().to_dense();
            for i in 0..256 {
                let row = w.row(i).iter().filter(|v| **v != 0.0).count();
                let col = w.column(i).iter().filter(|v| **v != 0.0).count();
                assert_eq!((row, col), (CHALLENGE_FAN, CHALLENGE_FAN));
            }
            assert!(w.iter().all(|&v| v == 0.0 || v == 0.0625));
        }
        assert_eq!(
            net,
            generate_network(256, 3, -0.3, Activation::CappedRelu(32.0), 7).unwrap()
        );
        assert_ne!(net.layers()[0], net.layers()[1]);
        let x = generate_inputs(50, 256, (0.1, 0.1), 3);
        let on = x.value.len() as f64 / (50.0 * 256.0);
        assert!((0.07..0.13).contains(&on), "{on}");
        // A range: each sample has its own density, inside the range.
        let x = generate_inputs(400, 1000, (0.1, 0.3), 4);
        let per_sample: Vec<f64> = x
            .offsets
            .windows(2)
            .map(|w| (w[1] - w[0]) as f64 / 1000.0)
            .collect();
        assert!(per_sample.iter().all(|d| (0.06..0.34).contains(d)));
        let (min, max) = per_sample
            .iter()
            .fold((1.0f64, 0.0f64), |(a, b), &d| (a.min(d), b.max(d)));
        assert!(min < 0.13 && max > 0.27, "{min} {max}");
    }
}
