//! Vector code for the fused kernels: one scalar body per kernel, compiled again for AVX2 and
//! AVX-512 and picked at run time ([`multiversion!`]), and the transcendental functions those
//! bodies need in a form LLVM vectorises (libm's `expf`/`tanhf` are scalar calls, and were the
//! largest cost of the GRU recurrence before this).

/// The widest instruction set the kernels may use on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Generic,
    /// AVX2 + FMA: 8 f32 lanes.
    Avx2,
    /// AVX-512 F/VL/DQ/BW + FMA: 16 f32 lanes.
    Avx512,
}

/// Detected once; `is_x86_feature_detected!` caches too, this just names the outcome.
pub fn level() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512dq")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("fma")
        {
            return Level::Avx512;
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Level::Avx2;
        }
    }
    Level::Generic
}

/// Defines `fn name(args) -> ret { body }` three times (generic, AVX2+FMA, AVX-512) and a
/// front that runs the widest one the CPU supports. The body is written for the compiler's
/// auto-vectoriser: fixed-width inner loops over slices whose bounds are known.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn generic($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? { generic($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? { generic($($arg),*) }
                match $crate::model::simd::level() {
                    // SAFETY: the CPU supports the features each function is compiled for.
                    $crate::model::simd::Level::Avx512 => return unsafe { avx512($($arg),*) },
                    $crate::model::simd::Level::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::model::simd::Level::Generic => {}
                }
            }
            generic($($arg),*)
        }
    };
}
pub(crate) use multiversion;

/// e^x by a Cephes-style polynomial (relative error ~2e-7); 0 below -87 (where e^x leaves
/// the normal f32 range), e^88 above 88.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let underflow = x < -87.0;
    let x = x.clamp(-87.0, 88.0);
    let k = (x * LOG2E + 0.5).floor();
    let r = x - k * LN2_HI - k * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // 2^k without a float-to-int conversion (whose saturation costs extra instructions):
    // in 2^23 + 127 + k the mantissa's low bits are 127 + k, which the shift moves into the
    // exponent field.
    let two_k = f32::from_bits((k + (8_388_608.0 + 127.0)).to_bits() << 23);
    let value = y * two_k;
    if underflow {
        0.0
    } else {
        value
    }
}

#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// tanh(x) = 2 sigmoid(2x) - 1.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    2.0 * sigmoid(2.0 * x) - 1.0
}

/// Lanes of the reductions below: float sums only vectorise when the code itself keeps
/// separate partial sums (the compiler may not reorder float additions).
const LANES: usize = 16;

/// sum_i a_i b_i, in 16 partial sums.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    for (ac, bc) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += ac[l] * bc[l];
        }
    }
    let tail = n - n % LANES;
    let rest: f32 = a[tail..].iter().zip(&b[tail..]).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + rest
}

/// sum_i a_i, in 16 partial sums.
#[inline(always)]
pub fn sum(a: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    for chunk in a.chunks_exact(LANES) {
        for l in 0..LANES {
            acc[l] += chunk[l];
        }
    }
    let tail = a.len() - a.len() % LANES;
    acc.iter().sum::<f32>() + a[tail..].iter().sum::<f32>()
}

/// max_i a_i (-inf for none), in 16 partial maxima.
#[inline(always)]
pub fn max(a: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    for chunk in a.chunks_exact(LANES) {
        for l in 0..LANES {
            acc[l] = acc[l].max(chunk[l]);
        }
    }
    let tail = a.len() - a.len() % LANES;
    a[tail..]
        .iter()
        .chain(&acc)
        .fold(f32::NEG_INFINITY, |m, v| m.max(*v))
}

#[cfg(test)]
mod tests {
    #[test]
    fn fast_exp_sigmoid_tanh_are_accurate() {
        for i in -2000..=2000 {
            let x = i as f32 * 0.01;
            let rel = (super::exp(x) - x.exp()).abs() / x.exp();
            assert!(rel < 1e-6, "exp({x}) off by {rel}");
            assert!((super::sigmoid(x) - 1.0 / (1.0 + (-x).exp())).abs() < 1e-6);
            assert!((super::tanh(x) - x.tanh()).abs() < 1e-6, "tanh({x})");
        }
        assert!(super::exp(-200.0) >= 0.0 && super::exp(-200.0) < 1e-37);
        assert!(super::exp(200.0).is_finite());
        assert!(super::sigmoid(-200.0) < 1e-37 && super::sigmoid(200.0) == 1.0);
    }

    super::multiversion! {
        fn reductions(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
            (super::dot(a, b), super::sum(a), super::max(b))
        }
    }

    #[test]
    fn reductions_cover_whole_lanes_and_the_tail() {
        // Integers: every partial sum is exact, so the order of additions does not matter.
        for n in [0, 5, 16, 37] {
            let a: Vec<f32> = (0..n).map(|i| i as f32).collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
            let (dot, sum, max) = reductions(&a, &b);
            assert_eq!(dot, a.iter().zip(&b).map(|(x, y)| x * y).sum::<f32>());
            assert_eq!(sum, a.iter().sum::<f32>());
            assert_eq!(max, b.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v)));
        }
    }
}
