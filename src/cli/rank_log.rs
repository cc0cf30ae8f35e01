//! `nnmpi train --log-dir DIR`: one CSV file per rank, `DIR/rank-R.csv`, one line per epoch
//! saying where that rank's time went (computing, in collectives), what it holds (neurons and
//! stored connections of its shard), how many bytes it passed into collectives and how many
//! samples it read from a memory-mapped NPY data set.

use super::context::Ctx;
use anyhow::{Context, Result};
use nnmpi::cluster::{Comm, CommReading, CommTally, host_name};
use nnmpi::data::mapped_samples_read;
use nnmpi::exec::ShardLayer;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

/// The columns of a rank's log.
pub const HEADER: &str = "epoch,rank,ranks,host,seconds,compute_s,comm_s,comm_calls,bytes_sent,neurons,connections,samples_read";

/// One rank's log.
pub struct RankLog {
    out: BufWriter<File>,
    path: PathBuf,
    rank: usize,
    ranks: usize,
    host: String,
    tally: Rc<CommTally>,
    /// When the epoch running started, the collectives' tally and the samples read then.
    started: Option<(Instant, CommReading, u64)>,
}

impl RankLog {
    /// Opens this rank's log in `dir` (created if missing) on every rank: a collective, and
    /// when any rank cannot, every rank fails with its message. `append` continues the logs
    /// of a resumed run.
    pub fn open<C: Comm>(ctx: &Ctx<C>, dir: &Path, append: bool) -> Result<Self> {
        let (rank, ranks) = (ctx.world().rank(), ctx.world().size());
        ctx.on_every_rank(|| {
            let path = dir.join(format!("rank-{rank}.csv"));
            let existing = append && path.metadata().is_ok_and(|m| m.len() > 0);
            std::fs::create_dir_all(dir)
                .and_then(|()| {
                    OpenOptions::new()
                        .create(true)
                        .write(true)
                        .append(append)
                        .truncate(!append)
                        .open(&path)
                })
                .with_context(|| {
                    format!(
                        "--log-dir {}: cannot write {}",
                        dir.display(),
                        path.display()
                    )
                })
                .map(|file| RankLog {
                    out: BufWriter::new(file),
                    path: path.clone(),
                    rank,
                    ranks,
                    host: host_name(),
                    tally: ctx.comm_tally.clone(),
                    started: None,
                })
                .and_then(|mut log| {
                    if !existing {
                        writeln!(log.out, "{HEADER}")
                            .and_then(|()| log.out.flush())
                            .with_context(|| format!("--log-dir: writing {}", path.display()))?;
                    }
                    Ok(log)
                })
        })
    }

    /// An epoch starts now.
    pub fn epoch_started(&mut self) {
        self.started = Some((Instant::now(), self.tally.read(), mapped_samples_read()));
    }

    /// Epoch `epoch` is done; `shard` is what this rank holds.
    pub fn epoch_done(&mut self, epoch: usize, shard: &[ShardLayer]) -> nnmpi::Result<()> {
        let Some((start, before, read_before)) = self.started.take() else {
            return Ok(());
        };
        let seconds = start.elapsed().as_secs_f64();
        let comm = self.tally.read() - before;
        let neurons: usize = shard.iter().map(ShardLayer::len).sum();
        let connections: usize = shard.iter().map(|l| l.weights.stored()).sum();
        writeln!(
            self.out,
            "{epoch},{},{},{},{seconds:.6},{:.6},{:.6},{},{},{neurons},{connections},{}",
            self.rank,
            self.ranks,
            self.host,
            (seconds - comm.visible_seconds()).max(0.0),
            comm.visible_seconds(),
            comm.calls,
            comm.bytes,
            mapped_samples_read() - read_before
        )
        .and_then(|()| self.out.flush())
        .map_err(|e| nnmpi::Error::io(&self.path, e))
    }
}
