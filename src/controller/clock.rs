//! The operator's wall clock, which tests may start elsewhere and run
//! faster.

use std::time::{Duration, Instant};

/// The operator's clock. Real time by default; tests may start it
/// elsewhere and run it faster (`--time-origin`, `--time-scale`) so that
/// a minutely Schedule fires every second. Only scheduling decisions read
/// it; Kubernetes' own timestamps stay real.
#[derive(Clone, Copy, Debug)]
pub struct OperatorClock {
    started: Instant,
    /// Real Unix time at `started`.
    real_start: f64,
    origin: f64,
    scale: f64,
}

impl OperatorClock {
    pub fn real() -> Self {
        Self::new(None, 1.0)
    }

    /// `origin`: the clock's reading now (Unix seconds); `scale`: how many
    /// of its seconds pass per real second.
    pub fn new(origin: Option<i64>, scale: f64) -> Self {
        let real_now = jiff::Timestamp::now().as_millisecond() as f64 / 1_000.0;
        Self {
            started: Instant::now(),
            real_start: real_now,
            origin: origin.map_or(real_now, |o| o as f64),
            scale: if scale > 0.0 { scale } else { 1.0 },
        }
    }

    /// This clock's reading at a real instant (Unix seconds), such as an
    /// object's creationTimestamp.
    pub fn at_real(&self, real: i64) -> i64 {
        (self.origin + (real as f64 - self.real_start) * self.scale).floor() as i64
    }

    /// How long `real_seconds` of real time last on this clock, such as
    /// a Job's run.
    pub fn span(&self, real_seconds: i64) -> i64 {
        (real_seconds as f64 * self.scale).ceil() as i64
    }

    /// Unix seconds on this clock.
    pub fn now(&self) -> i64 {
        (self.origin + self.started.elapsed().as_secs_f64() * self.scale).floor() as i64
    }

    /// The real time until this clock reads `at` (just after it, so the
    /// wake-up sees the session as due).
    pub fn until(&self, at: i64) -> Duration {
        let now = self.origin + self.started.elapsed().as_secs_f64() * self.scale;
        let ahead = (at as f64 - now).max(0.0) / self.scale;
        Duration::from_secs_f64(ahead) + Duration::from_millis(50)
    }
}
