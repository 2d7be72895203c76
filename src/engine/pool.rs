//! The crate's own rayon pool, sized by `CLASP_RS_NUM_THREADS` (default: all cores).
//!
//! A pool's threads do not survive `fork()`: a child that used the parent's pool would wait
//! forever. The pool remembers the process that built it, and a forked child builds its own.

use std::sync::{Arc, Mutex};

use rayon::{ThreadPool, ThreadPoolBuilder};

pub const THREADS_ENV: &str = "CLASP_RS_NUM_THREADS";

static POOL: Mutex<Option<(u32, Arc<ThreadPool>)>> = Mutex::new(None);

fn configured_threads() -> usize {
    std::env::var(THREADS_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
}

fn pool() -> Arc<ThreadPool> {
    let pid = std::process::id();
    let mut slot = POOL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match slot.as_ref() {
        Some((owner, pool)) if *owner == pid => pool.clone(),
        _ => {
            // After a fork the parent's pool is unusable here; leak it rather than join
            // threads that do not exist in this process.
            if let Some(stale) = slot.take() {
                std::mem::forget(stale);
            }
            let pool = Arc::new(
                ThreadPoolBuilder::new()
                    .num_threads(configured_threads())
                    .thread_name(|i| format!("clasp-rs-{i}"))
                    .build()
                    .expect("building the clasp-rs thread pool"),
            );
            *slot = Some((pid, pool.clone()));
            pool
        }
    }
}

/// Runs `f` inside the crate's pool.
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    pool().install(f)
}

pub fn num_threads() -> usize {
    pool().current_num_threads()
}
