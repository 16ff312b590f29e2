//! A token bucket with the semantics of Go's `golang.org/x/time/rate` `AllowN`, which Loki's
//! per-tenant ingestion limiter uses: it starts full, refills at `rate` per second up to
//! `burst`, and a request for more than `burst` never passes.

use std::time::Instant;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            last: None,
        }
    }

    /// Takes `n` tokens if they are all there; otherwise takes none.
    pub fn allow_n(&mut self, now: Instant, n: f64) -> bool {
        if self.rate.is_infinite() {
            return true;
        }
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        }
        self.last = Some(now);
        if n > self.burst || self.tokens < n {
            return false;
        }
        self.tokens -= n;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn behaves_like_x_time_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(100.0, 1000.0);
        assert!(
            !bucket.allow_n(start, 1001.0),
            "more than the burst never passes"
        );
        assert!(bucket.allow_n(start, 600.0));
        assert!(
            !bucket.allow_n(start, 600.0),
            "a refused request takes nothing"
        );
        assert!(bucket.allow_n(start, 400.0));
        assert!(!bucket.allow_n(start, 1.0));
        // One second refills 100 tokens.
        assert!(bucket.allow_n(start + Duration::from_secs(1), 100.0));
        assert!(!bucket.allow_n(start + Duration::from_secs(1), 1.0));
    }
}
