//! A BERT encoder for sentence embeddings on the CPU, written for throughput: the tokens of a
//! batch are packed without padding, so every matrix product works only on real tokens; Q, K
//! and V come from one fused product; attention runs per sequence and head on strided views
//! of that product (no transposes, no copies, no mask); biases, residuals, GELU, softmax and
//! layer norms are fused passes over preallocated buffers, vectorised for the CPU it runs on.
//! The products are gemm's f32 kernels (`gemm-f32`), AVX-512 or AVX2 picked at run time.
//!
//! Its own crate, so that the dev profile compiles it optimised (see the workspace's
//! Cargo.toml); `twin_operator::embedding::bert` re-exports it. The only unsafe code of
//! twin-operator is here: the kernels are called through raw pointers, with CPU features
//! picked at run time.
#![deny(missing_docs)]

/// How a matrix product splits its work: on one thread, or over rayon's pool.
pub use gemm_common::Parallelism;
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

/// The fields of a Hugging Face `config.json` this encoder reads.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    /// Architecture family; BERT only.
    #[serde(default)]
    pub model_type: Option<String>,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Feed-forward activation.
    #[serde(default = "default_activation")]
    pub hidden_act: String,
    /// Longest sequence.
    pub max_position_embeddings: usize,
    /// Token types.
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// Layer norm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Position embeddings; absolute only.
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn default_activation() -> String {
    "gelu".into()
}

fn default_type_vocab() -> usize {
    2
}

fn default_eps() -> f64 {
    1e-12
}

/// How token states become one sentence vector (sentence-transformers' `1_Pooling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The mean over the sequence's tokens.
    Mean,
    /// The first token's state.
    Cls,
}

/// The feed-forward activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Activation {
    /// GELU with the error function (`gelu`).
    Gelu,
    /// GELU's tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    /// `relu`.
    Relu,
}

/// `y = x·Wᵀ + b`, W stored as PyTorch does: `[out, in]`, row-major.
struct Linear {
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

struct LayerNorm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

struct Layer {
    /// Query, key and value stacked: `[3·hidden, hidden]`.
    qkv: Linear,
    attention_output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

/// A loaded BERT encoder.
pub struct Bert {
    hidden: usize,
    heads: usize,
    max_positions: usize,
    activation: Activation,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
}

/// A tensor as `f32`, whatever its stored float type.
fn to_f32(tensors: &SafeTensors, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
    let view = tensors.tensor(name).map_err(|e| format!("{name}: {e}"))?;
    if view.shape() != shape {
        return Err(format!("{name} has shape {:?}, expected {shape:?}", view.shape()));
    }
    let data = view.data();
    let values = match view.dtype() {
        Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16))
            .collect(),
        Dtype::F16 => data.chunks_exact(2).map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]]))).collect(),
        other => return Err(format!("{name} is {other:?}; expected F32, F16 or BF16")),
    };
    Ok(values)
}

/// IEEE half precision to single precision.
fn f16_to_f32(half: u16) -> f32 {
    let sign = ((half >> 15) as u32) << 31;
    let exponent = ((half >> 10) & 0x1f) as u32;
    let mantissa = (half & 0x3ff) as u32;
    let bits = match (exponent, mantissa) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: normalise.
            let shift = mantissa.leading_zeros() - 21;
            let mantissa = (mantissa << shift) & 0x3ff;
            sign | ((127 - 15 + 1 - shift) << 23) | (mantissa << 13)
        }
        (0x1f, _) => sign | 0x7f80_0000 | (mantissa << 13),
        _ => sign | ((exponent + 127 - 15) << 23) | (mantissa << 13),
    };
    f32::from_bits(bits)
}

impl Bert {
    /// Loads the encoder from `model.safetensors` bytes (names with or without a `bert.`
    /// prefix) and its `config.json`.
    pub fn load(weights: &[u8], config: &BertConfig) -> Result<Self, String> {
        if config.model_type.as_deref().is_some_and(|t| t != "bert") {
            return Err(format!("model_type {:?} is not supported; BERT models are", config.model_type));
        }
        if config.position_embedding_type.as_deref().is_some_and(|t| t != "absolute") {
            return Err(format!(
                "position_embedding_type {:?} is not supported",
                config.position_embedding_type
            ));
        }
        let activation = match config.hidden_act.as_str() {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => return Err(format!("activation {other:?} is not supported")),
        };
        let (hidden, heads) = (config.hidden_size, config.num_attention_heads);
        if heads == 0 || hidden % heads != 0 {
            return Err(format!("hidden_size {hidden} is not a multiple of num_attention_heads {heads}"));
        }
        let tensors = SafeTensors::deserialize(weights).map_err(|e| format!("model.safetensors: {e}"))?;
        let prefix = if tensors.tensor("embeddings.word_embeddings.weight").is_ok() { "" } else { "bert." };
        let get = |name: &str, shape: &[usize]| to_f32(&tensors, &format!("{prefix}{name}"), shape);
        let eps = config.layer_norm_eps as f32;
        let norm = |name: &str| -> Result<LayerNorm, String> {
            Ok(LayerNorm {
                weight: get(&format!("{name}.weight"), &[hidden])?,
                bias: get(&format!("{name}.bias"), &[hidden])?,
                eps,
            })
        };
        let linear = |name: &str, inputs: usize, outputs: usize| -> Result<Linear, String> {
            Ok(Linear {
                weight: get(&format!("{name}.weight"), &[outputs, inputs])?,
                bias: get(&format!("{name}.bias"), &[outputs])?,
                inputs,
                outputs,
            })
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for index in 0..config.num_hidden_layers {
            let base = format!("encoder.layer.{index}");
            let (query, key, value) = (
                linear(&format!("{base}.attention.self.query"), hidden, hidden)?,
                linear(&format!("{base}.attention.self.key"), hidden, hidden)?,
                linear(&format!("{base}.attention.self.value"), hidden, hidden)?,
            );
            let qkv = Linear {
                weight: [query.weight, key.weight, value.weight].concat(),
                bias: [query.bias, key.bias, value.bias].concat(),
                inputs: hidden,
                outputs: 3 * hidden,
            };
            layers.push(Layer {
                qkv,
                attention_output: linear(&format!("{base}.attention.output.dense"), hidden, hidden)?,
                attention_norm: norm(&format!("{base}.attention.output.LayerNorm"))?,
                intermediate: linear(
                    &format!("{base}.intermediate.dense"),
                    hidden,
                    config.intermediate_size,
                )?,
                output: linear(&format!("{base}.output.dense"), config.intermediate_size, hidden)?,
                output_norm: norm(&format!("{base}.output.LayerNorm"))?,
            });
        }
        Ok(Self {
            hidden,
            heads,
            max_positions: config.max_position_embeddings,
            activation,
            word: get("embeddings.word_embeddings.weight", &[config.vocab_size, hidden])?,
            position: get(
                "embeddings.position_embeddings.weight",
                &[config.max_position_embeddings, hidden],
            )?,
            token_type: get("embeddings.token_type_embeddings.weight", &[config.type_vocab_size, hidden])?,
            embedding_norm: norm("embeddings.LayerNorm")?,
            layers,
        })
    }

    /// The width of the hidden states (and of the pooled vectors).
    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// Encodes token-id sequences (special tokens included, all of token type 0) and returns
    /// one vector per sequence: its last hidden states averaged over its tokens, or its first
    /// token's (`[CLS]`).
    pub fn pooled(
        &self,
        sequences: &[&[u32]],
        pooling: Pooling,
        parallelism: Parallelism,
    ) -> Result<Vec<Vec<f32>>, String> {
        let h = self.hidden;
        let vocabulary = self.word.len() / h;
        for sequence in sequences {
            if sequence.len() > self.max_positions {
                return Err(format!(
                    "a sequence of {} tokens is longer than {}",
                    sequence.len(),
                    self.max_positions
                ));
            }
            if let Some(id) = sequence.iter().find(|&&id| id as usize >= vocabulary) {
                return Err(format!("token id {id} is outside the vocabulary of {vocabulary}"));
            }
        }
        let total: usize = sequences.iter().map(|s| s.len()).sum();
        let longest = sequences.iter().map(|s| s.len()).max().unwrap_or(0);
        if total == 0 {
            return Ok(vec![vec![0.0; h]; sequences.len()]);
        }
        // Embeddings: word + position + token type 0, normalised.
        let mut x = vec![0f32; total * h];
        let mut row = 0;
        for sequence in sequences {
            for (position, &id) in sequence.iter().enumerate() {
                let word = &self.word[id as usize * h..][..h];
                let place = &self.position[position * h..][..h];
                let token_type = &self.token_type[..h];
                for (i, out) in x[row * h..][..h].iter_mut().enumerate() {
                    *out = word[i] + place[i] + token_type[i];
                }
                row += 1;
            }
        }
        kernels::layer_norm(&mut x, &self.embedding_norm);
        let head = h / self.heads;
        let scale = 1.0 / (head as f32).sqrt();
        let mut qkv = vec![0f32; total * 3 * h];
        let mut context = vec![0f32; total * h];
        let intermediate_size = self.layers.first().map(|l| l.intermediate.outputs).unwrap_or(0);
        let mut intermediate = vec![0f32; total * intermediate_size];
        let mut scores = vec![0f32; longest * longest];
        for layer in &self.layers {
            project(&x, total, &layer.qkv, &mut qkv, false, parallelism);
            let mut start = 0;
            for sequence in sequences {
                let len = sequence.len();
                if len == 0 {
                    continue;
                }
                let rows = &qkv[start * 3 * h..][..len * 3 * h];
                for index in 0..self.heads {
                    let query = &rows[index * head..];
                    let key = &rows[h + index * head..];
                    let value = &rows[2 * h + index * head..];
                    let scores = &mut scores[..len * len];
                    // scores = Q·Kᵀ/√d: Q is len×d (row stride 3h), Kᵀ is d×len.
                    matmul(
                        len,
                        len,
                        head,
                        scores,
                        len,
                        false,
                        query,
                        3 * h,
                        1,
                        key,
                        1,
                        3 * h,
                        scale,
                        parallelism,
                    );
                    kernels::softmax_rows(scores, len);
                    // context[:, head] = P·V, written in place into its columns.
                    let out = &mut context[start * h + index * head..];
                    matmul(len, head, len, out, h, false, scores, len, 1, value, 3 * h, 1, 1.0, parallelism);
                }
                start += len;
            }
            // x = LN(x + context·Woᵀ + bo)
            project(&context, total, &layer.attention_output, &mut x, true, parallelism);
            kernels::layer_norm(&mut x, &layer.attention_norm);
            project(&x, total, &layer.intermediate, &mut intermediate, false, parallelism);
            kernels::activate(&mut intermediate, self.activation);
            // x = LN(x + act(...)·Wᵀ + b)
            project(&intermediate, total, &layer.output, &mut x, true, parallelism);
            kernels::layer_norm(&mut x, &layer.output_norm);
        }
        let mut pooled = Vec::with_capacity(sequences.len());
        let mut start = 0;
        for sequence in sequences {
            if pooling == Pooling::Cls {
                pooled.push(x[start * h..][..h].to_vec());
                start += sequence.len();
                continue;
            }
            let mut mean = vec![0f32; h];
            for row in x[start * h..][..sequence.len() * h].chunks_exact(h) {
                for (m, v) in mean.iter_mut().zip(row) {
                    *m += v;
                }
            }
            let count = sequence.len().max(1) as f32;
            mean.iter_mut().for_each(|m| *m /= count);
            pooled.push(mean);
            start += sequence.len();
        }
        Ok(pooled)
    }
}

/// `out = x·Wᵀ + b` (or `out += x·Wᵀ + b` when `accumulate`), x being `rows × inputs`.
fn project(
    x: &[f32],
    rows: usize,
    linear: &Linear,
    out: &mut [f32],
    accumulate: bool,
    parallelism: Parallelism,
) {
    let (inputs, outputs) = (linear.inputs, linear.outputs);
    for row in out[..rows * outputs].chunks_exact_mut(outputs) {
        if accumulate {
            row.iter_mut().zip(&linear.bias).for_each(|(o, b)| *o += b);
        } else {
            row.copy_from_slice(&linear.bias);
        }
    }
    // Wᵀ as a k×n view of W: element (k, n) is W[n·inputs + k].
    matmul(
        rows,
        outputs,
        inputs,
        out,
        outputs,
        true,
        x,
        inputs,
        1,
        &linear.weight,
        1,
        inputs,
        1.0,
        parallelism,
    );
}

/// `scores[i] = matrix[i] · query` for a row-major `rows × query.len()` matrix: the dense
/// retrieval scan, on the same matrix kernels as the encoder (AVX2 / AVX-512 chosen at run time).
pub fn matrix_vector(matrix: &[f32], query: &[f32], scores: &mut [f32], parallelism: Parallelism) {
    let dimension = query.len();
    let rows = scores.len();
    assert_eq!(matrix.len(), rows * dimension, "the matrix has rows × dimension values");
    matmul(rows, 1, dimension, scores, 1, false, matrix, dimension, 1, query, 1, 1, 1.0, parallelism);
}

/// `dst (+)= scale · A·B` for an m×k A and a k×n B given as slices with (row, column) strides;
/// dst is row-major with row stride `dst_rs`. Bounds are checked before the kernel runs.
#[allow(clippy::too_many_arguments)]
fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    a: &[f32],
    a_rs: usize,
    a_cs: usize,
    b: &[f32],
    b_rs: usize,
    b_cs: usize,
    scale: f32,
    parallelism: Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!((m - 1) * dst_rs + n <= dst.len(), "destination out of bounds");
    if k > 0 {
        assert!((m - 1) * a_rs + (k - 1) * a_cs < a.len(), "left operand out of bounds");
        assert!((k - 1) * b_rs + (n - 1) * b_cs < b.len(), "right operand out of bounds");
    }
    // SAFETY: every index the kernel touches is within the slices (checked above), and `dst`
    // is borrowed mutably, so it overlaps neither operand.
    unsafe {
        gemm_f32::gemm::f32::get_gemm_fn()(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Element-wise passes, compiled twice: for AVX2 + FMA (chosen at run time when the CPU has
/// them) and for the baseline.
mod kernels {
    use super::{Activation, LayerNorm};

    macro_rules! dispatch {
        ($name:ident($($arg:ident: $ty:ty),*) => $generic:ident) => {
            pub fn $name($($arg: $ty),*) {
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    #[target_feature(enable = "avx2,fma")]
                    unsafe fn fast($($arg: $ty),*) {
                        $generic($($arg),*)
                    }
                    // SAFETY: the CPU has the features `fast` is compiled for.
                    return unsafe { fast($($arg),*) };
                }
                $generic($($arg),*)
            }
        };
    }

    dispatch!(softmax_rows(scores: &mut [f32], width: usize) => softmax_rows_generic);
    dispatch!(layer_norm(x: &mut [f32], norm: &LayerNorm) => layer_norm_generic);
    dispatch!(activate(x: &mut [f32], activation: Activation) => activate_generic);

    /// e^x for x ≤ 88, to about 2e-7 relative error, branch-free so that loops vectorise:
    /// x = k·ln2 + r with |r| ≤ ln2/2, e^r by a degree-7 polynomial, 2^k through the exponent.
    #[inline(always)]
    pub fn exp(x: f32) -> f32 {
        const LOG2E: f32 = std::f32::consts::LOG2_E;
        const LN2_HI: f32 = 0.693_145_75;
        const LN2_LO: f32 = 1.428_606_8e-6;
        const ROUND: f32 = 12_582_912.0; // 1.5·2^23: adding and subtracting rounds to an integer.
        let x = x.clamp(-87.0, 88.0);
        let k = (x * LOG2E + ROUND) - ROUND;
        let r = x - k * LN2_HI - k * LN2_LO;
        let p = 1.0
            + r * (1.0
                + r * (0.5
                    + r * (1.0 / 6.0
                        + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
        p * f32::from_bits(((k as i32 + 127) as u32) << 23)
    }

    /// erf(x), Abramowitz and Stegun 7.1.26 (absolute error under 1.5e-7).
    #[inline(always)]
    fn erf(x: f32) -> f32 {
        let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
        let y = 1.0
            - t * (0.254_829_6
                + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))))
                * exp(-x * x);
        y.copysign(x)
    }

    /// Lanes of the reductions: independent accumulators let the loops vectorise (a single
    /// running sum is a chain the compiler may not reorder).
    const LANES: usize = 16;

    #[inline(always)]
    fn sum(values: &[f32]) -> f32 {
        let mut lanes = [0f32; LANES];
        let chunks = values.chunks_exact(LANES);
        let tail: f32 = chunks.remainder().iter().sum();
        for chunk in chunks {
            for (lane, v) in lanes.iter_mut().zip(chunk) {
                *lane += v;
            }
        }
        lanes.iter().sum::<f32>() + tail
    }

    #[inline(always)]
    fn max(values: &[f32]) -> f32 {
        let mut lanes = [f32::NEG_INFINITY; LANES];
        let chunks = values.chunks_exact(LANES);
        let tail = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
        for chunk in chunks {
            for (lane, &v) in lanes.iter_mut().zip(chunk) {
                *lane = if v > *lane { v } else { *lane };
            }
        }
        lanes.iter().fold(tail, |m, &v| if v > m { v } else { m })
    }

    #[inline(always)]
    fn softmax_rows_generic(scores: &mut [f32], width: usize) {
        for row in scores.chunks_exact_mut(width) {
            let max = max(row);
            row.iter_mut().for_each(|v| *v = exp(*v - max));
            let inverse = 1.0 / sum(row);
            row.iter_mut().for_each(|v| *v *= inverse);
        }
    }

    #[inline(always)]
    fn layer_norm_generic(x: &mut [f32], norm: &LayerNorm) {
        let width = norm.weight.len();
        for row in x.chunks_exact_mut(width) {
            let mean = sum(row) / width as f32;
            row.iter_mut().for_each(|v| *v -= mean);
            let mut squares = [0f32; LANES];
            let chunks = row.chunks_exact(LANES);
            let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
            for chunk in chunks {
                for (lane, v) in squares.iter_mut().zip(chunk) {
                    *lane += v * v;
                }
            }
            let variance = (squares.iter().sum::<f32>() + tail) / width as f32;
            let inverse = 1.0 / (variance + norm.eps).sqrt();
            for ((v, w), b) in row.iter_mut().zip(&norm.weight).zip(&norm.bias) {
                *v = *v * inverse * w + b;
            }
        }
    }

    #[inline(always)]
    fn activate_generic(x: &mut [f32], activation: Activation) {
        match activation {
            Activation::Gelu => {
                x.iter_mut().for_each(|v| *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2)))
            }
            Activation::GeluTanh => x.iter_mut().for_each(|v| {
                let inner = 0.797_884_6 * (*v + 0.044_715 * *v * *v * *v);
                // tanh(z) = 1 - 2/(e^{2z} + 1)
                let tanh = 1.0 - 2.0 / (exp(2.0 * inner) + 1.0);
                *v = 0.5 * *v * (1.0 + tanh);
            }),
            Activation::Relu => x.iter_mut().for_each(|v| *v = v.max(0.0)),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn exp_and_erf_are_accurate() {
            for i in -8700..=8800 {
                let x = i as f32 / 100.0;
                let (fast, exact) = (exp(x), x.exp());
                assert!((fast - exact).abs() <= 4e-7 * exact, "exp({x}) = {fast}, not {exact}");
            }
            // erf against its series at a few points (values from the standard tables).
            for (x, expected) in [
                (0.0f32, 0.0f32),
                (0.5, 0.520_499_9),
                (1.0, 0.842_700_8),
                (-2.0, -0.995_322_3),
                (3.0, 0.999_977_9),
            ] {
                assert!((erf(x) - expected).abs() < 3e-7, "erf({x}) = {}", erf(x));
            }
        }

        #[test]
        fn softmax_rows_sum_to_one() {
            let mut scores = vec![1.0, 2.0, 3.0, -1000.0, 0.0, 1000.0];
            softmax_rows(&mut scores, 3);
            assert!((scores[..3].iter().sum::<f32>() - 1.0).abs() < 1e-6);
            assert!((scores[2] - 0.665_240_9).abs() < 1e-6);
            assert_eq!(scores[5], 1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats_convert_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert!(f16_to_f32(0x7c00).is_infinite());
    }

    #[test]
    fn strided_products_match_a_naive_product() {
        // A 3×2 block inside a wider matrix times a transposed 2×4 view.
        let a = [1.0, 2.0, 9.0, 3.0, 4.0, 9.0, 5.0, 6.0, 9.0];
        let w = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, -1.0]; // 4×2, used as Wᵀ
        let mut dst = vec![0f32; 12];
        matmul(3, 4, 2, &mut dst, 4, false, &a, 3, 1, &w, 1, 2, 1.0, Parallelism::None);
        assert_eq!(dst, [1.0, 2.0, 3.0, 0.0, 3.0, 4.0, 7.0, 2.0, 5.0, 6.0, 11.0, 4.0]);
    }
}
