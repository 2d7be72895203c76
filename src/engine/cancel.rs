//! Cooperative cancellation: long engine calls check a token between planes and between
//! heap pops, so a caller (the Python binding, on Ctrl-C) can stop them early.

use std::sync::atomic::{AtomicBool, Ordering};

use super::error::{EngineError, Result};

#[derive(Debug, Default)]
pub struct Cancel(AtomicBool);

impl Cancel {
    pub fn request(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(Cancelled)` once cancellation was requested.
    pub fn check(&self) -> Result<()> {
        if self.is_requested() {
            Err(EngineError::Cancelled)
        } else {
            Ok(())
        }
    }
}
