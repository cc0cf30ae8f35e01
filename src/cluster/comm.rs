//! The collective operations the engine needs, and the one-process implementation.

use std::ops::AddAssign;

/// A value that can travel through a collective (`f32`, `f64`, `u32`, `u64`, `u8`).
#[cfg(feature = "mpi")]
pub trait Scalar:
    Copy + Default + AddAssign + Send + Sync + 'static + mpi::traits::Equivalence
{
}
/// A value that can travel through a collective (`f32`, `f64`, `u32`, `u64`, `u8`).
#[cfg(not(feature = "mpi"))]
pub trait Scalar: Copy + Default + AddAssign + Send + Sync + 'static {}

impl Scalar for f32 {}
impl Scalar for f64 {}
impl Scalar for u32 {}
impl Scalar for u64 {}
impl Scalar for u8 {}

/// A group of ranks that run collectives together. Every member must make the same calls in
/// the same order (with matching counts), as in MPI. Counts are in elements; `counts[r]` is
/// rank `r`'s share and shares are laid out in rank order.
///
/// Only the thread that created the communicator may call it (MPI is initialised with
/// `MPI_THREAD_FUNNELED`); rayon threads compute, the thread that initialised MPI communicates.
pub trait Comm: Clone {
    /// This rank, `0..size()`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;
    /// Waits until every rank has arrived.
    fn barrier(&self);
    /// Copies `buf` of rank `root` into `buf` of every rank.
    fn broadcast<T: Scalar>(&self, root: usize, buf: &mut [T]);
    /// Concatenates every rank's `send` (`counts[r]` values) into `recv` on every rank.
    fn all_gather_varcount<T: Scalar>(&self, send: &[T], recv: &mut [T], counts: &[usize]);
    /// Concatenates every rank's `send` into `recv` on rank `root` (`recv` is not touched on
    /// other ranks and may be empty there).
    fn gather_varcount<T: Scalar>(&self, root: usize, send: &[T], recv: &mut [T], counts: &[usize]);
    /// Replaces `buf` on every rank by the element-wise sum over ranks.
    fn all_reduce_sum<T: Scalar>(&self, buf: &mut [T]);
    /// Sums `send` (the same length on every rank) over ranks and gives rank `r` the
    /// `counts[r]` values of its share in `recv`.
    fn reduce_scatter_varcount<T: Scalar>(&self, send: &[T], recv: &mut [T], counts: &[usize]);
    /// Splits the ranks into groups of equal `color`, ordered by `key` within each group.
    fn split(&self, color: usize, key: usize) -> Self;
    /// Ends every process of the job with exit code `code`.
    fn abort(&self, code: i32) -> !;

    /// Tells a communicator that measures its collectives ([`super::Timed`]) that `seconds` of
    /// them ran while the computation went on, on another thread: they did not hold it up.
    /// Others ignore it.
    fn overlapped(&self, _seconds: f64) {}

    /// Copies a byte string of rank `root` to every rank (the length travels first).
    fn broadcast_bytes(&self, root: usize, bytes: &mut Vec<u8>) {
        let mut len = [bytes.len() as u64];
        self.broadcast(root, &mut len);
        bytes.resize(len[0] as usize, 0);
        self.broadcast(root, bytes);
    }
}

/// The one-process communicator: every collective is a copy or nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct SelfComm;

impl Comm for SelfComm {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn barrier(&self) {}
    fn broadcast<T: Scalar>(&self, _root: usize, _buf: &mut [T]) {}
    fn all_gather_varcount<T: Scalar>(&self, send: &[T], recv: &mut [T], counts: &[usize]) {
        assert_eq!(
            counts,
            [send.len()],
            "SelfComm: counts do not match the send buffer"
        );
        recv.copy_from_slice(send);
    }
    fn gather_varcount<T: Scalar>(
        &self,
        _root: usize,
        send: &[T],
        recv: &mut [T],
        counts: &[usize],
    ) {
        self.all_gather_varcount(send, recv, counts);
    }
    fn all_reduce_sum<T: Scalar>(&self, _buf: &mut [T]) {}
    fn reduce_scatter_varcount<T: Scalar>(&self, send: &[T], recv: &mut [T], counts: &[usize]) {
        // The sum over one rank of its only share is a copy, as for the gathers.
        self.all_gather_varcount(send, recv, counts);
    }
    fn split(&self, _color: usize, _key: usize) -> Self {
        SelfComm
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}
