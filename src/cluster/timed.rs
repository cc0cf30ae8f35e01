//! A [`Comm`] that measures the time spent in its collectives (for `nnmpi bench`).

use super::{Comm, Scalar};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

/// Wraps a communicator and adds the wall time of every collective to a shared clock (clones
/// and communicators split from it share the clock).
#[derive(Clone, Debug)]
pub struct Timed<C: Comm> {
    inner: C,
    seconds: Rc<Cell<f64>>,
}

impl<C: Comm> Timed<C> {
    /// Wraps `inner` with a fresh clock.
    pub fn new(inner: C) -> Self {
        Timed {
            inner,
            seconds: Rc::new(Cell::new(0.0)),
        }
    }

    /// Seconds spent in collectives so far.
    pub fn seconds(&self) -> f64 {
        self.seconds.get()
    }

    /// Sets the clock back to zero.
    pub fn reset(&self) {
        self.seconds.set(0.0);
    }

    fn timed<T>(&self, op: impl FnOnce(&C) -> T) -> T {
        let start = Instant::now();
        let out = op(&self.inner);
        self.seconds
            .set(self.seconds.get() + start.elapsed().as_secs_f64());
        out
    }
}

impl<C: Comm> Comm for Timed<C> {
    fn rank(&self) -> usize {
        self.inner.rank()
    }
    fn size(&self) -> usize {
        self.inner.size()
    }
    fn barrier(&self) {
        self.timed(|c| c.barrier())
    }
    fn broadcast<T: Scalar>(&self, root: usize, buf: &mut [T]) {
        self.timed(|c| c.broadcast(root, buf))
    }
    fn all_gather_varcount<T: Scalar>(&self, send: &[T], recv: &mut [T], counts: &[usize]) {
        self.timed(|c| c.all_gather_varcount(send, recv, counts))
    }
    fn gather_varcount<T: Scalar>(
        &self,
        root: usize,
        send: &[T],
        recv: &mut [T],
        counts: &[usize],
    ) {
        self.timed(|c| c.gather_varcount(root, send, recv, counts))
    }
    fn all_reduce_sum<T: Scalar>(&self, buf: &mut [T]) {
        self.timed(|c| c.all_reduce_sum(buf))
    }
    fn reduce_scatter_varcount<T: Scalar>(&self, send: &[T], recv: &mut [T], counts: &[usize]) {
        self.timed(|c| c.reduce_scatter_varcount(send, recv, counts))
    }
    fn split(&self, color: usize, key: usize) -> Self {
        Timed {
            inner: self.inner.split(color, key),
            seconds: self.seconds.clone(),
        }
    }
    fn abort(&self, code: i32) -> ! {
        self.inner.abort(code)
    }
}
