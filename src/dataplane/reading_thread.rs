//! The thread the periodic repair reads the kernel on: its own, at a lower CPU priority, with
//! its own tokio runtime and sockets.
//!
//! Why: at 10,000 Services the repair's read is 30,000 IPVS destination dumps and a listing of
//! 90,000 nftables elements, a CPU's worth of work for minutes in a slow VM, every sync period.
//! On the syncs' runtime it competed for the CPU with the changes arriving meanwhile (the API
//! watch, the sync, and the API server beside ipvsd). On a thread of its own the kernel's share of a dump
//! (done in the reading thread's `recvmsg`) and `nft` (its child) run at the lower priority too;
//! and the IPVS read pauses between short stretches of work ([`READING_STRETCH`]), since a
//! lower priority orders only one machine's work.

use std::future::Future;
use std::io;
use std::time::Duration;

/// How many nice steps below the rest of ipvsd the repair's reading thread runs (19 is the
/// lowest priority): low enough that the syncs, the API watch and the API server beside ipvsd
/// come first, high enough that a busy node still gets the read done within a few sync periods.
pub const READING_NICE_STEPS: i32 = 10;

/// How the repair's read shares the CPU: after each stretch of work of at least this long it
/// pauses as long again, so it is busy half the time at most and never for long at once.
///
/// Why: a lower priority only orders the work of one machine. The read's CPU still goes to it
/// when the node's other work waits elsewhere (in the test bed the API server runs beside the
/// VM's two vCPUs on a two-core host). Pausing gives the CPU back in short slices, whoever
/// needs it. Measured there, neither the priority nor the pauses shortened the slowest changes
/// (250–350 ms before their sync began, with or without them: the README's Performance
/// section); what they bound is the read's share of a CPU.
pub const READING_STRETCH: Duration = Duration::from_millis(2);

/// Runs `work` on a new thread at a priority [`READING_NICE_STEPS`] below the caller's, on a
/// runtime of its own (so sockets and child processes opened by `work` belong to it), and
/// resolves to its output. Fails when the thread could not be started or ended without one.
pub fn on_reading_thread<T, F, Fut>(work: F) -> impl Future<Output = io::Result<T>> + Send
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("ipvsd-repair".to_string())
        .spawn(move || {
            lower_priority(READING_NICE_STEPS);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            // The receiver goes away only when the repair was given up.
            let _ = tx.send(runtime.map(|runtime| runtime.block_on(work())));
        });
    async move {
        spawned?;
        rx.await
            .map_err(|_| io::Error::other("the repair's reading thread ended without an answer"))?
    }
}

/// Lowers the calling thread's priority by `steps` nice steps (Linux keeps a nice value per
/// thread; 19 is the lowest). Lowering one's own priority needs no privilege; should it fail,
/// the work runs at the usual priority.
fn lower_priority(steps: i32) {
    let thread = Some(rustix::thread::gettid());
    let lowered = rustix::process::getpriority_process(thread)
        .and_then(|nice| rustix::process::setpriority_process(thread, (nice + steps).min(19)));
    if let Err(e) = lowered {
        tracing::debug!(error = %e, steps, "could not lower the reading thread's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_priority() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid()))
            .expect("thread priority")
    }

    #[tokio::test]
    async fn work_runs_on_a_thread_of_lower_priority_only() {
        let before = own_priority();
        let (inside, name) = on_reading_thread(|| async {
            // A runtime of its own: timers work.
            tokio::time::sleep(Duration::from_millis(1)).await;
            (
                own_priority(),
                std::thread::current().name().map(str::to_string),
            )
        })
        .await
        .expect("an answer");
        assert_eq!(inside, (before + READING_NICE_STEPS).min(19));
        assert!(inside > before || before == 19);
        assert_eq!(name.as_deref(), Some("ipvsd-repair"));
        // The caller keeps its own.
        assert_eq!(own_priority(), before);
    }

    #[tokio::test]
    async fn work_that_panics_is_an_error_not_a_hang() {
        let answer: io::Result<()> = on_reading_thread(|| async { panic!("boom") }).await;
        let error = answer.unwrap_err();
        assert!(error.to_string().contains("without an answer"), "{error}");
    }
}
