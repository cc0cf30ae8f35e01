//! [`ThreadComm`]: ranks as threads of one process, for testing multi-rank code with
//! `cargo test` (no `mpirun`, no MPI library).

use super::{Comm, Scalar};
use std::any::Any;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// A communicator whose ranks are threads of this process. Every collective works as in MPI
/// (same calls in the same order on every rank); sums are taken in rank order, so every rank
/// gets the same bits. A panic on one rank makes the others panic at their next collective
/// instead of waiting for ever.
///
/// ```
/// use nnmpi::cluster::{Comm, ThreadComm};
/// let sums = ThreadComm::run(3, |comm| {
///     let mut v = [comm.rank() as f64 + 1.0];
///     comm.all_reduce_sum(&mut v);
///     v[0]
/// });
/// assert_eq!(sums, vec![6.0; 3]);
/// ```
#[derive(Clone)]
pub struct ThreadComm {
    rank: usize,
    group: Arc<Group>,
}

impl std::fmt::Debug for ThreadComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ThreadComm(rank {} of {})", self.rank, self.group.size)
    }
}

/// The state the ranks of one communicator share: a slot per rank for what it contributes to
/// the current collective, and a reusable barrier.
struct Group {
    size: usize,
    slots: Mutex<Vec<Option<Box<dyn Any + Send + Sync>>>>,
    barrier: Barrier,
}

/// A barrier that fails (panics) on every waiting rank once any rank has panicked.
struct Barrier {
    state: Mutex<BarrierState>,
    turn: Condvar,
}

#[derive(Default)]
struct BarrierState {
    arrived: usize,
    generation: u64,
    broken: bool,
}

impl Barrier {
    fn new() -> Self {
        Barrier {
            state: Mutex::new(BarrierState::default()),
            turn: Condvar::new(),
        }
    }

    fn wait(&self, size: usize) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(!s.broken, "ThreadComm: another rank panicked");
        s.arrived += 1;
        if s.arrived == size {
            s.arrived = 0;
            s.generation += 1;
            self.turn.notify_all();
            return;
        }
        let generation = s.generation;
        while s.generation == generation && !s.broken {
            s = self.turn.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        assert!(!s.broken, "ThreadComm: another rank panicked");
    }

    fn break_all(&self) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.broken = true;
        self.turn.notify_all();
    }
}

impl Group {
    fn new(size: usize) -> Arc<Self> {
        Arc::new(Group {
            size,
            slots: Mutex::new((0..size).map(|_| None).collect()),
            barrier: Barrier::new(),
        })
    }
}

/// Breaks the group's barriers when its thread unwinds from a panic.
struct BreakOnPanic(Vec<Arc<Group>>);

impl Drop for BreakOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for g in &self.0 {
                g.barrier.break_all();
            }
        }
    }
}

impl ThreadComm {
    /// Runs `f` on `ranks` threads, each with its rank's communicator, and returns the
    /// results in rank order. A panic on any rank is re-raised here.
    pub fn run<R: Send>(ranks: usize, f: impl Fn(ThreadComm) -> R + Sync) -> Vec<R> {
        assert!(ranks > 0, "ThreadComm::run: no ranks");
        let group = Group::new(ranks);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..ranks)
                .map(|rank| {
                    let comm = ThreadComm {
                        rank,
                        group: group.clone(),
                    };
                    let f = &f;
                    scope.spawn(move || {
                        let _guard = BreakOnPanic(vec![comm.group.clone()]);
                        f(comm)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    }

    /// One collective step: every rank deposits `mine`, then `read` sees every rank's
    /// deposit (in rank order), then the slots are freed for the next collective.
    fn exchange<V: Any + Send + Sync, R>(&self, mine: V, read: impl FnOnce(&[&V]) -> R) -> R {
        let g = &self.group;
        g.slots.lock().unwrap_or_else(PoisonError::into_inner)[self.rank] = Some(Box::new(mine));
        g.barrier.wait(g.size);
        let result = {
            let slots = g.slots.lock().unwrap_or_else(PoisonError::into_inner);
            let all: Vec<&V> = slots
                .iter()
                .map(|s| {
                    s.as_ref()
                        .and_then(|b| b.downcast_ref::<V>())
                        .expect("ThreadComm: ranks made different collective calls")
                })
                .collect();
            read(&all)
        };
        g.barrier.wait(g.size);
        result
    }

    fn offsets(counts: &[usize]) -> Vec<usize> {
        std::iter::once(0)
            .chain(counts.iter().scan(0, |at, &c| {
                *at += c;
                Some(*at)
            }))
            .collect()
    }
}

impl Comm for ThreadComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.group.size
    }

    fn barrier(&self) {
        self.exchange((), |_| ());
    }

    fn broadcast<T: Scalar>(&self, root: usize, buf: &mut [T]) {
        let mine = if self.rank == root {
            buf.to_vec()
        } else {
            Vec::new()
        };
        self.exchange(mine, |all| {
            assert_eq!(all[root].len(), buf.len(), "broadcast: lengths differ");
            buf.copy_from_slice(all[root]);
        });
    }

    fn all_gather_varcount<T: Scalar>(&self, send: &[T], recv: &mut [T], counts: &[usize]) {
        assert_eq!(counts.len(), self.size(), "one count per rank is needed");
        assert_eq!(
            send.len(),
            counts[self.rank],
            "send does not match its count"
        );
        let at = Self::offsets(counts);
        self.exchange(send.to_vec(), |all| {
            for (r, part) in all.iter().enumerate() {
                recv[at[r]..at[r + 1]].copy_from_slice(part);
            }
        });
    }

    fn gather_varcount<T: Scalar>(
        &self,
        root: usize,
        send: &[T],
        recv: &mut [T],
        counts: &[usize],
    ) {
        assert_eq!(counts.len(), self.size(), "one count per rank is needed");
        let at = Self::offsets(counts);
        let me = self.rank;
        self.exchange(send.to_vec(), |all| {
            if me == root {
                for (r, part) in all.iter().enumerate() {
                    recv[at[r]..at[r + 1]].copy_from_slice(part);
                }
            }
        });
    }

    fn all_reduce_sum<T: Scalar>(&self, buf: &mut [T]) {
        self.exchange(buf.to_vec(), |all| {
            for (k, v) in buf.iter_mut().enumerate() {
                let mut sum = all[0][k];
                for part in &all[1..] {
                    sum += part[k];
                }
                *v = sum;
            }
        });
    }

    fn reduce_scatter_varcount<T: Scalar>(&self, send: &[T], recv: &mut [T], counts: &[usize]) {
        assert_eq!(counts.len(), self.size(), "one count per rank is needed");
        let at = Self::offsets(counts);
        let mine = at[self.rank]..at[self.rank + 1];
        self.exchange(send.to_vec(), |all| {
            for (v, k) in recv.iter_mut().zip(mine) {
                let mut sum = all[0][k];
                for part in &all[1..] {
                    sum += part[k];
                }
                *v = sum;
            }
        });
    }

    fn split(&self, color: usize, key: usize) -> Self {
        // Everyone learns every (color, key); the lowest rank of each color makes the group
        // and hands it to the others through its slot.
        let members: Vec<(usize, usize)> = self.exchange((color, key), |all| {
            let mut m: Vec<(usize, usize)> = all
                .iter()
                .enumerate()
                .filter(|(_, ck)| ck.0 == color)
                .map(|(r, ck)| (ck.1, r))
                .collect();
            m.sort();
            m
        });
        let leader = members.iter().map(|&(_, r)| r).min().expect("this rank");
        let made = (self.rank == leader).then(|| Group::new(members.len()));
        let group = self.exchange(made, |all| {
            all[leader].clone().expect("the leader made the group")
        });
        let rank = members
            .iter()
            .position(|&(_, r)| r == self.rank)
            .expect("this rank is a member");
        ThreadComm { rank, group }
    }

    fn abort(&self, code: i32) -> ! {
        panic!(
            "ThreadComm: rank {} aborted the job with code {code}",
            self.rank
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_collective_gives_what_mpi_would() {
        let out = ThreadComm::run(3, |c| {
            let r = c.rank();
            let mut b = if r == 1 { vec![7u32, 8] } else { vec![0, 0] };
            c.broadcast(1, &mut b);
            // Rank r sends r+1 values of r.
            let counts = [1, 2, 3];
            let send = vec![r as f32; r + 1];
            let mut all = vec![0.0; 6];
            c.all_gather_varcount(&send, &mut all, &counts);
            let mut at_root = vec![0.0; if r == 2 { 6 } else { 0 }];
            c.gather_varcount(2, &send, &mut at_root, &counts);
            let mut sum = vec![r as f64, 1.0];
            c.all_reduce_sum(&mut sum);
            let mut share = vec![0u64; counts[r]];
            c.reduce_scatter_varcount(&[1u64, 2, 3, 4, 5, 6], &mut share, &counts);
            c.barrier();
            (b, all, at_root, sum, share)
        });
        for (r, (b, all, at_root, sum, share)) in out.into_iter().enumerate() {
            assert_eq!(b, [7, 8]);
            assert_eq!(all, [0.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
            assert_eq!(at_root.len(), if r == 2 { 6 } else { 0 });
            if r == 2 {
                assert_eq!(at_root, all);
            }
            assert_eq!(sum, [3.0, 3.0]);
            let want: Vec<u64> = [3u64, 6, 9, 12, 15, 18][[0, 1, 3][r]..[1, 3, 6][r]].to_vec();
            assert_eq!(share, want);
        }
    }

    #[test]
    fn split_makes_groups_ordered_by_key() {
        // 4 ranks: colors by parity, keys reversing the order.
        let out = ThreadComm::run(4, |c| {
            let sub = c.split(c.rank() % 2, 10 - c.rank());
            let mut v = [c.rank() as u64];
            sub.all_reduce_sum(&mut v);
            (sub.rank(), sub.size(), v[0])
        });
        assert_eq!(out, vec![(1, 2, 2), (1, 2, 4), (0, 2, 2), (0, 2, 4)]);
    }

    #[test]
    fn a_panicking_rank_does_not_hang_the_others() {
        let result = std::panic::catch_unwind(|| {
            ThreadComm::run(3, |c| {
                if c.rank() == 1 {
                    panic!("rank 1 fails");
                }
                c.barrier();
            })
        });
        assert!(result.is_err());
    }
}
