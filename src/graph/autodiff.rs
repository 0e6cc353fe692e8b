//! Reverse mode on the recorded graph. [`Graph::backward`] walks the forward nodes from the loss back and asks
//! each op's [`Op::backward`](super::op::Op::backward) rule to record the ops that compute its input
//! gradients, into the same graph: forward, loss, backward (and whatever follows, such as gradient clipping)
//! then become one plan, and the liveness planner keeps exactly the activations the backward nodes read.
//!
//! Only what is needed is recorded: a tensor gets a gradient only if it lies downstream of a tensor in `wrt`
//! (so frozen weights and everything before the first trainable tensor get none), and only nodes that
//! lead to the loss are visited.
//!
//! **Gradient checkpointing.** Model code marks recomputable segments (a resnet block, a transformer block)
//! with [`Graph::segment_begin`] / [`Graph::segment_end`]. With `recompute` on, the backward pass re-records a
//! segment's forward nodes just before it needs them, and the segment's backward reads the recomputed
//! tensors; the first forward's intermediates then die inside the forward pass. This is what diffusers'
//! `enable_gradient_checkpointing` does with `torch.utils.checkpoint`.

use std::collections::HashMap;
use std::ops::Range;

use super::op::BackwardCtx;
use super::{Graph, Node, Source, TensorId};
use crate::error::{Error, Result};
use crate::tensor::TensorDesc;

/// The gradient tensor of each differentiated tensor, keyed by the tensor that owns the storage (a view's
/// gradient is its root's, seen with the root's shape).
#[derive(Default, Debug)]
pub struct Gradients {
    map: HashMap<TensorId, TensorId>,
}

impl Gradients {
    /// The gradient of `t` in `g`, if one was recorded (None: nothing downstream of `t` reached the loss).
    pub fn get(&self, g: &Graph, t: TensorId) -> Option<TensorId> {
        self.map.get(&g.root(t)).copied()
    }
}

/// Options of [`Graph::backward_with`].
#[derive(Clone, Copy, Debug, Default)]
pub struct BackwardOpts {
    /// Recompute the marked segments in the backward pass instead of keeping their activations.
    pub recompute: bool,
}

impl Graph {
    /// Starts a recomputable segment (see the module docs); returns the marker for [`Graph::segment_end`].
    pub fn segment_begin(&self) -> usize {
        self.nodes.len()
    }

    /// Ends the segment started at `begin`. Segments nest by their outermost marks only: a segment inside
    /// another is dropped.
    pub fn segment_end(&mut self, begin: usize) {
        let end = self.nodes.len();
        if end > begin {
            self.segments.retain(|s| !(s.start >= begin && s.end <= end));
            if !self.segments.iter().any(|s| s.start <= begin && s.end >= end) {
                self.segments.push(begin..end);
            }
        }
    }

    /// Records the gradients of the scalar-valued sum of `loss` with respect to each tensor in `wrt`.
    /// The gradients are graph outputs (kept after a run).
    pub fn backward(&mut self, loss: TensorId, wrt: &[TensorId]) -> Result<Gradients> {
        self.backward_with(loss, wrt, BackwardOpts::default())
    }

    /// [`Graph::backward`] with options (gradient checkpointing).
    pub fn backward_with(&mut self, loss: TensorId, wrt: &[TensorId], opts: BackwardOpts) -> Result<Gradients> {
        let d = self.desc(loss).clone();
        let ones = self.constant(&format!("{}.grad_seed", self.name(loss)), TensorDesc::f32(&d.shape), vec![1.0; d.numel()])?;
        self.backward_from(&[(loss, ones)], wrt, opts)
    }

    /// Reverse mode from explicit output gradients: each `(y, dy)` seeds `y`'s gradient with `dy` (for a
    /// loss `L = Σ y · dy`).
    pub fn backward_from(&mut self, seeds: &[(TensorId, TensorId)], wrt: &[TensorId], opts: BackwardOpts) -> Result<Gradients> {
        let forward_nodes = self.nodes.len();
        let n = self.tensors.len();
        let mut req = vec![false; n];
        for &w in wrt {
            req[self.root(w).0] = true;
        }
        for node in &self.nodes[..forward_nodes] {
            if node.inputs.iter().any(|t| req[self.root(*t).0]) {
                req[node.output.0] = true;
            }
        }
        let mut grads = Gradients::default();
        for &(y, dy) in seeds {
            if self.desc(y).shape != self.desc(dy).shape {
                return Err(Error::shape("backward", format!("seed {} for {} has another shape", self.desc(dy), self.desc(y))));
            }
            self.accumulate(&mut grads, y, dy)?;
        }
        let segment_of = |i: usize, segs: &[Range<usize>]| segs.iter().position(|s| s.contains(&i));
        let segments = if opts.recompute { self.segments.clone() } else { Vec::new() };
        // Per segment: forward tensor → recomputed tensor.
        let mut recomputed: HashMap<usize, HashMap<TensorId, TensorId>> = HashMap::new();

        for i in (0..forward_nodes).rev() {
            let out = self.nodes[i].output;
            let Some(&dy) = grads.map.get(&out) else { continue };
            if !req[out.0] {
                continue;
            }
            let need: Vec<bool> = self.nodes[i].inputs.iter().map(|t| req[self.root(*t).0]).collect();
            if !need.iter().any(|x| *x) {
                continue;
            }
            let (op, name, mut inputs) = {
                let node = &self.nodes[i];
                (node.op.clone(), node.name.clone(), node.inputs.clone())
            };
            let mut output = out;
            if let Some(s) = segment_of(i, &segments) {
                if let std::collections::hash_map::Entry::Vacant(e) = recomputed.entry(s) {
                    e.insert(self.recompute(segments[s].clone())?);
                }
                let mut map = recomputed.remove(&s).expect("inserted above");
                for t in inputs.iter_mut() {
                    *t = self.remap(&mut map, *t)?;
                }
                output = map.get(&out).copied().unwrap_or(out);
                recomputed.insert(s, map);
            }
            let ctx = BackwardCtx { name: &name, inputs: &inputs, output, dy, need: &need };
            let gs = op.backward(self, &ctx)?;
            if gs.len() != inputs.len() {
                return Err(Error::usage(format!("backward of {} '{name}' returned {} gradients for {} inputs", op.kind(), gs.len(), inputs.len())));
            }
            let orig_inputs = self.nodes[i].inputs.clone();
            for (k, gk) in gs.into_iter().enumerate() {
                let Some(gk) = gk else { continue };
                if !need[k] {
                    continue;
                }
                let (want, got) = (self.desc(orig_inputs[k]).shape.clone(), self.desc(gk).shape.clone());
                if want != got {
                    return Err(Error::shape(
                        "backward",
                        format!("{} '{name}': gradient of input {k} is {got:?}, the input is {want:?}", op.kind()),
                    ));
                }
                self.accumulate(&mut grads, orig_inputs[k], gk)?;
            }
        }
        for &w in wrt {
            if let Some(gw) = grads.get(self, w) {
                self.output(gw);
            }
        }
        Ok(grads)
    }

    /// Adds `dt` to the gradient of `t` (of its root, reshaped, when `t` is a view).
    fn accumulate(&mut self, grads: &mut Gradients, t: TensorId, dt: TensorId) -> Result<()> {
        let root = self.root(t);
        let dt = if root != t {
            let shape = self.desc(root).shape.clone();
            self.reshape(dt, &shape)?
        } else {
            dt
        };
        let total = match grads.map.get(&root) {
            Some(&prev) => {
                let name = format!("{}.grad_sum", self.name(root));
                self.add(&name, prev, dt)?
            }
            None => dt,
        };
        grads.map.insert(root, total);
        Ok(())
    }

    /// Re-records the forward nodes `range` (a checkpoint segment). Returns the map from every tensor the
    /// segment produced (and views of them) to its recomputed twin.
    fn recompute(&mut self, range: Range<usize>) -> Result<HashMap<TensorId, TensorId>> {
        let mut map: HashMap<TensorId, TensorId> = HashMap::new();
        for i in range {
            let (op, name, inputs, output) = {
                let nd = &self.nodes[i];
                (nd.op.clone(), nd.name.clone(), nd.inputs.clone(), nd.output)
            };
            let mut new_inputs = Vec::with_capacity(inputs.len());
            for t in inputs {
                new_inputs.push(self.remap(&mut map, t)?);
            }
            let desc = self.desc(output).clone();
            let id = self.push(&format!("{name}.recomputed"), desc, Source::Node);
            self.nodes.push(Node { name: format!("{name}.recomputed"), op, inputs: new_inputs, output: id });
            map.insert(output, id);
        }
        Ok(map)
    }

    /// `t` as seen by recomputed nodes: its twin when the segment produced it (a view of the twin for a view).
    fn remap(&mut self, map: &mut HashMap<TensorId, TensorId>, t: TensorId) -> Result<TensorId> {
        if let Some(&m) = map.get(&t) {
            return Ok(m);
        }
        let root = self.root(t);
        match map.get(&root) {
            Some(&r) if root != t => {
                let shape = self.desc(t).shape.clone();
                let v = self.reshape(r, &shape)?;
                map.insert(t, v);
                Ok(v)
            }
            _ => Ok(t),
        }
    }
}
