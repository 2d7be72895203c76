//! The engine's one error type. The binding maps each variant to one Python exception.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Score values or their container are unusable (NaN, dimensionality, dtype, sign).
    #[error("{0}")]
    InvalidScores(String),
    /// Patch size, stride, count or an annotated box is invalid.
    #[error("{0}")]
    InvalidPatch(String),
    /// Any other invalid argument (noise parameters, mismatched argument lengths).
    #[error("{0}")]
    InvalidArgument(String),
    /// A `.npy` file is corrupt, truncated or of an unsupported dtype.
    #[error("{path}: {message}")]
    NpyFormat { path: PathBuf, message: String },
    /// The caller cancelled the call (Ctrl-C).
    #[error("cancelled")]
    Cancelled,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, EngineError>;
