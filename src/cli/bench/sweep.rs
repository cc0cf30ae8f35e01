//! Scaling sweeps (`nnmpi bench --sweep`): one benchmark per model size and ranks × threads
//! combination, written as CSV, JSON and an SVG plot of time and speed-up against the number
//! of ranks.
//!
//! Under `mpirun -np N`, a combination of `r ≤ N` ranks runs on ranks `0..r` (a
//! sub-communicator; the others wait) with the job's rayon threads: MPI is initialised for
//! calls from the main thread only, so the thread count cannot change inside a job. With
//! `--launch`, nnmpi starts `mpirun -np r` itself for every combination, with any threads.

use super::plot;
use anyhow::Result;
use nnmpi::bench::{Case, Report, measure};
use nnmpi::cluster::{Comm, Grid};
use nnmpi::io::write_atomic;
use nnmpi::kernels::Par;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

/// `ranks x threads`, e.g. `2x1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Combo {
    /// MPI ranks.
    pub ranks: usize,
    /// Rayon threads per rank.
    pub threads: usize,
}

impl FromStr for Combo {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let parsed = s.split_once('x').and_then(|(r, t)| {
            let (r, t) = (r.trim().parse().ok()?, t.trim().parse().ok()?);
            (r > 0 && t > 0).then_some(Combo {
                ranks: r,
                threads: t,
            })
        });
        parsed.ok_or_else(|| format!("'{s}' is not RANKSxTHREADS (e.g. 2x1) with both at least 1"))
    }
}

impl fmt::Display for Combo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.ranks, self.threads)
    }
}

/// The named model sizes of a sweep, after the seed's "different model" study: a Sonar-sized
/// network, the seed's 1000-wide three-layer network and a 4096-wide one.
pub fn model_size(name: &str) -> Option<Vec<usize>> {
    match name {
        "small" => Some(vec![60, 60, 1]),
        "medium" => Some(vec![1000, 1000, 1000, 1]),
        "large" => Some(vec![4096, 4096, 4096]),
        _ => None,
    }
}

/// One measured point of a sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Model size name.
    pub model: String,
    /// What was run.
    pub combo: Combo,
    /// Time of the same model's first combination over this one's.
    pub speedup: f64,
    /// The measurement.
    pub report: Report,
}

/// Runs every (model, combination) inside this MPI job; rank 0 gets the points.
pub fn run_in_job<C: Comm>(
    world: &C,
    models: &[(String, Case)],
    combos: &[Combo],
) -> Result<Option<Vec<Point>>> {
    if let Some(c) = combos.iter().find(|c| c.ranks > world.size()) {
        return Err(anyhow::anyhow!(
            "--sweep {c} needs {} ranks but the job has {}: start more with mpirun -np, or use --launch",
            c.ranks,
            world.size()
        ));
    }
    let threads = rayon::current_num_threads();
    if let Some(c) = combos.iter().find(|c| c.threads != threads) {
        return Err(anyhow::anyhow!(
            "--sweep {c} asks for {} threads per rank but this job runs {threads} (--threads or RAYON_NUM_THREADS): inside one job only the ranks can vary; use --launch to vary threads",
            c.threads
        ));
    }
    let mut reports = Vec::new();
    for (name, case) in models {
        for &combo in combos {
            let inside = world.rank() < combo.ranks;
            let part = world.split(usize::from(!inside), world.rank());
            let report = if inside {
                measure(&part, Grid::model(combo.ranks), Par::current_pool(), case)?
            } else {
                None
            };
            world.barrier();
            if let Some(r) = report {
                reports.push((name.clone(), combo, r));
            }
        }
    }
    Ok((world.rank() == 0).then(|| points(reports)))
}

/// How `--launch` starts a job: the launcher and its extra arguments (e.g. a hostfile).
#[derive(Clone, Debug)]
pub struct Launcher {
    /// The `mpirun` to call.
    pub mpirun: PathBuf,
    /// Arguments placed before `-np`.
    pub args: Vec<String>,
    /// The nnmpi executable to start.
    pub exe: PathBuf,
}

/// Runs every (model, combination) as its own `mpirun -np R --bind-to none nnmpi --threads T
/// bench ... --json` job.
pub fn run_launched(
    launcher: &Launcher,
    models: &[(String, Case)],
    combos: &[Combo],
) -> Result<Vec<Point>> {
    let mut reports = Vec::new();
    for (name, case) in models {
        for &combo in combos {
            let layers: Vec<String> = case.layers.iter().map(usize::to_string).collect();
            let mut cmd = Command::new(&launcher.mpirun);
            cmd.args(&launcher.args)
                .args(["-np", &combo.ranks.to_string(), "--bind-to", "none"])
                .arg(&launcher.exe)
                .args(["--threads", &combo.threads.to_string(), "bench", "--json"])
                .args(["--layers", &layers.join(",")])
                .args(["--batch", &case.batch.to_string()])
                .args(["--mode", &case.mode.to_string()])
                .args(["--activation", &case.activation.to_string()])
                .args(["--output-activation", &case.output.to_string()])
                .args(["--sparsity", &case.sparsity.to_string()])
                .args(["--block", &case.block.to_string()])
                .args(["--format", &case.format.to_string()])
                .args(["--reps", &case.reps.to_string()])
                .args(["--warmup", &case.warmup.to_string()])
                .args(["--samples", &case.samples.to_string()]);
            if let Some(n) = case.inner {
                cmd.args(["--inner", &n.to_string()]);
            }
            let shown = format!("{cmd:?}");
            let out = cmd
                .output()
                .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", launcher.mpirun.display()))?;
            if !out.status.success() {
                return Err(anyhow::anyhow!(
                    "{shown} failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text
                .lines()
                .find(|l| l.starts_with('{'))
                .unwrap_or_default();
            let report: Report = serde_json::from_str(line)
                .map_err(|e| anyhow::anyhow!("{shown} printed no bench report ({e}): {text}"))?;
            reports.push((name.clone(), combo, report));
        }
    }
    Ok(points(reports))
}

/// Speed-ups against each model's first combination.
fn points(reports: Vec<(String, Combo, Report)>) -> Vec<Point> {
    let base = |model: &str| {
        reports
            .iter()
            .find(|(m, _, _)| m == model)
            .map_or(f64::NAN, |(_, _, r)| r.median_ms)
    };
    reports
        .iter()
        .map(|(model, combo, report)| Point {
            model: model.clone(),
            combo: *combo,
            speedup: base(model) / report.median_ms,
            report: report.clone(),
        })
        .collect()
}

/// The points as CSV: one line per point.
pub fn to_csv(points: &[Point]) -> String {
    let mut out = String::from(
        "model,layers,mode,batch,ranks,threads,median_ms,min_ms,max_ms,speedup,samples_per_sec,gflops,comm_share\n",
    );
    for p in points {
        let r = &p.report;
        let layers: Vec<String> = r.layers.iter().map(usize::to_string).collect();
        out += &format!(
            "{},{},{},{},{},{},{:.6},{:.6},{:.6},{:.4},{:.1},{:.3},{:.4}\n",
            p.model,
            layers.join("-"),
            r.mode,
            r.batch,
            p.combo.ranks,
            p.combo.threads,
            r.median_ms,
            r.min_ms,
            r.max_ms,
            p.speedup,
            r.samples_per_sec,
            r.gflops,
            r.comm_share
        );
    }
    out
}

/// Reads the points of `dir/sweep.json` (as written by [`write`]).
pub fn read(dir: &Path) -> Result<Vec<Point>> {
    let path = dir.join("sweep.json");
    let text = std::fs::read_to_string(&path).map_err(|e| nnmpi::Error::io(&path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: not a sweep's points: {e}", path.display()))
}

/// Writes `sweep.csv`, `sweep.json` and `sweep.svg` into `dir` (created if missing); returns
/// their paths.
pub fn write(dir: &Path, points: &[Point]) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| nnmpi::Error::io(dir, e))?;
    let csv = dir.join("sweep.csv");
    let json = dir.join("sweep.json");
    let svg = dir.join("sweep.svg");
    write_atomic(&csv, to_csv(points).as_bytes())?;
    let text = serde_json::to_string_pretty(points).expect("points serialise");
    write_atomic(&json, text.as_bytes())?;
    write_atomic(&svg, plot::sweep_svg(points)?.as_bytes())?;
    Ok(vec![csv, json, svg])
}

#[cfg(test)]
mod tests {
    use super::*;
    use nnmpi::bench::Mode;
    use nnmpi::cluster::SelfComm;
    use nnmpi::model::{Activation, Format};

    #[test]
    fn combos_parse_and_print() {
        assert_eq!(
            "2x4".parse::<Combo>(),
            Ok(Combo {
                ranks: 2,
                threads: 4
            })
        );
        assert_eq!("2x4".parse::<Combo>().unwrap().to_string(), "2x4");
        for bad in ["2", "0x1", "1x0", "ax1", ""] {
            assert!(bad.parse::<Combo>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_sweep_in_one_process_measures_every_point_and_writes_its_files() {
        let case = Case {
            layers: vec![8, 6, 2],
            batch: 4,
            mode: Mode::Predict,
            activation: Activation::Relu,
            output: Activation::Identity,
            sparsity: 0.0,
            block: 1,
            format: Format::Dense,
            reps: 3,
            warmup: 1,
            samples: 1,
            inner: Some(2),
        };
        let wide = vec![16, 12, 2];
        let models = vec![
            ("tiny".to_string(), case.clone()),
            (
                "wider".to_string(),
                Case {
                    layers: wide,
                    ..case
                },
            ),
        ];
        let threads = rayon::current_num_threads();
        let combos = [Combo { ranks: 1, threads }];
        let points = run_in_job(&SelfComm, &models, &combos)
            .expect("runs")
            .expect("rank 0 has the points");
        assert_eq!(points.len(), 2);
        assert_eq!(
            (points[0].model.as_str(), points[1].model.as_str()),
            ("tiny", "wider")
        );
        assert!(
            points
                .iter()
                .all(|p| p.speedup == 1.0 && p.report.inner == 2)
        );
        assert_eq!(points[1].report.layers, [16, 12, 2]);
        let more = Combo {
            ranks: 1,
            threads: threads + 1,
        };
        for bad in [Combo { ranks: 2, threads }, more] {
            assert!(run_in_job(&SelfComm, &models, &[bad]).is_err(), "{bad}");
        }
        let dir = tempfile::tempdir().expect("a temp dir");
        let files = write(dir.path(), &points).expect("writes");
        let csv = std::fs::read_to_string(&files[0]).expect("csv");
        assert_eq!(csv.lines().count(), 3);
        let row = format!("wider,16-12-2,predict,4,1,{threads},");
        assert!(csv.lines().nth(2).unwrap().starts_with(&row), "{csv}");
        let back: Vec<Point> =
            serde_json::from_str(&std::fs::read_to_string(&files[1]).expect("json"))
                .expect("parses");
        assert_eq!(back.len(), points.len());
        for (b, p) in back.iter().zip(&points) {
            assert_eq!(
                (&b.model, b.combo, &b.report.layers),
                (&p.model, p.combo, &p.report.layers)
            );
            assert!((b.report.median_ms - p.report.median_ms).abs() <= 1e-12 * p.report.median_ms);
        }
        let svg = std::fs::read_to_string(&files[2]).expect("svg");
        assert!(
            svg.starts_with("<svg") && svg.contains("wider (16-12-2)"),
            "{svg}"
        );
    }
}
