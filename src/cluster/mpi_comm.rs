//! [`Comm`] over MPI (rsmpi). The only file that talks to MPI.

use super::rollcall::RollCall;
use super::{Comm, Scalar, watchdog};
use crate::error::{Error, Result};
use mpi::Threading;
use mpi::environment::Universe;
use mpi::ffi;
use mpi::raw::AsRaw;
use mpi::topology::{Color, SimpleCommunicator};
use mpi::traits::{Communicator, CommunicatorCollectives, Root};
use std::cell::RefCell;
use std::os::raw::{c_int, c_void};
use std::rc::Rc;
use std::time::Duration;

/// Whether this process was started by an MPI launcher (`mpirun`, `mpiexec`, `srun`): the
/// launchers of Open MPI, MPICH and PMIx-based schedulers set these variables. `NNMPI_MPI=1`
/// forces MPI on, `NNMPI_MPI=0` off.
pub fn launched_by_mpi() -> bool {
    match std::env::var("NNMPI_MPI").as_deref() {
        Ok("1") => return true,
        Ok("0") => return false,
        _ => {}
    }
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

/// Exit code of a job ended by a panic (Rust's own code for a panicking process).
pub const PANIC_EXIT_CODE: c_int = 101;

/// MPI, initialised for the life of this value (`MPI_Finalize` when it is dropped: drop every
/// [`MpiComm`] first).
pub struct MpiRuntime {
    universe: Universe,
}

impl MpiRuntime {
    /// Initialises MPI with `MPI_THREAD_FUNNELED` (only the calling thread will call MPI).
    pub fn init() -> Result<Self> {
        let (universe, provided) = mpi::initialize_with_threading(Threading::Funneled)
            .ok_or_else(|| Error::config("MPI could not be initialised (or was already)"))?;
        if provided < Threading::Funneled {
            return Err(Error::config(format!(
                "the MPI library gives thread support {provided:?}; nnmpi needs Funneled (rayon threads run beside MPI)"
            )));
        }
        Ok(MpiRuntime { universe })
    }

    /// Makes a panic on any thread of this process end the whole job: the panic is reported
    /// as usual, then `MPI_Abort` is called. Without it the panicking rank unwinds into
    /// `MPI_Finalize`, which waits forever for the ranks blocked in a collective it will never
    /// join. After `MPI_Finalize` (the runtime dropped) a panic is left to unwind.
    pub fn abort_job_on_panic(&self) {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            report(info);
            let mut finalized: c_int = 0;
            // SAFETY: MPI_Finalized may be called at any time, from any thread; MPI_Abort is
            // only called while MPI is initialised and not finalised.
            unsafe {
                ffi::MPI_Finalized(&mut finalized);
                if finalized == 0 {
                    let rank = std::env::var("OMPI_COMM_WORLD_RANK")
                        .or_else(|_| std::env::var("PMI_RANK"))
                        .unwrap_or_else(|_| "?".into());
                    eprintln!("error: rank {rank} panicked; ending the whole MPI job");
                    ffi::MPI_Abort(ffi::RSMPI_COMM_WORLD, PANIC_EXIT_CODE);
                }
            }
        }));
    }

    /// The communicator of every process in the job.
    pub fn world(&self) -> MpiComm {
        MpiComm::wrap(self.universe.world())
    }

    /// Ends the whole job with [`STALL_EXIT_CODE`] when this rank has waited in one
    /// collective for more than `timeout` (see [`watchdog`]). The stalled ranks hold a roll
    /// call (see [`rollcall`](super::rollcall)): the lowest rank that waits prints which rank does not answer or
    /// is elsewhere, and where the others waited; then the job is aborted. With `None` no
    /// watchdog runs, but the roll-call addresses are still exchanged (a collective: every
    /// rank calls this, whatever its timeout). `setting` names, in the caller's terms, where
    /// the timeout is set (a command-line flag, a parameter name): the messages point to it.
    pub fn abort_job_on_stall(&self, timeout: Option<Duration>, setting: &str) {
        let world = self.world();
        let roll = RollCall::open(&world, &super::host_name(), watchdog::state);
        let Some(timeout) = timeout else {
            return;
        };
        let roll = std::sync::Arc::new(roll);
        let early = roll.clone();
        let timeout_is = format!("{} s: {setting}", timeout.as_secs());
        let timeout_was = timeout_is.clone();
        let on_long_wait = move |waited: Duration, what: String| {
            let answers = early.ask(ROLL_CALL_WAIT);
            if let Some(verdict) = early.verdict(waited, &what, &answers)
                && verdict.culprits
            {
                eprintln!(
                    "warning: {}; the job ends if this wait reaches the stall timeout ({timeout_is}), or sooner if the launcher notices a lost node",
                    verdict.message
                );
            }
        };
        watchdog::start(timeout, on_long_wait, move |waited, what| {
            let answers = roll.ask(ROLL_CALL_WAIT);
            match roll.verdict(waited, &what, &answers) {
                Some(verdict) => {
                    eprintln!(
                        "error: {}; ending the job (the stall timeout is {timeout_was})",
                        verdict.message
                    );
                    std::thread::sleep(Duration::from_millis(500));
                }
                // The rank that prints aborts the job; this one follows if that fails.
                None => std::thread::sleep(ROLL_CALL_WAIT + Duration::from_secs(3)),
            }
            // SAFETY: MPI is initialised (the runtime outlives the watchdog's purpose: a
            // finalised MPI is checked first); MPI_Abort from another thread is what the panic
            // hook does too: the job is ending.
            unsafe {
                let mut finalized: c_int = 0;
                ffi::MPI_Finalized(&mut finalized);
                if finalized == 0 {
                    ffi::MPI_Abort(ffi::RSMPI_COMM_WORLD, STALL_EXIT_CODE);
                }
            }
        });
    }
}

/// How long a stalled rank waits for the others to answer the roll call.
const ROLL_CALL_WAIT: Duration = Duration::from_secs(2);

/// Exit code of a job ended by the stall watchdog (as `timeout(1)`'s).
pub const STALL_EXIT_CODE: c_int = 124;

/// MPI for nnmpi as a library inside another program (the Python package): when the host
/// initialised MPI already (e.g. `from mpi4py import MPI` ran first), nnmpi uses that MPI and
/// leaves finalising it to the host; otherwise nnmpi initialises it and finalises it when this
/// value is dropped.
pub enum MpiSession {
    /// MPI initialised by nnmpi.
    Owned(MpiRuntime),
    /// MPI initialised by the host program.
    Attached,
}

impl MpiSession {
    /// Attaches to an initialised MPI (an error if it was finalised, or gives less thread
    /// support than nnmpi needs), or initialises it.
    pub fn attach_or_init() -> Result<Self> {
        if mpi::environment::is_finalized() {
            return Err(Error::config("MPI was already finalised in this process"));
        }
        if !mpi::environment::is_initialized() {
            return MpiRuntime::init().map(MpiSession::Owned);
        }
        let provided = mpi::environment::threading_support();
        if provided < Threading::Funneled {
            return Err(Error::config(format!(
                "MPI was initialised with thread support {provided:?}; nnmpi needs Funneled (mpi4py's default, Multiple, is fine)"
            )));
        }
        Ok(MpiSession::Attached)
    }

    /// The communicator of every process in the job.
    pub fn world(&self) -> MpiComm {
        MpiComm::world()
    }
}

/// A communicator: a cheap handle (clones share it) with a scratch buffer for the copies MPI
/// needs when a collective's input and output are the same slice.
#[derive(Clone)]
pub struct MpiComm {
    inner: Rc<SimpleCommunicator>,
    scratch: Rc<RefCell<Vec<u64>>>,
}

impl std::fmt::Debug for MpiComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MpiComm(rank {} of {})", self.rank(), self.size())
    }
}

/// An MPI count; a collective of 2^31 values or more does not fit MPI's `int` counts.
fn count(n: usize) -> c_int {
    c_int::try_from(n).unwrap_or_else(|_| {
        panic!("an MPI message of {n} values is over MPI's 2^31 limit: use a smaller batch")
    })
}

/// Values one broadcast or all-reduce call carries at most: MPI's largest count, or
/// `NNMPI_MPI_MAX_COUNT` when it is set lower (for tests: a small value makes every broadcast
/// and all-reduce go in chunks). Every
/// rank of a job must see the same value (mpirun passes the environment to every rank).
fn broadcast_chunk() -> usize {
    let largest = c_int::MAX as usize;
    std::env::var("NNMPI_MPI_MAX_COUNT")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(largest, |n| n.clamp(1, largest))
}

/// Bytes one all-reduce call carries at most: a long all-reduce goes in pieces of this size.
/// Open MPI 4.1 between two processes of one node summed 128 MiB in 108–120 ms in one call and
/// in 48–50 ms in pieces of 512 KiB (a piece and its copy stay in the core's cache; a C
/// program on a 2-core Intel Xeon, `lscpu` family 6, 2026-12-02: src/cluster/README.md). Each
/// element is still the sum of the ranks' values, combined by MPI's algorithm for the piece's
/// size.
const ALL_REDUCE_CHUNK_BYTES: usize = 512 << 10;

/// Counts and displacements of a variable-count collective.
fn counts_displs(counts: &[usize]) -> (Vec<c_int>, Vec<c_int>) {
    let mut displs = Vec::with_capacity(counts.len());
    let mut at = 0usize;
    for &c in counts {
        displs.push(count(at));
        at += c;
    }
    (counts.iter().map(|&c| count(c)).collect(), displs)
}

fn datatype<T: Scalar>() -> ffi::MPI_Datatype {
    T::equivalent_datatype().as_raw()
}

impl MpiComm {
    /// The communicator of every process in the job, once MPI is initialised (by an
    /// [`MpiRuntime`] or [`MpiSession`] that is still alive).
    pub fn world() -> Self {
        MpiComm::wrap(SimpleCommunicator::world())
    }

    fn wrap(comm: SimpleCommunicator) -> Self {
        MpiComm {
            inner: Rc::new(comm),
            scratch: Rc::new(RefCell::new(Vec::new())),
        }
    }

    fn raw(&self) -> ffi::MPI_Comm {
        self.inner.as_raw()
    }

    /// Checks there is one count per rank, and tells whether any value moves. When none does,
    /// every rank (they all have the same counts) skips the call: Open MPI refuses two empty
    /// buffers, which share one dangling address, as aliased.
    fn check_counts(&self, counts: &[usize]) -> bool {
        assert_eq!(
            counts.len(),
            self.size(),
            "MpiComm: one count per rank is needed"
        );
        counts.iter().any(|&c| c > 0)
    }
}

impl Comm for MpiComm {
    fn rank(&self) -> usize {
        self.inner.rank() as usize
    }

    fn size(&self) -> usize {
        self.inner.size() as usize
    }

    fn barrier(&self) {
        let _wait = watchdog::waiting("barrier", 0);
        self.inner.barrier();
    }

    fn broadcast<T: Scalar>(&self, root: usize, buf: &mut [T]) {
        // One call per chunk: an MPI count is a C int, so a data set of 2^31 values or more
        // goes in several calls (every rank cuts its buffer the same way).
        let root = self.inner.process_at_rank(root as i32);
        let _wait = watchdog::waiting("broadcast", buf.len());
        for chunk in buf.chunks_mut(broadcast_chunk()) {
            root.broadcast_into(chunk);
        }
    }

    fn all_gather_varcount<T: Scalar>(&self, send: &[T], recv: &mut [T], counts: &[usize]) {
        if !self.check_counts(counts) {
            return;
        }
        assert_eq!(
            send.len(),
            counts[self.rank()],
            "all_gather_varcount: send length"
        );
        assert_eq!(
            recv.len(),
            counts.iter().sum::<usize>(),
            "all_gather_varcount: recv length"
        );
        let _wait = watchdog::waiting("all-gather", recv.len());
        let (counts, displs) = counts_displs(counts);
        // SAFETY: the buffers hold the counted values (checked above), the datatype matches T,
        // and the communicator is alive.
        unsafe {
            ffi::MPI_Allgatherv(
                send.as_ptr().cast::<c_void>(),
                count(send.len()),
                datatype::<T>(),
                recv.as_mut_ptr().cast::<c_void>(),
                counts.as_ptr(),
                displs.as_ptr(),
                datatype::<T>(),
                self.raw(),
            );
        }
    }

    fn gather_varcount<T: Scalar>(
        &self,
        root: usize,
        send: &[T],
        recv: &mut [T],
        counts: &[usize],
    ) {
        if !self.check_counts(counts) {
            return;
        }
        assert_eq!(
            send.len(),
            counts[self.rank()],
            "gather_varcount: send length"
        );
        let at_root = self.rank() == root;
        if at_root {
            assert_eq!(
                recv.len(),
                counts.iter().sum::<usize>(),
                "gather_varcount: recv length"
            );
        }
        let _wait = watchdog::waiting("gather", counts.iter().sum());
        let (counts, displs) = counts_displs(counts);
        // SAFETY: as for all_gather_varcount; the receive arguments are read at the root only.
        unsafe {
            ffi::MPI_Gatherv(
                send.as_ptr().cast::<c_void>(),
                count(send.len()),
                datatype::<T>(),
                recv.as_mut_ptr().cast::<c_void>(),
                counts.as_ptr(),
                displs.as_ptr(),
                datatype::<T>(),
                root as c_int,
                self.raw(),
            );
        }
    }

    fn all_reduce_sum<T: Scalar>(&self, buf: &mut [T]) {
        if self.size() == 1 || buf.is_empty() {
            return;
        }
        let _wait = watchdog::waiting("all-reduce", buf.len());
        let chunk = (ALL_REDUCE_CHUNK_BYTES / size_of::<T>()).min(broadcast_chunk());
        let mut scratch = self.scratch.borrow_mut();
        scratch.resize(size_of_val(&buf[..buf.len().min(chunk)]).div_ceil(8), 0);
        for piece in buf.chunks_mut(chunk) {
            let bytes = size_of_val(piece);
            // SAFETY: the scratch holds at least `bytes` bytes and is 8-byte aligned (enough
            // for every Scalar); it does not overlap `piece`. MPI reads the scratch and writes
            // `piece`.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    piece.as_ptr().cast::<u8>(),
                    scratch.as_mut_ptr().cast::<u8>(),
                    bytes,
                );
                ffi::MPI_Allreduce(
                    scratch.as_ptr().cast::<c_void>(),
                    piece.as_mut_ptr().cast::<c_void>(),
                    count(piece.len()),
                    datatype::<T>(),
                    ffi::RSMPI_SUM,
                    self.raw(),
                );
            }
        }
    }

    fn reduce_scatter_varcount<T: Scalar>(&self, send: &[T], recv: &mut [T], counts: &[usize]) {
        if !self.check_counts(counts) {
            return;
        }
        assert_eq!(
            send.len(),
            counts.iter().sum::<usize>(),
            "reduce_scatter: send length"
        );
        assert_eq!(
            recv.len(),
            counts[self.rank()],
            "reduce_scatter: recv length"
        );
        let _wait = watchdog::waiting("reduce-scatter", send.len());
        let (counts, _) = counts_displs(counts);
        // rsmpi only wraps the equal-count MPI_Reduce_scatter_block; this is MPI_Reduce_scatter.
        // SAFETY: the buffers hold the counted values (checked above), the datatype matches T.
        unsafe {
            ffi::MPI_Reduce_scatter(
                send.as_ptr().cast::<c_void>(),
                recv.as_mut_ptr().cast::<c_void>(),
                counts.as_ptr(),
                datatype::<T>(),
                ffi::RSMPI_SUM,
                self.raw(),
            );
        }
    }

    fn split(&self, color: usize, key: usize) -> Self {
        let comm = self
            .inner
            .split_by_color_with_key(Color::with_value(count(color)), count(key))
            .expect("a defined color always gives a communicator");
        MpiComm::wrap(comm)
    }

    fn abort(&self, code: i32) -> ! {
        self.inner.abort(code)
    }
}
