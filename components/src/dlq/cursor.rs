//! The replay cursor: which records of a sink's queue are handled.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::record::RecordId;
use super::{CURSOR_FILE, CURSOR_VERSION};

pub(super) const CURSOR_TMP: &str = "cursor.tmp";

/// The `cursor` file.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct CursorDocument {
    pub(super) version: u32,
    pub(super) sink: String,
    pub(super) segment: u64,
    pub(super) offset: u64,
    #[serde(default)]
    pub(super) handled: Vec<RecordId>,
    #[serde(default)]
    pub(super) updated_at: String,
}

/// Which records a cursor file marks handled.
#[derive(Debug, Default)]
pub(super) struct Cursor {
    pub(super) before: Option<RecordId>,
    pub(super) handled: BTreeSet<RecordId>,
}

impl Cursor {
    pub(super) fn covers(&self, id: RecordId) -> bool {
        self.before.is_some_and(|before| id < before) || self.handled.contains(&id)
    }
}

/// The cursor of the queue in `dir`; an invalid one is logged and means nothing is handled.
pub(super) fn read_cursor(dir: &Path, sink: &str) -> Cursor {
    let path = dir.join(CURSOR_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Cursor::default(),
        Err(error) => {
            tracing::warn!(sink, path = %path.display(), error = %error, "Cannot read the dead-letter cursor; replaying from the oldest record.");
            return Cursor::default();
        }
    };
    let reason = match serde_json::from_slice::<CursorDocument>(&bytes) {
        Ok(document) if document.version != CURSOR_VERSION => {
            format!("unsupported version {}", document.version)
        }
        Ok(document) if document.sink != sink => {
            format!("belongs to sink {:?}", document.sink)
        }
        Ok(document) => {
            return Cursor {
                before: Some(RecordId {
                    segment: document.segment,
                    offset: document.offset,
                }),
                handled: document.handled.into_iter().collect(),
            };
        }
        Err(error) => format!("not a cursor document: {error}"),
    };
    tracing::warn!(
        sink,
        path = %path.display(),
        reason = %reason,
        "Invalid dead-letter cursor ignored; replaying from the oldest record."
    );
    Cursor::default()
}
