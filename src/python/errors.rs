//! Engine errors → the exception classes of `clasp_rs.exceptions`, through one table that is
//! filled once when the module is imported (no class lookup by name when an error happens).

use pyo3::exceptions::{PyFileNotFoundError, PyKeyboardInterrupt, PyOSError, PyPermissionError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use crate::engine::EngineError;

/// The `clasp_rs.exceptions` classes the binding raises.
struct ErrorTable {
    invalid_scores: Py<PyType>,
    invalid_patch: Py<PyType>,
    npy_format: Py<PyType>,
}

static TABLE: PyOnceLock<ErrorTable> = PyOnceLock::new();

/// Which Python class an error is raised as.
#[derive(Clone, Copy, Debug)]
pub enum ErrorClass {
    /// `InvalidScoresError`: unusable score values or containers.
    InvalidScores,
    /// `InvalidPatchError`: patch size, stride, counts, beta, boxes or malformed job lists.
    InvalidPatch,
    /// `NpyFormatError`: a corrupt or unsupported `.npy` file.
    NpyFormat,
}

/// Fills the table; called once from the module initialiser.
pub fn init(py: Python<'_>) -> PyResult<()> {
    let exceptions = py.import("clasp_rs.exceptions")?;
    let class = |name: &str| -> PyResult<Py<PyType>> {
        Ok(exceptions.getattr(name)?.cast_into::<PyType>()?.unbind())
    };
    let table = ErrorTable {
        invalid_scores: class("InvalidScoresError")?,
        invalid_patch: class("InvalidPatchError")?,
        npy_format: class("NpyFormatError")?,
    };
    // A second initialisation (a re-imported module) keeps the first table: same classes.
    let _ = TABLE.set(py, table);
    Ok(())
}

/// An instance of the table's `class` carrying `message`.
pub fn clasp_error(class: ErrorClass, message: String) -> PyErr {
    Python::attach(|py| {
        let table = TABLE
            .get(py)
            .expect("the error table is filled when the module is imported");
        let cls = match class {
            ErrorClass::InvalidScores => &table.invalid_scores,
            ErrorClass::InvalidPatch => &table.invalid_patch,
            ErrorClass::NpyFormat => &table.npy_format,
        };
        PyErr::from_type(cls.bind(py).clone(), message)
    })
}

pub fn to_py_err(err: EngineError) -> PyErr {
    let message = err.to_string();
    match err {
        EngineError::InvalidScores(_) => clasp_error(ErrorClass::InvalidScores, message),
        // The engine's other argument errors (noise parameters) are patch-selection
        // arguments as much as beta is on the Python side.
        EngineError::InvalidPatch(_) | EngineError::InvalidArgument(_) => {
            clasp_error(ErrorClass::InvalidPatch, message)
        }
        EngineError::Cancelled => {
            PyKeyboardInterrupt::new_err("the clasp-rs engine call was cancelled")
        }
        EngineError::NpyFormat { .. } => clasp_error(ErrorClass::NpyFormat, message),
        EngineError::Io { source, .. } => match source.kind() {
            std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(message),
            std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err(message),
            _ => PyOSError::new_err(message),
        },
    }
}
