//! `wgsd verify`: runs every case of a fixture folder and reports one line per case. The test suite calls
//! the same functions with the folder from `WGSD_FIXTURES`.

use std::path::Path;

use crate::error::Result;
use crate::fixtures::Fixtures;
use crate::models::tokenizer::ClipTokenizer;

/// Outcome of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub name: String,
    pub passed: bool,
    pub rel_l2: f64,
    pub max_abs: f64,
    /// Why it failed (or what was compared), for the report.
    pub detail: String,
}

impl CaseResult {
    pub fn line(&self) -> String {
        let mut s = format!(
            "{} {} rel_l2={:.3e} max_abs={:.3e}",
            self.name,
            if self.passed { "PASS" } else { "FAIL" },
            self.rel_l2,
            self.max_abs
        );
        // PASS lines keep the exact `<case> PASS rel_l2=<x> max_abs=<y>` form; failures say why.
        if !self.passed && !self.detail.is_empty() {
            s.push_str(&format!("  ({})", self.detail));
        }
        s
    }
}

/// Model folders of a `cases.json` fixture set.
fn models(fx: &Fixtures) -> Vec<String> {
    fx.meta["models"].as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect()).unwrap_or_default()
}

/// `tokenizer.sd1` / `tokenizer.sd2`: ids must be identical. The sd1 convention (pad with end-of-text) is
/// checked with the first model whose tokenizer pads so, sd2 (pad with `!`) with the first that does not.
pub fn tokenizer_cases(fx: &Fixtures) -> Result<Vec<CaseResult>> {
    let tok = &fx.meta["tokenizer"];
    let prompts: Vec<String> =
        tok["prompts"].as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect()).unwrap_or_default();
    let mut out = Vec::new();
    let mut sd1 = None;
    let mut sd2 = None;
    for m in models(fx) {
        let dir = fx.dir.join(&m).join("tokenizer");
        if !dir.exists() {
            continue;
        }
        let t = ClipTokenizer::from_folder(&dir)?;
        if t.pad_id == t.eos_id && sd1.is_none() {
            sd1 = Some(t);
        } else if t.pad_id != t.eos_id && sd2.is_none() {
            sd2 = Some(t);
        }
    }
    for (name, key, t) in [("tokenizer.sd1", "sd1_ids", &sd1), ("tokenizer.sd2", "sd2_ids", &sd2)] {
        let Some(expected) = tok[key].as_array() else { continue };
        let Some(t) = t else {
            out.push(CaseResult {
                name: name.into(),
                passed: false,
                rel_l2: f64::NAN,
                max_abs: f64::NAN,
                detail: "no model folder with this padding convention".into(),
            });
            continue;
        };
        let mut mismatches = Vec::new();
        for (i, (p, want)) in prompts.iter().zip(expected).enumerate() {
            let want: Vec<u32> = want.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            let got = t.encode(p)?.ids;
            if got != want {
                mismatches.push(format!("prompt {i} {p:?}: got {:?}… want {:?}…", &got[..got.len().min(12)], &want[..want.len().min(12)]));
            }
            if name == "tokenizer.sd1" {
                if let Some(raw) = tok["sd1_unpadded"].get(i).and_then(|v| v.as_array()) {
                    let want_raw: Vec<u32> = raw.iter().map(|v| v.as_u64().unwrap() as u32).collect();
                    let mut got_raw = vec![t.bos_id];
                    got_raw.extend(t.encode_raw(p)?);
                    got_raw.push(t.eos_id);
                    if got_raw != want_raw {
                        mismatches.push(format!("prompt {i} {p:?} unpadded: got {} ids, want {}", got_raw.len(), want_raw.len()));
                    }
                }
            }
        }
        let n = prompts.len();
        out.push(CaseResult {
            name: name.into(),
            passed: mismatches.is_empty(),
            rel_l2: 0.0,
            max_abs: mismatches.len() as f64,
            detail: if mismatches.is_empty() { format!("{n} prompts identical") } else { mismatches.join("; ") },
        });
    }
    Ok(out)
}

/// Every case of the fixture folder `dir` (a `cases.json` set or a `blocks.json` set).
pub fn run_all(dir: &Path) -> Result<Vec<CaseResult>> {
    let mut results = Vec::new();
    if dir.join("cases.json").exists() {
        let fx = Fixtures::open(dir, "cases")?;
        results.extend(tokenizer_cases(&fx)?);
    }
    Ok(results)
}
