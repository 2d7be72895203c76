//! Score volumes as the engine sees them: a typed 3D view plus, for memory-mapped files, a
//! way to hand finished planes back to the page cache.

use half::f16;
use ndarray::ArrayView3;

use super::npy::NpyFile;

/// A score element type the engine reads.
pub trait Element: Copy + Send + Sync + 'static {
    fn to_f64(self) -> f64;
}

impl Element for f16 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        f16::to_f64(self)
    }
}

impl Element for f32 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Element for f64 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
}

/// A (Z, Y, X) score volume of any supported dtype and any memory layout.
#[derive(Clone, Copy, Debug)]
pub enum ScoreView<'a> {
    F16(ArrayView3<'a, f16>),
    F32(ArrayView3<'a, f32>),
    F64(ArrayView3<'a, f64>),
}

impl ScoreView<'_> {
    pub fn shape(&self) -> [usize; 3] {
        let s = match self {
            ScoreView::F16(a) => a.shape(),
            ScoreView::F32(a) => a.shape(),
            ScoreView::F64(a) => a.shape(),
        };
        [s[0], s[1], s[2]]
    }
}

/// Calls `$body` with `$view` bound to the typed `ArrayView3` inside a [`ScoreView`], so
/// that generic code is monomorphised once per dtype.
macro_rules! with_typed_view {
    ($scores:expr, $view:ident => $body:expr) => {
        match $scores {
            $crate::engine::volume::ScoreView::F16($view) => $body,
            $crate::engine::volume::ScoreView::F32($view) => $body,
            $crate::engine::volume::ScoreView::F64($view) => $body,
        }
    };
}
pub(crate) use with_typed_view;

/// One score map handed to the engine.
#[derive(Clone, Copy)]
pub struct Scores<'a> {
    pub view: ScoreView<'a>,
    /// Set when the view is a memory-mapped `.npy`: planes already consumed are released
    /// so that resident memory stays near the working set, not the file size.
    pub file: Option<&'a NpyFile>,
}

impl<'a> Scores<'a> {
    pub fn from_view(view: ScoreView<'a>) -> Self {
        Scores { view, file: None }
    }

    pub fn from_file(file: &'a NpyFile) -> Self {
        Scores {
            view: file.view(),
            file: Some(file),
        }
    }

    pub fn shape(&self) -> [usize; 3] {
        self.view.shape()
    }

    /// Tells the kernel planes `z_range` are no longer needed (no-op for in-memory arrays).
    pub fn release_planes(&self, z_range: std::ops::Range<usize>) {
        if let Some(file) = self.file {
            file.release_planes(z_range);
        }
    }
}
