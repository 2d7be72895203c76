//! The thin `PyO3` layer: extract views, release the GIL, run the engine in its pool, map
//! errors. No selection logic lives here.

mod arrays;
mod detached;
mod errors;

use numpy::{IntoPyArray, PyArray1, PyArray3, PyReadonlyArray1};
use pyo3::prelude::*;

use crate::engine::{self, pool, Box3, MapJob, Noise, Scores, VolumeJob};
use arrays::{open_sources, SourceData};
use detached::run_detached;
use errors::{clasp_error, to_py_err, ErrorClass};

type Triple = (usize, usize, usize);
type BoxTuple = (usize, usize, usize, usize, usize, usize);
/// `(start, size, index, mean, key)` of one taken patch.
type TakenTuple = (Triple, Triple, usize, f64, f64);

fn box_from_tuple(t: BoxTuple) -> engine::Result<Box3> {
    Box3::new([t.0, t.1, t.2], [t.3, t.4, t.5])
}

fn check_len(what: &str, got: usize, expected: usize) -> PyResult<()> {
    if got != expected {
        return Err(clasp_error(
            ErrorClass::InvalidPatch,
            format!(
                "{what} has {got} entries but there are {expected} volumes/maps; expected one per map"
            ),
        ));
    }
    Ok(())
}

/// How errors name map `k` of volume `v`: `names[v][k]` when given, else `volumes[v][k]`.
fn map_names(
    volumes: &[Vec<Bound<'_, PyAny>>],
    names: Option<Vec<Vec<String>>>,
) -> PyResult<Vec<Vec<String>>> {
    if let Some(names) = names {
        check_len("names", names.len(), volumes.len())?;
        for (v, maps) in volumes.iter().enumerate() {
            check_len(&format!("names[{v}]"), names[v].len(), maps.len())?;
        }
        return Ok(names);
    }
    Ok(volumes
        .iter()
        .enumerate()
        .map(|(v, maps)| {
            (0..maps.len())
                .map(|k| format!("volumes[{v}][{k}]"))
                .collect()
        })
        .collect())
}

#[pyfunction]
#[pyo3(signature = (volumes, patch_size, stride, quotas, noise, annotated, names=None))]
#[allow(clippy::too_many_arguments, clippy::needless_pass_by_value)]
fn select_strata(
    py: Python<'_>,
    volumes: Vec<Vec<Bound<'_, PyAny>>>,
    patch_size: Triple,
    stride: Triple,
    quotas: Vec<Vec<usize>>,
    noise: Vec<Vec<Option<(f64, u64, u64)>>>,
    annotated: Vec<Vec<BoxTuple>>,
    names: Option<Vec<Vec<String>>>,
) -> PyResult<Vec<Vec<Vec<TakenTuple>>>> {
    check_len("quotas", quotas.len(), volumes.len())?;
    check_len("noise", noise.len(), volumes.len())?;
    check_len("annotated", annotated.len(), volumes.len())?;
    for (v, maps) in volumes.iter().enumerate() {
        check_len(&format!("quotas[{v}]"), quotas[v].len(), maps.len())?;
        check_len(&format!("noise[{v}]"), noise[v].len(), maps.len())?;
    }
    let names = map_names(&volumes, names)?;
    let annotated: Vec<Vec<Box3>> = annotated
        .into_iter()
        .map(|boxes| boxes.into_iter().map(box_from_tuple).collect())
        .collect::<engine::Result<_>>()
        .map_err(to_py_err)?;
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
                            (
                                (s[0], s[1], s[2]),
                                (d[0], d[1], d[2]),
                                t.index,
                                t.mean,
                                t.key,
                            )
                        })
                        .collect()
                })
                .collect()
        })
        .collect())
}

#[pyfunction]
#[allow(clippy::needless_pass_by_value)]
fn box_means<'py>(
    py: Python<'py>,
    scores: Bound<'py, PyAny>,
    patch_size: Triple,
    stride: Triple,
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
#[allow(clippy::needless_pass_by_value)]
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
mod _clasp_rs {
    use pyo3::prelude::*;

    #[pymodule_export]
    use super::{box_means, gumbel, num_threads, select_strata, stream_id};

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        super::errors::init(m.py())
    }
}
