//! The `file` sink: appends events to one local file, JSON lines by default.
//!
//! Guarantees:
//! - A batch is written with one `write_all` under a lock, so batches never interleave.
//! - A batch counts as delivered once the operating system has it (it survives the process being
//!   killed); with `fsync: true`, once it is on disk (it survives a power loss).
//! - A failed write (full disk, file removed from under us, permissions) is retried with the
//!   dispatcher's backoff; the file is reopened, and recreated if it is gone, before each retry.
//!   A batch may then be written twice, never lost.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::encoding::{Encoding, encode};
use crate::EventBatch;
use crate::config::{ConfigError, join_path};
use crate::dispatcher::{SendOutcome, SinkService};

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

    /// Opens (creating) the file. Fails with the path and the reason.
    pub fn build(&self) -> Result<FileSink, String> {
        let file = open(&self.path)
            .map_err(|err| format!("cannot open {} for appending: {err}", self.path.display()))?;
        Ok(FileSink {
            path: self.path.clone(),
            encoding: self.encoding,
            fsync: self.fsync,
            file: Arc::new(Mutex::new(Some(file))),
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
    path: PathBuf,
    encoding: Encoding,
    fsync: bool,
    /// `None` after a failed write: the next attempt reopens the file.
    file: Arc<Mutex<Option<File>>>,
}

impl SinkService for FileSink {
    fn send<'a>(&'a self, batch: &'a EventBatch) -> BoxFuture<'a, SendOutcome> {
        let mut out = Vec::with_capacity(batch.len() * 160);
        for event in &batch.events {
            encode(self.encoding, event, &mut out);
        }
        let path = self.path.clone();
        let file = self.file.clone();
        let fsync = self.fsync;
        Box::pin(async move {
            let written =
                tokio::task::spawn_blocking(move || write(&path, &file, &out, fsync)).await;
            match written {
                Ok(Ok(())) => SendOutcome::Delivered,
                Ok(Err(err)) => SendOutcome::Retry {
                    reason: "io_error",
                    detail: err,
                    retry_after: None,
                },
                Err(err) => SendOutcome::Retry {
                    reason: "io_error",
                    detail: format!("write task failed: {err}"),
                    retry_after: None,
                },
            }
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        let file = self.file.clone();
        Box::pin(async move {
            let _ = tokio::task::spawn_blocking(move || {
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

fn write(path: &Path, file: &Mutex<Option<File>>, data: &[u8], fsync: bool) -> Result<(), String> {
    let mut guard = file
        .lock()
        .map_err(|_| "file sink lock poisoned".to_string())?;
    if guard.is_none() || !path.exists() {
        *guard = Some(open(path).map_err(|err| format!("cannot open {}: {err}", path.display()))?);
    }
    let Some(handle) = guard.as_mut() else {
        return Err(format!("{} is not open", path.display()));
    };
    let result = handle
        .write_all(data)
        .and_then(|()| if fsync { handle.sync_data() } else { Ok(()) });
    result.map_err(|err| {
        *guard = None;
        format!("cannot write {}: {err}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::Finalizers;
    use crate::event::{Labels, LogEvent};
    use bytes::Bytes;

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
        .build()
        .unwrap();
        assert_eq!(sink.send(&batch(&["a", "b"])).await, SendOutcome::Delivered);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\n");

        std::fs::remove_file(&path).unwrap();
        assert_eq!(sink.send(&batch(&["c"])).await, SendOutcome::Delivered);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "c\n");
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
        .build()
        .unwrap();
        // Replace the file with a directory: opening it for append must fail.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        *sink.file.lock().unwrap() = None;
        match sink.send(&batch(&["x"])).await {
            SendOutcome::Retry { reason, detail, .. } => {
                assert_eq!(reason, "io_error");
                assert!(detail.contains("out.log"), "{detail}");
            }
            other => panic!("expected a retry, got {other:?}"),
        }
    }
}
