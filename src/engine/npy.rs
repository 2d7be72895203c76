//! `.npy` score volumes, memory-mapped read-only (format versions 1.0, 2.0 and 3.0;
//! little-endian float16/float32/float64; C or Fortran order). Nothing is unpickled.

use std::fs::File;
use std::path::{Path, PathBuf};

use half::f16;
use memmap2::{Mmap, UncheckedAdvice};
use ndarray::{ArrayView3, ShapeBuilder};

use super::error::{EngineError, Result};
use super::volume::ScoreView;

const MAGIC: &[u8] = b"\x93NUMPY";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F16,
    F32,
    F64,
}

impl Dtype {
    pub fn size(self) -> usize {
        match self {
            Dtype::F16 => 2,
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }
}

/// What the header of a `.npy` file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyHeader {
    pub dtype: Dtype,
    pub fortran_order: bool,
    pub shape: Vec<usize>,
    /// Byte offset of the data.
    pub data_offset: usize,
}

/// A memory-mapped 3D `.npy` score volume.
pub struct NpyFile {
    path: PathBuf,
    map: Mmap,
    header: NpyHeader,
    shape: [usize; 3],
}

impl std::fmt::Debug for NpyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NpyFile")
            .field("path", &self.path)
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

fn format_error(path: &Path, message: impl Into<String>) -> EngineError {
    EngineError::NpyFormat {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Parses the header of a `.npy` file from its first bytes.
pub fn parse_header(path: &Path, bytes: &[u8]) -> Result<NpyHeader> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(format_error(
            path,
            "not a .npy file (the magic string \\x93NUMPY is missing); expected an array saved with numpy.save",
        ));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => {
            return Err(format_error(
                path,
                format!(
                    "unsupported .npy format version {major}.{minor}; expected 1.0, 2.0 or 3.0"
                ),
            ))
        }
    };
    let end = start + header_len;
    if bytes.len() < end {
        return Err(format_error(
            path,
            format!(
                "truncated header: it declares {header_len} bytes, the file has {}",
                bytes.len() - start
            ),
        ));
    }
    let text = std::str::from_utf8(&bytes[start..end])
        .map_err(|_| format_error(path, "corrupt header: not valid text"))?;
    let descr = dict_value(text, "descr")
        .and_then(quoted)
        .ok_or_else(|| format_error(path, format!("corrupt header: no 'descr' in {text:?}")))?;
    let dtype = match descr {
        "<f2" => Dtype::F16,
        "<f4" => Dtype::F32,
        "<f8" => Dtype::F64,
        ">f2" | ">f4" | ">f8" => {
            return Err(format_error(
                path,
                format!(
                    "big-endian dtype '{descr}' is not supported; expected little-endian \
                     float16/float32/float64 (save arr.astype('<f4'))"
                ),
            ))
        }
        other => {
            return Err(format_error(
                path,
                format!("unsupported dtype '{other}'; expected float16/float32/float64 ('<f2', '<f4', '<f8')"),
            ))
        }
    };
    let fortran_order = match dict_value(text, "fortran_order")
        .map(|v| v.split([',', '}']).next().unwrap_or("").trim())
    {
        Some("True") => true,
        Some("False") => false,
        _ => {
            return Err(format_error(
                path,
                format!("corrupt header: no fortran_order in {text:?}"),
            ))
        }
    };
    let shape = dict_value(text, "shape")
        .and_then(parse_tuple)
        .ok_or_else(|| format_error(path, format!("corrupt header: no valid shape in {text:?}")))?;
    Ok(NpyHeader {
        dtype,
        fortran_order,
        shape,
        data_offset: end,
    })
}

/// The text after `'key':` in a header dict.
fn dict_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let pattern = format!("'{key}':");
    let at = text.find(&pattern)? + pattern.len();
    Some(text[at..].trim_start())
}

fn quoted(value: &str) -> Option<&str> {
    let rest = value.strip_prefix('\'')?;
    Some(&rest[..rest.find('\'')?])
}

fn parse_tuple(value: &str) -> Option<Vec<usize>> {
    let rest = value.strip_prefix('(')?;
    let inner = &rest[..rest.find(')')?];
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse().ok())
        .collect()
}

impl NpyFile {
    /// Opens and memory-maps `path`, checking that it holds a complete 3D float volume.
    pub fn open(path: &Path) -> Result<NpyFile> {
        let io = |source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len() as usize;
        if len == 0 {
            return Err(format_error(path, "file is empty; expected a .npy array"));
        }
        // SAFETY: the map is read-only; a file truncated underneath us by another process
        // is outside what any reader of memory-mapped files can defend against.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let header = parse_header(path, &map[..map.len().min(1 << 20)])?;
        let shape: [usize; 3] = header.shape.as_slice().try_into().map_err(|_| {
            EngineError::InvalidScores(format!(
                "{}: score volume has {} dimensions (shape {:?}); expected 3 (Z, Y, X)",
                path.display(),
                header.shape.len(),
                header.shape
            ))
        })?;
        let expected = shape
            .iter()
            .try_fold(header.dtype.size(), |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format_error(path, format!("shape {shape:?} is too large")))?;
        let available = len - header.data_offset;
        if available < expected {
            return Err(format_error(
                path,
                format!(
                    "truncated: shape {shape:?} needs {expected} bytes of data, the file has {available}"
                ),
            ));
        }
        if header.data_offset % header.dtype.size() != 0 {
            return Err(format_error(
                path,
                format!(
                    "data offset {} is not aligned to the dtype; re-save with numpy.save",
                    header.data_offset
                ),
            ));
        }
        Ok(NpyFile {
            path: path.to_path_buf(),
            map,
            header,
            shape,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// A typed view of the data.
    #[allow(clippy::cast_ptr_alignment)] // checked in `open`
    pub fn view(&self) -> ScoreView<'_> {
        let bytes = &self.map[self.header.data_offset..];
        let shape = self.shape.set_f(self.header.fortran_order);
        // SAFETY: `open` checked length and alignment (the map itself is page-aligned), and
        // every bit pattern is a valid f16/f32/f64.
        unsafe {
            match self.header.dtype {
                Dtype::F16 => ScoreView::F16(ArrayView3::from_shape_ptr(
                    shape,
                    bytes.as_ptr().cast::<f16>(),
                )),
                Dtype::F32 => ScoreView::F32(ArrayView3::from_shape_ptr(
                    shape,
                    bytes.as_ptr().cast::<f32>(),
                )),
                Dtype::F64 => ScoreView::F64(ArrayView3::from_shape_ptr(
                    shape,
                    bytes.as_ptr().cast::<f64>(),
                )),
            }
        }
    }

    /// Drops the pages of planes `z_range` from this process's resident set (C order only:
    /// Fortran-order planes are not contiguous). They come back from the page cache if read
    /// again, so this only ever costs time, never correctness.
    pub fn release_planes(&self, z_range: std::ops::Range<usize>) {
        if self.header.fortran_order || z_range.is_empty() {
            return;
        }
        let plane_bytes = self.shape[1] * self.shape[2] * self.header.dtype.size();
        let page = 4096;
        let begin = self.header.data_offset + z_range.start * plane_bytes;
        let end = self.header.data_offset + z_range.end * plane_bytes;
        // Only whole pages inside the range, so neighbouring planes keep theirs.
        let begin = begin.div_ceil(page) * page;
        let end = end / page * page;
        if begin < end {
            // SAFETY: a read-only shared file mapping; MADV_DONTNEED only drops cached pages,
            // which are re-read from the file on the next access.
            let _ = unsafe {
                self.map
                    .unchecked_advise_range(UncheckedAdvice::DontNeed, begin, end - begin)
            };
        }
    }
}
