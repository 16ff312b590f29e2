//! Durable positions of the `file` and `docker` sources: for every file (or container), how far
//! it has been read and how far every sink has acknowledged it, so that a restart resumes where
//! delivery stopped.
//!
//! # On-disk format
//!
//! Everything of one source lives in `<data_dir>/positions/`:
//!
//! ```text
//! <source>.json                the positions file, replaced on every save
//! <source>.checkpoint.0.json   newest checkpoint: a verbatim copy of an earlier positions file
//! <source>.checkpoint.1.json
//! <source>.checkpoint.2.json   oldest checkpoint
//! <source>.json.bak            the positions file as it was before the last restore or reset
//! <file>.tmp                   a write in progress; never read, removed by the next load
//! ```
//!
//! Each file is one pretty-printed JSON document, because operators read, copy and restore these
//! files by hand:
//!
//! ```json
//! {
//!   "version": 1,
//!   "source": "app_logs",
//!   "sequence": 42,
//!   "updated_at": "2026-05-01T10:00:00.123Z",
//!   "files": [
//!     {
//!       "path": "/var/log/app.log",
//!       "dev": 2049,
//!       "inode": 131074,
//!       "born_ns": 1777629000123456789,
//!       "head_hash": "9c1f0e2d3b4a5968",
//!       "head_len": 256,
//!       "read_offset": 10240,
//!       "committed_offset": 8192,
//!       "marker": "0123456789abcdef",
//!       "marker_len": 64,
//!       "updated_at": "2026-05-01T10:00:00.120Z"
//!     }
//!   ],
//!   "checksum": "5a0c9e17b2d4f688"
//! }
//! ```
//!
//! A docker source's document has `"containers"` in place of (or beside) `"files"`; the key is
//! left out when there are none, so a file source's document is byte for byte what it was:
//!
//! ```json
//!   "containers": [
//!     {
//!       "id": "3f1c…(64 hex digits)",
//!       "name": "web",
//!       "image": "nginx:1.27",
//!       "read_ns": 1777629000123456789,
//!       "committed_ns": 1777629000120000000,
//!       "committed_hash": "0123456789abcdef",
//!       "updated_at": "2026-05-01T10:00:00.120Z"
//!     }
//!   ],
//! ```
//!
//! - `committed_ns` is Docker's own nanosecond timestamp of the last log entry every sink
//!   acknowledged, `committed_hash` the xxh3-64 of that entry's content: a restart asks Docker
//!   for the entries from that second on and drops those up to and including this one.
//! - `removed_ns`, when present, is when the container was seen removed; the entry is dropped a
//!   grace period later.
//!
//! - `sequence` grows by one with every save and never goes back for a source.
//! - `head_hash` is the xxh3-64 of the file's first `head_len` bytes; `marker` the xxh3-64 of the
//!   `marker_len` bytes just before `committed_offset`. Both are 16 hex digits, because common
//!   JSON readers (jq, JavaScript) lose precision above 2^53.
//! - `checksum` is the xxh3-64, as 16 hex digits, of the document serialized by
//!   `serde_json::to_vec_pretty` with `checksum` set to `""`. It is computed over the parsed
//!   document, not the raw bytes: reformatting the whitespace keeps a file valid, changing any
//!   value (an offset edited by hand) does not.
//! - `path` is where the file was last seen; a path that is not UTF-8 is stored lossily
//!   (U+FFFD). Files are identified by `dev`, `inode` and `head_hash`, not by path.
//!
//! # Guarantees
//!
//! - Every write is atomic: the document goes to `<file>.tmp` in the same directory, the file is
//!   fsynced, renamed over the target, and the directory fsynced. A crash at any point leaves the
//!   old or the new document, never a mix; once `save` returns `Ok`, the new one survives a crash.
//! - A document is used only once validated: it parses, `version` is 1, the checksum matches and
//!   `source` names this source. Anything else is rejected with a reason naming the file.
//! - [`PositionStore::load`] falls back from the positions file to checkpoints 0, 1 and 2, in that
//!   order, and says which one it used and why. It never panics on bad input and never deletes a
//!   rejected file (the next save replaces the positions file).
//! - Every save or restore takes a `sequence` above that of every valid document of the source in
//!   the directory (positions file, checkpoints, `.bak`).
//! - [`PositionStore::checkpoint`] copies only a valid positions file. Checkpointing an unchanged
//!   positions file does not rotate (it refreshes generation 0's age), so an idle source keeps its
//!   older generations.
//! - One process per data directory (see [`crate::lock`]); writes take `&mut self`.

use crate::durable::{self, context, now_rfc3339, remove_if_exists, sync_dir};
use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

/// Why a checkpoint cannot be read or restored; callers tell a checkpoint not written yet
/// (normal for a new store) from a damaged one.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint generation {generation} does not exist (generations are 0 to {last})")]
    NoSuchGeneration { generation: usize, last: usize },
    #[error("{}: not written yet", .0.display())]
    NotWritten(PathBuf),
    /// The checkpoint is there but unusable (bad checksum, wrong source, unparsable).
    #[error("{0}")]
    Invalid(String),
    /// Restoring it failed while writing.
    #[error("{0}")]
    Write(String),
}

/// The format version this code reads and writes.
pub const POSITIONS_VERSION: u32 = 1;

/// How many checkpoints are kept; generation 0 is the newest.
pub const CHECKPOINT_GENERATIONS: usize = 3;

/// Directory under the data directory that holds every source's positions.
pub const POSITIONS_DIR: &str = "positions";

/// Identity of a file on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileKey {
    /// Device of the filesystem holding the file (`st_dev`).
    pub dev: u64,
    /// Inode number on that device (`st_ino`).
    pub inode: u64,
}

/// One file's position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FilePosition {
    /// Where the file was last seen. Informational: the file is identified by `dev`, `inode` and
    /// `head_hash`. Stored lossily when it is not UTF-8.
    #[serde(with = "lossy_path")]
    pub path: PathBuf,
    /// Device of the filesystem holding the file (`st_dev`).
    pub dev: u64,
    /// Inode number on that device (`st_ino`).
    pub inode: u64,
    /// The file's birth time (ns since the epoch) where the filesystem records one; tells a
    /// reused inode from the same file. Absent in documents of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub born_ns: Option<i64>,
    /// xxh3-64 of the file's first `head_len` bytes; tells a reused inode from the same file.
    #[serde(with = "hex_u64")]
    pub head_hash: u64,
    /// How many bytes `head_hash` covers.
    pub head_len: u32,
    /// Bytes read and handed to the pipeline.
    pub read_offset: u64,
    /// Bytes acknowledged by every sink; a restart resumes here.
    pub committed_offset: u64,
    /// xxh3-64 of the `marker_len` bytes just before `committed_offset`; tells a file rewritten
    /// in place (same inode, same head) from the one that was read.
    #[serde(with = "hex_u64")]
    pub marker: u64,
    /// How many bytes `marker` covers.
    pub marker_len: u32,
    /// When this position last changed (RFC 3339, milliseconds).
    pub updated_at: String,
}

impl FilePosition {
    /// The file's identity on this machine.
    pub fn key(&self) -> FileKey {
        FileKey {
            dev: self.dev,
            inode: self.inode,
        }
    }
}

/// One container's position (docker source).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerPosition {
    /// The container's full id.
    pub id: String,
    /// Its name when last seen (informational; containers are identified by `id`).
    pub name: String,
    /// Its image when last seen (informational).
    pub image: String,
    /// Docker's timestamp (ns since the epoch) of the last entry read; 0 before the first.
    pub read_ns: i64,
    /// Docker's timestamp (ns since the epoch) of the last entry every sink acknowledged, with
    /// every entry before it; 0 when none was. A restart resumes after it.
    pub committed_ns: i64,
    /// xxh3-64 of that entry's content (after Docker's timestamp): tells it from other entries
    /// of the same nanosecond.
    #[serde(with = "hex_u64")]
    pub committed_hash: u64,
    /// When the container was seen removed (ns since the epoch); the position is dropped a
    /// grace period later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_ns: Option<i64>,
    /// When this position last changed (RFC 3339, milliseconds).
    pub updated_at: String,
}

/// The content of a positions file or checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PositionsDocument {
    /// Format version, [`POSITIONS_VERSION`].
    pub version: u32,
    /// The source these positions belong to.
    pub source: String,
    /// Grows by one with every save; never reused for a source.
    pub sequence: u64,
    /// When the document was written (RFC 3339, milliseconds).
    pub updated_at: String,
    /// One entry per tracked file.
    pub files: Vec<FilePosition>,
    /// One entry per tracked container (docker source); absent from the JSON when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<ContainerPosition>,
    /// Hex xxh3-64 of the document serialized with `checksum` set to `""`.
    pub checksum: String,
}

impl PositionsDocument {
    /// The checksum this document should carry.
    pub fn compute_checksum(&self) -> Result<String, serde_json::Error> {
        self.as_ref().compute_checksum()
    }

    /// When the document was written, in ns since the epoch; 0 (the epoch: as early as can be,
    /// so that nothing counts as seen) when `updated_at` cannot be read.
    pub fn saved_at_ns(&self) -> i64 {
        self.updated_at
            .parse::<jiff::Timestamp>()
            .map(|t| i64::try_from(t.as_nanosecond()).unwrap_or(0))
            .unwrap_or(0)
    }

    /// Sets `checksum` to match the content, e.g. after a deliberate edit.
    pub fn seal(&mut self) -> Result<(), serde_json::Error> {
        self.checksum = self.compute_checksum()?;
        Ok(())
    }

    fn as_ref(&self) -> DocumentRef<'_> {
        DocumentRef {
            version: self.version,
            source: &self.source,
            sequence: self.sequence,
            updated_at: &self.updated_at,
            files: &self.files,
            containers: &self.containers,
            checksum: &self.checksum,
        }
    }
}

/// What [`PositionStore::load`] found.
#[derive(Clone, Debug, PartialEq)]
pub enum LoadOutcome {
    /// No positions file and no checkpoint: the source starts from scratch.
    Fresh,
    /// The positions file is valid.
    Loaded(PositionsDocument),
    /// The positions file is missing or invalid; `document` is the newest valid checkpoint.
    Restored {
        /// Which checkpoint was used (0 is the newest).
        generation: usize,
        document: PositionsDocument,
        /// Why the positions file was not used.
        reason: String,
    },
    /// The positions file and every checkpoint present are invalid.
    Unrecoverable {
        /// One reason per rejected file, positions file first.
        reasons: Vec<String>,
    },
}

/// The positions of one source in a data directory.
#[derive(Debug)]
pub struct PositionStore {
    /// `<data_dir>/positions`.
    dir: PathBuf,
    source: String,
    /// The sequence the next written document takes.
    next_sequence: u64,
}

impl PositionStore {
    /// Opens the positions of `source`, creating `data_dir/positions/`. The source name becomes
    /// part of file names, so it must not be empty, `.`, `..`, or contain `/`, `\` or NUL.
    pub fn open(data_dir: &Path, source: &str) -> io::Result<Self> {
        check_source_name(source)?;
        let dir = data_dir.join(POSITIONS_DIR);
        fs::create_dir_all(&dir).map_err(context("create", &dir))?;
        let mut store = Self {
            dir,
            source: source.to_owned(),
            next_sequence: 1,
        };
        // Every write must go above every sequence already on disk, whether or not `load` runs.
        let mut existing = vec![store.path(), store.bak_path()];
        existing.extend((0..CHECKPOINT_GENERATIONS).map(|g| store.checkpoint_path(g)));
        for path in existing {
            if let Ok(document) = store.read_document(&path) {
                store.observe(&document);
            }
        }
        Ok(store)
    }

    /// The source these positions belong to.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// `data_dir/positions/<source>.json`.
    pub fn path(&self) -> PathBuf {
        self.dir.join(format!("{}.json", self.source))
    }

    /// `data_dir/positions/<source>.checkpoint.<generation>.json`; generations are
    /// `0..CHECKPOINT_GENERATIONS`, 0 the newest.
    pub fn checkpoint_path(&self, generation: usize) -> PathBuf {
        self.dir
            .join(format!("{}.checkpoint.{generation}.json", self.source))
    }

    /// `data_dir/positions/<source>.json.bak`: the positions file before the last restore or reset.
    pub fn bak_path(&self) -> PathBuf {
        self.dir.join(format!("{}.json.bak", self.source))
    }

    /// The sequence the next save will write.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// Reads the positions, falling back to the newest valid checkpoint. Removes unfinished
    /// writes (`.tmp` files) left by a crash, and moves the next sequence above what it loaded.
    pub fn load(&mut self) -> LoadOutcome {
        self.remove_unfinished_writes();
        let positions = self.path();
        let positions_reason = match self.read_document(&positions) {
            Ok(document) => {
                self.observe(&document);
                return LoadOutcome::Loaded(document);
            }
            Err(Rejected::Missing) => None,
            Err(Rejected::Invalid(reason)) => Some(reason),
        };
        let mut skipped = Vec::new();
        for generation in 0..CHECKPOINT_GENERATIONS {
            match self.read_document(&self.checkpoint_path(generation)) {
                Ok(document) => {
                    self.observe(&document);
                    for reason in &skipped {
                        tracing::warn!(
                            source = %self.source,
                            reason = %reason,
                            "Positions checkpoint rejected; trying an older one."
                        );
                    }
                    let reason = positions_reason.unwrap_or_else(|| {
                        format!("positions file missing: {}", positions.display())
                    });
                    return LoadOutcome::Restored {
                        generation,
                        document,
                        reason,
                    };
                }
                Err(Rejected::Missing) => {}
                Err(Rejected::Invalid(reason)) => skipped.push(reason),
            }
        }
        match positions_reason {
            None if skipped.is_empty() => LoadOutcome::Fresh,
            None => {
                let mut reasons = vec![format!("positions file missing: {}", positions.display())];
                reasons.extend(skipped);
                LoadOutcome::Unrecoverable { reasons }
            }
            Some(reason) => {
                let mut reasons = vec![reason];
                if skipped.is_empty() {
                    reasons.push("no checkpoint to restore from".to_owned());
                }
                reasons.extend(skipped);
                LoadOutcome::Unrecoverable { reasons }
            }
        }
    }

    /// Writes `files` as the new positions file, atomically, with the next sequence. A failed
    /// save still uses up its sequence, so a number is never written twice.
    pub fn save(&mut self, files: &[FilePosition]) -> io::Result<()> {
        self.save_all(files, &[])
    }

    /// Writes `containers` as the new positions file (docker source); see [`Self::save`].
    pub fn save_containers(&mut self, containers: &[ContainerPosition]) -> io::Result<()> {
        self.save_all(&[], containers)
    }

    fn save_all(
        &mut self,
        files: &[FilePosition],
        containers: &[ContainerPosition],
    ) -> io::Result<()> {
        let sequence = self.take_sequence();
        let updated_at = now_rfc3339();
        let document = DocumentRef {
            version: POSITIONS_VERSION,
            source: &self.source,
            sequence,
            updated_at: &updated_at,
            files,
            containers,
            checksum: "",
        };
        let bytes = document.sealed_bytes().map_err(io::Error::other)?;
        write_atomic(&self.path(), &bytes)
    }

    /// Copies the current positions file into generation 0 after shifting 1 to 2 and 0 to 1 (the
    /// old generation 2 is dropped). Each step is atomic. Fails without touching the checkpoints
    /// when the positions file is missing or invalid. When generation 0 already holds the same
    /// bytes nothing rotates; only its modification time is refreshed.
    pub fn checkpoint(&mut self) -> io::Result<()> {
        let positions = self.path();
        let bytes = fs::read(&positions).map_err(context("read", &positions))?;
        if let Err(reason) = parse_document(&positions, &bytes, &self.source) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not checkpointing an invalid positions file: {reason}"),
            ));
        }
        let newest = self.checkpoint_path(0);
        if fs::read(&newest).is_ok_and(|current| current == bytes) {
            let file = OpenOptions::new()
                .write(true)
                .open(&newest)
                .map_err(context("open", &newest))?;
            return file
                .set_modified(SystemTime::now())
                .map_err(context("touch", &newest));
        }
        for generation in (1..CHECKPOINT_GENERATIONS).rev() {
            let from = self.checkpoint_path(generation - 1);
            match fs::rename(&from, self.checkpoint_path(generation)) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(context("rotate", &from)(error)),
            }
        }
        write_atomic(&newest, &bytes)
    }

    /// Reads and validates checkpoint `generation`; a checkpoint not written yet (a new store)
    /// is [`CheckpointError::NotWritten`], not a damaged one.
    pub fn read_generation(&self, generation: usize) -> Result<PositionsDocument, CheckpointError> {
        if generation >= CHECKPOINT_GENERATIONS {
            return Err(CheckpointError::NoSuchGeneration {
                generation,
                last: CHECKPOINT_GENERATIONS - 1,
            });
        }
        let path = self.checkpoint_path(generation);
        self.read_document(&path)
            .map_err(|rejected| match rejected {
                Rejected::Missing => CheckpointError::NotWritten(path),
                Rejected::Invalid(reason) => CheckpointError::Invalid(reason),
            })
    }

    /// Makes checkpoint `generation` the positions file: validates it, keeps the current
    /// positions file (valid or not) as `<source>.json.bak`, and writes the checkpoint's files
    /// with a new, higher sequence. Returns the document written.
    pub fn restore_generation(
        &mut self,
        generation: usize,
    ) -> Result<PositionsDocument, CheckpointError> {
        let checkpoint = self.read_generation(generation)?;
        let positions = self.path();
        match fs::read(&positions) {
            Ok(current) => {
                if let Ok(document) = parse_document(&positions, &current, &self.source) {
                    self.observe(&document);
                }
                write_atomic(&self.bak_path(), &current).map_err(|error| {
                    CheckpointError::Write(format!(
                        "cannot keep the positions file as a backup: {error}"
                    ))
                })?;
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(CheckpointError::Write(format!(
                    "{}: cannot read: {error}",
                    positions.display()
                )));
            }
        }
        let mut restored = PositionsDocument {
            sequence: self.take_sequence(),
            updated_at: now_rfc3339(),
            ..checkpoint
        };
        let write = |error: &dyn std::fmt::Display| CheckpointError::Write(error.to_string());
        restored.seal().map_err(|error| write(&error))?;
        let bytes = restored
            .as_ref()
            .sealed_bytes()
            .map_err(|error| write(&error))?;
        write_atomic(&positions, &bytes).map_err(|error| write(&error))?;
        tracing::info!(
            source = %self.source,
            generation,
            sequence = restored.sequence,
            files = restored.files.len(),
            "Positions restored from a checkpoint."
        );
        Ok(restored)
    }

    /// Forgets the source's positions: the positions file becomes `<source>.json.bak`, the
    /// checkpoints and unfinished writes are removed. Sequences keep growing.
    pub fn reset(&mut self) -> io::Result<()> {
        let positions = self.path();
        match fs::rename(&positions, self.bak_path()) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(context("back up", &positions)(error)),
        }
        for generation in 0..CHECKPOINT_GENERATIONS {
            remove_if_exists(&self.checkpoint_path(generation))?;
        }
        for path in self.own_files() {
            remove_if_exists(&tmp_path(&path))?;
        }
        sync_dir(&self.dir)
    }

    /// Time since checkpoint generation 0 was written, from its modification time; `None` when
    /// there is none.
    pub fn checkpoint_age(&self) -> Option<Duration> {
        let modified = fs::metadata(self.checkpoint_path(0))
            .ok()?
            .modified()
            .ok()?;
        Some(
            SystemTime::now()
                .duration_since(modified)
                .unwrap_or(Duration::ZERO),
        )
    }

    /// Names of the sources that have a positions file or a checkpoint in `data_dir`, sorted.
    /// An unreadable or missing directory lists nothing.
    pub fn list_sources(data_dir: &Path) -> Vec<String> {
        let Ok(entries) = fs::read_dir(data_dir.join(POSITIONS_DIR)) else {
            return Vec::new();
        };
        let mut sources = BTreeSet::new();
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|kind| kind.is_file()) {
                continue;
            }
            if let Some(source) = entry.file_name().to_str().and_then(source_of_file_name) {
                sources.insert(source.to_owned());
            }
        }
        sources.into_iter().collect()
    }

    fn take_sequence(&mut self) -> u64 {
        let sequence = self.next_sequence;
        self.next_sequence = sequence.saturating_add(1);
        sequence
    }

    fn observe(&mut self, document: &PositionsDocument) {
        self.next_sequence = self.next_sequence.max(document.sequence.saturating_add(1));
    }

    fn read_document(&self, path: &Path) -> Result<PositionsDocument, Rejected> {
        match fs::read(path) {
            Ok(bytes) => parse_document(path, &bytes, &self.source).map_err(Rejected::Invalid),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Err(Rejected::Missing),
            Err(error) => Err(Rejected::Invalid(format!(
                "{}: cannot read: {error}",
                path.display()
            ))),
        }
    }

    /// Every file a write of this store can target.
    fn own_files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.path(), self.bak_path()];
        files.extend((0..CHECKPOINT_GENERATIONS).map(|g| self.checkpoint_path(g)));
        files
    }

    fn remove_unfinished_writes(&self) {
        for path in self.own_files() {
            let tmp = tmp_path(&path);
            match fs::remove_file(&tmp) {
                Ok(()) => tracing::info!(
                    source = %self.source,
                    path = %tmp.display(),
                    "Removed an unfinished positions write left by a crash."
                ),
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => tracing::warn!(
                    source = %self.source,
                    path = %tmp.display(),
                    error = %error,
                    "Cannot remove an unfinished positions write."
                ),
            }
        }
    }
}

/// Why a file could not be used.
enum Rejected {
    Missing,
    Invalid(String),
}

/// A [`PositionsDocument`] by reference, so that a save serializes the caller's slice without
/// copying it. Same fields, same order, same serializers: the JSON is identical.
#[derive(Clone, Copy, Serialize)]
struct DocumentRef<'a> {
    version: u32,
    source: &'a str,
    sequence: u64,
    updated_at: &'a str,
    files: &'a [FilePosition],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    containers: &'a [ContainerPosition],
    checksum: &'a str,
}

impl DocumentRef<'_> {
    fn compute_checksum(&self) -> Result<String, serde_json::Error> {
        let unsealed = DocumentRef {
            checksum: "",
            ..*self
        };
        Ok(format!(
            "{:016x}",
            xxh3_64(&serde_json::to_vec_pretty(&unsealed)?)
        ))
    }

    /// The document with its checksum, as written to disk (pretty JSON and a final newline).
    fn sealed_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        let checksum = self.compute_checksum()?;
        let sealed = DocumentRef {
            checksum: &checksum,
            ..*self
        };
        let mut bytes = serde_json::to_vec_pretty(&sealed)?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

/// Validates one file's bytes; the error names the file and what is wrong with it.
fn parse_document(path: &Path, bytes: &[u8], source: &str) -> Result<PositionsDocument, String> {
    let name = path.display();
    if bytes.is_empty() {
        return Err(format!("{name}: truncated: empty file"));
    }
    if bytes.contains(&0) {
        // Raw NUL never occurs in JSON; zero-filled blocks are what a torn write leaves.
        return Err(format!("{name}: corrupt: contains NUL bytes (torn write)"));
    }
    let document: PositionsDocument = match serde_json::from_slice(bytes) {
        Ok(document) => document,
        Err(error) => {
            return Err(match error.classify() {
                serde_json::error::Category::Eof => {
                    format!("{name}: truncated after {} bytes: {error}", bytes.len())
                }
                serde_json::error::Category::Syntax | serde_json::error::Category::Io => {
                    format!("{name}: not JSON: {error}")
                }
                serde_json::error::Category::Data => match probe_version(bytes) {
                    Some(version) if version != u64::from(POSITIONS_VERSION) => {
                        unsupported_version(&name, version)
                    }
                    _ => format!("{name}: not a positions document: {error}"),
                },
            });
        }
    };
    if document.version != POSITIONS_VERSION {
        return Err(unsupported_version(&name, u64::from(document.version)));
    }
    let computed = document
        .compute_checksum()
        .map_err(|error| format!("{name}: cannot compute the checksum: {error}"))?;
    if !document.checksum.eq_ignore_ascii_case(&computed) {
        return Err(format!(
            "{name}: checksum mismatch (stored {:?}, computed {computed:?}): edited by hand or corrupted",
            document.checksum
        ));
    }
    if document.source != source {
        return Err(format!(
            "{name}: belongs to source {:?}, not {source:?}",
            document.source
        ));
    }
    Ok(document)
}

fn unsupported_version(name: &impl std::fmt::Display, version: u64) -> String {
    format!("{name}: unsupported version {version} (this build reads version {POSITIONS_VERSION})")
}

/// The `version` of a document that does not parse as version 1, for a better message.
fn probe_version(bytes: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct Probe {
        version: u64,
    }
    serde_json::from_slice::<Probe>(bytes)
        .ok()
        .map(|probe| probe.version)
}

fn check_source_name(source: &str) -> io::Result<()> {
    durable::check_name_component("source", source, "a positions file")
}

/// The source a file in the positions directory belongs to: `<source>.json` or
/// `<source>.checkpoint.<g>.json` with `g` a kept generation. Anything else (`.tmp`, `.bak`,
/// stray files) is not a source.
fn source_of_file_name(name: &str) -> Option<&str> {
    let stem = name.strip_suffix(".json")?;
    let source = match stem.rsplit_once(".checkpoint.") {
        Some((source, generation)) if generation.bytes().all(|b| b.is_ascii_digit()) => {
            match generation.parse::<usize>() {
                Ok(g) if g < CHECKPOINT_GENERATIONS => source,
                _ => return None,
            }
        }
        _ => stem,
    };
    (!source.is_empty()).then_some(source)
}

/// `<target>.tmp`, in the same directory so that the rename stays on one filesystem.
fn tmp_path(target: &Path) -> PathBuf {
    let mut name = target.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Writes `bytes` to `<target>.tmp`, fsyncs it, renames it over `target` and fsyncs the
/// directory. On failure before the rename, the temporary file is removed and `target` is intact.
fn write_atomic(target: &Path, bytes: &[u8]) -> io::Result<()> {
    durable::write_atomic(target, &tmp_path(target), bytes)
}

/// `u64` as 16 lowercase hex digits; reads 1 to 16 hex digits of either case.
mod hex_u64 {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{value:016x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.is_empty() || text.len() > 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(D::Error::custom(format!(
                "expected up to 16 hex digits, found {text:?}"
            )));
        }
        u64::from_str_radix(&text, 16).map_err(D::Error::custom)
    }
}

/// A path as a string; a path that is not UTF-8 is written with U+FFFD in place of bad bytes.
mod lossy_path {
    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(path: &Path, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&path.to_string_lossy())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PathBuf, D::Error> {
        String::deserialize(deserializer).map(PathBuf::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(name: &str, inode: u64, committed: u64) -> FilePosition {
        FilePosition {
            path: PathBuf::from(format!("/var/log/{name}")),
            dev: 2049,
            inode,
            born_ns: None,
            head_hash: 0x9c1f_0e2d_3b4a_5968,
            head_len: 256,
            read_offset: committed + 100,
            committed_offset: committed,
            marker: 0xff,
            marker_len: 64,
            updated_at: "2026-05-01T10:00:00.120Z".to_owned(),
        }
    }

    fn store(dir: &Path) -> PositionStore {
        PositionStore::open(dir, "app").expect("open")
    }

    fn committed(document: &PositionsDocument) -> Vec<u64> {
        document.files.iter().map(|f| f.committed_offset).collect()
    }

    #[test]
    fn save_load_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = vec![position("a.log", 1, 8192), position("b.log", 2, 0)];
        let mut writer = store(dir.path());
        assert_eq!(writer.load(), LoadOutcome::Fresh);
        writer.save(&files).expect("save");
        assert!(!tmp_path(&writer.path()).exists());

        let mut reader = store(dir.path());
        let LoadOutcome::Loaded(document) = reader.load() else {
            panic!("expected Loaded");
        };
        assert_eq!(document.files, files);
        assert_eq!(document.version, 1);
        assert_eq!(document.source, "app");
        assert_eq!(document.sequence, 1);
        assert_eq!(
            document.files[0].key(),
            FileKey {
                dev: 2049,
                inode: 1
            }
        );

        // Pretty JSON with hashes as 16 hex digits, for operators.
        let text = fs::read_to_string(reader.path()).expect("read");
        assert!(text.contains("\n  \"files\": ["));
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(value["files"][0]["head_hash"], "9c1f0e2d3b4a5968");
        assert_eq!(value["files"][0]["marker"], "00000000000000ff");

        // The next save continues the sequence of what was loaded.
        reader.save(&files).expect("save");
        let LoadOutcome::Loaded(document) = store(dir.path()).load() else {
            panic!("expected Loaded");
        };
        assert_eq!(document.sequence, 2);
    }

    #[test]
    fn positions_truncated_to_half_restores_checkpoint_0() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = store(dir.path());
        store.save(&[position("a.log", 1, 100)]).expect("save");
        store.checkpoint().expect("checkpoint");
        store.save(&[position("a.log", 1, 200)]).expect("save");

        let bytes = fs::read(store.path()).expect("read");
        fs::write(store.path(), &bytes[..bytes.len() / 2]).expect("truncate");

        let LoadOutcome::Restored {
            generation,
            document,
            reason,
        } = store.load()
        else {
            panic!("expected Restored");
        };
        assert_eq!(generation, 0);
        assert_eq!(committed(&document), [100]);
        assert!(reason.contains("truncated"), "{reason}");
        assert!(reason.contains("app.json"), "{reason}");
    }

    #[test]
    fn unfinished_write_is_ignored_and_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = store(dir.path());
        store.save(&[position("a.log", 1, 100)]).expect("save");
        store.checkpoint().expect("checkpoint");
        let tmp = tmp_path(&store.path());

        // A crash before the rename: the old positions file stands.
        fs::write(&tmp, b"{\n  \"version\": 1,\n  \"sour").expect("write tmp");
        let LoadOutcome::Loaded(document) = store.load() else {
            panic!("expected Loaded");
        };
        assert_eq!(committed(&document), [100]);
        assert!(!tmp.exists());

        // A crash of the very first write after the positions file was lost.
        fs::write(&tmp, b"{\n  \"version\": 1,\n  \"sour").expect("write tmp");
        fs::remove_file(store.path()).expect("remove");
        let LoadOutcome::Restored {
            generation, reason, ..
        } = store.load()
        else {
            panic!("expected Restored");
        };
        assert_eq!(generation, 0);
        assert!(reason.contains("positions file missing"), "{reason}");
    }

    #[test]
    fn corrupt_positions_and_checkpoint_0_restore_generation_1() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = store(dir.path());
        for offset in [100, 200, 300] {
            store.save(&[position("a.log", 1, offset)]).expect("save");
            store.checkpoint().expect("checkpoint");
        }
        // Checkpoints: 0 = 300, 1 = 200, 2 = 100.
        fs::write(store.path(), b"this is not json").expect("corrupt");
        fs::write(store.checkpoint_path(0), [0u8; 64]).expect("corrupt");

        let LoadOutcome::Restored {
            generation,
            document,
            reason,
        } = store.load()
        else {
            panic!("expected Restored");
        };
        assert_eq!(generation, 1);
        assert_eq!(committed(&document), [200]);
        assert!(reason.contains("not JSON"), "{reason}");
    }

    #[test]
    fn every_file_invalid_is_unrecoverable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = store(dir.path());
        store.save(&[position("a.log", 1, 100)]).expect("save");
        store.checkpoint().expect("checkpoint");
        fs::write(store.path(), b"").expect("corrupt");
        fs::write(store.checkpoint_path(0), b"[1, 2").expect("corrupt");

        let LoadOutcome::Unrecoverable { reasons } = store.load() else {
            panic!("expected Unrecoverable");
        };
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(reasons[0].contains("empty file"), "{reasons:?}");
        assert!(reasons[1].contains("checkpoint.0.json"), "{reasons:?}");
    }

    #[test]
    fn manual_edit_of_an_offset_is_a_checksum_mismatch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = store(dir.path());
        store.save(&[position("a.log", 1, 8192)]).expect("save");
        store.checkpoint().expect("checkpoint");
        let text = fs::read_to_string(store.path()).expect("read");

        // Reformatting keeps the document valid: the checksum is over the parsed content.
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        fs::write(
            store.path(),
            serde_json::to_string(&value).expect("compact"),
        )
        .expect("write");
        assert!(matches!(store.load(), LoadOutcome::Loaded(_)));

        let edited = text.replace("\"committed_offset\": 8192", "\"committed_offset\": 9192");
        assert_ne!(edited, text);
        fs::write(store.path(), edited).expect("edit");
        let LoadOutcome::Restored {
            generation, reason, ..
        } = store.load()
        else {
            panic!("expected Restored");
        };
        assert_eq!(generation, 0);
        assert!(reason.contains("checksum mismatch"), "{reason}");
    }

    #[test]
    fn other_source_and_other_version_are_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut other = PositionStore::open(dir.path(), "other").expect("open");
        other.save(&[position("a.log", 1, 1)]).expect("save");
        let mut store = store(dir.path());
        fs::copy(other.path(), store.path()).expect("copy");
        let LoadOutcome::Unrecoverable { reasons } = store.load() else {
            panic!("expected Unrecoverable");
        };
        assert!(
            reasons[0].contains("belongs to source \"other\""),
            "{reasons:?}"
        );

        let mut document = match other.load() {
            LoadOutcome::Loaded(document) => document,
            outcome => panic!("expected Loaded, got {outcome:?}"),
        };
        document.version = 2;
        document.source = "app".to_owned();
        document.seal().expect("seal");
        fs::write(store.path(), serde_json::to_vec(&document).expect("json")).expect("write");
        let LoadOutcome::Unrecoverable { reasons } = store.load() else {
            panic!("expected Unrecoverable");
        };
        assert!(reasons[0].contains("unsupported version 2"), "{reasons:?}");
    }

    #[test]
    fn checkpoint_rotation_keeps_three_generations_newest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = store(dir.path());
        assert_eq!(store.checkpoint_age(), None);
        for offset in [100, 200, 300, 400] {
            store.save(&[position("a.log", 1, offset)]).expect("save");
            store.checkpoint().expect("checkpoint");
        }
        let generations: Vec<Vec<u64>> = (0..CHECKPOINT_GENERATIONS)
            .map(|g| committed(&store.read_generation(g).expect("valid")))
            .collect();
        assert_eq!(generations, [[400], [300], [200]]);
        assert!(!store.checkpoint_path(3).exists());
        assert!(store.read_generation(3).is_err());
        assert!(store.checkpoint_age().is_some());

        // An unchanged positions file does not push older generations out.
        store.checkpoint().expect("checkpoint");
        assert_eq!(committed(&store.read_generation(1).expect("valid")), [300]);

        // An invalid positions file is not checkpointed.
        fs::write(store.path(), b"{").expect("corrupt");
        assert!(store.checkpoint().is_err());
        assert_eq!(committed(&store.read_generation(0).expect("valid")), [400]);
    }

    #[test]
    fn restore_generation_keeps_a_backup_and_becomes_the_positions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = store(dir.path());
        store.save(&[position("a.log", 1, 100)]).expect("save");
        store.checkpoint().expect("checkpoint");
        store.save(&[position("a.log", 1, 200)]).expect("save");
        store.save(&[position("a.log", 1, 300)]).expect("save");

        assert!(store.restore_generation(1).is_err());
        let restored = store.restore_generation(0).expect("restore");
        assert_eq!(committed(&restored), [100]);
        assert_eq!(restored.sequence, 4);

        let bak = fs::read(store.bak_path()).expect("bak");
        let bak = parse_document(&store.bak_path(), &bak, "app").expect("valid bak");
        assert_eq!(committed(&bak), [300]);

        let mut reopened = PositionStore::open(dir.path(), "app").expect("open");
        let LoadOutcome::Loaded(document) = reopened.load() else {
            panic!("expected Loaded");
        };
        assert_eq!(document, restored);
        assert_eq!(reopened.next_sequence(), 5);
    }

    #[test]
    fn reset_forgets_positions_but_keeps_a_backup() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = store(dir.path());
        store.save(&[position("a.log", 1, 100)]).expect("save");
        store.checkpoint().expect("checkpoint");
        store.save(&[position("a.log", 1, 200)]).expect("save");

        store.reset().expect("reset");
        assert!(!store.path().exists());
        assert!(!store.checkpoint_path(0).exists());
        assert!(store.bak_path().exists());
        assert_eq!(store.load(), LoadOutcome::Fresh);
        assert!(PositionStore::list_sources(dir.path()).is_empty());

        // Sequences never go back, even for a reopened store.
        assert_eq!(
            PositionStore::open(dir.path(), "app")
                .expect("open")
                .next_sequence(),
            3
        );
        store.reset().expect("reset twice");
    }

    #[test]
    fn list_sources_finds_positions_files_and_checkpoints() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(PositionStore::list_sources(dir.path()).is_empty());
        let mut a = PositionStore::open(dir.path(), "a").expect("open");
        a.save(&[]).expect("save");
        let mut b = PositionStore::open(dir.path(), "b.logs").expect("open");
        b.save(&[]).expect("save");
        b.checkpoint().expect("checkpoint");
        fs::remove_file(b.path()).expect("remove");
        let positions = dir.path().join(POSITIONS_DIR);
        for stray in [
            "c.json.tmp",
            "d.json.bak",
            "e.checkpoint.7.json",
            "notes.txt",
        ] {
            fs::write(positions.join(stray), b"x").expect("write");
        }
        assert_eq!(PositionStore::list_sources(dir.path()), ["a", "b.logs"]);
    }

    #[test]
    fn source_names_that_escape_the_directory_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["", ".", "..", "../x", "a/b", "a\\b", "a\0b"] {
            let error = PositionStore::open(dir.path(), name).expect_err(name);
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        }
    }
}
