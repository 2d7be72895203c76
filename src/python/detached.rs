//! The one way the binding runs engine work: inside the crate's pool, with the GIL released,
//! errors mapped, and Ctrl-C honoured.

use std::sync::mpsc;
use std::time::Duration;

use pyo3::prelude::*;

use super::errors::to_py_err;
use crate::engine::{self, pool, Cancel};

/// How often the waiting thread takes the GIL back to let Python see pending signals.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// Runs `work` on the engine's pool while the calling thread waits without the GIL. A
/// signal handler that raises (Ctrl-C → `KeyboardInterrupt`) cancels the work, which stops
/// at its next check, and that exception is returned.
pub fn run_detached<T: Send>(
    py: Python<'_>,
    work: impl FnOnce(&Cancel) -> engine::Result<T> + Send,
) -> PyResult<T> {
    let cancel = Cancel::default();
    let mut interrupted: Option<PyErr> = None;
    let result = std::thread::scope(|scope| {
        let (done, finished) = mpsc::channel();
        let cancel = &cancel;
        scope.spawn(move || {
            // The receiver outlives this thread (it is joined at the end of the scope).
            let _ = done.send(pool::install(|| work(cancel)));
        });
        let mut finished = finished;
        loop {
            // The receiver is Send but not Sync: move it into the GIL-free wait and back.
            let (outcome, receiver) =
                py.detach(move || (finished.recv_timeout(SIGNAL_POLL), finished));
            finished = receiver;
            match outcome {
                Ok(result) => break result,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if interrupted.is_none() {
                        if let Err(err) = py.check_signals() {
                            cancel.request();
                            interrupted = Some(err);
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // The worker panicked; the scope re-raises the panic when it joins.
                    break Err(engine::EngineError::Cancelled);
                }
            }
        }
    });
    match (interrupted, result) {
        (Some(err), _) => Err(err),
        (None, result) => result.map_err(to_py_err),
    }
}
