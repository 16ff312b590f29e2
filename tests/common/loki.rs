//! The harness's Loki-compatible receiver as a process, and helpers for tests of the Loki
//! sink: metrics, dead-letter contents, a small filesystem to fill.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http::{Method, StatusCode};

use super::{Instance, free_port, http, wait_for};

pub struct Receiver {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Receiver {
    pub fn start(flags: &[&str]) -> Self {
        Self::start_on(free_port(), flags)
    }

    pub fn start_on(port: u16, flags: &[&str]) -> Self {
        let binary = PathBuf::from(super::binary()).with_file_name("loki-receiver");
        assert!(
            binary.exists(),
            "{} is missing: build the workspace (cargo build --workspace) first",
            binary.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("receiver.log")).unwrap();
        let child = Command::new(binary)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--record")
            .arg(dir.path().join("accepted.jsonl"))
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let receiver = Self { child, port, dir };
        wait_for("the receiver to listen", Duration::from_secs(30), || {
            http(Method::GET, &receiver.url("/stats"), None)
                .ok()
                .filter(|(s, _)| *s == StatusCode::OK)
                .map(|_| ())
        });
        receiver
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn stats(&self) -> serde_json::Value {
        let (_, body) = http(Method::GET, &self.url("/stats"), None).unwrap();
        serde_json::from_str(&body).unwrap()
    }

    pub fn accepted(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("accepted.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until sequence numbers 1..=n have all been accepted.
    pub fn wait_sequences(&self, n: u64, limit: Duration) -> serde_json::Value {
        wait_for(&format!("{n} sequences accepted"), limit, || {
            let stats = self.stats();
            let seq = &stats["sequences"];
            (seq["max_seq"].as_u64() == Some(n) && seq["missing"].as_u64() == Some(0))
                .then_some(stats)
        })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn write_lines(path: &std::path::Path, range: std::ops::RangeInclusive<u64>) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut text = String::new();
    for seq in range {
        text.push_str(&format!("seq={seq} a line for loki\n"));
    }
    file.write_all(text.as_bytes()).unwrap();
}

/// A directory on a small filesystem of its own (tmpfs), which a test fills and frees. Needs
/// root (CI runs as root); elsewhere the test is skipped with a note, unless `CI` is set.
pub struct SmallDisk {
    pub path: PathBuf,
}

impl SmallDisk {
    pub fn mount(path: &std::path::Path, size: &str) -> Option<Self> {
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                std::env::var_os("CI").is_none(),
                "this test mounts a tmpfs and must run as root in CI"
            );
            eprintln!("skipped: mounting a small filesystem needs root");
            return None;
        }
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount tmpfs on {}", path.display());
        Some(Self {
            path: path.to_path_buf(),
        })
    }

    /// Fills the filesystem until a write fails with "no space left on device".
    pub fn fill(&self) -> PathBuf {
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(err) if err.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(err) => panic!("filling {}: {err}", filler.display()),
            }
        }
        // Smaller writes take what is left, so that nothing at all fits.
        while file.write(&[0u8; 512]).is_ok_and(|n| n > 0) {}
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

pub fn metric(instance: &Instance, series: &str) -> f64 {
    let (_, text) = instance.get("/metrics");
    text.lines()
        .find_map(|line| line.strip_prefix(series))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Polls a series of /metrics until `ready` holds for its value (0 while absent); panics on
/// timeout. For counters the shipper moves after Loki's answer: the receiver has stored a push
/// before it answers, so a test that saw the lines arrive has not yet seen those counters move.
pub fn wait_metric(
    instance: &Instance,
    series: &str,
    limit: Duration,
    ready: impl Fn(f64) -> bool,
) -> f64 {
    super::wait_for(&format!("{series} to reach its value"), limit, || {
        let value = metric(instance, series);
        ready(value).then_some(value)
    })
}

pub fn dlq_entries(instance: &Instance) -> Option<u64> {
    let (_, body) = instance.get("/dlq");
    let stats: serde_json::Value = serde_json::from_str(&body).ok()?;
    stats["sinks"]["loki"]["entries"].as_u64()
}

/// The sequence numbers of every entry in the dead-letter queue, with how often each is there.
pub fn dlq_sequences(instance: &Instance) -> std::collections::HashMap<u64, usize> {
    let data_dir = instance.path("data");
    let inspect = super::run_cli(&[
        "dlq",
        "inspect",
        "--limit",
        "1000000",
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);
    let mut counts = std::collections::HashMap::new();
    for line in String::from_utf8_lossy(&inspect.stdout).lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        for entry in record["entries"].as_array().unwrap() {
            let seq = entry["line"]
                .as_str()
                .and_then(|l| l.strip_prefix("seq="))
                .and_then(|l| l.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap();
            *counts.entry(seq).or_insert(0) += 1;
        }
    }
    counts
}
