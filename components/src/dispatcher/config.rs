//! The dispatcher's settings: the global `dispatcher:` block and each sink's overrides.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, duration, join_path};
use crate::queue::WhenFull;

/// Tuning of one sink's dispatcher. The global `dispatcher:` block sets the defaults; a sink's own
/// `dispatcher:` block overrides any of them for that sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DispatcherConfig {
    /// Capacity of the sink's queue, in events. Restart required to change.
    pub queue_size: usize,
    /// Capacity of the sink's queue, in bytes (lines plus about 150 bytes of record per event):
    /// with long lines this, not `queue_size`, bounds the queue's memory. Restart required.
    pub queue_max_bytes: usize,
    /// What a full queue does: `block` (backpressure to the sources) or `drop_newest` (counted).
    pub when_full: WhenFull,
    /// Sends in flight at once. Hot-reloadable.
    pub worker_count: usize,
    /// Most events in one batch. Hot-reloadable.
    pub batch_size: usize,
    /// Most bytes (lines plus labels) in one batch.
    pub batch_max_bytes: usize,
    /// How long a partial batch waits for more events before it is sent. Hot-reloadable.
    #[serde(with = "duration")]
    pub batch_timeout: Duration,
    /// Limit on one send attempt; a timed-out attempt is retried.
    #[serde(with = "duration")]
    pub send_timeout: Duration,
    /// Retries after the first attempt before a batch is a final failure.
    pub max_retries: u32,
    /// Delay before the first retry.
    #[serde(with = "duration")]
    pub retry_base_delay: Duration,
    /// Factor by which the delay grows with each retry.
    pub retry_multiplier: f32,
    /// Largest delay between retries (before jitter).
    #[serde(with = "duration")]
    pub retry_max_delay: Duration,
    /// Adds a random 0-100% to each delay so many senders do not retry in step.
    pub retry_jitter: bool,
}

/// 4 MiB: about 16 000 events of 100-byte lines (4 000 of 1000-byte lines), many batches ahead of
/// the workers, which is all a queue in front of them needs: `max` sends as fast with it as with
/// 16 MiB, at 35 instead of 44 MiB of RSS (47 instead of 60 with 1000-byte lines; harness
/// compare, docs/performance.md). Behind the queue the files (and Docker's json-file logs) are
/// the buffer: a full queue stops reading them, it loses nothing.
pub const DEFAULT_QUEUE_MAX_BYTES: usize = 4 << 20;

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            queue_size: 50_000,
            queue_max_bytes: DEFAULT_QUEUE_MAX_BYTES,
            when_full: WhenFull::Block,
            worker_count: 4,
            batch_size: 1_000,
            batch_max_bytes: 1024 * 1024,
            batch_timeout: Duration::from_secs(1),
            send_timeout: Duration::from_secs(30),
            max_retries: 10,
            retry_base_delay: Duration::from_millis(500),
            retry_multiplier: 2.0,
            retry_max_delay: Duration::from_secs(30),
            retry_jitter: true,
        }
    }
}

impl DispatcherConfig {
    /// Keys that change on a live reload; every other key needs a restart.
    pub const HOT_RELOADABLE: &'static [&'static str] =
        &["worker_count", "batch_size", "batch_timeout"];

    /// Value checks serde cannot express.
    pub fn validate(&self, prefix: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut at_least_one = |key: &str, value: usize| {
            if value == 0 {
                errors.push(
                    ConfigError::new(join_path(prefix, key), "must be at least 1")
                        .with_hint("remove the key to use the default"),
                );
            }
        };
        at_least_one("queue_size", self.queue_size);
        at_least_one("queue_max_bytes", self.queue_max_bytes);
        at_least_one("worker_count", self.worker_count);
        at_least_one("batch_size", self.batch_size);
        at_least_one("batch_max_bytes", self.batch_max_bytes);
        for (key, value) in [
            ("queue_size", self.queue_size),
            ("queue_max_bytes", self.queue_max_bytes),
        ] {
            if value > u32::MAX as usize {
                errors.push(ConfigError::new(
                    join_path(prefix, key),
                    format!("must be at most {}", u32::MAX),
                ));
            }
        }
        if self.send_timeout.is_zero() {
            errors.push(ConfigError::new(
                join_path(prefix, "send_timeout"),
                "must be longer than 0s",
            ));
        }
        if self.retry_multiplier.is_nan() || self.retry_multiplier < 1.0 {
            errors.push(
                ConfigError::new(join_path(prefix, "retry_multiplier"), "must be 1.0 or more")
                    .with_hint("delays grow by this factor; 2.0 doubles them"),
            );
        }
        if self.retry_max_delay < self.retry_base_delay {
            errors.push(ConfigError::new(
                join_path(prefix, "retry_max_delay"),
                "must not be shorter than retry_base_delay",
            ));
        }
        errors
    }

    pub(super) fn backoff(&self) -> impl Iterator<Item = Duration> + use<> {
        let builder = ExponentialBuilder::default()
            .with_min_delay(self.retry_base_delay)
            .with_max_delay(self.retry_max_delay)
            .with_factor(self.retry_multiplier)
            .with_max_times(self.max_retries as usize);
        if self.retry_jitter {
            builder.with_jitter().build()
        } else {
            builder.build()
        }
    }
}
