//! Criterion benches of the core engine (release mode: `cargo bench`).
//!
//! - `predict_single/60-3-1`: one sample through the seed's Sonar-sized network.
//! - `predict_batch/784-1024-1024-10`: batch-1024 inference, 1 and 2 threads (samples/s).
//! - `train_epoch/784-1024-1024-10`: one epoch (SGD and Adam), batch 32, 60000 synthetic samples.
//! - `gemm_backends`: the products of a batch-32 training step and a batch-1024 inference, in
//!   nnmpi's GEMM (`kernels::gemm`) and in `matrixmultiply`, 1 thread.
//! - `sparse_layer/4096x4096_b256`: one pruned layer (50/90/95/99% of its connections
//!   removed by magnitude) run dense (zeros kept) and sparse (CSR), 1 thread.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nnmpi::data::{Dataset, Targets};
use nnmpi::exec::Engine;
use nnmpi::kernels::Par;
use nnmpi::model::{Activation, Init, Network, UniformStream};
use nnmpi::train::{Loss, OptimizerConfig, Silent, TrainConfig, Trainer};
use std::hint::black_box;
use std::time::Duration;

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
}

fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = UniformStream::new(seed, 0);
    (0..len).map(|_| rng.next_unit()).collect()
}

fn mnist_like() -> Network {
    Network::new(
        &[784, 1024, 1024, 10],
        Activation::Relu,
        Activation::Softmax,
        Init::He,
        1,
    )
    .expect("network")
}

fn predict_single(c: &mut Criterion) {
    let net = Network::new(
        &[60, 3, 1],
        Activation::Sigmoid,
        Activation::Sigmoid,
        Init::Uniform,
        1,
    )
    .expect("network");
    let mut engine = Engine::new(net, Par::Seq);
    let x = random(60, 2);
    let mut g = c.benchmark_group("predict_single");
    g.throughput(Throughput::Elements(1));
    g.bench_function("60-3-1", |b| {
        b.iter(|| black_box(engine.forward(black_box(&x), 1)[0]))
    });
    g.finish();
}

fn predict_batch(c: &mut Criterion) {
    let batch = 1024;
    let x = random(784 * batch, 3);
    let mut g = c.benchmark_group("predict_batch");
    g.throughput(Throughput::Elements(batch as u64));
    for threads in [1, 2] {
        let mut engine = Engine::new(mnist_like(), Par::current_pool());
        let p = pool(threads);
        g.bench_with_input(
            BenchmarkId::new("784-1024-1024-10_b1024", threads),
            &threads,
            |b, _| p.install(|| b.iter(|| black_box(engine.forward(&x, batch)[0]))),
        );
    }
    g.finish();
}

fn train_epoch(c: &mut Criterion) {
    let n = 60_000;
    let mut rng = UniformStream::new(5, 0);
    let features = ndarray::Array2::from_shape_fn((784, n), |_| rng.next_unit());
    let labels = (0..n).map(|_| rng.next_below(10) as u32).collect();
    let data = Dataset {
        features: features.into(),
        targets: Targets::Classes(labels),
        classes: (0..10).map(|d| d.to_string()).collect(),
        origin: "synthetic".into(),
    };
    let mut g = c.benchmark_group("train_epoch");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(n as u64));
    for (name, opt) in [
        ("sgd", OptimizerConfig::sgd(0.01)),
        ("adam", OptimizerConfig::adam(0.001)),
    ] {
        for threads in [1, 2] {
            let config = TrainConfig {
                epochs: usize::MAX,
                batch_size: 32,
                loss: Loss::SoftmaxCrossEntropy,
                optimizer: opt,
                seed: 1,
                patience: None,
                shuffle: true,
            };
            let mut trainer =
                Trainer::new(mnist_like(), config, Par::current_pool()).expect("trainer");
            let p = pool(threads);
            g.bench_with_input(
                BenchmarkId::new(format!("784-1024-1024-10_b32_{name}"), threads),
                &threads,
                |b, _| {
                    p.install(|| b.iter(|| trainer.run_epoch(&data, &mut Silent).expect("epoch")))
                },
            );
        }
    }
    g.finish();
}

/// (name, m, k, n, A transposed, B transposed): the shapes of 784-1024-1024-10 at batch 32
/// (forward, input gradient, weight gradient) and of batch-1024 inference.
const SHAPES: [(&str, usize, usize, usize, bool, bool); 4] = [
    ("forward_1024x1024x32", 1024, 1024, 32, false, false),
    ("input_grad_784x1024x32", 784, 1024, 32, true, false),
    ("weight_grad_1024x32x784", 1024, 32, 784, false, true),
    ("forward_1024x784x1024", 1024, 784, 1024, false, false),
];

fn gemm_backends(c: &mut Criterion) {
    use nnmpi::kernels::gemm::{Mat, gemm};
    let mut g = c.benchmark_group("gemm_backends");
    for (name, m, k, n, ta, tb) in SHAPES {
        let a = random(m * k, 1);
        let b = random(k * n, 2);
        let mut out = vec![0.0f32; m * n];
        let a_mat = if ta {
            Mat::transposed(&a, m)
        } else {
            Mat::row_major(&a, k)
        };
        let b_mat = if tb {
            Mat::transposed(&b, k)
        } else {
            Mat::row_major(&b, n)
        };
        g.throughput(Throughput::Elements((2 * m * k * n) as u64)); // FLOP
        g.bench_function(BenchmarkId::new("nnmpi", name), |bench| {
            bench.iter(|| gemm(Par::Seq, m, k, n, a_mat, b_mat, &mut out, |_, _| {}))
        });
        g.bench_function(BenchmarkId::new("matrixmultiply", name), |bench| {
            // SAFETY: a is m x k and b is k x n with the strides given, out is m x n row-major.
            bench.iter(|| unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    1.0,
                    a.as_ptr(),
                    a_mat.rs as isize,
                    a_mat.cs as isize,
                    b.as_ptr(),
                    b_mat.rs as isize,
                    b_mat.cs as isize,
                    0.0,
                    out.as_mut_ptr(),
                    n as isize,
                    1,
                )
            })
        });
    }
    g.finish();
}

fn sparse_layer(c: &mut Criterion) {
    use nnmpi::model::Format;
    use nnmpi::prune::{Pruning, Scope, Target, prune_network};
    let (n, batch) = (4096, 256);
    let net =
        Network::new(&[n, n], Activation::Relu, Activation::Relu, Init::He, 3).expect("network");
    let x = random(n * batch, 4);
    let mut g = c.benchmark_group("sparse_layer/4096x4096_b256");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    for sparsity in [0.5, 0.9, 0.95, 0.99] {
        let rule = Pruning::connections(Target::Sparsity(sparsity), Scope::Layer);
        // Dense runs the same time on any mask; sparse on single connections and on blocks
        // of 4 rows (which the kernel runs four rows at a time).
        let single = prune_network(&net, rule);
        let blocks = prune_network(&net, rule.in_blocks(4));
        for (name, pruned, format) in [
            ("dense", &single, Format::Dense),
            ("sparse", &single, Format::Sparse),
            ("sparse_block4", &blocks, Format::Sparse),
        ] {
            let mut engine = Engine::new(pruned.with_format(format), Par::Seq);
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_with_input(BenchmarkId::new(name, sparsity), &sparsity, |b, _| {
                b.iter(|| black_box(engine.forward(black_box(&x), batch)[0]))
            });
        }
    }
    g.finish();
}

criterion_group!(
    benches,
    predict_single,
    predict_batch,
    gemm_backends,
    train_epoch,
    sparse_layer
);
criterion_main!(benches);
