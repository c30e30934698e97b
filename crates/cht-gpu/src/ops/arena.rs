//! [`ParamArena`]: every trainable tensor of a model in one storage per role (values, gradients,
//! each optimizer state), so that one dispatch updates them all — the WGSL counterpart of
//! PyTorch's fused/foreach optimizers. Global-norm clipping becomes one reduction per arena chunk
//! whose factor the fused AdamW applies itself. Shaders: `sum_squares_partials` in
//! `shaders/reduce.wgsl`, `adamw_arena` in `shaders/optim.wgsl`; SGD reuses `sgd_momentum` over
//! the whole chunk (it is element-wise already).
//!
//! Each parameter is a view ([`crate::Tensor::view`]) of its chunk, so layers keep addressing
//! their own tensors; gaps between views (alignment) hold zeros and stay zero under both
//! optimizers. A chunk is at most one storage binding of the adapter; nearly every model fits one.

use crate::device::{Backend, Device};
use crate::error::{Error, Result};
use crate::ops::bytes;
use crate::ops::optim::{AdamWStep, ClipBy, SgdStep, adamw_cpu, adamw_dispatch};
use crate::ops::reduce::SUM_SQUARES_PARTIALS;
use crate::tensor::{DType, Tensor, VIEW_ALIGN, as_f32, as_f32_mut};

/// Squared-norm partial sums per chunk (workgroups of `sum_squares_partials`).
pub const PARTS: usize = 256;
/// Lanes of the clip-factor reduction in `adamw_arena` (`ZWG` in the shader).
const ZWG: usize = 256;

/// One storage per role for a run of consecutive parameters.
#[derive(Debug)]
pub struct ArenaChunk {
    /// Parameter values.
    pub values: Tensor,
    /// Their gradients (same layout).
    pub grads: Tensor,
    /// Optimizer states (same layout): `[momentum]` for SGD, `[m, v]` for AdamW.
    pub states: Vec<Tensor>,
}

/// One parameter's views into its chunk.
#[derive(Clone, Debug)]
pub struct ParamSlot {
    /// The values.
    pub value: Tensor,
    /// The gradient.
    pub grad: Tensor,
    /// The optimizer states.
    pub state: Vec<Tensor>,
}

/// A model's parameters, gradients and optimizer states, packed (see the module docs).
#[derive(Debug)]
pub struct ParamArena {
    chunks: Vec<ArenaChunk>,
    partials: Tensor,
    /// `[factor, norm before clipping]` of the last step of [`Device::adamw_arena`] with clipping.
    pub clip: Tensor,
}

impl ParamArena {
    /// The chunks (usually one).
    pub fn chunks(&self) -> &[ArenaChunk] {
        &self.chunks
    }

    /// Optimizer states per parameter.
    pub fn states(&self) -> usize {
        self.chunks[0].states.len()
    }
}

impl Device {
    /// Allocates zero-filled storage for `params` (`(name, rows, cols)`, in order) with `states`
    /// optimizer states each, and returns the arena and every parameter's views. Callers write
    /// initial values through [`ParamSlot::value`].
    pub fn param_arena(
        &self,
        label: &str,
        params: &[(&str, usize, usize)],
        states: usize,
    ) -> Result<(ParamArena, Vec<ParamSlot>)> {
        self.param_arena_limited(label, params, states, None)
    }

    /// [`Device::param_arena`] with chunks of at most `max_chunk_words` elements (tests use it to
    /// exercise several chunks without gigabytes of parameters).
    #[doc(hidden)]
    pub fn param_arena_limited(
        &self,
        label: &str,
        params: &[(&str, usize, usize)],
        states: usize,
        max_chunk_words: Option<usize>,
    ) -> Result<(ParamArena, Vec<ParamSlot>)> {
        // The largest chunk is one storage binding (and one buffer) of the adapter.
        let adapter_words = match &self.backend {
            Backend::Gpu(g) => {
                let l = &g.summary.limits;
                let bytes = l.max_storage_buffer_binding_size.min(l.max_buffer_size);
                ((bytes / 4) as usize / VIEW_ALIGN * VIEW_ALIGN).max(VIEW_ALIGN)
            }
            Backend::Cpu => usize::MAX / 8,
        };
        let max_words = max_chunk_words.map_or(adapter_words, |w| {
            w.next_multiple_of(VIEW_ALIGN).min(adapter_words)
        });
        // Greedy: parameters in order, a new chunk when the next one does not fit.
        let mut assignment: Vec<Vec<usize>> = vec![Vec::new()];
        let mut used = 0;
        for (i, &(name, rows, cols)) in params.iter().enumerate() {
            let words = (rows * cols).next_multiple_of(VIEW_ALIGN);
            if words > max_words {
                return Err(Error::Unsupported(format!(
                    "parameter {name:?} ({rows}x{cols} = {} elements) is larger than the \
                     adapter's largest storage binding ({max_words} elements)",
                    rows * cols
                )));
            }
            if used + words > max_words {
                assignment.push(Vec::new());
                used = 0;
            }
            assignment.last_mut().expect("one chunk at least").push(i);
            used += words;
        }
        let mut slots: Vec<Option<ParamSlot>> = params.iter().map(|_| None).collect();
        let mut chunks = Vec::with_capacity(assignment.len());
        for (c, members) in assignment.iter().enumerate() {
            let parts: Vec<(&str, usize, usize)> = members.iter().map(|&i| params[i]).collect();
            let stack = |role: &str, suffix: &str| -> Result<(Tensor, Vec<Tensor>)> {
                let named: Vec<String> = parts
                    .iter()
                    .map(|(n, _, _)| format!("{n}{suffix}"))
                    .collect();
                let with_names: Vec<(&str, usize, usize)> = parts
                    .iter()
                    .zip(&named)
                    .map(|(&(_, r, k), n)| (n.as_str(), r, k))
                    .collect();
                self.zeros_stacked(&format!("{label}.{role}{c}"), &with_names, DType::F32)
            };
            let (values, value_views) = stack("values", "")?;
            let (grads, grad_views) = stack("grads", ".grad")?;
            let mut state_chunks = Vec::with_capacity(states);
            let mut state_views = Vec::with_capacity(states);
            for s in 0..states {
                let (t, v) = stack(&format!("state{s}_"), &format!(".state{s}"))?;
                state_chunks.push(t);
                state_views.push(v);
            }
            for (j, &i) in members.iter().enumerate() {
                slots[i] = Some(ParamSlot {
                    value: value_views[j].clone(),
                    grad: grad_views[j].clone(),
                    state: state_views.iter().map(|v| v[j].clone()).collect(),
                });
            }
            chunks.push(ArenaChunk {
                values,
                grads,
                states: state_chunks,
            });
        }
        let arena = ParamArena {
            partials: self.zeros(
                &format!("{label}.norm_partials"),
                PARTS * chunks.len(),
                1,
                DType::F32,
            ),
            clip: self.zeros(&format!("{label}.clip"), 2, 1, DType::F32),
            chunks,
        };
        let slots = slots
            .into_iter()
            .map(|s| s.expect("every parameter was assigned a chunk"))
            .collect();
        Ok((arena, slots))
    }

    /// One AdamW step on every parameter of `arena` (states `[m, v]`), after scaling all gradients
    /// by the global-norm clip factor when `clip` is `Some(max_norm)` (PyTorch's
    /// `clip_grad_norm_` followed by `AdamW.step`; the gradients themselves are left unscaled).
    /// `2 · chunks` dispatches with clipping, `chunks` without.
    pub fn adamw_arena(
        &self,
        arena: &ParamArena,
        step: AdamWStep,
        clip: Option<f32>,
    ) -> Result<()> {
        const OP: &str = "adamw_arena";
        if arena.states() != 2 {
            return Err(Error::Unsupported(format!(
                "{OP}: the arena holds {} optimizer states per parameter, AdamW needs 2 (m, v)",
                arena.states()
            )));
        }
        if let Some(max_norm) = clip
            && !(max_norm > 0.0 && max_norm.is_finite())
        {
            return Err(crate::error::shape_err(
                OP,
                format!("max_norm must be positive, got {max_norm}"),
            ));
        }
        let chunks = &arena.chunks;
        match &self.backend {
            Backend::Gpu(g) => {
                if clip.is_some() {
                    for (c, chunk) in chunks.iter().enumerate() {
                        let len = chunk.grads.len();
                        let params = crate::ops::reduce::partials_params(len, c * PARTS);
                        g.dispatch(
                            &SUM_SQUARES_PARTIALS,
                            &[],
                            bytes(&params),
                            &[&chunk.grads, &arena.partials],
                            [PARTS as u32, 1, 1],
                        )?;
                    }
                }
                for (c, chunk) in chunks.iter().enumerate() {
                    let clip = clip.map_or(ClipBy::default(), |max_norm| ClipBy {
                        max_norm,
                        parts: PARTS * chunks.len(),
                        report: c == 0,
                    });
                    let (grads, values) = (&chunk.grads, &chunk.values);
                    let [m, v] = [&chunk.states[0], &chunk.states[1]];
                    let bound = [&arena.partials, grads, values, m, v, &arena.clip];
                    adamw_dispatch(g, step, clip, bound)?;
                }
                Ok(())
            }
            Backend::Cpu => {
                let _timer = self.op_timer(OP);
                let factor = match clip {
                    Some(max_norm) => {
                        let mut partials = Vec::with_capacity(PARTS * chunks.len());
                        for chunk in chunks {
                            partials.extend(sum_squares_partials_cpu(as_f32(
                                &chunk.grads.cpu_read(OP)?,
                            )));
                        }
                        let (f, norm) = clip_factor_of_partials_cpu(&partials, max_norm);
                        as_f32_mut(&mut arena.clip.cpu_write(OP)?).copy_from_slice(&[f, norm]);
                        f
                    }
                    None => 1.0,
                };
                for chunk in chunks {
                    let gv = chunk.grads.cpu_read(OP)?;
                    let mut wv = chunk.values.cpu_write(OP)?;
                    let mut mv = chunk.states[0].cpu_write(OP)?;
                    let mut vv = chunk.states[1].cpu_write(OP)?;
                    adamw_cpu(
                        step,
                        factor,
                        as_f32(&gv),
                        as_f32_mut(&mut wv),
                        as_f32_mut(&mut mv),
                        as_f32_mut(&mut vv),
                    );
                }
                Ok(())
            }
        }
    }

    /// One SGD step (momentum, weight decay) on every parameter of `arena` (state `[momentum]`):
    /// one dispatch per chunk.
    pub fn sgd_arena(&self, arena: &ParamArena, step: SgdStep) -> Result<()> {
        if arena.states() != 1 {
            return Err(Error::Unsupported(format!(
                "sgd_arena: the arena holds {} optimizer states per parameter, SGD needs 1",
                arena.states()
            )));
        }
        for chunk in &arena.chunks {
            self.sgd_momentum(step, &chunk.grads, &chunk.values, &chunk.states[0])?;
        }
        Ok(())
    }
}

/// CPU twin of `sum_squares_partials` over one chunk: `PARTS` contiguous segments of
/// `ceil(len / PARTS)` elements, each summed in the shader's lane-then-tree order.
pub fn sum_squares_partials_cpu(x: &[f32]) -> Vec<f32> {
    let seg = x.len().div_ceil(PARTS);
    crate::cpu::map_range(PARTS, |w| {
        let start = (w * seg).min(x.len());
        let end = (start + seg).min(x.len());
        crate::ops::reduce::sum_squares_cpu(&x[start..end])
    })
}

/// CPU twin of the shader's `clip_factor_of_partials`: `(factor, norm)`.
pub fn clip_factor_of_partials_cpu(partials: &[f32], max_norm: f32) -> (f32, f32) {
    let mut lanes = [0.0f32; ZWG];
    for (lane, acc) in lanes.iter_mut().enumerate() {
        *acc = partials
            .iter()
            .skip(lane)
            .step_by(ZWG)
            .fold(0.0, |a, v| a + v);
    }
    let mut width = ZWG / 2;
    while width > 0 {
        for lane in 0..width {
            lanes[lane] += lanes[lane + width];
        }
        width /= 2;
    }
    let norm = lanes[0].sqrt();
    ((max_norm / (norm + 1e-6)).min(1.0), norm)
}
