//! Load sources: what makes the lines the shipper reads.
//!
//! Every line carries `seq=<n>` (one counter over all files, from 1) and `created=<unix ns>` (when
//! the harness wrote it), which the receiver turns into loss, duplicate and latency figures. A
//! load source also says how the shipper's `sources.load` entry must look to read it, so a new
//! kind of load is one more implementation of [`LoadSource`] (the Docker containers of
//! [`crate::docker_load`] are one).
//!
//! The file load spreads what is due at each call evenly over its files (round-robin, at most
//! 256 lines a file per turn), so `N` files at a total rate each get `1/N` of it, written every
//! turn when the rate allows. Rotation is by rename at `rotate_bytes`; each file starts at its
//! own phase (file `i` of `N` as if `i/N` of a file had been written already), so rotations
//! are spread over time and a run of any length rotates about `rate × line_bytes /
//! rotate_bytes` times a second, whatever the number of files.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// Something that makes numbered lines for the shipper to read.
pub trait LoadSource: Send {
    /// Rewrites the profile's `sources.load` entry so that the shipper reads this load.
    fn configure_source(&self, source: &mut Value);
    /// Makes lines until `total` have been made in all (no-op when already there).
    fn make_until(&mut self, total: u64) -> io::Result<()>;
    /// Lines made so far; the receiver should end up with exactly `1..=made()`.
    fn made(&self) -> u64;
    /// Files rotated so far.
    fn rotations(&self) -> u64 {
        0
    }
    /// After lines were made before the shipper starts (`max`): waits until they are where the
    /// shipper will read them (at most `limit`).
    fn settle(&mut self, _limit: Duration) -> Result<(), String> {
        Ok(())
    }
}

/// What a line looks like.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LineFormat {
    /// `seq=… created=… ....`: plain text.
    #[default]
    Text,
    /// One JSON object an application would log: `ts` (RFC 3339, nanoseconds: the write
    /// time), `level` (4 values), `service` (3 values) and `msg` holding the text line, for
    /// pipelines that parse, take the time and label by field (12 streams).
    Json,
}

/// The shape of one line.
#[derive(Clone, Copy, Debug)]
pub struct LineShape {
    /// Bytes per line, newline included (at least [`MIN_LINE_BYTES`]; a JSON line is at
    /// least about 130 bytes).
    pub line_bytes: usize,
    pub format: LineFormat,
}

impl LineShape {
    /// Plain text lines of `line_bytes` bytes.
    pub fn text(line_bytes: usize) -> Self {
        Self {
            line_bytes,
            format: LineFormat::Text,
        }
    }
}

const LEVELS: [&str; 4] = ["info", "warn", "error", "debug"];

/// `seq=` + 10 digits + ` created=` + 19 digits + ` ` + `\n`.
pub const MIN_LINE_BYTES: usize = 4 + 10 + 9 + 19 + 1 + 1;

/// This machine's wall clock in nanoseconds since the epoch.
pub fn wall_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Appends one line (`seq=0000000042 created=<ns> ....\n`, or that text as the `msg` of a
/// JSON object) to `out`.
pub fn format_line(out: &mut Vec<u8>, seq: u64, created_ns: i64, shape: LineShape) {
    let start = out.len();
    // Writing into a Vec cannot fail.
    if shape.format == LineFormat::Json {
        let at = UNIX_EPOCH + Duration::from_nanos(u64::try_from(created_ns).unwrap_or(0));
        let _ = write!(
            out,
            "{{\"ts\":\"{}\",\"level\":\"{}\",\"service\":\"svc-{}\",\"msg\":\"",
            humantime::format_rfc3339_nanos(at),
            LEVELS[(seq % 4) as usize],
            (seq / 4) % 3
        );
    }
    let _ = write!(out, "seq={seq:010} created={created_ns:019} ");
    let closing = if shape.format == LineFormat::Json {
        2
    } else {
        0
    };
    let used = out.len() - start + closing;
    let padding = shape
        .line_bytes
        .max(MIN_LINE_BYTES)
        .saturating_sub(used + 1);
    out.resize(out.len() + padding, b'.');
    if shape.format == LineFormat::Json {
        out.extend_from_slice(b"\"}");
    }
    out.push(b'\n');
}

struct LogFile {
    path: PathBuf,
    writer: BufWriter<File>,
    size: u64,
    generation: u64,
}

impl LogFile {
    /// A new file whose rotation clock starts at `phase` bytes (nothing is written).
    fn create(path: PathBuf, phase: u64, buffer: usize) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Self {
            path,
            writer: BufWriter::with_capacity(buffer, file),
            size: phase,
            generation: 0,
        })
    }

    /// Rename rotation, as logrotate without copytruncate does it: `app.log` becomes
    /// `app.log.<n>` and a new `app.log` starts. Rotated files are kept so that a slow reader
    /// loses nothing the harness would blame on it.
    fn rotate(&mut self) -> io::Result<()> {
        self.writer.flush()?;
        self.generation += 1;
        let mut rotated = self.path.clone().into_os_string();
        rotated.push(format!(".{}", self.generation));
        std::fs::rename(&self.path, &rotated)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let capacity = self.writer.capacity();
        self.writer = BufWriter::with_capacity(capacity, file);
        self.size = 0;
        Ok(())
    }
}

/// Writes numbered lines into `files` files in a directory, round-robin, rotating each file by
/// rename when it reaches `rotate_bytes`.
pub struct FileLoad {
    dir: PathBuf,
    files: Vec<LogFile>,
    shape: LineShape,
    rotate_bytes: u64,
    made: u64,
    rotations: u64,
    /// The file the next chunk goes to.
    next: usize,
    scratch: Vec<u8>,
}

impl FileLoad {
    pub fn new(dir: &Path, files: usize, shape: LineShape, rotate_bytes: u64) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let count = files.max(1);
        let rotate_bytes = rotate_bytes.max(1);
        // Few files get large buffers (a turn of `max` writes megabytes); many files, small
        // ones, so that 10,000 files do not take 10 GiB.
        let buffer = ((64usize << 20) / count).clamp(8 << 10, 1 << 20);
        let files = (0..count)
            .map(|i| {
                let phase = (u128::from(rotate_bytes) * i as u128 / count as u128) as u64;
                LogFile::create(dir.join(format!("app-{i}.log")), phase, buffer)
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self {
            dir: dir.to_path_buf(),
            files,
            shape,
            rotate_bytes,
            made: 0,
            rotations: 0,
            next: 0,
            scratch: Vec::with_capacity(64 * 1024),
        })
    }

    /// The glob the shipper reads.
    pub fn include_glob(&self) -> String {
        format!("{}/*.log", self.dir.display())
    }
}

impl LoadSource for FileLoad {
    fn configure_source(&self, source: &mut Value) {
        if !source.is_object() {
            *source = json!({});
        }
        source["type"] = json!("file");
        source["include"] = json!([self.include_glob()]);
        source["read_from"] = json!("beginning");
    }

    fn make_until(&mut self, total: u64) -> io::Result<()> {
        // One clock read per call: a call writes what is due now, so its lines are created now.
        let created = wall_ns();
        // What is due now, spread over the files: each gets its share this turn.
        let count = self.files.len() as u64;
        let per = total
            .saturating_sub(self.made)
            .div_ceil(count)
            .clamp(1, 256);
        while self.made < total {
            let upto = total.min(self.made + per);
            self.scratch.clear();
            for seq in self.made + 1..=upto {
                format_line(&mut self.scratch, seq, created, self.shape);
            }
            let file = &mut self.files[self.next];
            file.writer.write_all(&self.scratch)?;
            file.size += self.scratch.len() as u64;
            self.made = upto;
            if file.size >= self.rotate_bytes {
                file.rotate()?;
                self.rotations += 1;
            }
            self.next = (self.next + 1) % self.files.len();
        }
        // The shipper must see whole lines now, not when a buffer fills.
        for file in &mut self.files {
            file.writer.flush()?;
        }
        Ok(())
    }

    fn made(&self) -> u64 {
        self.made
    }

    fn rotations(&self) -> u64 {
        self.rotations
    }
}

/// The shipper's own `generator` source makes the lines (no files, no reading): measures the
/// pipeline from the first transform on. Lines are stamped by the generator, so latency runs
/// from the entry timestamp.
pub struct GeneratorLoad {
    pub rate: u64,
    pub count: u64,
    pub line_bytes: usize,
}

impl LoadSource for GeneratorLoad {
    fn configure_source(&self, source: &mut Value) {
        *source = json!({
            "type": "generator",
            "rate": self.rate,
            "count": self.count,
            "line_bytes": self.line_bytes,
        });
    }

    fn make_until(&mut self, _total: u64) -> io::Result<()> {
        Ok(())
    }

    fn made(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_parse_and_carry_their_number_and_write_time() {
        let mut out = Vec::new();
        let shape = LineShape {
            line_bytes: 160,
            format: LineFormat::Json,
        };
        format_line(&mut out, 42, 1_777_629_000_123_456_789, shape);
        assert_eq!(out.len(), 160);
        assert_eq!(out.last(), Some(&b'\n'));
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["ts"], "2026-05-01T09:50:00.123456789Z");
        assert_eq!(value["level"], "error");
        assert_eq!(value["service"], "svc-1");
        assert_eq!(crate::receiver::seq::find_seq(&out), Some(42));
    }

    #[test]
    fn lines_have_the_shape_and_numbers_the_receiver_reads() {
        let mut out = Vec::new();
        format_line(
            &mut out,
            42,
            1_700_000_000_000_000_000,
            LineShape::text(100),
        );
        assert_eq!(out.len(), 100);
        assert_eq!(crate::receiver::seq::find_seq(&out), Some(42));
        assert_eq!(
            crate::receiver::latency::find_created(&out),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(out.last(), Some(&b'\n'));
    }

    #[test]
    fn writes_every_number_once_across_files_and_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let mut load = FileLoad::new(dir.path(), 3, LineShape::text(100), 100 * 1000).unwrap();
        load.make_until(5_000).unwrap();
        load.make_until(5_000).unwrap();
        assert_eq!(load.made(), 5_000);
        assert!(load.rotations() >= 3, "{}", load.rotations());
        let mut seen = Vec::new();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let text = std::fs::read(entry.unwrap().path()).unwrap();
            for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                assert_eq!(line.len(), 99);
                seen.push(crate::receiver::seq::find_seq(line).unwrap());
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (1..=5_000).collect::<Vec<_>>());
    }

    #[test]
    fn many_files_each_get_their_share_every_turn_and_rotations_are_spread() {
        let dir = tempfile::tempdir().unwrap();
        let files = 100;
        // 100 KiB per file: phases 0, 1 KiB, 2 KiB, ... so the fullest rotates first.
        let mut load = FileLoad::new(dir.path(), files, LineShape::text(100), 100 * 1024).unwrap();
        // One turn of 10k lines/s at a 5 ms tick: 50 lines, one each for half the files.
        load.make_until(50).unwrap();
        let sizes = |dir: &Path| -> Vec<u64> {
            (0..files)
                .map(|i| {
                    std::fs::metadata(dir.join(format!("app-{i}.log")))
                        .unwrap()
                        .len()
                })
                .collect()
        };
        let after_one = sizes(dir.path());
        assert_eq!(after_one.iter().filter(|&&s| s == 100).count(), 50);
        // The next turn continues with the other half.
        load.make_until(100).unwrap();
        assert!(sizes(dir.path()).iter().all(|&s| s == 100));
        assert_eq!(load.rotations(), 0);
        // 10 KiB more per file: the files whose phase was within 10 KiB of 100 KiB rotated,
        // about a tenth of them, not all at once.
        load.make_until(100 + 100 * 100).unwrap();
        assert!(
            (8..=12).contains(&load.rotations()),
            "{} rotations",
            load.rotations()
        );
    }
}
