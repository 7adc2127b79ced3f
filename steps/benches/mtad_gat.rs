//! MTAD-GAT throughput on MSL shapes (K = 55, W = 100, batch 256, target dims [0]).
//!
//! `cargo bench -p flow-steps --bench mtad_gat` (BENCH_STEPS=n to change the number of timed
//! steps, default 5). Prints training and scoring windows/s and a per-block time split.

use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use flow_steps::model::gat::{GatKind, GraphAttention};
use flow_steps::model::gru::{Gru, InterleavedLayout};
use flow_steps::model::init::{seeded_var_builder, SeededDropout};
use flow_steps::model::{Config, MtadGat};
use std::sync::Arc;

const BATCH: usize = 256;
const K: usize = 55;
const W: usize = 100;

type Result<T> = candle_core::Result<T>;

fn main() -> Result<()> {
    let steps: usize = std::env::var("BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    if std::env::var_os("BENCH_NO_ALLOC_TUNING").is_none() {
        flow_steps::model::alloc::tune_for_tensors();
    }
    let device = Device::Cpu;
    println!(
        "MTAD-GAT, MSL shapes: K={K}, W={W}, batch {BATCH}, 1 target, {} rayon threads",
        rayon::current_num_threads()
    );

    let cfg = Config::paper(K, W, 1);
    let varmap = VarMap::new();
    let model = MtadGat::new(&cfg, seeded_var_builder(&varmap, 0, &device), 0)?;
    let n_params: usize = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
    println!("parameters: {n_params}");
    let mut opt = AdamW::new(
        varmap.all_vars(),
        ParamsAdamW {
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        },
    )?;
    let xs = Tensor::rand(0f32, 1.0, (BATCH, W, K), &device)?;
    let ys = Tensor::rand(0f32, 1.0, (BATCH, 1), &device)?;
    let xt = xs.narrow(2, 0, 1)?.contiguous()?;

    let train_step = |opt: &mut AdamW| -> Result<()> {
        let out = model.forward(&xs, true)?;
        let fc = out
            .forecast
            .as_ref()
            .map(|f| (f - &ys)?.sqr()?.mean_all()?.sqrt())
            .transpose()?;
        let rec = out
            .reconstruction
            .as_ref()
            .map(|r| (r - &xt)?.sqr()?.mean_all()?.sqrt())
            .transpose()?;
        let loss = match (fc, rec) {
            (Some(a), Some(b)) => (a + b)?,
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => unreachable!(),
        };
        opt.backward_step(&loss)
    };
    train_step(&mut opt)?; // warm-up
    let start = Instant::now();
    for _ in 0..steps {
        train_step(&mut opt)?;
    }
    let train_s = start.elapsed().as_secs_f64() / steps as f64;
    println!(
        "train: {:.3} s/batch, {:.0} windows/s",
        train_s,
        BATCH as f64 / train_s
    );

    model.forward(&xs, false)?;
    let start = Instant::now();
    for _ in 0..steps {
        let out = model.forward(&xs, false)?;
        out.forecast.map(|f| f.sum_all()).transpose()?;
    }
    let fwd_s = start.elapsed().as_secs_f64() / steps as f64;
    println!(
        "score forward: {:.3} s/batch, {:.0} windows/s",
        fwd_s,
        BATCH as f64 / fwd_s
    );

    println!("time split per batch (forward / forward+backward), blocks timed on their own:");
    let rng = Arc::new(SeededDropout::new(0));
    let split = VarMap::new();
    let vb = seeded_var_builder(&split, 1, &device);
    let feature_gat = GraphAttention::new(GatKind::Gatv2, K, W, 0.2, 0.3, rng.clone(), vb.pp("f"))?;
    let temporal_gat = GraphAttention::new(GatKind::Gatv2, W, K, 0.2, 0.3, rng, vb.pp("t"))?;
    let encoder = Gru::new(3 * K, 150, vb.pp("enc"))?;
    let decoder = Gru::new(150, 150, vb.pp("dec"))?;
    let layout = InterleavedLayout::new(150, W, &device)?;
    let by_feature = Var::from_tensor(&xs.transpose(1, 2)?.contiguous()?)?;
    let by_time = Var::from_tensor(&xs)?;
    let joined = Var::from_tensor(&Tensor::rand(0f32, 1.0, (BATCH, W, 3 * K), &device)?)?;
    let h_end = Var::from_tensor(&Tensor::rand(-1f32, 1.0, (BATCH, 150), &device)?)?;
    time_block("feature GAT (GATv2, fused)", steps, || {
        feature_gat.forward(&by_feature, true)
    })?;
    time_block("time GAT (GATv2, fused)", steps, || {
        temporal_gat.forward(&by_time, true)
    })?;
    time_block("encoder GRU 165->150", steps, || encoder.forward(&joined))?;
    time_block("decoder GRU 150->150 (interleaved input)", steps, || {
        decoder.forward_interleaved(&h_end, &layout)
    })?;
    Ok(())
}

fn time_block(name: &str, steps: usize, forward: impl Fn() -> Result<Tensor>) -> Result<()> {
    let run_backward = || -> Result<()> {
        let out = forward()?;
        out.sum_all()?.backward()?;
        Ok(())
    };
    run_backward()?;
    let start = Instant::now();
    for _ in 0..steps {
        forward()?;
    }
    let fwd = start.elapsed().as_secs_f64() / steps as f64;
    let start = Instant::now();
    for _ in 0..steps {
        run_backward()?;
    }
    let both = start.elapsed().as_secs_f64() / steps as f64;
    println!(
        "  {name:<28} {:>7.1} ms / {:>7.1} ms",
        fwd * 1e3,
        both * 1e3
    );
    Ok(())
}
