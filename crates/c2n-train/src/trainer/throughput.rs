//! Samples and tokens per second over a window of micro-steps.

use std::time::Instant;

/// Samples and tokens per second over a window of micro-steps.
#[derive(Debug)]
pub(super) struct Throughput {
    start: Instant,
    examples: u64,
    tokens: u64,
}

impl Default for Throughput {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            examples: 0,
            tokens: 0,
        }
    }
}

impl Throughput {
    pub(super) fn add(&mut self, examples: u64, tokens: u64) {
        self.examples += examples;
        self.tokens += tokens;
    }

    pub(super) fn rates(&self) -> (f64, f64) {
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        (self.examples as f64 / secs, self.tokens as f64 / secs)
    }
}
