//! Communication between ranks: the [`Comm`] trait, its one-process implementation
//! [`SelfComm`], the MPI one (`MpiComm`, cargo feature `mpi`), ranks as threads for tests
//! ([`ThreadComm`]), how neurons are split over
//! ranks ([`Partition`]) and the data × model grid of ranks ([`Topology`]); and what of the
//! machine the ranks may use (cores, [`memory_available`]).
//!
//! See `src/cluster/README.md` for the communication pattern and why it looks the way it does.

mod affinity;
mod comm;
mod memory;
#[cfg(feature = "mpi")]
mod mpi_comm;
mod partition;
pub mod rollcall;
mod share;
mod threads;
mod timed;
mod topology;
pub mod watchdog;

pub use affinity::{cores_available, host_name};
pub use comm::{Comm, Scalar, SelfComm};
pub use memory::{check_memory, human_bytes, memory_available, ranks_on_this_node};
#[cfg(feature = "mpi")]
pub use mpi_comm::{MpiComm, MpiRuntime, MpiSession, STALL_EXIT_CODE, launched_by_mpi};
pub use partition::Partition;
pub use share::broadcast_outcome;
pub use threads::ThreadComm;
pub use timed::{CommReading, CommTally, Timed};
pub use topology::{Grid, Topology};
