//! Engine errors → the exception classes of `clasp_rs.exceptions` (one mapping, here).

use pyo3::exceptions::{
    PyFileNotFoundError, PyKeyboardInterrupt, PyOSError, PyPermissionError, PyValueError,
};
use pyo3::prelude::*;

use crate::engine::EngineError;

/// An instance of `clasp_rs.exceptions.<class_name>` carrying `message`.
pub fn clasp_exception(class_name: &str, message: String) -> PyErr {
    Python::attach(|py| {
        match py
            .import("clasp_rs.exceptions")
            .and_then(|m| m.getattr(class_name))
            .and_then(|cls| cls.call1((message.clone(),)))
        {
            Ok(instance) => PyErr::from_value(instance),
            // The package is always importable when the extension is; keep the message anyway.
            Err(_) => PyValueError::new_err(message),
        }
    })
}

pub fn to_py_err(err: EngineError) -> PyErr {
    let message = err.to_string();
    match err {
        EngineError::InvalidScores(_) => clasp_exception("InvalidScoresError", message),
        EngineError::InvalidPatch(_) => clasp_exception("InvalidPatchError", message),
        EngineError::InvalidArgument(_) => PyValueError::new_err(message),
        EngineError::Cancelled => {
            PyKeyboardInterrupt::new_err("the clasp-rs engine call was cancelled")
        }
        EngineError::NpyFormat { .. } => clasp_exception("NpyFormatError", message),
        EngineError::Io { source, .. } => match source.kind() {
            std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(message),
            std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err(message),
            _ => PyOSError::new_err(message),
        },
    }
}
