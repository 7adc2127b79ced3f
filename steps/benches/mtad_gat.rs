//! MTAD-GAT throughput on MSL shapes (K = 55, W = 100, batch 256, target dims [0]), and how
//! near it runs to the machine's GEMM peak.
//!
//! `cargo bench -p flow-steps --bench mtad_gat` (BENCH_STEPS=n timed steps, default 5;
//! RAYON_NUM_THREADS sets the threads). Prints `bench <name> <value> <unit>` lines:
//! training and scoring windows/s (the training step is the one `flow step train` runs:
//! forward, loss, backward, gradient norm and clipping, Adam), the GEMM peak at the GRU's
//! shapes, the FLOPs of a window counted from the model's shapes, the share of the ceiling
//! they give, and the time of each block on its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use flow_steps::model::conv::ConvLayer;
use flow_steps::model::fit::{StepOutcome, Trainer};
use flow_steps::model::gat::{GatKind, GraphAttention, Orientation};
use flow_steps::model::gru::{Gru, InterleavedLayout};
use flow_steps::model::init::{seeded_var_builder, SeededDropout};
use flow_steps::model::linalg::{gemm, Mat, MatMut};
use flow_steps::model::packed_gemm::{gemm_packed, PackedRhs};
use flow_steps::model::{Config, MtadGat};
use rayon::prelude::*;

const BATCH: usize = 256;
const K: usize = 55;
const W: usize = 100;
const H: usize = 150;

type Result<T> = anyhow::Result<T>;

fn main() -> Result<()> {
    let steps: usize = std::env::var("BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    if std::env::var_os("BENCH_NO_ALLOC_TUNING").is_none() {
        flow_steps::model::alloc::tune_for_tensors();
    }
    let device = Device::Cpu;
    let threads = rayon::current_num_threads();
    println!(
        "# MTAD-GAT, MSL shapes: K={K}, W={W}, batch {BATCH}, 1 target, {threads} rayon threads"
    );

    let cfg = Config::paper(K, W, 1);
    let varmap = VarMap::new();
    let model = MtadGat::new(&cfg, seeded_var_builder(&varmap, 0, &device), 0)?;
    let n_params: usize = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
    println!("# parameters: {n_params}");
    let mut trainer = Trainer::new(&model, &varmap, 1e-3, 1.0)?;
    let xs = Tensor::rand(0f32, 1.0, (BATCH, W, K), &device)?;
    let ys = Tensor::rand(0f32, 1.0, (BATCH, 1), &device)?;
    let xt = xs.narrow(2, 0, 1)?.contiguous()?;

    let mut train_step = || -> Result<()> {
        match trainer.step(&xs, &ys, &xt, false)? {
            StepOutcome::Updated { .. } => Ok(()),
            other => anyhow::bail!("training step did not update: {other:?}"),
        }
    };
    train_step()?; // warm-up
    let train_s = median_seconds(steps, &mut train_step)?;
    let train_rate = BATCH as f64 / train_s;
    println!("bench mtad_gat_train_step {:.1} ms", train_s * 1e3);
    println!("bench mtad_gat_train_windows_per_s {train_rate:.0} windows/s");

    // Scoring as evaluate and `flow serve` run it: the weights are plain tensors (a loaded
    // bundle), so nothing is kept for a backward pass (the PyTorch anchor: torch.no_grad()).
    let scoring = MtadGat::new(
        &cfg,
        VarBuilder::from_tensors(detached(&varmap)?, DType::F32, &device),
        0,
    )?;
    let mut forward = || -> Result<()> {
        let out = scoring.forward(&xs, false)?;
        out.forecast.map(|f| f.sum_all()).transpose()?;
        Ok(())
    };
    forward()?;
    let fwd_s = median_seconds(steps, &mut forward)?;
    let fwd_rate = BATCH as f64 / fwd_s;
    println!("bench mtad_gat_forward {:.1} ms", fwd_s * 1e3);
    println!("bench mtad_gat_forward_windows_per_s {fwd_rate:.0} windows/s");

    // The ceiling: every FLOP of a window at the GEMM peak of the GRU's own shapes.
    let peak = gemm_peak(steps)?;
    let flops = ModelFlops::of(&cfg);
    println!(
        "# FLOPs per window (2 per multiply-add), forward: conv {:.1}M, feature GAT {:.1}M, time GAT {:.1}M, encoder GRU {:.1}M, decoder GRU {:.1}M, heads {:.2}M",
        flops.conv / 1e6,
        flops.feature_gat / 1e6,
        flops.time_gat / 1e6,
        flops.encoder / 1e6,
        flops.decoder / 1e6,
        flops.heads / 1e6
    );
    let forward_flops = flops.total();
    println!(
        "bench mtad_gat_forward_mflop_per_window {:.1} MFLOP",
        forward_flops / 1e6
    );
    let ceiling_fwd = peak * 1e9 / forward_flops;
    let ceiling_train = ceiling_fwd / 3.0;
    println!("bench mtad_gat_ceiling_train_windows_per_s {ceiling_train:.0} windows/s");
    println!("bench mtad_gat_ceiling_forward_windows_per_s {ceiling_fwd:.0} windows/s");
    println!(
        "bench mtad_gat_train_share_of_ceiling {:.0} %",
        100.0 * train_rate / ceiling_train
    );
    println!(
        "bench mtad_gat_forward_share_of_ceiling {:.0} %",
        100.0 * fwd_rate / ceiling_fwd
    );

    blocks(steps, &device, &xs)?;
    Ok(())
}

/// Median wall time of `steps` runs of `f`.
fn median_seconds(steps: usize, f: &mut dyn FnMut() -> Result<()>) -> Result<f64> {
    let mut times = Vec::with_capacity(steps.max(1));
    for _ in 0..steps.max(1) {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// GFLOP/s of the GRU recurrence's GEMM, [B/threads, H] x [H, 3H] per thread and step, each
/// thread on its own rows as the fused recurrence runs it; and of the encoder's input
/// projection, [B*W, 3K] x [3K, 3H], split over the threads by rows.
fn gemm_peak(steps: usize) -> Result<f64> {
    let threads = rayon::current_num_threads();
    let rows = BATCH.div_ceil(threads);
    let weights: Vec<f32> = (0..H * 3 * H)
        .map(|i| ((i % 17) as f32 - 8.0) * 0.01)
        .collect();
    let states: Vec<Vec<f32>> = (0..threads)
        .map(|t| {
            (0..rows * H)
                .map(|i| ((i + t) % 13) as f32 * 0.01)
                .collect()
        })
        .collect();
    let mut outputs: Vec<Vec<f32>> = (0..threads).map(|_| vec![0f32; rows * 3 * H]).collect();
    let reps = 100;
    let mut recurrence = || -> Result<()> {
        outputs.par_iter_mut().zip(&states).for_each(|(out, h)| {
            for _ in 0..reps {
                gemm(
                    Mat::rows(h, rows, H, H),
                    Mat::rows(&weights, H, 3 * H, 3 * H),
                    MatMut::rows(out, rows, 3 * H, 3 * H),
                    true,
                );
            }
        });
        Ok(())
    };
    recurrence()?;
    let secs = median_seconds(steps, &mut recurrence)?;
    let step_gflops = 2.0 * (rows * H * 3 * H * reps * threads) as f64 / secs / 1e9;
    println!("bench gemm_gru_step_gflops {step_gflops:.0} GFLOP/s ({threads} x [{rows}, {H}] x [{H}, {}])", 3 * H);

    // The same product against W_hh^T packed once, as the recurrence now runs it.
    let packed = PackedRhs::new(Mat::rows(&weights, H, 3 * H, 3 * H));
    let mut packed_recurrence = || -> Result<()> {
        outputs.par_iter_mut().zip(&states).for_each(|(out, h)| {
            for _ in 0..reps {
                gemm_packed(
                    Mat::rows(h, rows, H, H),
                    &packed,
                    MatMut::rows(out, rows, 3 * H, 3 * H),
                );
            }
        });
        Ok(())
    };
    packed_recurrence()?;
    let secs = median_seconds(steps, &mut packed_recurrence)?;
    let packed_gflops = 2.0 * (rows * H * 3 * H * reps * threads) as f64 / secs / 1e9;
    println!("bench gemm_gru_step_packed_gflops {packed_gflops:.0} GFLOP/s (W_hh^T packed once)");

    let in_dim = 3 * K;
    let x: Vec<f32> = (0..BATCH * W * in_dim)
        .map(|i| (i % 11) as f32 * 0.01)
        .collect();
    let w_ih: Vec<f32> = (0..in_dim * 3 * H).map(|i| (i % 7) as f32 * 0.01).collect();
    let mut gi = vec![0f32; BATCH * W * 3 * H];
    let per_task = (BATCH * W).div_ceil(threads);
    let mut projection = || -> Result<()> {
        gi.par_chunks_mut(per_task * 3 * H)
            .zip(x.par_chunks(per_task * in_dim))
            .for_each(|(gi, x)| {
                let n = x.len() / in_dim;
                gemm(
                    Mat::rows(x, n, in_dim, in_dim),
                    Mat::rows(&w_ih, in_dim, 3 * H, 3 * H),
                    MatMut::rows(gi, n, 3 * H, 3 * H),
                    false,
                );
            });
        Ok(())
    };
    projection()?;
    let secs = median_seconds(steps, &mut projection)?;
    let proj_gflops = 2.0 * (BATCH * W * in_dim * 3 * H) as f64 / secs / 1e9;
    println!(
        "bench gemm_gru_input_projection_gflops {proj_gflops:.0} GFLOP/s ([{}, {in_dim}] x [{in_dim}, {}])",
        BATCH * W,
        3 * H
    );
    let peak = step_gflops.max(packed_gflops).max(proj_gflops);
    println!("bench gemm_peak_gflops {peak:.0} GFLOP/s");
    Ok(peak)
}

/// A window's forward FLOPs by block, counted from the shapes as the reference computes them
/// (GATv2 on every [v_i || v_j] pair: its linear map split into the two halves, the pairwise
/// a . LeakyReLU counted as one multiply-add per pair and lane; the decoder projecting its
/// W-step input in full). Training is counted as 3x the forward pass.
struct ModelFlops {
    conv: f64,
    feature_gat: f64,
    time_gat: f64,
    encoder: f64,
    decoder: f64,
    heads: f64,
}

impl ModelFlops {
    fn of(cfg: &Config) -> ModelFlops {
        let (k, w, h) = (
            cfg.n_features as f64,
            cfg.window as f64,
            cfg.gru_hidden as f64,
        );
        let mac = |m: f64, n: f64, inner: f64| 2.0 * m * n * inner;
        let gatv2 = |nodes: f64, dim: f64| {
            let embed = 2.0 * dim;
            2.0 * mac(nodes, embed, dim) + mac(nodes, nodes, embed) + mac(nodes, dim, nodes)
        };
        let gru = |steps: f64, input: f64| mac(steps, 3.0 * h, input) + mac(steps, 3.0 * h, h);
        let fh = cfg.forecast_hidden as f64;
        ModelFlops {
            conv: mac(w, k, cfg.kernel_size as f64 * k),
            feature_gat: gatv2(k, w),
            time_gat: gatv2(w, k),
            encoder: gru(w, 3.0 * k),
            decoder: gru(w, h),
            heads: mac(1.0, fh, h)
                + (cfg.forecast_layers as f64 - 1.0) * mac(1.0, fh, fh)
                + mac(1.0, cfg.n_target as f64, fh)
                + mac(w, cfg.n_target as f64, cfg.recon_hidden as f64),
        }
    }

    fn total(&self) -> f64 {
        self.conv + self.feature_gat + self.time_gat + self.encoder + self.decoder + self.heads
    }
}

/// The weights as a loaded bundle holds them: plain tensors that record nothing.
fn detached(varmap: &VarMap) -> Result<HashMap<String, Tensor>> {
    Ok(varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("the weight map is poisoned"))?
        .iter()
        .map(|(name, var)| (name.clone(), var.as_tensor().detach()))
        .collect())
}

/// Each block on its own, forward and forward+backward, on a batch of the model's shapes.
fn blocks(steps: usize, device: &Device, xs: &Tensor) -> Result<()> {
    println!("# time per batch (forward / forward+backward), blocks timed on their own:");
    let rng = Arc::new(SeededDropout::new(0));
    let split = VarMap::new();
    let vb = seeded_var_builder(&split, 1, device);
    let conv = ConvLayer::new(K, 7, vb.pp("conv"))?;
    let feature_gat = GraphAttention::new(
        GatKind::Gatv2,
        Orientation::Feature,
        W,
        K,
        0.2,
        0.3,
        rng.clone(),
        vb.pp("f"),
    )?;
    let time_gat = GraphAttention::new(
        GatKind::Gatv2,
        Orientation::Time,
        W,
        K,
        0.2,
        0.3,
        rng,
        vb.pp("t"),
    )?;
    let encoder = Gru::new(3 * K, H, vb.pp("enc"))?;
    let decoder = Gru::new(H, H, vb.pp("dec"))?;
    let layout = InterleavedLayout::new(H, W, device)?;
    let window = Var::from_tensor(xs)?;
    let joined = Var::from_tensor(&Tensor::rand(0f32, 1.0, (BATCH, W, 3 * K), device)?)?;
    let h_end = Var::from_tensor(&Tensor::rand(-1f32, 1.0, (BATCH, H), device)?)?;
    time_block("conv", steps, || conv.forward(&window))?;
    time_block("feature_gat", steps, || feature_gat.forward(&window, true))?;
    time_block("time_gat", steps, || time_gat.forward(&window, true))?;
    time_block("encoder_gru", steps, || encoder.forward(&joined))?;
    time_block("decoder_gru", steps, || {
        decoder.forward_interleaved(&h_end, &layout)
    })?;
    // The GRUs as scoring runs them: plain tensors, the input projected inside the recurrence.
    let plain = VarBuilder::from_tensors(detached(&split)?, DType::F32, device);
    let encoder = Gru::new(3 * K, H, plain.pp("enc"))?;
    let decoder = Gru::new(H, H, plain.pp("dec"))?;
    let (joined, h_end) = (joined.as_tensor().detach(), h_end.as_tensor().detach());
    let score_encoder = || -> Result<()> {
        encoder.forward(&joined)?;
        Ok(())
    };
    let score_decoder = || -> Result<()> {
        decoder.forward_interleaved(&h_end, &layout)?;
        Ok(())
    };
    for (name, mut score) in [
        (
            "encoder_gru",
            Box::new(score_encoder) as Box<dyn FnMut() -> Result<()>>,
        ),
        ("decoder_gru", Box::new(score_decoder)),
    ] {
        score()?;
        let secs = median_seconds(steps, &mut *score)?;
        println!("bench block_{name}_scoring {:.1} ms", secs * 1e3);
    }
    Ok(())
}

fn time_block(
    name: &str,
    steps: usize,
    forward: impl Fn() -> candle_core::Result<Tensor>,
) -> Result<()> {
    let mut fwd = || -> Result<()> {
        forward()?;
        Ok(())
    };
    let mut both = || -> Result<()> {
        forward()?.sum_all()?.backward()?;
        Ok(())
    };
    both()?;
    let fwd_s = median_seconds(steps, &mut fwd)?;
    let both_s = median_seconds(steps, &mut both)?;
    println!("bench block_{name}_forward {:.1} ms", fwd_s * 1e3);
    println!("bench block_{name}_forward_backward {:.1} ms", both_s * 1e3);
    Ok(())
}
