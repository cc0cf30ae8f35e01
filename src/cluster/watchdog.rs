//! The stall watchdog: a thread that notices when this rank has waited in one collective for
//! too long (another rank stopped, stuck in a hung file system, or cut off from the network)
//! and then ends the job with a message saying where this rank waited: the collective, the
//! phase of the command, the epoch, mini-batch and layer.
//!
//! The communicator marks every collective ([`waiting`]); the command and the engine say where
//! the rank is ([`set_phase`], [`set_position`], [`set_layer`]). All of it is a few relaxed
//! atomic stores, so the marks cost nothing measurable; the thread wakes a few times per
//! timeout.

use super::rollcall::State;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Milliseconds since [`clock`]'s start at which the collective in flight began, plus 1; 0
/// when this rank is not in a collective.
static SINCE: AtomicU64 = AtomicU64::new(0);
/// The collective in flight and the values it moves.
static OP: Mutex<(&str, usize)> = Mutex::new(("", 0));
/// The phase of the command, and whether rank 0 works alone in it (reads or writes files
/// while the others wait), which takes [`IO_FACTOR`] times the timeout.
static PHASE: Mutex<(&str, bool)> = Mutex::new(("starting", false));
/// Epoch and mini-batch (1-based; 0: none) and layer (`usize::MAX`: none).
static EPOCH: AtomicUsize = AtomicUsize::new(0);
static BATCH: AtomicUsize = AtomicUsize::new(0);
static LAYER: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Whether a watchdog thread runs (only then is the collective's name recorded).
static WATCHING: AtomicBool = AtomicBool::new(false);

/// A phase in which rank 0 reads or writes files while the other ranks wait may take this
/// many times the timeout before the watchdog fires (a large data set on a slow file system
/// is not a stall).
pub const IO_FACTOR: u32 = 6;

fn clock() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    clock().elapsed().as_millis() as u64
}

/// Marks this rank as waiting in collective `op` moving `values` values until the guard is
/// dropped.
pub fn waiting(op: &'static str, values: usize) -> Waiting {
    if WATCHING.load(Relaxed) {
        if let Ok(mut current) = OP.lock() {
            *current = (op, values);
        }
        SINCE.store(now_ms() + 1, Relaxed);
    }
    Waiting
}

/// The mark of a collective in flight; dropping it ends the wait.
pub struct Waiting;

impl Drop for Waiting {
    fn drop(&mut self) {
        SINCE.store(0, Relaxed);
    }
}

/// The phase of the command (e.g. "training"); `rank0_io`: rank 0 reads or writes files in
/// it while the others wait. Clears the epoch, mini-batch and layer.
pub fn set_phase(phase: &'static str, rank0_io: bool) {
    if let Ok(mut current) = PHASE.lock() {
        *current = (phase, rank0_io);
    }
    set_position(0, 0);
    LAYER.store(usize::MAX, Relaxed);
}

/// The epoch and mini-batch being trained (1-based).
pub fn set_position(epoch: usize, batch: usize) {
    EPOCH.store(epoch, Relaxed);
    BATCH.store(batch, Relaxed);
}

/// The layer the engine is working on (0-based).
pub fn set_layer(layer: usize) {
    LAYER.store(layer, Relaxed);
}

/// Where this rank is: "training, epoch 3, mini-batch 17, layer 2".
fn position() -> String {
    let (phase, _) = PHASE.lock().map(|p| *p).unwrap_or(("?", false));
    let mut at = phase.to_string();
    let (epoch, batch, layer) = (
        EPOCH.load(Relaxed),
        BATCH.load(Relaxed),
        LAYER.load(Relaxed),
    );
    if epoch > 0 {
        at += &format!(", epoch {epoch}, mini-batch {batch}");
    }
    if layer != usize::MAX {
        at += &format!(", layer {}", layer + 1);
    }
    at
}

/// How long this rank has waited in the collective in flight, and the description of the
/// wait, when that is longer than `timeout` (`IO_FACTOR` × `timeout` in a phase where rank 0
/// works alone).
fn stalled(timeout: Duration) -> Option<(Duration, String)> {
    let State::Waiting { waited, what } = state() else {
        return None;
    };
    let rank0_io = PHASE.lock().map(|p| p.1).unwrap_or(false);
    let limit = if rank0_io {
        timeout * IO_FACTOR
    } else {
        timeout
    };
    (waited > limit).then_some((waited, what))
}

/// Where this rank is now, for the roll call of a stalled job: in a collective (since when
/// and which), or elsewhere (the phase and position).
pub fn state() -> State {
    let since = SINCE.load(Relaxed);
    if since == 0 {
        return State::Elsewhere { at: position() };
    }
    let (op, values) = OP.lock().map(|o| *o).unwrap_or(("?", 0));
    State::Waiting {
        waited: Duration::from_millis(now_ms().saturating_sub(since - 1)),
        what: format!("{op} of {values} values ({})", position()),
    }
}

/// How long a wait lasts before the watchdog looks into it ([`start`]'s `on_long_wait`):
/// [`NOTICE_AFTER`], or half the timeout when that is shorter.
pub const NOTICE_AFTER: Duration = Duration::from_secs(5);

/// Starts the watchdog thread. When this rank has waited in one collective for
/// [`NOTICE_AFTER`] (or half the timeout), `on_long_wait` is called once for that wait with
/// the time waited and where (to find out why, without ending anything); when the wait passes
/// `timeout`, `on_stall` is called the same way (it should end the job).
pub fn start(
    timeout: Duration,
    on_long_wait: impl Fn(Duration, String) + Send + 'static,
    on_stall: impl Fn(Duration, String) + Send + 'static,
) {
    clock();
    WATCHING.store(true, Relaxed);
    let notice = NOTICE_AFTER.min(timeout / 2);
    let poll = (notice / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let spawned = std::thread::Builder::new()
        .name("nnmpi-watchdog".into())
        .spawn(move || {
            let mut last = now_ms();
            // The wait (its start, as in SINCE) `on_long_wait` was last called for.
            let mut noticed = 0;
            loop {
                std::thread::sleep(poll);
                // A process that was itself stopped (SIGSTOP, a suspended job) did not wait for
                // anyone while it was: leave that time out of the wait.
                let now = now_ms();
                let frozen = now.saturating_sub(last + 2 * poll.as_millis() as u64 + 1000);
                last = now;
                if frozen > 0 {
                    let since = SINCE.load(Relaxed);
                    if since > 0 {
                        let _ = SINCE.compare_exchange(since, since + frozen, Relaxed, Relaxed);
                    }
                }
                if let Some((waited, what)) = stalled(timeout) {
                    on_stall(waited, what);
                    return;
                }
                let since = SINCE.load(Relaxed);
                if since != noticed
                    && let Some((waited, what)) = stalled(notice)
                {
                    noticed = since;
                    on_long_wait(waited, what);
                    // The time spent in it was this thread's, not a frozen process's.
                    last = now_ms();
                }
            }
        });
    if let Err(e) = spawned {
        eprintln!("warning: the stall watchdog could not start: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_longer_than_the_timeout_is_reported_with_where_it_happened() {
        WATCHING.store(true, Relaxed);
        set_phase("training", false);
        set_position(3, 17);
        set_layer(1);
        assert!(stalled(Duration::from_millis(1)).is_none(), "not waiting");
        let guard = waiting("all_gather", 4096);
        std::thread::sleep(Duration::from_millis(30));
        let (waited, what) = stalled(Duration::from_millis(10)).expect("a stall");
        assert!(waited >= Duration::from_millis(30));
        // (Engines of tests running beside this one set the layer too.)
        assert!(
            what.starts_with("all_gather of 4096 values (training, epoch 3, mini-batch 17, layer "),
            "{what}"
        );
        assert!(
            stalled(Duration::from_secs(60)).is_none(),
            "within the timeout"
        );
        // Rank 0 reading files: the others may wait IO_FACTOR times longer.
        set_phase("loading the data on rank 0", true);
        assert!(stalled(Duration::from_secs(1)).is_none());
        assert!(stalled(Duration::from_millis(1)).is_some());
        drop(guard);
        assert!(
            stalled(Duration::from_millis(1)).is_none(),
            "the wait ended"
        );
    }
}
