//! Preemption: SIGTERM (what a batch system sends before it kills a job), SIGUSR1 (what
//! `#SBATCH --signal=USR1@120` sends ahead of the time limit) and SIGINT (Ctrl-C) ask
//! `nnmpi train` to stop at the next mini-batch on which every rank agrees, write its
//! checkpoint and exit with [`EXIT_PREEMPTED`]. A second signal ends the process at once, as
//! if nnmpi had not caught the first.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Exit status of a run stopped by a signal after saving its checkpoint: 75, `EX_TEMPFAIL`
/// of `sysexits.h` ("temporary failure; the user is invited to retry"). A job script requeues
/// on it and runs the same command with `--resume auto`.
pub const EXIT_PREEMPTED: i32 = 75;

/// The signals that ask for a clean stop.
const STOP_SIGNALS: [(i32, &str); 3] = [
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGUSR1, "SIGUSR1"),
    (libc::SIGINT, "SIGINT"),
];

/// Handlers of the stop signals while training runs. Dropping it does not restore the
/// signals' default handling (a handler cannot be uninstalled safely) but arms it: from then
/// on a stop signal ends the process at once (unless [`StopSignals::keep_catching`]).
pub struct StopSignals {
    /// The number of the last stop signal received (0: none).
    received: Arc<AtomicUsize>,
    /// Set by the first stop signal; when set, the next one takes the default action.
    asked: Arc<AtomicBool>,
    /// Whether dropping arms the default action.
    arm_on_drop: bool,
}

impl StopSignals {
    /// Catches the stop signals from now until the value is dropped.
    pub fn install() -> anyhow::Result<Self> {
        let received = Arc::new(AtomicUsize::new(0));
        let asked = Arc::new(AtomicBool::new(false));
        for (signal, name) in STOP_SIGNALS {
            let register = || -> std::io::Result<()> {
                // Order matters: the default action is checked before the flag is set, so
                // only a second signal finds it set.
                signal_hook::flag::register_conditional_default(signal, asked.clone())?;
                signal_hook::flag::register(signal, asked.clone())?;
                signal_hook::flag::register_usize(signal, received.clone(), signal as usize)?;
                Ok(())
            };
            register().map_err(|e| anyhow::anyhow!("cannot install a handler for {name}: {e}"))?;
        }
        Ok(StopSignals {
            received,
            asked,
            arm_on_drop: true,
        })
    }

    /// Leaves the handlers as they are when dropped: for a rank that stops because the ranks
    /// agreed on another rank's signal, whose own copy of the signal (mpirun forwards it to
    /// every rank) may arrive while the checkpoint is written or MPI finalises, and must not
    /// kill it then.
    pub fn keep_catching(&mut self) {
        self.arm_on_drop = false;
    }

    /// The name of the stop signal received, if one was.
    pub fn received(&self) -> Option<&'static str> {
        let number = self.received.load(Ordering::Relaxed);
        STOP_SIGNALS
            .iter()
            .find(|(signal, _)| *signal as usize == number)
            .map(|(_, name)| *name)
    }
}

impl Drop for StopSignals {
    fn drop(&mut self) {
        if self.arm_on_drop {
            self.asked.store(true, Ordering::SeqCst);
        }
    }
}

/// Which stop signals the ranks of `world` received, e.g. "SIGTERM on 2 of 2 ranks", given
/// this rank's (collective).
pub fn tally<C: nnmpi::cluster::Comm>(world: &C, received: Option<&str>) -> String {
    let mut counts = STOP_SIGNALS.map(|(_, name)| u64::from(received == Some(name)));
    world.all_reduce_sum(&mut counts);
    let ranks = world.size();
    STOP_SIGNALS
        .iter()
        .zip(counts)
        .filter(|&(_, n)| n > 0)
        .map(|((_, name), n)| match ranks {
            1 => name.to_string(),
            _ => format!("{name} on {n} of {ranks} ranks"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The error a run stopped by a signal ends with: its message says what was saved, and
/// `main` exits with [`EXIT_PREEMPTED`] on every rank.
#[derive(Debug)]
pub struct Preempted(pub String);

impl std::fmt::Display for Preempted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Preempted {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_is_recorded_by_name_and_a_second_one_would_end_the_process() {
        let signals = StopSignals::install().unwrap();
        assert_eq!(signals.received(), None);
        // SAFETY: raising a signal this process handles (the handlers above only store).
        unsafe {
            libc::raise(libc::SIGUSR1);
        }
        assert_eq!(signals.received(), Some("SIGUSR1"));
        assert!(signals.asked.load(Ordering::SeqCst));
    }
}
