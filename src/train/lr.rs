//! Learning-rate schedules of diffusers' `get_scheduler` (`--lr-scheduler`), as the DreamBooth scripts use
//! them: the factor applied at each optimizer step, with linear warm-up.

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LrSchedule {
    /// `constant` (no warm-up) and `constant_with_warmup`.
    Constant,
    /// Linear decay to 0 at the last step after the warm-up.
    Linear,
    /// Half a cosine from 1 to 0 after the warm-up (`num_cycles = 0.5`).
    Cosine,
}

impl LrSchedule {
    pub fn parse(s: &str) -> Result<LrSchedule> {
        match s {
            "constant" | "constant_with_warmup" => Ok(LrSchedule::Constant),
            "linear" => Ok(LrSchedule::Linear),
            "cosine" => Ok(LrSchedule::Cosine),
            other => Err(Error::usage(format!("--lr-scheduler {other:?}: expected constant, constant_with_warmup, linear or cosine"))),
        }
    }

    /// The learning rate of optimizer step `step` (0-based) of `total`, with `warmup` warm-up steps.
    pub fn lr(self, base: f64, step: usize, total: usize, warmup: usize) -> f64 {
        if step < warmup {
            return base * step as f64 / warmup.max(1) as f64;
        }
        let decay = (total - warmup.min(total)).max(1) as f64;
        let progress = (step - warmup) as f64 / decay;
        base * match self {
            LrSchedule::Constant => 1.0,
            LrSchedule::Linear => (1.0 - progress).max(0.0),
            LrSchedule::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_follow_diffusers() {
        // transformers' lambdas: warm-up step/warmup; linear (T − s)/(T − w); cosine ½(1 + cos(π·p)).
        assert_eq!(LrSchedule::Constant.lr(1.0, 0, 10, 0), 1.0);
        assert_eq!(LrSchedule::Constant.lr(1.0, 1, 10, 4), 0.25);
        assert_eq!(LrSchedule::Linear.lr(2.0, 4, 10, 4), 2.0);
        assert!((LrSchedule::Linear.lr(2.0, 7, 10, 4) - 1.0).abs() < 1e-12);
        assert!((LrSchedule::Cosine.lr(1.0, 5, 10, 0) - 0.5).abs() < 1e-12);
        assert!(LrSchedule::Cosine.lr(1.0, 10, 10, 0).abs() < 1e-12);
        assert!(LrSchedule::parse("exp").is_err());
    }
}
