//! What `nnmpi train` shows and writes while it trains: a progress bar, a line per epoch, a
//! metrics log, and the library's periodic checkpoints.

use super::preempt::StopSignals;
use super::rank_log::RankLog;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nnmpi::cluster::{Comm, watchdog};
use nnmpi::io::PeriodicCheckpoints;
use nnmpi::train::{EpochReport, Observer, Trainer};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;

/// Metrics log format, by file extension: `.json`/`.jsonl` give JSON lines, anything else CSV.
pub struct MetricsLog {
    out: BufWriter<File>,
    json: bool,
}

impl MetricsLog {
    /// Opens `path`; `append` continues an existing log (on resume).
    pub fn open(path: &Path, append: bool) -> anyhow::Result<Self> {
        let json = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("json" | "jsonl")
        );
        let existing = append && path.metadata().map(|m| m.len() > 0).unwrap_or(false);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(path)
            .with_context(|| format!("cannot open --log {}", path.display()))?;
        let mut log = MetricsLog {
            out: BufWriter::new(file),
            json,
        };
        if !json && !existing {
            writeln!(
                log.out,
                "epoch,train_loss,train_accuracy,val_loss,val_accuracy,samples_per_sec"
            )?;
        }
        Ok(log)
    }

    fn write(&mut self, r: &EpochReport) -> std::io::Result<()> {
        let opt = |v: Option<f64>| v.map(|v| format!("{v:.6}"));
        let val_loss = r.validation.as_ref().map(|v| v.loss);
        let val_acc = r.validation.as_ref().and_then(|v| v.accuracy);
        if self.json {
            let j = |v: Option<f64>| opt(v).unwrap_or_else(|| "null".into());
            writeln!(
                self.out,
                "{{\"epoch\":{},\"train_loss\":{:.6},\"train_accuracy\":{},\"val_loss\":{},\"val_accuracy\":{},\"samples_per_sec\":{:.1}}}",
                r.epoch,
                r.train_loss,
                j(r.train_accuracy),
                j(val_loss),
                j(val_acc),
                r.samples_per_sec
            )?;
        } else {
            let c = |v: Option<f64>| opt(v).unwrap_or_default();
            writeln!(
                self.out,
                "{},{:.6},{},{},{},{:.1}",
                r.epoch,
                r.train_loss,
                c(r.train_accuracy),
                c(val_loss),
                c(val_acc),
                r.samples_per_sec
            )?;
        }
        self.out.flush()
    }
}

/// The observer behind `nnmpi train`.
pub struct Progress {
    bar: Option<ProgressBar>,
    show_bar: bool,
    quiet: bool,
    total_epochs: usize,
    log: Option<MetricsLog>,
    checkpoints: Option<PeriodicCheckpoints>,
    /// The signals that stop training cleanly, when caught.
    stop: Option<StopSignals>,
    /// The epoch running (1-based) and its mini-batches.
    epoch: usize,
    batches: usize,
    /// This rank's own log (`--log-dir`), on every rank.
    rank_log: Option<RankLog>,
}

impl Progress {
    /// A progress display; only `root` shows or writes anything, and the bar is drawn only on
    /// a terminal.
    pub fn new(
        root: bool,
        quiet: bool,
        total_epochs: usize,
        log: Option<MetricsLog>,
        checkpoints: Option<PeriodicCheckpoints>,
    ) -> Self {
        Progress {
            bar: None,
            show_bar: root && !quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            quiet: quiet || !root,
            total_epochs,
            log,
            checkpoints,
            stop: None,
            epoch: 0,
            batches: 0,
            rank_log: None,
        }
    }

    /// Writes a line per epoch to this rank's log too.
    pub fn logging_rank(mut self, log: Option<RankLog>) -> Self {
        self.rank_log = log;
        self
    }

    /// Stops training cleanly when one of `signals` arrives.
    pub fn stopping_on(mut self, signals: StopSignals) -> Self {
        self.stop = Some(signals);
        self
    }

    /// Keeps the stop signals caught after this is dropped (see [`StopSignals::keep_catching`]).
    pub fn keep_catching_signals(&mut self) {
        if let Some(s) = &mut self.stop {
            s.keep_catching();
        }
    }

    /// The stop signal this rank received, if any.
    pub fn stop_signal(&self) -> Option<&'static str> {
        self.stop.as_ref()?.received()
    }

    /// After a stop inside an epoch: the bar of that epoch removed, and the checkpoints, if
    /// the run writes them.
    pub fn interrupted(&mut self) -> Option<&PeriodicCheckpoints> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.checkpoints.as_ref()
    }
}

impl Progress {
    /// The checkpoints, if the run writes them. From now on a stop signal ends the process
    /// at once.
    pub fn into_checkpoints(self) -> Option<PeriodicCheckpoints> {
        self.checkpoints
    }

    /// What a failed run leaves behind: the last checkpoint written, if any.
    pub fn what_is_kept(&self) -> String {
        match self
            .checkpoints
            .as_ref()
            .and_then(|c| Some((c, c.saved_epoch()?)))
        {
            Some((c, epoch)) => format!(
                "the last good checkpoint (after epoch {epoch}) is {}",
                c.path().display()
            ),
            _ => "no checkpoint was written".into(),
        }
    }
}

fn pct(v: f64) -> String {
    format!("{:.2}%", 100.0 * v)
}

impl<C: Comm> Observer<C> for Progress {
    fn epoch_started(&mut self, epoch: usize, batches: usize) {
        (self.epoch, self.batches) = (epoch, batches);
        watchdog::set_position(epoch, 1);
        if let Some(log) = &mut self.rank_log {
            log.epoch_started();
        }
        if !self.show_bar {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(batches as u64), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} batches  {per_sec}  eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(format!("{epoch}/{}", self.total_epochs));
        self.bar = Some(bar);
    }

    fn batch_done(&mut self, done: usize) {
        // The mini-batch running next (the last one while the epoch ends).
        watchdog::set_position(self.epoch, (done + 1).min(self.batches));
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
        }
    }

    fn epoch_done(&mut self, trainer: &Trainer<C>, r: &EpochReport) -> nnmpi::Result<()> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if let Some(log) = &mut self.rank_log {
            log.epoch_done(r.epoch, trainer.shard())?;
        }
        if !self.quiet {
            let mut line = format!(
                "epoch {:>4}/{}  loss {:.4}",
                r.epoch, self.total_epochs, r.train_loss
            );
            if let Some(a) = r.train_accuracy {
                line += &format!("  acc {}", pct(a));
            }
            if let Some(v) = &r.validation {
                line += &format!("  val_loss {:.4}", v.loss);
                if let Some(a) = v.accuracy {
                    line += &format!("  val_acc {}", pct(a));
                }
            }
            line += &format!("  {:.0} samples/s", r.samples_per_sec);
            if r.stopped_early {
                line += "  (early stop)";
            }
            println!("{line}");
        }
        if let Some(log) = &mut self.log {
            log.write(r).map_err(|e| nnmpi::Error::io("--log", e))?;
        }
        match &mut self.checkpoints {
            Some(c) => c.epoch_done(trainer, r.epoch),
            None => Ok(()),
        }
    }

    fn may_stop(&self) -> bool {
        self.stop.is_some()
    }

    fn stop_requested(&mut self) -> bool {
        self.stop_signal().is_some()
    }
}
