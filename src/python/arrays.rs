//! Score sources from Python: numpy arrays of float16/32/64 in any layout, or `.npy` paths.

use std::path::PathBuf;

use half::f16;
use numpy::{PyArrayDescrMethods, PyReadonlyArray3, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;

use super::errors::{clasp_error, to_py_err, ErrorClass};
use crate::engine::npy::NpyFile;
use crate::engine::{ScoreView, Scores};

enum Holder<'py> {
    F16(PyReadonlyArray3<'py, f16>),
    F32(PyReadonlyArray3<'py, f32>),
    F64(PyReadonlyArray3<'py, f64>),
    File(NpyFile),
}

/// A score map held for the duration of one engine call.
pub struct SourceData<'py> {
    pub name: String,
    holder: Holder<'py>,
}

impl SourceData<'_> {
    pub fn scores(&self) -> Scores<'_> {
        match &self.holder {
            Holder::F16(a) => Scores::from_view(ScoreView::F16(a.as_array())),
            Holder::F32(a) => Scores::from_view(ScoreView::F32(a.as_array())),
            Holder::F64(a) => Scores::from_view(ScoreView::F64(a.as_array())),
            Holder::File(f) => Scores::from_file(f),
        }
    }
}

fn open_source<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<SourceData<'py>> {
    if let Ok(array) = obj.cast::<PyUntypedArray>() {
        let shape = array.shape().to_vec();
        if array.ndim() != 3 {
            return Err(clasp_error(
                ErrorClass::InvalidScores,
                format!(
                    "{name} has {} dimensions (shape {shape:?}); expected 3 (Z, Y, X)",
                    array.ndim()
                ),
            ));
        }
        let dtype = array.dtype();
        let dtype_name = dtype.str()?.to_string();
        let holder = if dtype.kind() == b'f' && dtype.byteorder() == b'>' {
            return Err(clasp_error(
                ErrorClass::InvalidScores,
                format!(
                    "{name} has big-endian dtype {dtype_name}; expected native byte order \
                     float16/float32/float64 (use arr.astype('=f4'))"
                ),
            ));
        } else if let Ok(a) = obj.extract::<PyReadonlyArray3<f32>>() {
            Holder::F32(a)
        } else if let Ok(a) = obj.extract::<PyReadonlyArray3<f64>>() {
            Holder::F64(a)
        } else if let Ok(a) = obj.extract::<PyReadonlyArray3<f16>>() {
            Holder::F16(a)
        } else {
            return Err(clasp_error(
                ErrorClass::InvalidScores,
                format!(
                    "{name} has unsupported dtype {dtype_name}; expected float16/float32/float64"
                ),
            ));
        };
        return Ok(SourceData {
            name: name.to_string(),
            holder,
        });
    }
    if let Ok(path) = obj.extract::<PathBuf>() {
        let file = NpyFile::open(&path).map_err(to_py_err)?;
        return Ok(SourceData {
            name: path.display().to_string(),
            holder: Holder::File(file),
        });
    }
    Err(clasp_error(
        ErrorClass::InvalidScores,
        format!(
            "{name} is a {}; expected a numpy array (Z, Y, X) or the path of a .npy file",
            obj.get_type().name()?
        ),
    ))
}

/// Opens every map of one volume (memory-mapping `.npy` paths), naming each for errors.
pub fn open_sources<'py>(
    objs: &[Bound<'py, PyAny>],
    names: &[String],
) -> PyResult<Vec<SourceData<'py>>> {
    objs.iter()
        .zip(names)
        .map(|(obj, name)| open_source(obj, name))
        .collect()
}
