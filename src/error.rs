//! The library's one error type.

use std::path::PathBuf;

/// Everything the nnmpi library can fail with. Messages name the file, line or flag
/// involved and say what was expected.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O error on a named file.
    /// (The OS error is part of the message rather than a `source`, so that reports printing
    /// the source chain do not say it twice.)
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// Malformed input data (CSV, IDX): file, 1-based line (0 when not line-based) and message.
    #[error("{path}{}: {message}", line_suffix(*line))]
    Data {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A checkpoint file that cannot be trusted (wrong magic, version, checksum, size or shape).
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    /// A configuration that cannot work (incompatible layers, loss, settings).
    #[error("{0}")]
    Config(String),
    /// A parameter out of its range, named as the library calls it (`batch_size`, `grid`);
    /// front ends map the name to theirs (the command line to its flag).
    #[error("{name} {message}")]
    Parameter {
        /// The parameter, e.g. `batch_size`.
        name: &'static str,
        /// What is wrong, phrased to follow the name, e.g. "must be at least 1".
        message: String,
    },
    /// Parameters or statistics that are NaN or infinite (a model from a diverged run).
    #[error("{0}")]
    Numerical(String),
    /// Training diverged: the loss or the parameters blew up. The message advises a smaller
    /// learning rate and normalised inputs; front ends may phrase that advice in their terms.
    #[error("training diverged: {reason}; {DIVERGENCE_ADVICE}")]
    Diverged {
        /// What was seen, e.g. "the loss is NaN in epoch 3".
        reason: String,
    },
}

/// The advice [`Error::Diverged`] ends with.
pub const DIVERGENCE_ADVICE: &str = "try a smaller learning rate, or normalised inputs (z-scores)";

fn line_suffix(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(":{line}")
    }
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            cause: source,
        }
    }

    /// A data error at `path:line`.
    pub fn data(path: impl Into<PathBuf>, line: usize, message: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            line,
            message: message.into(),
        }
    }

    /// A checkpoint error for `path`.
    pub fn checkpoint(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.into(),
            message: message.into(),
        }
    }

    /// A parameter error: `name` (as the library calls it) and what is wrong with it.
    pub fn parameter(name: &'static str, message: impl Into<String>) -> Self {
        Error::Parameter {
            name,
            message: message.into(),
        }
    }

    /// A configuration error.
    pub fn config(message: impl Into<String>) -> Self {
        Error::Config(message.into())
    }
}

/// Result with the library's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
