//! CSV loading: header detection, a selectable label column, class or numeric labels.
//! Every error names the file, the 1-based line and what was expected.

use super::{Dataset, LabelKind, Targets, read_maybe_gz, sorted_classes};
use crate::error::{Error, Result};
use csv::StringRecord;
use ndarray::Array2;
use std::path::Path;
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
    let bytes = read_maybe_gz(path)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::data(
            path,
            0,
            format!(
                "not UTF-8 text (byte {}): is this a CSV file?",
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    parse_csv(path, &text, opts)
}

/// A data line: its 1-based line number and its fields (trimmed, quotes removed).
type Row = (usize, StringRecord);

/// Splits `text` into rows with the `csv` crate (RFC 4180: quoted fields may hold the
/// delimiter, quotes and line breaks), dropping a UTF-8 byte-order mark and blank lines.
fn read_rows(path: &Path, text: &str, delimiter: char) -> Result<Vec<Row>> {
    let delimiter = u8::try_from(delimiter)
        .ok()
        .filter(u8::is_ascii)
        .ok_or_else(|| {
            Error::parameter(
                "delimiter",
                format!("'{delimiter}' is not a single ASCII character"),
            )
        })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            Error::data(path, line, format!("not readable as CSV: {e}"))
        })?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        if record.iter().all(str::is_empty) {
            continue; // a blank line, or one of spaces
        }
        rows.push((line, record));
    }
    Ok(rows)
}

fn parse_csv(path: &Path, text: &str, opts: &CsvOptions) -> Result<Dataset> {
    let lines = read_rows(path, text, opts.delimiter)?;
    let Some((first_no, first)) = lines.first() else {
        return Err(Error::data(
            path,
            0,
            "the file is empty: expected comma-separated rows of numbers",
        ));
    };
    let width = first.len();

    let mut label_col = resolve_label_column(path, opts, first, *first_no)?;
    if let Some(n) = opts.expect_features {
        label_col = match width {
            w if w == n => None,
            w if w == n + 1 => label_col.or(Some(w - 1)),
            w => {
                return Err(Error::data(
                    path,
                    *first_no,
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
            lines.get(1).is_some_and(|(_, second)| {
                (0..width).any(|c| {
                    is_feature(c) && name_like(&first[c]) && second.get(c).is_some_and(numeric)
                })
            })
        }
    };
    let rows = if header { &lines[1..] } else { &lines[..] };
    if rows.is_empty() {
        return Err(Error::data(path, *first_no, "a header but no data rows"));
    }
    let n_features = width - usize::from(label_col.is_some());
    if n_features == 0 {
        return Err(Error::data(
            path,
            *first_no,
            "no feature columns: only a label column",
        ));
    }

    let mut features = Array2::<f32>::zeros((n_features, rows.len()));
    let mut labels: Vec<&str> = Vec::with_capacity(rows.len());
    for (s, (line_no, fields)) in rows.iter().enumerate() {
        if fields.len() != width {
            return Err(Error::data(
                path,
                *line_no,
                format!(
                    "{} fields, expected {width} like line {first_no} (ragged row)",
                    fields.len()
                ),
            ));
        }
        let mut f = 0;
        for (c, cell) in fields.iter().enumerate() {
            if !is_feature(c) {
                labels.push(cell);
                continue;
            }
            features[[f, s]] = parse_number(path, *line_no, c, cell)?;
            f += 1;
        }
    }

    let (targets, classes) = match label_col {
        None => (Targets::None, Vec::new()),
        Some(c) => build_targets(path, rows, c, &labels, &opts.labels)?,
    };
    Ok(Dataset {
        features: features.into(),
        targets,
        classes,
        origin: path.to_path_buf(),
    })
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

fn build_targets(
    path: &Path,
    rows: &[Row],
    col: usize,
    labels: &[&str],
    kind: &LabelKind,
) -> Result<(Targets, Vec<String>)> {
    match kind {
        LabelKind::Values => {
            let values = labels
                .iter()
                .zip(rows)
                .map(|(cell, (line, _))| parse_number(path, *line, col, cell))
                .collect::<Result<Vec<f32>>>()?;
            Ok((Targets::Values(values), Vec::new()))
        }
        LabelKind::Classes(known) => {
            let classes = match known {
                Some(k) => k.clone(),
                None => sorted_classes(labels.iter().copied()),
            };
            let ids = labels
                .iter()
                .zip(rows)
                .map(|(cell, (line, _))| class_id(path, *line, cell, &classes))
                .collect::<Result<Vec<u32>>>()?;
            Ok((Targets::Classes(ids), classes))
        }
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
        parse_csv(Path::new("t.csv"), text, opts)
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
