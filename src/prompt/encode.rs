//! Prompts → chunks of token ids and multipliers → conditioning, as A1111's `sd_hijack_clip.py` does it
//! (syntax `a1111`), or diffusers' single truncated window (syntax `plain`).
//!
//! A1111: the prompt is parsed for emphasis ([`super::parse`]), each run of text tokenized on its own;
//! tokens fill chunks of 75 — `BOS + 75 + EOS`, padded with EOS (SD 2: everything after the first EOS is
//! its pad id) — and a chunk that fills up within 20 tokens after a comma moves the text after the comma
//! into the next chunk; `BREAK` starts a chunk; an embedding's vectors are never split across chunks.
//! Each chunk runs through the text encoder on its own (the whole batch at once); the hidden states are
//! multiplied per token by their multiplier and the chunk tensor is rescaled to its mean before
//! weighting ("Original" normalisation). The chunks join along the sequence: `[N, 77·k, D]`. Prompts of a
//! batch with fewer chunks get empty-prompt chunks (A1111 does the same within a batch).

use super::embeddings::EmbeddingSet;
use super::parse::{is_break, parse_prompt_attention};
use crate::error::{Error, Result};
use crate::graph::plan::Plan;
use crate::graph::{Graph, TensorId};
use crate::models::tokenizer::ClipTokenizer;
use crate::pipeline::StableDiffusion;
use crate::tensor::TensorDesc;

/// A1111's `comma_padding_backtrack` default.
pub const COMMA_BACKTRACK: usize = 20;

/// How prompts are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PromptSyntax {
    /// A1111: emphasis, BREAK, chunks of 75 tokens without a length limit.
    A1111,
    /// diffusers: the text as is, cut to one 77-token window (the cut is reported).
    #[default]
    Plain,
}

impl PromptSyntax {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "a1111" => Ok(PromptSyntax::A1111),
            "plain" => Ok(PromptSyntax::Plain),
            _ => Err(Error::usage(format!("--prompt-syntax {s}: expected a1111 or plain"))),
        }
    }
}

/// How the pipeline reads prompts: the syntax and the textual-inversion embeddings.
#[derive(Clone, Debug, Default)]
pub struct PromptOptions {
    pub syntax: PromptSyntax,
    pub embeddings: EmbeddingSet,
}

/// One 77-token window: ids and per-token multipliers.
#[derive(Clone, Debug, PartialEq)]
pub struct Chunk {
    pub ids: Vec<u32>,
    pub multipliers: Vec<f32>,
}

/// A tokenized prompt: its chunks and the tokens cut off (plain syntax only).
#[derive(Clone, Debug)]
pub struct ChunkedPrompt {
    pub chunks: Vec<Chunk>,
    pub truncated: usize,
}

/// A token of the stream: a vocabulary id, or an embedding (index in the set).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Item {
    Token(u32),
    Embedding(usize),
}

/// The chunker's context: tokenizer, embeddings and the ids they get.
pub struct Chunker<'a> {
    tok: &'a ClipTokenizer,
    emb: &'a EmbeddingSet,
    vocab: usize,
    comma: Option<u32>,
    /// Per embedding: its stem's token ids (A1111's trigger), longest first when matching.
    stem_ids: Vec<Vec<u32>>,
    /// Tokens between BOS and EOS: 75 (the tokenizer's 77 − 2).
    window: usize,
}

impl<'a> Chunker<'a> {
    /// `vocab` is the text encoder's vocabulary size (embedding ids follow it).
    pub fn new(tok: &'a ClipTokenizer, emb: &'a EmbeddingSet, vocab: usize) -> Result<Self> {
        let comma = match tok.encode_raw(",")?.as_slice() {
            [c] => Some(*c),
            _ => None,
        };
        let stem_ids = emb.list.iter().map(|e| tok.encode_raw(&e.name)).collect::<Result<Vec<_>>>()?;
        Ok(Chunker { tok, emb, vocab, comma, stem_ids, window: tok.max_len.saturating_sub(2).max(1) })
    }

    fn embedding_ids(&self, i: usize) -> impl Iterator<Item = u32> + '_ {
        let base = (self.vocab + self.emb.offset(i)) as u32;
        (0..self.emb.list[i].count as u32).map(move |k| base + k)
    }

    /// Text → items: diffusers' text-form triggers (`<name>`) split the text first, as added tokens do;
    /// each piece is tokenized on its own.
    fn tokenize(&self, text: &str, stems: bool) -> Result<Vec<Item>> {
        let triggers: Vec<(String, usize)> =
            self.emb.list.iter().enumerate().flat_map(|(i, e)| e.text_triggers().into_iter().map(move |t| (t, i))).collect();
        let mut items = Vec::new();
        let mut rest = text;
        loop {
            // The earliest trigger in the text (the longest where two start at once).
            let hit = triggers
                .iter()
                .filter_map(|(t, i)| rest.find(t.as_str()).map(|at| (at, std::cmp::Reverse(t.len()), *i)))
                .min();
            let (piece, next) = match hit {
                Some((at, std::cmp::Reverse(len), i)) => (&rest[..at], Some((i, at + len))),
                None => (rest, None),
            };
            let ids = self.tok.encode_raw(piece)?;
            if stems {
                self.match_stems(&ids, &mut items);
            } else {
                items.extend(ids.into_iter().map(Item::Token));
            }
            match next {
                Some((i, end)) => {
                    items.push(Item::Embedding(i));
                    rest = &rest[end..];
                }
                None => break,
            }
        }
        Ok(items)
    }

    /// A1111's `find_embedding_at_position`: an embedding's stem tokens in the id stream become it.
    fn match_stems(&self, ids: &[u32], out: &mut Vec<Item>) {
        let mut p = 0;
        while p < ids.len() {
            let best = (0..self.stem_ids.len())
                .filter(|&i| {
                    let s = &self.stem_ids[i];
                    !s.is_empty() && ids[p..].starts_with(s)
                })
                .max_by_key(|&i| (self.stem_ids[i].len(), std::cmp::Reverse(i)));
            match best {
                Some(i) => {
                    out.push(Item::Embedding(i));
                    p += self.stem_ids[i].len();
                }
                None => {
                    out.push(Item::Token(ids[p]));
                    p += 1;
                }
            }
        }
    }

    /// `BOS + tokens + EOS`, padded to 77 with EOS (A1111's "remade" tokens; SD 2's pad id goes in at
    /// encoding, [`sd2_pad`]).
    fn finish(&self, mut ids: Vec<u32>, mut mults: Vec<f64>) -> Chunk {
        ids.resize(self.window, self.tok.eos_id);
        mults.resize(self.window, 1.0);
        let mut full = Vec::with_capacity(self.window + 2);
        full.push(self.tok.bos_id);
        full.extend(ids);
        full.push(self.tok.eos_id);
        let mut m = vec![1.0f32];
        m.extend(mults.iter().map(|&v| v as f32));
        m.push(1.0);
        Chunk { ids: full, multipliers: m }
    }

    /// The chunk of the empty prompt (what shorter prompts are padded with).
    pub fn empty_chunk(&self) -> Chunk {
        self.finish(Vec::new(), Vec::new())
    }

    /// One prompt in the given syntax.
    pub fn chunk(&self, prompt: &str, syntax: PromptSyntax) -> Result<ChunkedPrompt> {
        match syntax {
            PromptSyntax::A1111 => Ok(ChunkedPrompt { chunks: self.chunk_a1111(prompt)?, truncated: 0 }),
            PromptSyntax::Plain => {
                let mut ids: Vec<u32> = Vec::new();
                for item in self.tokenize(prompt, false)? {
                    match item {
                        Item::Token(t) => ids.push(t),
                        Item::Embedding(i) => ids.extend(self.embedding_ids(i)),
                    }
                }
                let truncated = ids.len().saturating_sub(self.window);
                ids.truncate(self.window);
                // diffusers pads with the pad token right after EOS: the same as A1111's rule.
                let n = ids.len();
                Ok(ChunkedPrompt { chunks: vec![self.finish(ids, vec![1.0; n])], truncated })
            }
        }
    }

    /// Which embeddings (indices in the set) `prompt` triggers, in order of first use.
    pub fn embeddings_used(&self, prompt: &str, syntax: PromptSyntax) -> Result<Vec<usize>> {
        let mut used = Vec::new();
        let texts: Vec<String> = match syntax {
            PromptSyntax::A1111 => parse_prompt_attention(prompt).into_iter().filter(|e| !is_break(e)).map(|e| e.0).collect(),
            PromptSyntax::Plain => vec![prompt.to_string()],
        };
        for t in texts {
            for item in self.tokenize(&t, syntax == PromptSyntax::A1111)? {
                if let Item::Embedding(i) = item {
                    if !used.contains(&i) {
                        used.push(i);
                    }
                }
            }
        }
        Ok(used)
    }

    /// A1111's `tokenize_line`.
    fn chunk_a1111(&self, prompt: &str) -> Result<Vec<Chunk>> {
        let parsed = parse_prompt_attention(prompt);
        let mut chunks = Vec::new();
        let mut ids: Vec<u32> = Vec::new();
        let mut mults: Vec<f64> = Vec::new();
        let mut last_comma: Option<usize> = None;
        for entry in &parsed {
            if is_break(entry) {
                chunks.push(self.finish(std::mem::take(&mut ids), std::mem::take(&mut mults)));
                last_comma = None;
                continue;
            }
            let weight = entry.1;
            for item in self.tokenize(&entry.0, true)? {
                if matches!(item, Item::Token(t) if Some(t) == self.comma) {
                    last_comma = Some(ids.len());
                } else if let Some(c) = last_comma.filter(|&c| ids.len() == self.window && ids.len() - c <= COMMA_BACKTRACK) {
                    let reloc_ids = ids.split_off(c + 1);
                    let reloc_mults = mults.split_off(c + 1);
                    chunks.push(self.finish(std::mem::replace(&mut ids, reloc_ids), std::mem::replace(&mut mults, reloc_mults)));
                    last_comma = None;
                }
                if ids.len() == self.window {
                    chunks.push(self.finish(std::mem::take(&mut ids), std::mem::take(&mut mults)));
                    last_comma = None;
                }
                match item {
                    Item::Token(t) => {
                        ids.push(t);
                        mults.push(weight);
                    }
                    Item::Embedding(i) => {
                        let n = self.emb.list[i].count;
                        if n > self.window {
                            return Err(Error::usage(format!(
                                "embedding '{}' has {n} vectors: more than a chunk's {} tokens",
                                self.emb.list[i].name,
                                self.window
                            )));
                        }
                        if ids.len() + n > self.window {
                            chunks.push(self.finish(std::mem::take(&mut ids), std::mem::take(&mut mults)));
                            last_comma = None;
                        }
                        ids.extend(self.embedding_ids(i));
                        mults.extend(std::iter::repeat_n(weight, n));
                    }
                }
            }
        }
        if !ids.is_empty() || chunks.is_empty() {
            chunks.push(self.finish(ids, mults));
        }
        Ok(chunks)
    }
}

/// The ids the text encoder sees: after the first EOS every id becomes the pad id (SD 2 pads with `!`,
/// id 0; SD 1's pad is EOS itself, so nothing changes there). diffusers' tokenizer pads the same way.
pub fn sd2_pad(ids: &mut [u32], eos: u32, pad: u32) {
    if let Some(first) = ids.iter().position(|&t| t == eos) {
        for t in &mut ids[first + 1..] {
            *t = pad;
        }
    }
}

/// How far below the chunk's RMS a mean counts as zero: A1111's rescale divides by the weighted mean, and
/// a mean that is only float32 rounding (a text encoder whose final LayerNorm has no bias: every token's
/// hidden state then has mean 0) would make the factor noise, inf or NaN. Real SD 1.x/2.x encoders have
/// chunk means near 1e-1 of the RMS; rounding leaves ~1e-8.
pub const DEGENERATE_MEAN: f64 = 1e-4;

/// What [`apply_emphasis`] did to a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emphasis {
    /// All multipliers 1: the chunk is the encoder's output.
    Unweighted,
    /// Weighted and rescaled to the unweighted mean (A1111's "Original").
    Rescaled,
    /// Weighted, but not rescaled: the mean before or after weighting is zero up to rounding, so the
    /// A1111 factor is undefined (A1111 itself turns such a chunk to NaN or noise).
    NotRescaled,
}

/// A1111's "Original" emphasis on one chunk tensor `z` (`[B, 77, D]`, all prompts of the batch together):
/// `z *= multipliers`, then `z *= mean_before / mean_after`. Means are taken in f64.
pub fn apply_emphasis(z: &mut [f32], multipliers: &[f32], width: usize) -> Emphasis {
    if multipliers.iter().all(|&m| m == 1.0) {
        return Emphasis::Unweighted;
    }
    // The mean, and whether it is zero up to rounding (or not a number).
    let mean_of = |z: &[f32]| {
        let n = z.len().max(1) as f64;
        let mean = z.iter().map(|&v| v as f64).sum::<f64>() / n;
        let rms = (z.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / n).sqrt();
        (mean, !mean.is_finite() || mean.abs() <= DEGENERATE_MEAN * rms)
    };
    let (before, undefined_before) = mean_of(z);
    for (row, &m) in z.chunks_mut(width).zip(multipliers) {
        for v in row {
            *v *= m;
        }
    }
    let (after, undefined_after) = mean_of(z);
    if undefined_before || undefined_after {
        return Emphasis::NotRescaled;
    }
    let ratio = (before / after) as f32;
    for v in z.iter_mut() {
        *v *= ratio;
    }
    Emphasis::Rescaled
}

/// The UNet's context for a batch of prompts: `[N, 77·chunks, D]`.
pub struct EncodedPrompts {
    pub context: Vec<f32>,
    pub chunks: usize,
    /// Per prompt: tokens cut off (plain syntax).
    pub truncated: Vec<usize>,
    /// Per chunk (the batch's chunk c together): what emphasis did.
    pub emphasis: Vec<Emphasis>,
}

impl EncodedPrompts {
    /// Chunks whose emphasis could not be rescaled (see [`Emphasis::NotRescaled`]).
    pub fn not_rescaled(&self) -> usize {
        self.emphasis.iter().filter(|e| **e == Emphasis::NotRescaled).count()
    }
}

impl StableDiffusion {
    /// The chunker for this model's tokenizer, vocabulary and embeddings.
    pub fn chunker(&self) -> Result<Chunker<'_>> {
        Chunker::new(&self.tokenizer, &self.prompt.embeddings, self.text_encoder.config.vocab_size)
    }

    /// Every prompt in chunks, per [`StableDiffusion::prompt`]'s syntax.
    pub fn chunk_prompts(&self, prompts: &[String]) -> Result<Vec<ChunkedPrompt>> {
        let c = self.chunker()?;
        prompts.iter().map(|p| c.chunk(p, self.prompt.syntax)).collect()
    }

    /// Encodes chunked prompts to `[N, 77·k, D]`, `k = max(min_chunks, most chunks of a prompt)`, prompts
    /// with fewer chunks padded with empty-prompt chunks; `skip` final layers skipped (CLIP skip).
    pub fn encode_chunked(&self, prompts: &[ChunkedPrompt], min_chunks: usize, skip: usize) -> Result<EncodedPrompts> {
        let mut out = self.encode_sets(&[PromptSet { prompts, skip, min_chunks }])?;
        Ok(out.remove(0))
    }

    /// Encodes several sets of prompts (a run's prompts and negative prompts) with as few text-encoder runs
    /// as possible: sets with the same CLIP skip share one plan and one run per chunk, and a set whose
    /// prompts are all the same (one prompt, several images) is encoded once and copied. Emphasis is
    /// applied per set, as A1111 encodes the prompts and the negative prompts separately.
    pub fn encode_sets(&self, sets: &[PromptSet]) -> Result<Vec<EncodedPrompts>> {
        let (len, d) = (self.tokenizer.max_len, self.text_encoder.config.hidden_size);
        let mut out: Vec<Option<EncodedPrompts>> = sets.iter().map(|_| None).collect();
        for skip in skip_groups(sets) {
            let TextRun { graph, ids: t, extra, table, hidden: h, members, rows, ks, batches, chunk_ids, token_rows } =
                self.text_run(sets, skip)?;
            let plan = Plan::new(self.gpu.clone(), graph)?;
            if let Some(e) = extra {
                plan.write(e, &self.prompt.embeddings.table())?;
            }
            if let (Some(table), Some(ids)) = (table, &token_rows) {
                plan.write(table, &self.text_encoder.token_table().read_rows(&self.gpu, ids)?)?;
            }
            let mut contexts: Vec<Vec<f32>> = members.iter().zip(&ks).map(|(&i, &k)| vec![0f32; sets[i].prompts.len() * k * len * d]).collect();
            let mut emphasis: Vec<Vec<Emphasis>> = members.iter().map(|_| Vec::new()).collect();
            for (c, batch) in batches.iter().enumerate() {
                let ids: Vec<f32> = chunk_ids[c].iter().map(|&i| i as f32).collect();
                plan.write(t, &ids)?;
                let z = plan.run_and_read(&[h])?.remove(0);
                let mut row = 0;
                for (m, member_rows) in rows.iter().enumerate() {
                    let r = member_rows.len();
                    if c < ks[m] {
                        let mut zm = z[row * len * d..(row + r) * len * d].to_vec();
                        let mults: Vec<f32> = batch[row..row + r].iter().flat_map(|ch| ch.multipliers.iter().copied()).collect();
                        emphasis[m].push(apply_emphasis(&mut zm, &mults, d));
                        let count = sets[members[m]].prompts.len();
                        for i in 0..count {
                            // A set encoded once (all prompts equal) fills every prompt from its one row.
                            let src = if r == 1 { 0 } else { i };
                            let at = (i * ks[m] + c) * len * d;
                            contexts[m][at..at + len * d].copy_from_slice(&zm[src * len * d..(src + 1) * len * d]);
                        }
                    }
                    row += r;
                }
            }
            for (m, &i) in members.iter().enumerate() {
                out[i] = Some(EncodedPrompts {
                    context: std::mem::take(&mut contexts[m]),
                    chunks: ks[m],
                    truncated: sets[i].prompts.iter().map(|p| p.truncated).collect(),
                    emphasis: std::mem::take(&mut emphasis[m]),
                });
            }
        }
        out.into_iter().map(|e| e.ok_or_else(|| Error::usage("a prompt set was not encoded"))).collect()
    }

    /// The graph [`encode_sets`](Self::encode_sets) runs first for `sets` (their lowest CLIP skip), built
    /// from the token ids alone, so its pipelines can be made while the text encoder's weights upload.
    pub fn text_graph(&self, sets: &[PromptSet]) -> Result<Graph> {
        let skip = skip_groups(sets).into_iter().next().unwrap_or(0);
        Ok(self.text_run(sets, skip)?.graph)
    }

    /// The text-encoder run of the sets with CLIP skip `skip`: sets with the same skip share one plan and
    /// one run per chunk, and a set whose prompts are all the same is encoded once (one row).
    fn text_run<'s>(&self, sets: &[PromptSet<'s>], skip: usize) -> Result<TextRun<'s>> {
        let len = self.tokenizer.max_len;
        let d = self.text_encoder.config.hidden_size;
        let vocab = self.text_encoder.config.vocab_size;
        let empty = self.chunker()?.empty_chunk();
        let members: Vec<usize> = (0..sets.len()).filter(|&i| sets[i].skip == skip).collect();
        // Rows each member contributes: one when all its prompts are equal, else one per prompt.
        let unique = |s: &PromptSet| s.prompts.windows(2).all(|w| w[0].chunks == w[1].chunks);
        let rows: Vec<Vec<&'s ChunkedPrompt>> = members
            .iter()
            .map(|&i| {
                let s = &sets[i];
                if unique(s) { s.prompts.iter().take(1).collect() } else { s.prompts.iter().collect() }
            })
            .collect();
        let ks: Vec<usize> = members
            .iter()
            .map(|&i| sets[i].prompts.iter().map(|p| p.chunks.len()).max().unwrap_or(0).max(sets[i].min_chunks).max(1))
            .collect();
        let n: usize = rows.iter().map(|r| r.len()).sum();
        let k_max = ks.iter().copied().max().unwrap_or(1);
        let batches: Vec<Vec<Chunk>> =
            (0..k_max).map(|c| rows.iter().flatten().map(|p| p.chunks.get(c).unwrap_or(&empty).clone()).collect()).collect();
        let mut chunk_ids: Vec<Vec<u32>> = batches
            .iter()
            .map(|batch| {
                batch
                    .iter()
                    .flat_map(|ch| {
                        let mut padded = ch.ids.clone();
                        sd2_pad(&mut padded, self.tokenizer.eos_id, self.tokenizer.pad_id);
                        padded
                    })
                    .collect()
            })
            .collect();
        // --low-vram leaves the token table (49408 rows) off the GPU: the few rows the prompts use are
        // gathered on the host, and the ids renumbered to index them.
        let token_rows = (!self.text_encoder.token_table().resident()).then(|| gather_token_rows(&mut chunk_ids, vocab));
        let mut g = Graph::new();
        let t = g.input("input_ids", TensorDesc::f32(&[n, len]));
        let extra_rows = self.prompt.embeddings.rows();
        let extra = (extra_rows > 0).then(|| g.input("embedding_rows", TensorDesc::f32(&[extra_rows, d])));
        let table = token_rows.as_ref().map(|r| g.input("token_rows", TensorDesc::f32(&[r.len(), d])));
        let h = self.text_encoder.forward_skip_rows(&mut g, t, skip, extra, table)?;
        g.output(h);
        Ok(TextRun { graph: g, ids: t, extra, table, hidden: h, members, rows, ks, batches, chunk_ids, token_rows })
    }
}

/// The token-table rows that `ids` use (ids below `vocab`, each once), with every id renumbered to index
/// them; ids past the vocabulary (textual-inversion rows) move down to follow them.
fn gather_token_rows(ids: &mut [Vec<u32>], vocab: usize) -> Vec<usize> {
    let mut used: Vec<usize> = ids.iter().flatten().map(|&i| i as usize).filter(|&i| i < vocab).collect();
    used.sort_unstable();
    used.dedup();
    if used.is_empty() {
        used.push(0); // a table of at least one row
    }
    let rows = used.len() as u32;
    for id in ids.iter_mut().flatten() {
        *id = match used.binary_search(&(*id as usize)) {
            Ok(r) => r as u32,
            Err(_) => *id - vocab as u32 + rows,
        };
    }
    used
}

/// Prompts encoded together: their chunks, CLIP skip, and the fewest chunks to produce.
pub struct PromptSet<'a> {
    pub prompts: &'a [ChunkedPrompt],
    pub skip: usize,
    pub min_chunks: usize,
}

/// The distinct CLIP skips of `sets`, lowest first: one text-encoder plan each.
fn skip_groups(sets: &[PromptSet]) -> Vec<usize> {
    let mut skips: Vec<usize> = sets.iter().map(|s| s.skip).collect();
    skips.sort_unstable();
    skips.dedup();
    skips
}

/// One CLIP-skip group of [`StableDiffusion::encode_sets`]: its graph (token ids, optional embedding and token-table
/// rows in; hidden states out), the sets in it (`members`), the prompts giving its rows per member, each
/// member's chunk count, and per chunk the batch of chunks and their token ids (renumbered when the token
/// rows are gathered: `token_rows`).
struct TextRun<'s> {
    graph: Graph,
    ids: TensorId,
    extra: Option<TensorId>,
    table: Option<TensorId>,
    hidden: TensorId,
    members: Vec<usize>,
    rows: Vec<Vec<&'s ChunkedPrompt>>,
    ks: Vec<usize>,
    batches: Vec<Vec<Chunk>>,
    chunk_ids: Vec<Vec<u32>>,
    token_rows: Option<Vec<usize>>,
}
