//! A [`Comm`] that measures its collectives: wall time, calls and the bytes this rank hands to
//! them (for `nnmpi bench` and the per-rank logs of `nnmpi train`).

use super::{Comm, Scalar};
use std::cell::Cell;
use std::mem::size_of_val;
use std::rc::Rc;
use std::time::Instant;

/// What a [`Timed`] communicator and everything cloned or split from it has measured so far.
#[derive(Debug, Default)]
pub struct CommTally {
    seconds: Cell<f64>,
    overlapped: Cell<f64>,
    calls: Cell<u64>,
    bytes: Cell<u64>,
}

/// A reading of a [`CommTally`]; subtract two readings for what happened between them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CommReading {
    /// Wall seconds spent inside collectives.
    pub seconds: f64,
    /// The part of `seconds` when the computation went on meanwhile, on another thread (see
    /// [`Comm::overlapped`]): collectives that did not hold the work up.
    pub overlapped_seconds: f64,
    /// Collectives called.
    pub calls: u64,
    /// Bytes this rank passed into collectives: its contribution to an all-gather, gather or
    /// reduce-scatter, the whole buffer of an all-reduce, a broadcast's buffer at its root.
    /// The bytes on the wire depend on MPI's algorithm (a ring all-reduce sends about twice
    /// the buffer).
    pub bytes: u64,
}

impl CommTally {
    /// The totals so far.
    pub fn read(&self) -> CommReading {
        CommReading {
            seconds: self.seconds.get(),
            overlapped_seconds: self.overlapped.get(),
            calls: self.calls.get(),
            bytes: self.bytes.get(),
        }
    }
}

impl CommReading {
    /// Seconds the collectives held the work up: [`CommReading::seconds`] less the overlapped
    /// part.
    pub fn visible_seconds(&self) -> f64 {
        (self.seconds - self.overlapped_seconds).max(0.0)
    }
}

impl std::ops::Sub for CommReading {
    type Output = CommReading;
    fn sub(self, earlier: CommReading) -> CommReading {
        CommReading {
            seconds: self.seconds - earlier.seconds,
            overlapped_seconds: self.overlapped_seconds - earlier.overlapped_seconds,
            calls: self.calls - earlier.calls,
            bytes: self.bytes - earlier.bytes,
        }
    }
}

/// Wraps a communicator and adds every collective between two ranks or more to a shared
/// [`CommTally`] (clones and communicators split from it share the tally).
#[derive(Clone, Debug)]
pub struct Timed<C: Comm> {
    inner: C,
    tally: Rc<CommTally>,
}

impl<C: Comm> Timed<C> {
    /// Wraps `inner` with a fresh tally.
    pub fn new(inner: C) -> Self {
        Timed {
            inner,
            tally: Rc::default(),
        }
    }

    /// The tally this communicator adds to.
    pub fn tally(&self) -> Rc<CommTally> {
        self.tally.clone()
    }

    /// Seconds spent in collectives so far.
    pub fn seconds(&self) -> f64 {
        self.tally.seconds.get()
    }

    /// Seconds spent in collectives so far that held the work up (see [`Comm::overlapped`]).
    pub fn visible_seconds(&self) -> f64 {
        self.tally.read().visible_seconds()
    }

    /// Sets the tally back to zero.
    pub fn reset(&self) {
        self.tally.seconds.set(0.0);
        self.tally.overlapped.set(0.0);
        self.tally.calls.set(0);
        self.tally.bytes.set(0);
    }

    /// Runs `op` and adds its time, one call and `bytes` to the tally, unless this
    /// communicator has one rank (its collectives exchange nothing).
    fn timed<T>(&self, bytes: usize, op: impl FnOnce(&C) -> T) -> T {
        if self.inner.size() == 1 {
            return op(&self.inner);
        }
        let start = Instant::now();
        let out = op(&self.inner);
        let tally = &self.tally;
        tally
            .seconds
            .set(tally.seconds.get() + start.elapsed().as_secs_f64());
        tally.calls.set(tally.calls.get() + 1);
        tally.bytes.set(tally.bytes.get() + bytes as u64);
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
        self.timed(0, |c| c.barrier())
    }
    fn broadcast<T: Scalar>(&self, root: usize, buf: &mut [T]) {
        let sent = if self.rank() == root {
            size_of_val(buf)
        } else {
            0
        };
        self.timed(sent, |c| c.broadcast(root, buf))
    }
    fn all_gather_varcount<T: Scalar>(&self, send: &[T], recv: &mut [T], counts: &[usize]) {
        self.timed(size_of_val(send), |c| {
            c.all_gather_varcount(send, recv, counts)
        })
    }
    fn gather_varcount<T: Scalar>(
        &self,
        root: usize,
        send: &[T],
        recv: &mut [T],
        counts: &[usize],
    ) {
        let sent = if self.rank() == root {
            0
        } else {
            size_of_val(send)
        };
        self.timed(sent, |c| c.gather_varcount(root, send, recv, counts))
    }
    fn all_reduce_sum<T: Scalar>(&self, buf: &mut [T]) {
        self.timed(size_of_val(buf), |c| c.all_reduce_sum(buf))
    }
    fn reduce_scatter_varcount<T: Scalar>(&self, send: &[T], recv: &mut [T], counts: &[usize]) {
        self.timed(size_of_val(send), |c| {
            c.reduce_scatter_varcount(send, recv, counts)
        })
    }
    fn split(&self, color: usize, key: usize) -> Self {
        Timed {
            inner: self.inner.split(color, key),
            tally: self.tally.clone(),
        }
    }
    fn abort(&self, code: i32) -> ! {
        self.inner.abort(code)
    }
    fn overlapped(&self, seconds: f64) {
        if self.inner.size() > 1 {
            let tally = &self.tally;
            tally.overlapped.set(tally.overlapped.get() + seconds);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ThreadComm;

    #[test]
    fn the_tally_counts_each_ranks_contribution_across_splits() {
        let readings = ThreadComm::run(2, |comm| {
            let timed = Timed::new(comm);
            let rank = timed.rank();
            let mut buf = [1.0f32; 10];
            timed.all_reduce_sum(&mut buf); // 40 bytes each
            let mut recv = [0.0f64; 3];
            let send = vec![rank as f64; 1 + rank];
            timed.all_gather_varcount(&send, &mut recv, &[1, 2]); // 8 and 16 bytes
            let mut b = [0u8; 7];
            timed.broadcast(1, &mut b); // 7 bytes at the root only
            let both = timed.split(0, rank);
            let mut one = [0.0f32; 5];
            both.all_reduce_sum(&mut one); // 20 bytes each, on the split
            both.overlapped(0.25);
            timed.barrier();
            let before = timed.tally().read();
            let alone = timed.split(rank, 0);
            alone.all_reduce_sum(&mut one); // one rank: nothing exchanged, nothing counted
            assert_eq!(timed.tally().read(), before);
            (before, both.seconds() == timed.seconds())
        });
        assert_eq!(readings[0].0.bytes, 40 + 8 + 20);
        assert_eq!(readings[1].0.bytes, 40 + 16 + 7 + 20);
        for (reading, shared) in readings {
            assert_eq!(reading.calls, 5);
            assert!(shared && reading.seconds >= 0.0);
            assert_eq!(reading.overlapped_seconds, 0.25);
            assert_eq!(reading.visible_seconds(), (reading.seconds - 0.25).max(0.0));
            assert_eq!(reading - reading, CommReading::default());
        }
    }
}
