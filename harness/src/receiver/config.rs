//! The receiver's settings: one struct that is both the binary's command line (clap) and what
//! in-process users fill in. Defaults are Loki 3.7's defaults for the limits and behaviours it
//! mimics, except where a field's doc says otherwise (start-up and shutdown windows, the ready
//! delay and the stream limit default to off).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};

/// Loki's `limits_config.discover_service_name` default.
pub const DEFAULT_DISCOVER_SERVICE_NAME: [&str; 13] = [
    "service",
    "app",
    "application",
    "app_name",
    "name",
    "app_kubernetes_io_name",
    "container",
    "container_name",
    "k8s_container_name",
    "component",
    "workload",
    "job",
    "k8s_job_name",
];

/// Loki's `limits_config.log_level_fields` default.
pub const DEFAULT_LOG_LEVEL_FIELDS: [&str; 14] = [
    "level",
    "LEVEL",
    "Level",
    "log.level",
    "severity",
    "SEVERITY",
    "Severity",
    "SeverityText",
    "lvl",
    "LVL",
    "Lvl",
    "severity_text",
    "Severity_Text",
    "SEVERITY_TEXT",
];

/// A window during which every push is answered 503: `start` after the receiver started,
/// for `duration`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outage {
    pub start: Duration,
    pub duration: Duration,
}

impl Outage {
    /// Whether `elapsed` (since the receiver started) falls in this window.
    pub fn covers(&self, elapsed: Duration) -> bool {
        elapsed >= self.start && elapsed < self.start.saturating_add(self.duration)
    }
}

/// Settings of a Loki-compatible push receiver. [`ReceiverConfig::default`] gives Loki's limits
/// and no fault injection, listening on `127.0.0.1:3100`.
#[derive(Clone, Debug, PartialEq, Parser)]
#[command(
    name = "loki-receiver",
    version,
    about = "A Loki-compatible push receiver for testing log pipelines: validates like Loki 3.7, \
             answers with Loki's status codes and messages, counts what it stored, and can inject \
             faults."
)]
pub struct ReceiverConfig {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3100", value_name = "ADDR")]
    pub listen: SocketAddr,

    /// Answer 401 "no org id" to pushes without `X-Scope-OrgID` (Loki with `auth_enabled`);
    /// when false such pushes go to tenant "fake".
    #[arg(long, default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    pub require_tenant: bool,

    /// Reject entries older than `--reject-old-samples-max-age`.
    #[arg(long, default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    pub reject_old_samples: bool,

    /// Oldest accepted entry, relative to now.
    #[arg(long, default_value = "168h", value_parser = parse_duration, value_name = "DURATION")]
    pub reject_old_samples_max_age: Duration,

    /// How far in the future an entry may be.
    #[arg(long, default_value = "10m", value_parser = parse_duration, value_name = "DURATION")]
    pub creation_grace_period: Duration,

    /// Out-of-order window: an entry older than the newest entry of its stream minus half of
    /// this is "too far behind".
    #[arg(long, default_value = "2h", value_parser = parse_duration, value_name = "DURATION")]
    pub max_chunk_age: Duration,

    /// Longest accepted line in bytes (`256KB` = 262144, as Loki reads sizes); 0 for no limit.
    #[arg(long, default_value = "256KB", value_parser = parse_byte_size, value_name = "SIZE")]
    pub max_line_size: u64,

    /// Most label names per stream (`service_name` not counted).
    #[arg(long, default_value_t = 15, value_name = "N")]
    pub max_label_names_per_series: usize,

    /// Longest label name in bytes.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub max_label_name_length: usize,

    /// Longest label value in bytes.
    #[arg(long, default_value_t = 2048, value_name = "N")]
    pub max_label_value_length: usize,

    /// Most streams per tenant; 0 for no limit. (Loki's effective default with one ingester is
    /// 5000, `max_global_streams_per_user`; here streams never expire, so the default is off.)
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_streams_per_tenant: usize,

    /// Per-tenant ingestion rate in MiB/s (lines plus structured metadata).
    #[arg(long, default_value_t = 4.0, value_name = "MIB")]
    pub ingestion_rate_mb: f64,

    /// Per-tenant ingestion burst in MiB; a push larger than this is always rate limited.
    #[arg(long, default_value_t = 6.0, value_name = "MIB")]
    pub ingestion_burst_size_mb: f64,

    /// Per-stream rate limit in bytes per second (lines plus structured metadata), Loki's
    /// `per_stream_rate_limit`; 0 refuses everything past the burst.
    #[arg(long, default_value = "3MB", value_parser = parse_byte_size, value_name = "SIZE")]
    pub per_stream_rate_limit: u64,

    /// Per-stream burst in bytes, Loki's `per_stream_rate_limit_burst`.
    #[arg(long, default_value = "15MB", value_parser = parse_byte_size, value_name = "SIZE")]
    pub per_stream_rate_limit_burst: u64,

    /// Loki's `shard_streams.enabled`: split a stream whose rate is over the desired rate into
    /// `__stream_shard__` streams, and apply the per-stream rate limit to a stream's whole push
    /// (all or nothing) instead of entry by entry.
    #[arg(long, default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    pub shard_streams: bool,

    /// Loki's `shard_streams.desired_rate`, bytes per second per shard.
    #[arg(long, default_value = "1536KB", value_parser = parse_byte_size, value_name = "SIZE")]
    pub shard_streams_desired_rate: u64,

    /// Loki's `discover_log_levels`: add `detected_level` structured metadata to each entry
    /// (its bytes count towards the rate limits, as in Loki).
    #[arg(long, default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    pub discover_log_levels: bool,

    /// Loki's `log_level_fields`: labels, structured metadata and line fields that give the level.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_values_t = DEFAULT_LOG_LEVEL_FIELDS.map(String::from)
    )]
    pub log_level_fields: Vec<String>,

    /// Loki's `log_level_from_json_max_depth`: JSON object levels searched for a level field;
    /// 0 or less for no limit.
    #[arg(
        long,
        default_value_t = 2,
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub log_level_from_json_max_depth: i64,

    /// Largest structured metadata of one entry (names plus values); 0 for no limit.
    #[arg(long, default_value = "64KB", value_parser = parse_byte_size, value_name = "SIZE")]
    pub max_structured_metadata_size: u64,

    /// Most structured metadata pairs of one entry; 0 for no limit.
    #[arg(long, default_value_t = 128, value_name = "N")]
    pub max_structured_metadata_entries: usize,

    /// Labels whose value becomes `service_name` when a stream has none, first found wins;
    /// `unknown_service` when none is present. An empty value turns this off.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_values_t = DEFAULT_DISCOVER_SERVICE_NAME.map(String::from)
    )]
    pub discover_service_name: Vec<String>,

    /// Most rejected entries listed in an out-of-order (too far behind) answer.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub max_returned_stream_errors: usize,

    /// Largest push body as sent (Loki's `distributor.max_recv_msg_size`): a protobuf body over
    /// it is answered 413; a JSON body is cut there and fails to decode (400), as in Loki.
    #[arg(long, default_value = "100MiB", value_parser = parse_byte_size, value_name = "SIZE")]
    pub max_body_bytes: u64,

    /// Largest decompressed body (Loki's `distributor.max_decompressed_size`): a protobuf body
    /// that decompresses past it is answered 400; a gzip/deflate JSON body is cut there.
    #[arg(long, default_value = "5000MiB", value_parser = parse_byte_size, value_name = "SIZE")]
    pub max_decompressed_bytes: u64,

    /// Start-up: for this long after start, pushes that pass validation and the rate limit are
    /// answered `500 empty ring` and `/ready` is 503, as while Loki's ingester joins its ring.
    #[arg(long, default_value = "0s", value_parser = parse_duration, value_name = "DURATION")]
    pub startup_empty_ring: Duration,

    /// Shutdown: after SIGTERM/SIGINT (or `ReceiverHandle::shutdown`), keep serving this long,
    /// answering pushes `500 empty ring` and `/ready` `503 Application is stopping`, then stop.
    #[arg(long, default_value = "0s", value_parser = parse_duration, value_name = "DURATION")]
    pub shutdown_empty_ring: Duration,

    /// Loki's `min_ready_duration` (15s in Loki): pushes are accepted but `/ready` answers 503
    /// until this long after the first `/ready` request that found the ring healthy.
    #[arg(long, default_value = "0s", value_parser = parse_duration, value_name = "DURATION")]
    pub ready_delay: Duration,

    /// Fault injection: delay before answering each push.
    #[arg(long, default_value = "0s", value_parser = parse_duration, value_name = "DURATION")]
    pub latency: Duration,

    /// Measurement mode, not Loki: decode each push (size limits, snappy, protobuf or JSON) and
    /// count its entries and sequence numbers, answering 204, without label validation, limits,
    /// deduplication, sharding or level detection. For measuring a shipper's top speed with a
    /// receiver that costs a fraction of a real one; every other check is off.
    #[arg(long)]
    pub count_only: bool,

    /// Fault injection: fraction of pushes answered 500 (nothing stored).
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction, value_name = "FRACTION")]
    pub fail_rate: f64,

    /// Fault injection: fraction of pushes answered 429 with Loki's rate-limit message (nothing
    /// stored).
    #[arg(long = "status-429-rate", default_value_t = 0.0, value_parser = parse_fraction, value_name = "FRACTION")]
    pub status_429_rate: f64,

    /// Fault injection: fraction of pushes answered 260, Loki's blocked-ingestion answer
    /// (nothing stored).
    #[arg(long = "status-260-rate", default_value_t = 0.0, value_parser = parse_fraction, value_name = "FRACTION")]
    pub status_260_rate: f64,

    /// Fault injection: `START:DURATION` after the receiver starts, answer every push 503 and
    /// /ready 503. Repeatable.
    #[arg(long = "outage", value_name = "START:DURATION", value_parser = parse_outage)]
    pub outages: Vec<Outage>,

    /// `Retry-After` header, in whole seconds, on 429 and 503 answers.
    #[arg(long, value_name = "SECONDS", value_parser = parse_retry_after)]
    pub retry_after: Option<u64>,

    /// Append each stored entry to this file as a JSON line.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,

    /// Seed of the fault-injection random draws (default: from the clock).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Memory for tracking `seq=` numbers, in MiB, shared by all streams; numbers that would
    /// need more are counted as `untracked`.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub seq_memory_mb: u64,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 3100)),
            require_tenant: true,
            reject_old_samples: true,
            reject_old_samples_max_age: Duration::from_secs(168 * 3600),
            creation_grace_period: Duration::from_secs(600),
            max_chunk_age: Duration::from_secs(2 * 3600),
            max_line_size: 256 << 10,
            max_label_names_per_series: 15,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            max_streams_per_tenant: 0,
            ingestion_rate_mb: 4.0,
            ingestion_burst_size_mb: 6.0,
            per_stream_rate_limit: 3 << 20,
            per_stream_rate_limit_burst: 15 << 20,
            shard_streams: true,
            shard_streams_desired_rate: 1536 << 10,
            discover_log_levels: true,
            log_level_fields: DEFAULT_LOG_LEVEL_FIELDS.map(String::from).to_vec(),
            log_level_from_json_max_depth: 2,
            max_structured_metadata_size: 64 << 10,
            max_structured_metadata_entries: 128,
            discover_service_name: DEFAULT_DISCOVER_SERVICE_NAME.map(String::from).to_vec(),
            max_returned_stream_errors: 10,
            max_body_bytes: 100 << 20,
            max_decompressed_bytes: 5000 << 20,
            startup_empty_ring: Duration::ZERO,
            shutdown_empty_ring: Duration::ZERO,
            ready_delay: Duration::ZERO,
            latency: Duration::ZERO,
            count_only: false,
            fail_rate: 0.0,
            status_429_rate: 0.0,
            status_260_rate: 0.0,
            outages: Vec::new(),
            retry_after: None,
            record: None,
            seed: None,
            seq_memory_mb: 64,
        }
    }
}

impl ReceiverConfig {
    /// Settings for tests: like Loki, but listening on an ephemeral port and without rate limits
    /// (tenant and per stream).
    pub fn for_tests() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ingestion_rate_mb: 1024.0,
            ingestion_burst_size_mb: 1024.0,
            per_stream_rate_limit: 1 << 40,
            per_stream_rate_limit_burst: 1 << 40,
            ..Self::default()
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{e} (examples: 50ms, 10m, 168h)"))
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let value: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if !(0.0..=1.0).contains(&value) {
        return Err("must be between 0 and 1".into());
    }
    Ok(value)
}

fn parse_outage(s: &str) -> Result<Outage, String> {
    let (start, duration) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not START:DURATION (example: 5s:60s)"))?;
    Ok(Outage {
        start: parse_duration(start)?,
        duration: parse_duration(duration)?,
    })
}

fn parse_retry_after(s: &str) -> Result<u64, String> {
    if let Ok(seconds) = s.trim().parse::<u64>() {
        return Ok(seconds);
    }
    let duration = parse_duration(s)?;
    Ok(duration.as_secs() + u64::from(duration.subsec_nanos() > 0))
}

/// Sizes as Loki's size limits take them (`flagext.ByteSize`, c2h5oh/datasize): `KB`/`MB`/`GB`
/// (and `K`/`M`/`G`) are powers of 1024, case-insensitive; `KiB`/`MiB`/`GiB` are accepted too;
/// a bare number is bytes. Unlike Loki, a fraction (`1.5MB`) is accepted.
pub fn parse_byte_size(s: &str) -> Result<u64, String> {
    let text = s.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size (examples: 256KB, 1MiB, 1000)"))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "ki" | "kib" => 1024.0,
        "m" | "mb" | "mi" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (use B, KB, KiB, MB, MiB, GB, GiB)"
            ));
        }
    };
    Ok((number * factor) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_agree_with_the_command_line() {
        let parsed = ReceiverConfig::try_parse_from(["loki-receiver"]);
        assert_eq!(parsed.ok(), Some(ReceiverConfig::default()));
    }

    #[test]
    fn parses_every_kind_of_flag() {
        let parsed = ReceiverConfig::try_parse_from([
            "loki-receiver",
            "--listen",
            "0.0.0.0:9999",
            "--require-tenant=false",
            "--max-line-size",
            "1KiB",
            "--latency",
            "50ms",
            "--fail-rate",
            "0.1",
            "--status-429-rate",
            "0.2",
            "--outage",
            "5s:60s",
            "--outage",
            "2m:1s",
            "--retry-after",
            "2",
            "--discover-service-name=",
            "--per-stream-rate-limit",
            "1KB",
            "--shard-streams=false",
            "--discover-log-levels=false",
            "--startup-empty-ring",
            "2s",
            "--shutdown-empty-ring",
            "3s",
            "--ready-delay",
            "15s",
            "--log-level-from-json-max-depth",
            "-1",
        ]);
        let Ok(config) = parsed else {
            panic!("{parsed:?}");
        };
        assert!(!config.require_tenant);
        assert_eq!(config.max_line_size, 1024);
        assert_eq!(config.latency, Duration::from_millis(50));
        assert_eq!(config.fail_rate, 0.1);
        assert_eq!(config.status_429_rate, 0.2);
        assert_eq!(config.retry_after, Some(2));
        assert_eq!(
            config.outages,
            vec![
                Outage {
                    start: Duration::from_secs(5),
                    duration: Duration::from_secs(60)
                },
                Outage {
                    start: Duration::from_secs(120),
                    duration: Duration::from_secs(1)
                }
            ]
        );
        assert_eq!(config.discover_service_name, vec![String::new()]);
        assert_eq!(config.per_stream_rate_limit, 1024);
        assert!(!config.shard_streams);
        assert!(!config.discover_log_levels);
        assert_eq!(config.startup_empty_ring, Duration::from_secs(2));
        assert_eq!(config.shutdown_empty_ring, Duration::from_secs(3));
        assert_eq!(config.ready_delay, Duration::from_secs(15));
        assert_eq!(config.log_level_from_json_max_depth, -1);
        assert!(ReceiverConfig::try_parse_from(["x", "--fail-rate", "2"]).is_err());
        assert!(ReceiverConfig::try_parse_from(["x", "--outage", "5s"]).is_err());
    }

    #[test]
    fn byte_sizes_follow_lokis_bytesize() {
        assert_eq!(parse_byte_size("256KB"), Ok(262_144));
        assert_eq!(parse_byte_size("256kb"), Ok(262_144));
        assert_eq!(parse_byte_size("256kib"), Ok(262_144));
        assert_eq!(parse_byte_size("3MB"), Ok(3_145_728));
        assert_eq!(parse_byte_size("100MiB"), Ok(104_857_600));
        assert_eq!(parse_byte_size("1.5MB"), Ok(1_572_864));
        assert_eq!(parse_byte_size("42"), Ok(42));
        assert!(parse_byte_size("12XB").is_err());
    }
}
