//! The load profiles: how much load the harness makes and for how long. The shipper's settings
//! for each profile live in `configs/profiles/<name>.yaml`; this table holds the load side.

use std::time::Duration;

use crate::load::LineFormat;

/// One load profile.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    /// What it stands for, one line.
    pub summary: &'static str,
    /// Lines per second; `None` for `max`, which pre-writes `prefill_lines` and measures how
    /// fast the shipper drains them.
    pub rate: Option<u64>,
    /// How long the load runs (rated profiles).
    pub duration: Duration,
    /// Lines written before the shipper starts (`max`).
    pub prefill_lines: u64,
    /// Files written side by side (and containers of `--load docker`), unless the load says.
    pub files: usize,
    /// Bytes per line, newline included.
    pub line_bytes: usize,
    /// What the lines look like.
    pub line_format: LineFormat,
    /// A file is rotated (renamed, a new one created) when it reaches this size.
    pub rotate_bytes: u64,
}

const MIB: u64 = 1 << 20;

/// Every profile, in the order the tuning guide lists them.
pub const PROFILES: &[Profile] = &[
    Profile {
        name: "low",
        summary: "a quiet host: under 1k lines/s, latency and footprint matter",
        rate: Some(500),
        duration: Duration::from_secs(30),
        prefill_lines: 0,
        files: 2,
        line_bytes: 100,
        line_format: LineFormat::Text,
        rotate_bytes: MIB,
    },
    Profile {
        name: "standard",
        summary: "a busy host: 10k lines/s",
        rate: Some(10_000),
        duration: Duration::from_secs(30),
        prefill_lines: 0,
        files: 4,
        line_bytes: 100,
        line_format: LineFormat::Text,
        rotate_bytes: 4 * MIB,
    },
    Profile {
        name: "high",
        summary: "a node of noisy services: 50k lines/s",
        rate: Some(50_000),
        duration: Duration::from_secs(30),
        prefill_lines: 0,
        files: 4,
        line_bytes: 100,
        line_format: LineFormat::Text,
        rotate_bytes: 16 * MIB,
    },
    Profile {
        name: "low-latency",
        summary: "5k lines/s with every line in Loki fast (P99 target 50 ms)",
        rate: Some(5_000),
        duration: Duration::from_secs(30),
        prefill_lines: 0,
        files: 2,
        line_bytes: 100,
        line_format: LineFormat::Text,
        rotate_bytes: 4 * MIB,
    },
    Profile {
        name: "max",
        summary: "as fast as it goes: drain 5M pre-written lines",
        rate: None,
        duration: Duration::ZERO,
        prefill_lines: 5_000_000,
        files: 1,
        line_bytes: 100,
        line_format: LineFormat::Text,
        rotate_bytes: u64::MAX,
    },
    Profile {
        name: "max-pipeline",
        summary: "`max` through a parsing pipeline: JSON lines, json + timestamp + labels from fields + dedup",
        rate: None,
        duration: Duration::ZERO,
        prefill_lines: 5_000_000,
        files: 1,
        // The smallest JSON line the load writes (`ts`, `level`, `service`, `msg`).
        line_bytes: 130,
        line_format: LineFormat::Json,
        rotate_bytes: u64::MAX,
    },
    Profile {
        name: "many-files",
        summary: "10k lines/s spread over 1,000 rotating files (the cost of each followed file)",
        rate: Some(10_000),
        duration: Duration::from_secs(30),
        prefill_lines: 0,
        files: 1000,
        line_bytes: 100,
        line_format: LineFormat::Text,
        // With the load's phases: about one rotation a second whatever the file count.
        rotate_bytes: MIB,
    },
];

/// The profile called `name`, or an error listing the known ones.
pub fn find(name: &str) -> Result<Profile, String> {
    PROFILES
        .iter()
        .find(|p| p.name == name)
        .cloned()
        .ok_or_else(|| {
            let names: Vec<&str> = PROFILES.iter().map(|p| p.name).collect();
            format!(
                "unknown profile `{name}`; the profiles are: {}",
                names.join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_has_a_config_file() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/profiles");
        for profile in PROFILES {
            let path = dir.join(format!("{}.yaml", profile.name));
            assert!(path.is_file(), "{} is missing", path.display());
        }
        assert!(
            find("nope")
                .unwrap_err()
                .contains("low, standard, high, low-latency, max")
        );
    }
}
