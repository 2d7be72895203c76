//! The thin PyO3 layer: extract views, release the GIL, run the engine in its pool, map
//! errors. No selection logic lives here.

mod arrays;
mod detached;
mod errors;

use numpy::{IntoPyArray, PyArray1, PyArray3, PyReadonlyArray1};
use pyo3::prelude::*;

use crate::engine::{self, pool, Box3, MapJob, Noise, Scores, VolumeJob};
use arrays::{open_sources, SourceData};
use detached::run_detached;
use errors::to_py_err;

type BoxTuple = (usize, usize, usize, usize, usize, usize);
type TakenTuple = (usize, usize, usize, usize, usize, usize, f64, f64);

fn box_from_tuple(t: BoxTuple) -> engine::Result<Box3> {
    Box3::new([t.0, t.1, t.2], [t.3, t.4, t.5])
}

fn check_len(what: &str, got: usize, expected: usize) -> PyResult<()> {
    if got != expected {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "{what} has {got} entries but there are {expected} volumes/maps; expected one per map"
        )));
    }
    Ok(())
}

#[pyfunction]
#[pyo3(signature = (volumes, patch_size, stride, quotas, noise, annotated))]
fn select_strata(
    py: Python<'_>,
    volumes: Vec<Vec<Bound<'_, PyAny>>>,
    patch_size: (usize, usize, usize),
    stride: (usize, usize, usize),
    quotas: Vec<Vec<usize>>,
    noise: Vec<Vec<Option<(f64, u64, u64)>>>,
    annotated: Vec<Vec<BoxTuple>>,
) -> PyResult<Vec<Vec<Vec<TakenTuple>>>> {
    check_len("quotas", quotas.len(), volumes.len())?;
    check_len("noise", noise.len(), volumes.len())?;
    check_len("annotated", annotated.len(), volumes.len())?;
    for (v, maps) in volumes.iter().enumerate() {
        check_len(&format!("quotas[{v}]"), quotas[v].len(), maps.len())?;
        check_len(&format!("noise[{v}]"), noise[v].len(), maps.len())?;
    }
    let annotated: Vec<Vec<Box3>> = annotated
        .into_iter()
        .map(|boxes| boxes.into_iter().map(box_from_tuple).collect())
        .collect::<engine::Result<_>>()
        .map_err(to_py_err)?;
    let names: Vec<Vec<String>> = volumes
        .iter()
        .enumerate()
        .map(|(v, maps)| {
            (0..maps.len())
                .map(|k| format!("volumes[{v}][{k}]"))
                .collect()
        })
        .collect();
    let sources: Vec<Vec<SourceData>> = volumes
        .iter()
        .zip(&names)
        .map(|(maps, names)| open_sources(maps, names))
        .collect::<PyResult<_>>()?;
    let patch = [patch_size.0, patch_size.1, patch_size.2];
    let stride = [stride.0, stride.1, stride.2];
    let jobs: Vec<VolumeJob> = sources
        .iter()
        .enumerate()
        .map(|(v, maps)| VolumeJob {
            maps: maps
                .iter()
                .enumerate()
                .map(|(k, source)| MapJob {
                    name: source.name.clone(),
                    scores: source.scores(),
                    noise: noise[v][k].map(|(beta, seed, stream)| Noise { beta, seed, stream }),
                    quota: quotas[v][k],
                })
                .collect(),
            annotated: annotated[v].clone(),
        })
        .collect();
    let result = run_detached(py, |cancel| {
        engine::select_volumes(&jobs, patch, stride, cancel)
    })?;
    Ok(result
        .into_iter()
        .map(|maps| {
            maps.into_iter()
                .map(|taken| {
                    taken
                        .into_iter()
                        .map(|t| {
                            let (s, d) = (t.patch.start, t.patch.size);
                            (s[0], s[1], s[2], d[0], d[1], d[2], t.mean, t.key)
                        })
                        .collect()
                })
                .collect()
        })
        .collect())
}

#[pyfunction]
fn box_means<'py>(
    py: Python<'py>,
    scores: Bound<'py, PyAny>,
    patch_size: (usize, usize, usize),
    stride: (usize, usize, usize),
) -> PyResult<Bound<'py, PyArray3<f64>>> {
    let sources = open_sources(&[scores], &["scores".to_string()])?;
    let source = &sources[0];
    let scores: Scores = source.scores();
    let name = source.name.clone();
    let patch = [patch_size.0, patch_size.1, patch_size.2];
    let stride = [stride.0, stride.1, stride.2];
    let means = run_detached(py, |cancel| {
        engine::strata::box_means_of(&name, &scores, patch, stride, cancel)
    })?;
    Ok(means.into_pyarray(py))
}

#[pyfunction]
fn stream_id(case: &str, r#loop: i64, stratum: i64) -> u64 {
    engine::noise::stream_id(case, r#loop, stratum)
}

#[pyfunction]
fn gumbel<'py>(
    py: Python<'py>,
    seed: u64,
    stream: u64,
    indices: PyReadonlyArray1<'py, u64>,
) -> Bound<'py, PyArray1<f64>> {
    indices
        .as_array()
        .mapv(|i| engine::noise::gumbel(seed, stream, i))
        .into_pyarray(py)
}

#[pyfunction]
fn num_threads() -> usize {
    pool::num_threads()
}

#[pymodule]
fn _clasp_rs(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(select_strata, m)?)?;
    m.add_function(wrap_pyfunction!(box_means, m)?)?;
    m.add_function(wrap_pyfunction!(stream_id, m)?)?;
    m.add_function(wrap_pyfunction!(gumbel, m)?)?;
    m.add_function(wrap_pyfunction!(num_threads, m)?)?;
    Ok(())
}
