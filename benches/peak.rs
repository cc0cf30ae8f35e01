//! The core's FP32 FMA peak, measured, beside nnmpi's GEMM on the same threads
//! (`cargo bench --bench peak`), so "percent of peak" is a printed number.
//!
//! The peak loop runs independent chains of `vfmadd` on registers (no memory operands): 16
//! with AVX-512's 32 registers, 12 with AVX2's 16 (16 chains plus the two operands would not
//! fit, and the spills halved the figure on an AMD EPYC Zen 3, family 25 model 1). Either covers the FMA latency on both
//! ports of every CPU nnmpi targets (4 cycles x 2 ports = 8 chains). It is timed for
//! the widest vectors the CPU has (AVX-512, else AVX2 + FMA). Each figure is the median of
//! 15 runs alternating with the product's; with 2 threads both run the loop at once and
//! their rates add up.

use nnmpi::kernels::Par;
use nnmpi::kernels::gemm::{Mat, PackedRows, gemm, gemm_packed, microkernel};
use std::hint::black_box;
use std::time::Instant;

/// FMA instructions per run and chain (a run takes about 20 ms).
const STEPS: usize = 1_500_000;
/// Rounds of runs (peak, product in place, product packed) per figure.
const ROUNDS: usize = 15;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A pool of `threads` threads.
fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
}

/// GFLOP/s of one run of `work` (which returns its FLOP count).
fn gflops(work: &mut dyn FnMut() -> f64) -> f64 {
    let start = Instant::now();
    let flop = work();
    flop / start.elapsed().as_secs_f64() / 1e9
}

#[cfg(target_arch = "x86_64")]
mod fma {
    use super::STEPS;
    use std::arch::x86_64::*;

    /// Defines the FMA loop for one vector width: `$chains` independent chains of `STEPS`
    /// fused multiply-adds on registers; returns the FLOP done.
    macro_rules! fma_loop {
        ($(#[$m:meta])* $name:ident, $features:literal, $lanes:literal, $chains:literal, $set1:ident, $fmadd:ident) => {
            $(#[$m])*
            #[target_feature(enable = $features)]
            pub unsafe fn $name(seed: f32) -> f64 {
                let mut acc = [$set1(seed); $chains];
                let (x, y) = ($set1(0.999_999), $set1(1e-7));
                for _ in 0..STEPS {
                    for a in acc.iter_mut() {
                        *a = $fmadd(*a, x, y);
                    }
                }
                std::hint::black_box(acc);
                (STEPS * $chains * $lanes * 2) as f64
            }
        };
    }

    fma_loop!(
        /// # Safety
        /// The CPU has AVX-512F.
        avx512, "avx512f", 16, 16, _mm512_set1_ps, _mm512_fmadd_ps
    );
    fma_loop!(
        /// # Safety
        /// The CPU has AVX2 and FMA.
        avx2, "avx2,fma", 8, 12, _mm256_set1_ps, _mm256_fmadd_ps
    );
}

/// A timed FMA loop: it returns the FLOP it did.
type PeakLoop = fn() -> f64;

/// The FMA loop for the widest vectors this CPU has, and their name.
fn peak_loop() -> Option<(&'static str, PeakLoop)> {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return Some(("avx512", || unsafe { fma::avx512(black_box(1.0)) }));
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA.
            return Some(("avx2", || unsafe { fma::avx2(black_box(1.0)) }));
        }
    }
    None
}

fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = nnmpi::model::UniformStream::new(seed, 0);
    (0..len).map(|_| rng.next_unit()).collect()
}

/// `C[m, n] = A[m, k] · B[k, n]` (row-major) with the pool's threads splitting rows, A read
/// in place or packed once beforehand ([`PackedRows`], as a layer's weights at inference);
/// returns a closure that runs it once and returns its FLOP count.
fn product(
    pool: &rayon::ThreadPool,
    (m, k, n): (usize, usize, usize),
    packed: bool,
) -> impl FnMut() -> f64 + '_ {
    let (a, b) = (values(m * k, 1), values(k * n, 2));
    let a_packed = packed.then(|| PackedRows::new(&a, m, k));
    let mut c = vec![0.0f32; m * n];
    move || {
        let b = Mat::row_major(&b, n);
        pool.install(|| match &a_packed {
            Some(ap) => gemm_packed(
                Par::threads(pool.current_num_threads()),
                ap,
                n,
                b,
                &mut c,
                |_, _| {},
            ),
            None => gemm(
                Par::threads(pool.current_num_threads()),
                m,
                k,
                n,
                Mat::row_major(&a, k),
                b,
                &mut c,
                |_, _| {},
            ),
        });
        (2 * m * k * n) as f64
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported here.
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    println!("CPU: {cpu}; GEMM microkernel: {}", microkernel());
    let Some((width, peak)) = peak_loop() else {
        println!("no AVX2/AVX-512 FMA on this CPU: nothing to measure");
        return;
    };
    // Peak and products alternate, run by run, so that a slow spell of a shared machine
    // lowers every figure of a round; percentages are medians of the rounds' ratios.
    println!(
        "| threads | GEMM m x k x n | FMA peak ({width}), GFLOP/s | GEMM (A in place), GFLOP/s | % of peak | GEMM (A packed), GFLOP/s | % of peak |"
    );
    println!("|---|---|---|---|---|---|---|");
    let shapes = [(4096, 4096, 256), (1024, 784, 1024), (1024, 1024, 64)];
    for threads in [1, 2] {
        let pool = pool(threads);
        let mut top = || pool.install(|| rayon::broadcast(|_| peak()).into_iter().sum::<f64>());
        for shape in shapes {
            let mut in_place = product(&pool, shape, false);
            let mut packed = product(&pool, shape, true);
            in_place(); // warm up: packing buffers, caches, clocks
            packed();
            let rounds: Vec<[f64; 3]> = (0..ROUNDS)
                .map(|_| [gflops(&mut top), gflops(&mut in_place), gflops(&mut packed)])
                .collect();
            let fig = |i: usize| median(rounds.iter().map(|r| r[i]).collect());
            let pct = |i: usize| 100.0 * median(rounds.iter().map(|r| r[i] / r[0]).collect());
            let (m, k, n) = shape;
            println!(
                "| {threads} | {m} x {k} x {n} | {:.1} | {:.1} | {:.1}% | {:.1} | {:.1}% |",
                fig(0),
                fig(1),
                pct(1),
                fig(2),
                pct(2)
            );
        }
    }
}
