//! Seeded randomness for the model: parameter initialisation and dropout masks.
//!
//! candle's CPU device cannot be seeded (`Device::set_seed` fails on CPU), so every random
//! number the model uses comes from [`SplitMix64`] streams derived from the run's `--seed`.
//! Parameters are created through a [`candle_nn::var_builder::SimpleBackend`] that fills a
//! [`VarMap`] in construction order, which makes initialisation reproducible.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::{FanInOut, NormalOrUniform};
use candle_nn::{Init, VarBuilder, VarMap};

/// A small, fast, well-mixed 64-bit generator (Steele et al., "Fast splittable PRNGs").
/// Its n-th output depends only on the seed and n ([`SplitMix64::nth_f32`]), so a stream
/// can be drawn in parallel and still give the sequence a sequential draw gives.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline(always)]
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// Uniform in [0, 1) with 24 random bits, exact in f32.
    pub fn next_f32(&mut self) -> f32 {
        unit_f32(self.next_u64())
    }

    /// What the `n`-th (0-based) call of [`SplitMix64::next_f32`] on `SplitMix64::new(seed)`
    /// returns.
    #[inline(always)]
    pub fn nth_f32(seed: u64, n: u64) -> f32 {
        unit_f32(mix64(
            seed.wrapping_add(n.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA)),
        ))
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform index in 0..n (n > 0); the modulo bias is negligible for n << 2^64.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Standard normal by Box-Muller.
    pub fn next_normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(f64::MIN_POSITIVE);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

#[inline(always)]
fn unit_f32(bits: u64) -> f32 {
    (bits >> 40) as f32 / (1u64 << 24) as f32
}

/// Dropout whose masks come from a seeded stream: every call draws a fresh mask, and the
/// sequence of masks is fixed by the seed and the order of calls.
#[derive(Debug)]
pub struct SeededDropout {
    seed: AtomicU64,
    calls: AtomicU64,
}

impl SeededDropout {
    pub fn new(seed: u64) -> SeededDropout {
        SeededDropout {
            seed: AtomicU64::new(seed),
            calls: AtomicU64::new(0),
        }
    }

    /// Restarts the mask sequence from `seed`.
    pub fn reseed(&self, seed: u64) {
        self.seed.store(seed, Ordering::SeqCst);
        self.calls.store(0, Ordering::SeqCst);
    }

    /// Inverted dropout: zeroes each value with probability `p` and scales the rest by
    /// 1/(1-p), so evaluation (no dropout) needs no rescaling.
    pub fn apply(&self, xs: &Tensor, p: f64, train: bool) -> Result<Tensor> {
        match self.next_mask(p, train)? {
            Some(mask) => mask.apply(xs),
            None => Ok(xs.clone()),
        }
    }

    /// The mask the next [`SeededDropout::apply`] would use, for kernels that apply dropout
    /// themselves (and count as one call); `None` when nothing is dropped.
    pub fn next_mask(&self, p: f64, train: bool) -> Result<Option<DropoutMask>> {
        if !train || p <= 0.0 {
            return Ok(None);
        }
        if p >= 1.0 {
            candle_core::bail!("dropout probability must be in [0, 1), got {p}")
        }
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(Some(DropoutMask {
            seed: self.seed.load(Ordering::SeqCst) ^ call.wrapping_mul(0xA24B_AED4_963E_E407),
            p: p as f32,
            keep: (1.0 / (1.0 - p)) as f32,
        }))
    }
}

/// One dropout mask over a tensor's elements in row-major order: element i is `keep` or 0,
/// drawn from its own position in a seeded stream, so any part of it can be computed alone.
#[derive(Debug, Clone, Copy)]
pub struct DropoutMask {
    seed: u64,
    p: f32,
    /// 1/(1-p), the scale of the kept values.
    pub keep: f32,
}

impl DropoutMask {
    /// The factor of element `i`: `keep` or 0.
    #[inline(always)]
    pub fn at(&self, i: u64) -> f32 {
        match SplitMix64::nth_f32(self.seed, i) >= self.p {
            true => self.keep,
            false => 0.0,
        }
    }

    /// `xs` times the mask, as a tensor op.
    pub fn apply(&self, xs: &Tensor) -> Result<Tensor> {
        let values: Vec<f32> = (0..xs.elem_count() as u64).map(|i| self.at(i)).collect();
        let mask = Tensor::from_vec(values, xs.shape(), xs.device())?.to_dtype(xs.dtype())?;
        xs.mul(&mask)
    }
}

/// A `VarBuilder` whose new variables are drawn from a seeded generator and stored in
/// `varmap` (an existing variable of the same name is returned as is).
pub fn seeded_var_builder(varmap: &VarMap, seed: u64, device: &Device) -> VarBuilder<'static> {
    let backend = SeededBackend {
        varmap: varmap.clone(),
        rng: Mutex::new(SplitMix64::new(seed)),
    };
    VarBuilder::from_backend(Box::new(backend), DType::F32, device.clone())
}

/// PyTorch's default for `nn.Linear`/`nn.Conv1d`/`nn.GRU` weights and biases:
/// U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
pub fn torch_default(fan_in: usize) -> Init {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// Xavier/Glorot uniform with `gain`, for a `[fan_out, fan_in]` matrix.
pub fn xavier_uniform(fan_in: usize, fan_out: usize, gain: f64) -> Init {
    let bound = gain * (6.0 / (fan_in + fan_out) as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

struct SeededBackend {
    varmap: VarMap,
    rng: Mutex<SplitMix64>,
}

impl SeededBackend {
    fn sample(&self, shape: &Shape, init: Init) -> Result<Vec<f32>> {
        let n = shape.elem_count();
        let mut rng = self
            .rng
            .lock()
            .map_err(|_| candle_core::Error::Msg("init rng poisoned".into()))?;
        let values = match init {
            Init::Const(value) => vec![value as f32; n],
            Init::Uniform { lo, up } => (0..n)
                .map(|_| (lo + (up - lo) * rng.next_f64()) as f32)
                .collect(),
            Init::Randn { mean, stdev } => (0..n)
                .map(|_| (mean + stdev * rng.next_normal()) as f32)
                .collect(),
            Init::Kaiming {
                dist,
                fan,
                non_linearity,
            } => {
                let fan = match fan {
                    FanInOut::FanIn | FanInOut::FanOut => fan.for_shape(shape),
                };
                let std = non_linearity.gain() / (fan.max(1) as f64).sqrt();
                match dist {
                    NormalOrUniform::Uniform => {
                        let bound = 3f64.sqrt() * std;
                        (0..n)
                            .map(|_| (bound * (2.0 * rng.next_f64() - 1.0)) as f32)
                            .collect()
                    }
                    NormalOrUniform::Normal => {
                        (0..n).map(|_| (std * rng.next_normal()) as f32).collect()
                    }
                }
            }
        };
        Ok(values)
    }
}

impl candle_nn::var_builder::SimpleBackend for SeededBackend {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let mut vars = self
            .varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("var map poisoned".into()))?;
        if let Some(var) = vars.get(name) {
            if var.shape() != &shape {
                candle_core::bail!(
                    "shape mismatch for `{name}`: expected {shape:?}, stored {:?}",
                    var.shape()
                )
            }
            return Ok(var.as_tensor().clone());
        }
        let values = self.sample(&shape, init)?;
        let var = Var::from_tensor(&Tensor::from_vec(values, shape, device)?.to_dtype(dtype)?)?;
        let tensor = var.as_tensor().clone();
        vars.insert(name.to_string(), var);
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _device: &Device) -> Result<Tensor> {
        candle_core::bail!("`{name}`: a seeded initialiser needs the shape of every variable")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap
            .data()
            .lock()
            .map(|vars| vars.contains_key(name))
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kept by hand rather than taken from `rand`: a seed must give the same weights in
    /// every version of flow, and rand promises no such stability for its generators and
    /// distributions. The reference values are those of Vigna's `splitmix64.c` from state 0.
    #[test]
    fn splitmix64_matches_the_reference_stream() {
        let mut rng = SplitMix64::new(0);
        assert_eq!(
            [rng.next_u64(), rng.next_u64(), rng.next_u64()],
            [
                0xE220_A839_7B1D_CDAF,
                0x6E78_9E6A_A1B9_65F4,
                0x06C4_5D18_8009_454F
            ]
        );
    }

    #[test]
    fn any_draw_of_a_stream_can_be_computed_alone() {
        for seed in [0, 7, u64::MAX - 3] {
            let mut rng = SplitMix64::new(seed);
            for n in 0..1000 {
                assert_eq!(
                    rng.next_f32(),
                    SplitMix64::nth_f32(seed, n),
                    "seed {seed}, draw {n}"
                );
            }
        }
    }

    #[test]
    fn same_seed_gives_same_parameters_and_masks() {
        let device = Device::Cpu;
        let draw = |seed| -> Vec<f32> {
            let varmap = VarMap::new();
            let vb = seeded_var_builder(&varmap, seed, &device);
            let w = vb.get_with_hints((3, 4), "w", torch_default(4)).unwrap();
            w.flatten_all().unwrap().to_vec1().unwrap()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        assert!(draw(7).iter().all(|v| v.abs() <= 0.5));

        let x = Tensor::ones((1000,), DType::F32, &device).unwrap();
        let a = SeededDropout::new(1);
        let b = SeededDropout::new(1);
        let ma: Vec<f32> = a.apply(&x, 0.3, true).unwrap().to_vec1().unwrap();
        let mb: Vec<f32> = b.apply(&x, 0.3, true).unwrap().to_vec1().unwrap();
        assert_eq!(ma, mb);
        let dropped = ma.iter().filter(|v| **v == 0.0).count();
        assert!((200..400).contains(&dropped), "dropped {dropped} of 1000");
        let again: Vec<f32> = a.apply(&x, 0.3, true).unwrap().to_vec1().unwrap();
        assert_ne!(ma, again, "each call draws a new mask");
        assert_eq!(
            a.apply(&x, 0.3, false).unwrap().to_vec1::<f32>().unwrap(),
            vec![1.0; 1000]
        );
    }
}
