//! The `file` sink: appends events to one local file, JSON lines by default.
//!
//! Guarantees:
//! - A batch is written with one `write_all` under a lock, so batches never interleave.
//! - A batch counts as delivered once the operating system has it (it survives the process being
//!   killed); with `fsync: true`, once it is on disk (it survives a power loss).
//! - A failed write (full disk, file removed from under us, permissions) is retried with the
//!   dispatcher's backoff; the file is reopened, and recreated if it is gone, before each retry.
//!   What a failed write left of a batch (a full disk takes part of a write) is cut off again
//!   before anything else is written, so the file never holds a torn line; a batch is never
//!   lost, and written twice only when a write succeeded but could not be confirmed (fsync).
//! - A write that panics (a bug) is not retried: the panic stops the shipper with an error
//!   naming the sink (see `crate::blocking`); retried, it met the lock it had poisoned forever.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::encoding::{Encoding, encode};
use crate::EventBatch;
use crate::config::{ConfigError, join_path};
use crate::dispatcher::{PartitionKey, SendOutcome, SinkRequest, SinkService};

/// Configuration of the `file` sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileSinkConfig {
    /// The file to append to; its directory is created if missing. Required.
    pub path: PathBuf,
    /// `json` (default: one object per line) or `text` (the line as it is).
    #[serde(default)]
    pub encoding: Encoding,
    /// Flush each batch to disk (`fsync`) before acknowledging it. Slower; survives power loss.
    #[serde(default)]
    pub fsync: bool,
}

impl FileSinkConfig {
    pub fn validate(&self, prefix: &str) -> Vec<ConfigError> {
        if self.path.as_os_str().is_empty() {
            vec![
                ConfigError::new(join_path(prefix, "path"), "must not be empty")
                    .with_hint("the file to write, e.g. /var/lib/log-capturer/out.jsonl"),
            ]
        } else {
            Vec::new()
        }
    }

    /// Opens (creating) the file for the sink `name`. Fails with the path and the reason.
    pub fn build(&self, name: &str) -> Result<FileSink, String> {
        let file = open(&self.path)
            .map_err(|err| format!("cannot open {} for appending: {err}", self.path.display()))?;
        Ok(FileSink {
            name: Arc::from(name),
            path: self.path.clone(),
            encoding: self.encoding,
            fsync: self.fsync,
            file: Arc::new(Mutex::new(Some(file))),
            cut_to: Arc::new(Mutex::new(None)),
        })
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// The running `file` sink.
#[derive(Debug)]
pub struct FileSink {
    /// The component's name (shared with each write, which may run on another thread).
    name: Arc<str>,
    path: PathBuf,
    encoding: Encoding,
    fsync: bool,
    /// `None` after a failed write: the next attempt reopens the file.
    file: Arc<Mutex<Option<File>>>,
    /// The file (device, inode) and length to cut it back to before the next write: a write
    /// failed part-way and the cut failed too.
    cut_to: Arc<Mutex<Option<(u64, u64, u64)>>>,
}

impl SinkService for FileSink {
    fn request(
        &self,
        batch: &EventBatch,
        _partition: &PartitionKey,
    ) -> Result<SinkRequest, SendOutcome> {
        let mut out = Vec::with_capacity(batch.len() * 160);
        for event in &batch.events {
            encode(self.encoding, event, &mut out);
        }
        Ok(SinkRequest::new(Bytes::from(out)))
    }

    fn send<'a>(
        &'a self,
        _batch: &'a EventBatch,
        request: &'a mut SinkRequest,
    ) -> BoxFuture<'a, SendOutcome> {
        let out = request.get::<Bytes>().cloned().unwrap_or_default();
        let name = self.name.clone();
        let path = self.path.clone();
        let file = self.file.clone();
        let cut_to = self.cut_to.clone();
        let fsync = self.fsync;
        Box::pin(async move {
            let written =
                crate::blocking::run(move || write(&name, &path, &file, &cut_to, &out, fsync))
                    .await;
            match written {
                Ok(Ok(())) => SendOutcome::Delivered,
                Ok(Err(err)) => SendOutcome::Retry {
                    reason: "io_error",
                    detail: err,
                    retry_after: None,
                },
                Err(cancelled) => SendOutcome::Retry {
                    reason: "io_error",
                    detail: cancelled.to_string(),
                    retry_after: None,
                },
            }
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        let file = self.file.clone();
        Box::pin(async move {
            let _ = crate::blocking::run(move || {
                if let Ok(mut guard) = file.lock()
                    && let Some(file) = guard.as_mut()
                {
                    let _ = file.flush();
                }
            })
            .await;
        })
    }
}

fn write(
    name: &str,
    path: &Path,
    file: &Mutex<Option<File>>,
    cut_to: &Mutex<Option<(u64, u64, u64)>>,
    data: &[u8],
    fsync: bool,
) -> Result<(), String> {
    let mut guard = file
        .lock()
        .map_err(|_| "file sink lock poisoned".to_string())?;
    let mut cut = cut_to
        .lock()
        .map_err(|_| "file sink lock poisoned".to_string())?;
    crate::fault::point("file_sink_write", name);
    if guard.is_none() || !path.exists() {
        *guard = Some(open(path).map_err(|err| format!("cannot open {}: {err}", path.display()))?);
    }
    let Some(handle) = guard.as_mut() else {
        return Err(format!("{} is not open", path.display()));
    };
    let meta = handle
        .metadata()
        .map_err(|err| format!("cannot stat {}: {err}", path.display()))?;
    if let Some((dev, inode, length)) = *cut {
        // Only the file the torn write went to; one created since (rotated) is left alone.
        if (meta.dev(), meta.ino()) == (dev, inode) {
            handle
                .set_len(length)
                .map_err(|err| format!("cannot cut a torn write off {}: {err}", path.display()))?;
        }
        *cut = None;
    }
    let before = handle
        .metadata()
        .map_err(|err| format!("cannot stat {}: {err}", path.display()))?
        .len();
    let result = handle
        .write_all(data)
        .and_then(|()| if fsync { handle.sync_data() } else { Ok(()) });
    if let Err(err) = result {
        // Part of the batch may be in the file: take it out again, now or before the next
        // write, so that the retry does not leave a torn line behind.
        if handle.set_len(before).is_err() {
            *cut = Some((meta.dev(), meta.ino(), before));
        }
        *guard = None;
        return Err(format!("cannot write {}: {err}", path.display()));
    }
    Ok(())
}

impl crate::component::Component for FileSinkConfig {
    const TYPE: &'static str = "file";

    fn validate(&self, prefix: &str) -> Vec<ConfigError> {
        FileSinkConfig::validate(self, prefix)
    }
}

impl crate::component::SinkComponent for FileSinkConfig {
    fn build(
        &self,
        cx: &crate::component::SinkContext,
    ) -> Result<Arc<dyn SinkService>, crate::BuildError> {
        FileSinkConfig::build(self, &cx.key)
            .map(|sink| Arc::new(sink) as Arc<dyn SinkService>)
            .map_err(|message| crate::component::build_error(&cx.key, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::Finalizers;
    use crate::dispatcher::send_once;
    use crate::event::{Labels, LogEvent};

    fn batch(lines: &[&str]) -> EventBatch {
        EventBatch::new(
            lines
                .iter()
                .map(|l| LogEvent {
                    timestamp_ns: 1,
                    observed_ns: 1,
                    line: Bytes::copy_from_slice(l.as_bytes()),
                    labels: Labels::default(),
                    metadata: Vec::new(),
                    source: "s".into(),
                    file: None,
                    replays: 0,
                    fields: Default::default(),
                })
                .collect(),
            Finalizers::default(),
        )
    }

    #[tokio::test]
    async fn appends_batches_and_recreates_a_removed_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/out.log");
        let sink = FileSinkConfig {
            path: path.clone(),
            encoding: Encoding::Text,
            fsync: true,
        }
        .build("out")
        .unwrap();
        assert_eq!(
            send_once(&sink, &batch(&["a", "b"])).await,
            SendOutcome::Delivered
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\n");

        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            send_once(&sink, &batch(&["c"])).await,
            SendOutcome::Delivered
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "c\n");
    }

    /// A full disk takes part of a write: the retry must not leave a torn line behind. Needs a
    /// small filesystem of its own (tmpfs, so root); skipped elsewhere unless `CI` is set.
    #[tokio::test]
    async fn a_write_cut_short_by_a_full_disk_leaves_no_torn_line() {
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(std::env::var_os("CI").is_none(), "must run as root in CI");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("small");
        std::fs::create_dir(&mount).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(&mount)
            .status()
            .unwrap();
        assert!(mounted.success());
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount")
                    .arg("-l")
                    .arg(&self.0)
                    .status();
            }
        }
        let _unmount = Unmount(mount.clone());
        let path = mount.join("out.log");
        let sink = FileSinkConfig {
            path: path.clone(),
            encoding: Encoding::Text,
            fsync: false,
        }
        .build("out")
        .unwrap();
        let line = "x".repeat(99);
        let lines: Vec<&str> = (0..1000).map(|_| line.as_str()).collect();
        // 100 KB into 64 KB: part of it is written, then the disk is full.
        assert!(matches!(
            send_once(&sink, &batch(&lines)).await,
            SendOutcome::Retry { .. }
        ));
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            0,
            "torn write cut off"
        );
        let fitting: Vec<&str> = lines[..300].to_vec();
        assert_eq!(
            send_once(&sink, &batch(&fitting)).await,
            SendOutcome::Delivered
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 300);
        assert!(text.lines().all(|l| l == line));
    }

    #[tokio::test]
    async fn unwritable_path_is_a_retriable_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let sink = FileSinkConfig {
            path: path.clone(),
            encoding: Encoding::Text,
            fsync: false,
        }
        .build("out")
        .unwrap();
        // Replace the file with a directory: opening it for append must fail.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        *sink.file.lock().unwrap() = None;
        match send_once(&sink, &batch(&["x"])).await {
            SendOutcome::Retry { reason, detail, .. } => {
                assert_eq!(reason, "io_error");
                assert!(detail.contains("out.log"), "{detail}");
            }
            other => panic!("expected a retry, got {other:?}"),
        }
    }
}
