//! CSV loading: header detection, a selectable label column, class or numeric labels.
//! Every error names the file, the 1-based line and what was expected.

use super::{Dataset, LabelKind, Targets, open_maybe_gz, sorted_classes};
use crate::error::{Error, Result};
use csv::StringRecord;
use ndarray::Array2;
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Whether the first line is a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderMode {
    /// A header when the first line has a non-numeric feature cell where the second has a number.
    Auto,
    /// The first line is a header.
    Yes,
    /// Every line is data.
    No,
}

impl FromStr for HeaderMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(HeaderMode::Auto),
            "yes" | "true" => Ok(HeaderMode::Yes),
            "no" | "false" => Ok(HeaderMode::No),
            _ => Err(format!(
                "'{s}' is not a header mode: expected auto, yes or no"
            )),
        }
    }
}

/// Which column holds the label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelColumn {
    /// The last column (the UCI convention).
    Last,
    /// The first column.
    First,
    /// A 0-based column index.
    Index(usize),
    /// The column with this header name.
    Name(String),
    /// No label column.
    None,
}

impl FromStr for LabelColumn {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "last" => LabelColumn::Last,
            "first" => LabelColumn::First,
            "none" => LabelColumn::None,
            _ => match s.parse::<usize>() {
                Ok(i) => LabelColumn::Index(i),
                Err(_) if !s.is_empty() => LabelColumn::Name(s.to_owned()),
                Err(_) => {
                    return Err(
                        "label column must be last, first, none, an index or a header name".into(),
                    );
                }
            },
        })
    }
}

/// How to read a CSV file.
#[derive(Clone, Debug)]
pub struct CsvOptions {
    /// Header handling.
    pub header: HeaderMode,
    /// Where the label is.
    pub label: LabelColumn,
    /// What the labels are.
    pub labels: LabelKind,
    /// The feature count a model expects: a file with exactly this many columns is read
    /// without labels, one with one more column with labels; anything else is an error.
    pub expect_features: Option<usize>,
    /// Field separator.
    pub delimiter: char,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            header: HeaderMode::Auto,
            label: LabelColumn::Last,
            labels: LabelKind::Classes(None),
            expect_features: None,
            delimiter: ',',
        }
    }
}

/// Loads a CSV file (optionally gzipped) into a [`Dataset`].
pub fn load_csv(path: &Path, opts: &CsvOptions) -> Result<Dataset> {
    collect(CsvSamples::open(path, opts)?)
}

/// Reads every sample of `samples` into a [`Dataset`].
fn collect(mut samples: CsvSamples) -> Result<Dataset> {
    let n_features = samples.n_features();
    let mut labels = samples.labels();
    let (mut values, mut row) = (Vec::new(), vec![0.0f32; n_features]);
    while let Some((line, label)) = samples.next_sample(&mut row)? {
        values.extend_from_slice(&row);
        if let (Some(labels), Some(cell)) = (&mut labels, label) {
            labels.push(line, cell)?;
        }
    }
    let n = values.len() / n_features;
    let by_sample = Array2::from_shape_vec((n, n_features), values).expect("whole rows");
    let (targets, classes) = labels.map_or((Targets::None, Vec::new()), Labels::finish);
    Ok(Dataset {
        features: by_sample.t().as_standard_layout().into_owned().into(),
        targets,
        classes,
        origin: samples.path,
    })
}

/// A data line: its 1-based line number and its fields (trimmed, quotes removed).
type Row = (usize, StringRecord);

/// A CSV file read one sample at a time, so that a file larger than memory can be converted:
/// the header and the label column are settled from its first two rows (RFC 4180 through the
/// `csv` crate: quoted fields may hold the delimiter, quotes and line breaks; a UTF-8
/// byte-order mark and blank lines are dropped; gzip is read through).
pub struct CsvSamples {
    path: PathBuf,
    records: csv::StringRecordsIntoIter<Box<dyn Read>>,
    /// Data rows read ahead while the header was settled.
    ahead: VecDeque<Row>,
    /// The current row.
    row: StringRecord,
    width: usize,
    first_line: usize,
    label_col: Option<usize>,
    labels: LabelKind,
}

impl CsvSamples {
    /// Opens `path` (plain or gzipped) and reads its first rows.
    pub fn open(path: &Path, opts: &CsvOptions) -> Result<CsvSamples> {
        CsvSamples::from_reader(path, open_maybe_gz(path)?, opts)
    }

    /// Reads CSV text from `reader`, naming `path` in errors.
    fn from_reader(path: &Path, reader: Box<dyn Read>, opts: &CsvOptions) -> Result<CsvSamples> {
        let delimiter = u8::try_from(opts.delimiter)
            .ok()
            .filter(u8::is_ascii)
            .ok_or_else(|| {
                Error::parameter(
                    "delimiter",
                    format!("'{}' is not a single ASCII character", opts.delimiter),
                )
            })?;
        let records = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .trim(csv::Trim::All)
            .from_reader(without_bom(reader).map_err(|e| Error::io(path, e))?)
            .into_records();
        let mut samples = CsvSamples {
            path: path.to_path_buf(),
            records,
            ahead: VecDeque::new(),
            row: StringRecord::new(),
            width: 0,
            first_line: 0,
            label_col: None,
            labels: opts.labels.clone(),
        };
        samples.settle_layout(opts)?;
        Ok(samples)
    }

    /// Reads the first two rows and decides the width, the label column and the header.
    fn settle_layout(&mut self, opts: &CsvOptions) -> Result<()> {
        for _ in 0..2 {
            if let Some(row) = self.read_row()? {
                self.ahead.push_back(row);
            }
        }
        let path = self.path.as_path();
        let Some((first_no, first)) = self.ahead.front() else {
            return Err(Error::data(
                path,
                0,
                "the file is empty: expected comma-separated rows of numbers",
            ));
        };
        let (first_no, width) = (*first_no, first.len());
        let mut label_col = resolve_label_column(path, opts, first, first_no)?;
        if let Some(n) = opts.expect_features {
            label_col = match width {
                w if w == n => None,
                w if w == n + 1 => label_col.or(Some(w - 1)),
                w => {
                    return Err(Error::data(
                        path,
                        first_no,
                        format!(
                            "{w} columns, but the model expects {n} features (or {} with a label column)",
                            n + 1
                        ),
                    ));
                }
            };
        }
        let is_feature = |c: usize| Some(c) != label_col;
        let numeric = |s: &str| s.parse::<f32>().is_ok();
        let header = match opts.header {
            HeaderMode::Yes => true,
            HeaderMode::No => false,
            HeaderMode::Auto => {
                // A name where the next line has a number; a lone line or a missing-value
                // marker is data (and fails as such, with its line number).
                let name_like = |s: &str| !numeric(s) && !s.is_empty() && s != "?";
                self.ahead.get(1).is_some_and(|(_, second)| {
                    (0..width).any(|c| {
                        is_feature(c) && name_like(&first[c]) && second.get(c).is_some_and(numeric)
                    })
                })
            }
        };
        if header {
            self.ahead.pop_front();
        }
        if self.ahead.is_empty() {
            return Err(Error::data(path, first_no, "a header but no data rows"));
        }
        if width == usize::from(label_col.is_some()) {
            return Err(Error::data(
                path,
                first_no,
                "no feature columns: only a label column",
            ));
        }
        (self.width, self.first_line, self.label_col) = (width, first_no, label_col);
        Ok(())
    }

    /// The next row that is not blank.
    fn read_row(&mut self) -> Result<Option<Row>> {
        for record in self.records.by_ref() {
            let record = record.map_err(|e| {
                let line = e.position().map_or(0, |p| p.line() as usize);
                let what = match e.kind() {
                    csv::ErrorKind::Utf8 { .. } => "not UTF-8 text: is this a CSV file?".into(),
                    _ => format!("not readable as CSV: {e}"),
                };
                Error::data(&self.path, line, what)
            })?;
            if record.iter().all(str::is_empty) {
                continue; // a blank line, or one of spaces
            }
            let line = record.position().map_or(0, |p| p.line() as usize);
            return Ok(Some((line, record)));
        }
        Ok(None)
    }

    /// Features per sample (the columns but the label's).
    pub fn n_features(&self) -> usize {
        self.width - usize::from(self.label_col.is_some())
    }

    /// A collector for this file's labels, `None` when it has no label column.
    pub fn labels(&self) -> Option<Labels> {
        let col = self.label_col?;
        Some(Labels::new(&self.path, col, &self.labels))
    }

    /// Parses the next sample's features into `row` (of [`CsvSamples::n_features`] values) and
    /// returns its line and its label cell; `None` after the last sample.
    pub fn next_sample(&mut self, row: &mut [f32]) -> Result<Option<(usize, Option<&str>)>> {
        let Some((line, fields)) = self
            .ahead
            .pop_front()
            .map_or_else(|| self.read_row(), |r| Ok(Some(r)))?
        else {
            return Ok(None);
        };
        if fields.len() != self.width {
            return Err(Error::data(
                &self.path,
                line,
                format!(
                    "{} fields, expected {} like line {} (ragged row)",
                    fields.len(),
                    self.width,
                    self.first_line
                ),
            ));
        }
        let mut features = row.iter_mut();
        for (c, cell) in fields.iter().enumerate() {
            if Some(c) != self.label_col {
                *features.next().expect("a value per feature") =
                    parse_number(&self.path, line, c, cell)?;
            }
        }
        self.row = fields;
        Ok(Some((line, self.label_col.map(|c| &self.row[c]))))
    }
}

/// The labels of a CSV file's samples, collected one at a time as [`Targets`].
pub struct Labels {
    path: PathBuf,
    col: usize,
    collected: Collected,
}

enum Collected {
    Values(Vec<f32>),
    /// Ids into classes given beforehand (a model's).
    Known {
        classes: Vec<String>,
        ids: Vec<u32>,
    },
    /// Ids in order of first appearance, sorted into classes at the end.
    Seen {
        names: HashMap<String, u32>,
        ids: Vec<u32>,
    },
}

impl Labels {
    fn new(path: &Path, col: usize, kind: &LabelKind) -> Labels {
        let collected = match kind {
            LabelKind::Values => Collected::Values(Vec::new()),
            LabelKind::Classes(Some(classes)) => Collected::Known {
                classes: classes.clone(),
                ids: Vec::new(),
            },
            LabelKind::Classes(None) => Collected::Seen {
                names: HashMap::new(),
                ids: Vec::new(),
            },
        };
        Labels {
            path: path.to_path_buf(),
            col,
            collected,
        }
    }

    /// Takes the label `cell` of the sample on `line`: a number for regression, one of the
    /// known classes when they were given.
    pub fn push(&mut self, line: usize, cell: &str) -> Result<()> {
        match &mut self.collected {
            Collected::Values(v) => v.push(parse_number(&self.path, line, self.col, cell)?),
            Collected::Known { classes, ids } => {
                ids.push(class_id(&self.path, line, cell, classes)?)
            }
            Collected::Seen { names, ids } => {
                let next = names.len() as u32;
                ids.push(*names.entry(cell.to_owned()).or_insert(next));
            }
        }
        Ok(())
    }

    /// The targets and the class names (sorted as [`sorted_classes`] sorts them).
    pub fn finish(self) -> (Targets, Vec<String>) {
        match self.collected {
            Collected::Values(v) => (Targets::Values(v), Vec::new()),
            Collected::Known { classes, ids } => (Targets::Classes(ids), classes),
            Collected::Seen { names, ids } => {
                let classes = sorted_classes(names.keys().map(String::as_str));
                let mut to_class = vec![0u32; names.len()];
                for (name, seen) in &names {
                    to_class[*seen as usize] = classes
                        .iter()
                        .position(|c| c == name)
                        .expect("a class per name")
                        as u32;
                }
                let ids = ids.iter().map(|&i| to_class[i as usize]).collect();
                (Targets::Classes(ids), classes)
            }
        }
    }
}

/// `reader` past a UTF-8 byte-order mark at its start (Excel's "CSV UTF-8" writes one).
fn without_bom(reader: Box<dyn Read>) -> std::io::Result<Box<dyn Read>> {
    let mut reader = BufReader::new(reader);
    if reader.fill_buf()?.starts_with(b"\xEF\xBB\xBF") {
        reader.consume(3);
    }
    Ok(Box::new(reader))
}

fn resolve_label_column(
    path: &Path,
    opts: &CsvOptions,
    first: &StringRecord,
    line: usize,
) -> Result<Option<usize>> {
    let width = first.len();
    Ok(match &opts.label {
        LabelColumn::None => None,
        LabelColumn::Last => Some(width - 1),
        LabelColumn::First => Some(0),
        LabelColumn::Index(i) if *i < width => Some(*i),
        LabelColumn::Index(i) => {
            return Err(Error::data(
                path,
                line,
                format!(
                    "label column {i} does not exist: the file has {width} columns (0..{})",
                    width - 1
                ),
            ));
        }
        LabelColumn::Name(name) => match first.iter().position(|h| h == name) {
            Some(i) => Some(i),
            None => {
                return Err(Error::data(
                    path,
                    line,
                    format!(
                        "no column named '{name}' in the header (columns: {})",
                        first.iter().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        },
    })
}

fn parse_number(path: &Path, line: usize, col: usize, cell: &str) -> Result<f32> {
    if cell.is_empty() || cell == "?" {
        return Err(Error::data(
            path,
            line,
            format!(
                "column {}: missing value '{cell}': expected a number",
                col + 1
            ),
        ));
    }
    match cell.parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(Error::data(
            path,
            line,
            format!(
                "column {}: '{cell}' is not a finite number (NaN and infinity are not allowed)",
                col + 1
            ),
        )),
        Err(_) => Err(Error::data(
            path,
            line,
            format!("column {}: '{cell}' is not a number", col + 1),
        )),
    }
}

/// The id of `label` among `classes`, or an error naming the known classes.
pub(crate) fn class_id(path: &Path, line: usize, label: &str, classes: &[String]) -> Result<u32> {
    classes
        .iter()
        .position(|c| c == label)
        .map(|i| i as u32)
        .ok_or_else(|| {
            let shown: Vec<&str> = classes.iter().take(20).map(String::as_str).collect();
            Error::data(
                path,
                line,
                format!(
                    "unknown label '{label}': the model knows the classes {}",
                    shown.join(", ")
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, opts: &CsvOptions) -> Result<Dataset> {
        let reader = Box::new(std::io::Cursor::new(text.as_bytes().to_vec()));
        collect(CsvSamples::from_reader(Path::new("t.csv"), reader, opts)?)
    }

    #[test]
    fn reads_crlf_no_trailing_newline_and_string_labels() {
        let d = parse("1,2,R\r\n3,.5,M\r\n5,6,R", &CsvOptions::default()).unwrap();
        assert_eq!(
            d.features,
            ndarray::array![[1.0, 3.0, 5.0], [2.0, 0.5, 6.0]].into()
        );
        assert_eq!(d.classes, vec!["M", "R"]);
        assert_eq!(d.targets, Targets::Classes(vec![1, 0, 1]));
    }

    #[test]
    fn detects_header_and_named_label_column() {
        let opts = CsvOptions {
            label: LabelColumn::Name("y".into()),
            labels: LabelKind::Values,
            ..Default::default()
        };
        let d = parse("y,a,b\n1.5,2,3\n2.5,4,5\n", &opts).unwrap();
        assert_eq!(d.features, ndarray::array![[2.0, 4.0], [3.0, 5.0]].into());
        assert_eq!(d.targets, Targets::Values(vec![1.5, 2.5]));
    }

    #[test]
    fn expected_feature_count_decides_label_presence() {
        let opts = CsvOptions {
            expect_features: Some(2),
            labels: LabelKind::Classes(Some(vec!["a".into(), "b".into()])),
            ..Default::default()
        };
        assert_eq!(parse("1,2\n3,4", &opts).unwrap().targets, Targets::None);
        assert_eq!(
            parse("1,2,b\n3,4,a", &opts).unwrap().targets,
            Targets::Classes(vec![1, 0])
        );
        let err = parse("1,2,3,4\n", &opts).unwrap_err().to_string();
        assert!(
            err.contains("t.csv:1") && err.contains("expects 2 features"),
            "{err}"
        );
        let err = parse("1,2,a\n3,4,zebra\n", &opts).unwrap_err().to_string();
        assert!(
            err.contains("t.csv:2")
                && err.contains("unknown label 'zebra'")
                && err.contains("a, b"),
            "{err}"
        );
    }

    #[test]
    fn excel_and_python_csv_read_like_plain_csv() {
        let plain = parse("1,2,R\n3,4,M\n", &CsvOptions::default()).unwrap();
        // Excel's "CSV UTF-8" starts with a byte-order mark: the first row is still data.
        let bom = parse("\u{feff}1,2,R\n3,4,M\n", &CsvOptions::default()).unwrap();
        assert_eq!(bom, plain);
        // Python's csv module quotes what it likes (QUOTE_NONNUMERIC, QUOTE_ALL).
        let quoted = parse("1,2,\"R\"\n3,4,\"M\"\n", &CsvOptions::default()).unwrap();
        assert_eq!(quoted, plain);
        let all = parse(
            "\"1\",\"2\",\"R\"\r\n\"3\",\"4\",\"M\"\r\n",
            &CsvOptions::default(),
        )
        .unwrap();
        assert_eq!(all, plain);
        // A quoted label may hold the delimiter and doubled quotes.
        let d = parse(
            "1,2,\"big, \"\"red\"\"\"\n3,4,small\n",
            &CsvOptions::default(),
        )
        .unwrap();
        assert_eq!(d.classes, vec!["big, \"red\"", "small"]);
        assert_eq!(d.targets, Targets::Classes(vec![0, 1]));
        // A header with a BOM and quotes names its columns without them.
        let opts = CsvOptions {
            label: LabelColumn::Name("y".into()),
            labels: LabelKind::Values,
            ..Default::default()
        };
        let d = parse("\u{feff}\"y\",\"a\"\n1.5,2\n", &opts).unwrap();
        assert_eq!(d.targets, Targets::Values(vec![1.5]));
    }

    #[test]
    fn bad_cells_name_line_and_column() {
        let o = CsvOptions::default();
        let cases = [
            ("1,2,a\n3,x,b\n", "t.csv:2", "column 2: 'x' is not a number"),
            ("1,2,a\n3,4\n", "t.csv:2", "2 fields, expected 3"),
            ("1,2,a\n3,NaN,b\n", "t.csv:2", "not a finite number"),
            ("1,inf,a\n3,4,b\n", "t.csv:1", "not a finite number"),
            ("1,?,a\n", "t.csv:1", "missing value"),
            ("", "t.csv", "empty"),
            ("\n\n", "t.csv", "empty"),
        ];
        for (text, at, what) in cases {
            let err = parse(text, &o).unwrap_err().to_string();
            assert!(err.starts_with(at) && err.contains(what), "{text:?}: {err}");
        }
    }
}
