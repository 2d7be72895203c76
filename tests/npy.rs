//! `.npy` files: every supported version, dtype and order; every malformed file is an error.

use std::io::Write;
use std::path::{Path, PathBuf};

use ndarray::Array3;

use _clasp_rs::engine::npy::NpyFile;
use _clasp_rs::engine::{select_volumes, Cancel, EngineError, MapJob, Scores, VolumeJob};

/// Writes a .npy file the way numpy.save does (header padded to a multiple of 64).
fn write_npy(path: &Path, version: u8, descr: &str, fortran: bool, shape: &[usize], data: &[u8]) {
    let shape_text = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(std::string::ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let dict = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape_text}, }}",
        if fortran { "True" } else { "False" }
    );
    let prefix = if version == 1 { 10 } else { 12 };
    let total = (prefix + dict.len() + 1).div_ceil(64) * 64;
    let header = format!("{dict}{}\n", " ".repeat(total - prefix - dict.len() - 1));
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(b"\x93NUMPY").unwrap();
    f.write_all(&[version, 0]).unwrap();
    if version == 1 {
        f.write_all(&(header.len() as u16).to_le_bytes()).unwrap();
    } else {
        f.write_all(&(header.len() as u32).to_le_bytes()).unwrap();
    }
    f.write_all(header.as_bytes()).unwrap();
    f.write_all(data).unwrap();
}

fn sample() -> Array3<f32> {
    Array3::from_shape_fn((6, 5, 7), |(z, y, x)| {
        ((z * 31 + y * 7 + x * 3) % 13) as f32 / 4.0
    })
}

fn select(path: &Path) -> Result<Vec<[usize; 3]>, EngineError> {
    let file = NpyFile::open(path)?;
    let jobs = [VolumeJob {
        maps: vec![MapJob {
            name: path.display().to_string(),
            scores: Scores::from_file(&file),
            noise: None,
            quota: 4,
        }],
        annotated: Vec::new(),
    }];
    Ok(
        select_volumes(&jobs, [2, 3, 2], [1, 1, 1], &Cancel::default())?[0][0]
            .iter()
            .map(|t| t.patch.start)
            .collect(),
    )
}

fn tmp(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    (dir, path)
}

#[test]
fn every_version_dtype_and_order_selects_the_same_patches() {
    let vol = sample();
    let (_dir, reference_path) = tmp("ref.npy");
    let c_bytes: Vec<u8> = vol.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy(&reference_path, 1, "<f4", false, &[6, 5, 7], &c_bytes);
    let expected = select(&reference_path).unwrap();
    assert_eq!(expected.len(), 4);

    let f_order: Vec<f32> = vol.t().iter().copied().collect();
    for version in [1u8, 2, 3] {
        for (descr, c, f) in [
            (
                "<f2",
                vol.iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect::<Vec<u8>>(),
                f_order
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect::<Vec<u8>>(),
            ),
            (
                "<f4",
                c_bytes.clone(),
                f_order.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            (
                "<f8",
                vol.iter()
                    .flat_map(|v| f64::from(*v).to_le_bytes())
                    .collect(),
                f_order
                    .iter()
                    .flat_map(|v| f64::from(*v).to_le_bytes())
                    .collect(),
            ),
        ] {
            let (_d1, path) = tmp("c.npy");
            write_npy(&path, version, descr, false, &[6, 5, 7], &c);
            assert_eq!(
                select(&path).unwrap(),
                expected,
                "v{version} {descr} C order"
            );
            let (_d2, path) = tmp("f.npy");
            write_npy(&path, version, descr, true, &[6, 5, 7], &f);
            assert_eq!(
                select(&path).unwrap(),
                expected,
                "v{version} {descr} Fortran order"
            );
        }
    }
}

fn error_of(path: &Path) -> String {
    select(path).unwrap_err().to_string()
}

#[test]
fn malformed_files_are_named_errors() {
    let (_dir, path) = tmp("x.npy");
    let data: Vec<u8> = sample().iter().flat_map(|v| v.to_le_bytes()).collect();

    write_npy(&path, 1, "<f4", false, &[6, 5, 7], &data[..data.len() - 8]);
    assert!(error_of(&path).contains("truncated"), "{}", error_of(&path));

    write_npy(&path, 1, ">f4", false, &[6, 5, 7], &data);
    assert!(error_of(&path).contains("big-endian"));

    write_npy(&path, 1, "<i8", false, &[6, 5, 7], &[0u8; 6 * 5 * 7 * 8]);
    assert!(error_of(&path).contains("float16/float32/float64"));

    write_npy(&path, 1, "|O", false, &[6, 5, 7], &data);
    assert!(error_of(&path).contains("unsupported dtype"));

    write_npy(&path, 1, "<f4", false, &[30, 7], &data[..30 * 7 * 4]);
    assert!(error_of(&path).contains("expected 3 (Z, Y, X)"));

    write_npy(&path, 4, "<f4", false, &[6, 5, 7], &data);
    assert!(error_of(&path).contains("format version"));

    std::fs::write(&path, b"PK\x03\x04 a zip, not an npy").unwrap();
    assert!(error_of(&path).contains("not a .npy file"));

    std::fs::write(&path, b"").unwrap();
    assert!(error_of(&path).contains("empty"));

    std::fs::write(&path, b"\x93NUMPY\x01\x00\xff\x00{'descr'").unwrap();
    assert!(error_of(&path).contains("truncated header"));

    let missing = path.with_file_name("missing.npy");
    match select(&missing) {
        Err(EngineError::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected a not-found error, got {other:?}"),
    }
}

#[test]
fn releasing_planes_never_changes_what_is_read() {
    let vol = sample();
    let (_dir, path) = tmp("r.npy");
    let data: Vec<u8> = vol.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy(&path, 1, "<f4", false, &[6, 5, 7], &data);
    let before = select(&path).unwrap();
    let file = NpyFile::open(&path).unwrap();
    file.release_planes(0..6);
    assert_eq!(select(&path).unwrap(), before);
}
