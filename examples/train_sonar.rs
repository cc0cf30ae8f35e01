//! nnmpi as a library: load Sonar, normalise, train a 60-60-1 network, report accuracy.
//! Run with `cargo run --release --example train_sonar`.

use nnmpi::cluster::SelfComm;
use nnmpi::data::{CsvOptions, NormKind, Normalizer, load_csv};
use nnmpi::kernels::Par;
use nnmpi::model::{Activation, Init, Network};
use nnmpi::train::{Loss, OptimizerConfig, Silent, TrainConfig, Trainer};

fn main() -> Result<(), nnmpi::Error> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/sonar.csv");
    let mut data = load_csv(path.as_ref(), &CsvOptions::default())?;
    data.normalize(&Normalizer::fit_dataset(
        NormKind::ZScore,
        &data,
        &SelfComm,
    )?)?;
    let net = Network::new(
        &[60, 60, 1],
        Activation::Relu,
        Activation::Sigmoid,
        Init::He,
        42,
    )?;
    let config = TrainConfig {
        epochs: 100,
        batch_size: 32,
        loss: Loss::BinaryCrossEntropy,
        optimizer: OptimizerConfig::adam(0.001),
        seed: 42,
        patience: None,
        shuffle: true,
    };
    let mut trainer = Trainer::new(net, config, Par::current_pool())?;
    trainer.fit(&data, None, &mut Silent)?;
    let eval = trainer.evaluate(&data)?;
    println!(
        "training-set accuracy {:.2}%",
        100.0 * eval.accuracy.unwrap_or(0.0)
    );
    Ok(())
}
