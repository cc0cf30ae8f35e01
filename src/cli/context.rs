//! What every command runs with: the ranks and their roles, and the rule that rank 0 reads,
//! prints and writes while the other ranks stay quiet.

use super::data_args::DataArgs;
use anyhow::{Context, Result, anyhow, bail};
use nnmpi::cluster::{
    Comm, CommTally, Grid, Topology, broadcast_outcome, cores_available, watchdog,
};
use nnmpi::data::Dataset;
use nnmpi::exec::broadcast_dataset;
use nnmpi::io::{Checkpoint, decode, encode, load};
use nnmpi::kernels::Par;
use std::path::Path;
use std::rc::Rc;

/// Prints a line on rank 0 only. The arguments are evaluated on rank 0 only too: never put a
/// collective call in them.
macro_rules! say {
    ($ctx:expr, $($arg:tt)*) => {
        if $ctx.is_root() {
            println!($($arg)*);
        }
    };
}
pub(crate) use say;

/// The ranks of this job and how they are arranged.
pub struct Ctx<C: Comm> {
    /// World, data-parallel and model-parallel communicators.
    pub topology: Topology<C>,
    /// How the math may use threads.
    pub par: Par,
    /// What this rank's collectives have cost so far (for `--log-dir`).
    pub comm_tally: Rc<CommTally>,
}

impl<C: Comm> Ctx<C> {
    /// Arranges `world` as `grid` and warns (on rank 0) when ranks have fewer cores than
    /// rayon threads. `comm_tally` is what `world` counts its collectives in.
    pub fn new(world: C, grid: Grid, comm_tally: Rc<CommTally>) -> Result<Self> {
        let ctx = Ctx {
            topology: Topology::new(world, grid)?,
            par: Par::current_pool(),
            comm_tally,
        };
        ctx.check_affinity();
        Ok(ctx)
    }

    /// Whether this rank reads, prints and writes.
    pub fn is_root(&self) -> bool {
        self.topology.is_root()
    }

    /// The world communicator.
    pub fn world(&self) -> &C {
        &self.topology.world
    }

    /// Open MPI binds each rank to one core by default when there are at most 2 ranks: then
    /// a rank's rayon threads all share that core. Count such ranks and say so once.
    fn check_affinity(&self) {
        let threads = rayon::current_num_threads();
        let cores = cores_available().unwrap_or(threads);
        let mut pinned = [u64::from(cores < threads), cores as u64];
        self.world().all_reduce_sum(&mut pinned);
        if pinned[0] > 0 && self.is_root() {
            eprintln!(
                "warning: {} of {} ranks may run on fewer cores than their {threads} rayon threads (rank 0: {cores} core(s)); \
                 their threads will share cores. Under Open MPI use --bind-to none or --map-by slot:PE={threads}, \
                 or lower RAYON_NUM_THREADS / --threads.",
                pinned[0],
                self.world().size()
            );
        }
    }

    /// Checks on rank 0, before any long work, that every output file given (`(flag, path)`)
    /// can be written; a failure ends the job on every rank, naming the flag.
    pub fn check_outputs(&self, outputs: &[(&str, Option<&Path>)]) -> Result<()> {
        self.on_root(|| {
            for (flag, path) in outputs {
                if let Some(path) = path {
                    nnmpi::io::check_writable(path).with_context(|| {
                        format!(
                            "{flag} {} cannot be written; nothing was done",
                            path.display()
                        )
                    })?;
                }
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Runs `read` on rank 0 and tells every rank whether it worked: `Ok(Some(value))` on
    /// rank 0, `Ok(None)` elsewhere, or the error everywhere (with rank 0's message).
    pub fn on_root<T>(&self, read: impl FnOnce() -> Result<T>) -> Result<Option<T>> {
        let result = self.is_root().then(read);
        let outcome = match &result {
            Some(Err(e)) => Err(format!("{e:#}")),
            _ => Ok(()),
        };
        match (broadcast_outcome(self.world(), 0, outcome), result) {
            (None, result) => Ok(result.map(|r| r.expect("rank 0 reported success"))),
            (Some(_), Some(Err(e))) => Err(e),
            (Some(message), _) => Err(anyhow!("rank 0 failed: {message}")),
        }
    }

    /// Runs `work` on every rank; when it fails anywhere, every rank fails with the message of
    /// the lowest rank that failed, which names that rank and its host.
    pub fn on_every_rank<T>(&self, work: impl FnOnce() -> Result<T>) -> Result<T> {
        let world = self.world();
        let result = work();
        let mut failed = vec![0u8; world.size()];
        world.all_gather_varcount(
            &[u8::from(result.is_err())],
            &mut failed,
            &vec![1; world.size()],
        );
        let Some(first) = failed.iter().position(|&f| f == 1) else {
            return result;
        };
        let outcome = match &result {
            Err(e) if world.rank() == first => Err(format!(
                "rank {first} of {} (on {}): {e:#}",
                world.size(),
                nnmpi::cluster::host_name()
            )),
            _ => Ok(()),
        };
        let message =
            broadcast_outcome(world, first, outcome).expect("the rank that failed says so");
        Err(anyhow!(message))
    }

    /// The data set `load` reads: a memory-mapped NPY file is mapped by every rank itself
    /// (each then reads only the samples it uses, and the ranks check that they read the same
    /// data set); any other is read by rank 0 and handed to every rank.
    pub fn load_data(
        &self,
        source: &DataArgs,
        load: impl FnOnce() -> Result<Dataset>,
    ) -> Result<Dataset> {
        if source.is_mapped() {
            watchdog::set_phase("mapping the data on every rank", true);
            let data = self.on_every_rank(load)?;
            self.check_same_data(&data)?;
            watchdog::set_phase("starting", false);
            return Ok(data);
        }
        watchdog::set_phase("loading the data on rank 0", true);
        let data = self.on_root(load)?;
        let data = broadcast_dataset(self.world(), 0, data);
        watchdog::set_phase("starting", false);
        Ok(data)
    }

    /// An error on every rank when a rank mapped another data set than rank 0 (another
    /// copy of the file on its node, say): samples, features and labels are compared.
    fn check_same_data(&self, data: &Dataset) -> Result<()> {
        let world = self.world();
        let mine = [
            data.len() as u64,
            data.n_features() as u64,
            data.fingerprint(),
        ];
        let mut all = vec![0u64; 3 * world.size()];
        world.all_gather_varcount(&mine, &mut all, &vec![3; world.size()]);
        match all.chunks_exact(3).position(|r| r != &all[..3]) {
            None => Ok(()),
            Some(rank) => {
                let what = |r: &[u64]| format!("{} samples of {} features", r[0], r[1]);
                bail!(
                    "rank {rank} of {} reads another data set from {} than rank 0: {} (labels {:016x}) against {} (labels {:016x}); give every node the same file",
                    world.size(),
                    data.origin.display(),
                    what(&all[3 * rank..]),
                    all[3 * rank + 2],
                    what(&all[..3]),
                    all[2],
                )
            }
        }
    }

    /// A checkpoint read (and checked) by rank 0 and handed to every rank.
    pub fn load_checkpoint(&self, path: &Path) -> Result<Checkpoint> {
        if self.world().size() == 1 {
            return Ok(load(path)?);
        }
        watchdog::set_phase("reading the checkpoint on rank 0", true);
        let mut bytes = self
            .on_root(|| Ok(encode(&load(path)?)?))?
            .unwrap_or_default();
        self.world().broadcast_bytes(0, &mut bytes);
        watchdog::set_phase("starting", false);
        Ok(decode(path, &bytes)?)
    }
}
