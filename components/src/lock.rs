//! Exclusive use of a data directory by one process.
//!
//! The lock is an advisory `flock(2)` on `<data_dir>/lock`, taken without waiting. Its holder
//! writes its pid into the file (truncated first), so a refused process can name the holder.
//!
//! Guarantees:
//! - While a [`DataDirLock`] is alive no other [`DataDirLock::acquire`] on the same directory
//!   succeeds, in another process or in this one: `flock` locks belong to an open file
//!   description, and every acquire opens the file anew.
//! - The lock is released when the `DataDirLock` is dropped, and by the kernel when the process
//!   dies however it dies, so a crash never leaves a stale lock. The file itself stays; its
//!   content (the pid) is only a hint, the lock is the truth.
//! - Files opened by std are close-on-exec, so a spawned program does not inherit the lock.
//! - Advisory only: a process that does not take the lock is not stopped. `flock` on network
//!   filesystems (NFS) may not exclude other machines.

use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "lock";

/// Held for as long as a process uses a data directory; released on drop.
#[derive(Debug)]
pub struct DataDirLock {
    /// The open, locked file; closing it releases the lock.
    file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Takes the lock on `data_dir/lock` (creating data_dir and the file), without waiting.
    /// `Err(LockError::Held { path, pid })` when another process holds it (with the pid the holder
    /// wrote into the file, when readable), `Err(LockError::Io(..))` on I/O errors.
    pub fn acquire(data_dir: &Path) -> Result<Self, LockError> {
        let path = data_dir.join(LOCK_FILE);
        let io_error = |error| LockError::Io {
            path: path.clone(),
            error,
        };
        fs::create_dir_all(data_dir).map_err(io_error)?;
        // Never truncate on open: the file may belong to a running holder.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let pid = read_pid(&mut file);
                return Err(LockError::Held { path, pid });
            }
            Err(TryLockError::Error(error)) => return Err(io_error(error)),
        }
        let pid = std::process::id();
        file.set_len(0)
            .and_then(|()| file.write_all(format!("{pid}\n").as_bytes()))
            .and_then(|()| file.sync_data())
            .map_err(io_error)?;
        tracing::debug!(path = %path.display(), pid, "Data directory locked.");
        Ok(Self { file, path })
    }

    /// Whether some process, this one included, holds the lock now. Tries to take it and releases
    /// it at once; a missing lock file means nobody holds it (nothing is created).
    pub fn is_held(data_dir: &Path) -> Result<bool, LockError> {
        let path = data_dir.join(LOCK_FILE);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(LockError::Io { path, error }),
        };
        match file.try_lock() {
            Ok(()) => {
                file.unlock()
                    .map_err(|error| LockError::Io { path, error })?;
                Ok(false)
            }
            Err(TryLockError::WouldBlock) => Ok(true),
            Err(TryLockError::Error(error)) => Err(LockError::Io { path, error }),
        }
    }

    /// The lock file, `data_dir/lock`.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DataDirLock {
    fn drop(&mut self) {
        // Clear the pid while still holding the lock, so nobody reads a stale one; closing the
        // file releases the lock even if unlocking fails.
        if let Err(error) = self.file.set_len(0).and_then(|()| self.file.unlock()) {
            tracing::warn!(path = %self.path.display(), error = %error, "Cannot release the data directory lock cleanly.");
        }
    }
}

/// The pid a holder wrote; `None` when empty (being written) or unreadable.
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// Why a data directory could not be locked.
#[derive(Debug)]
pub enum LockError {
    /// Another process (or another lock in this one) holds it.
    Held {
        /// The lock file.
        path: PathBuf,
        /// The holder's pid, as it wrote it into the lock file.
        pid: Option<u32>,
    },
    /// The lock file could not be created, opened, locked or written.
    Io {
        /// The lock file.
        path: PathBuf,
        error: io::Error,
    },
}

impl LockError {
    /// The data directory the lock is in.
    fn dir(&self) -> &Path {
        let (Self::Held { path, .. } | Self::Io { path, .. }) = self;
        path.parent().unwrap_or(path)
    }

    /// How to fix it; each cause has its own.
    pub fn hint(&self) -> String {
        let dir = self.dir().display();
        match self {
            Self::Held { pid: Some(pid), .. } => {
                format!("stop the other instance (pid {pid}), or give this one another data_dir")
            }
            Self::Held { pid: None, .. } => {
                "stop the other instance, or give this one another data_dir".to_string()
            }
            Self::Io { error, .. } => match error.kind() {
                io::ErrorKind::PermissionDenied => format!(
                    "let the user running log-capturer create and write files in {dir} \
                     (chown or chmod it), or set data_dir to a directory it may write"
                ),
                io::ErrorKind::ReadOnlyFilesystem => format!(
                    "{dir} is on a read-only file system: mount a writable volume there \
                     (in Kubernetes an emptyDir or a persistent volume), or set data_dir elsewhere"
                ),
                io::ErrorKind::NotFound => format!(
                    "a directory on the way to {dir} is missing and cannot be created there: \
                     create it, or set data_dir to a path on a writable file system"
                ),
                io::ErrorKind::NotADirectory | io::ErrorKind::AlreadyExists => format!(
                    "something on the way to {dir} is a file, not a directory: \
                     set data_dir to a directory"
                ),
                io::ErrorKind::StorageFull => {
                    format!(
                        "the file system of {dir} is full: free space, or set data_dir elsewhere"
                    )
                }
                _ => format!("check {dir} and its file system, or set data_dir elsewhere"),
            },
        }
    }
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = self.dir().display();
        match self {
            Self::Held { path, pid } => {
                write!(
                    f,
                    "data directory {dir} is in use by another log-capturer process ("
                )?;
                match pid {
                    Some(pid) => write!(f, "pid {pid}")?,
                    None => write!(f, "pid unknown")?,
                }
                write!(f, "; lock {})", path.display())
            }
            Self::Io { path, error } => {
                let cause = match error.kind() {
                    io::ErrorKind::PermissionDenied => "permission denied",
                    io::ErrorKind::ReadOnlyFilesystem => "read-only file system",
                    io::ErrorKind::NotFound => "directory missing",
                    io::ErrorKind::NotADirectory | io::ErrorKind::AlreadyExists => {
                        "not a directory"
                    }
                    io::ErrorKind::StorageFull => "no space left",
                    _ => "I/O error",
                };
                write!(
                    f,
                    "cannot create or lock data directory {dir} ({cause}; lock {}): {error}",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for LockError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Held { .. } => None,
            Self::Io { error, .. } => Some(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        assert!(!DataDirLock::is_held(&data_dir).expect("is_held"));
        assert!(!data_dir.exists(), "is_held must not create anything");

        let first = DataDirLock::acquire(&data_dir).expect("first acquire");
        assert_eq!(first.path(), data_dir.join(LOCK_FILE));
        assert!(DataDirLock::is_held(&data_dir).expect("is_held"));

        match DataDirLock::acquire(&data_dir) {
            Err(LockError::Held { path, pid }) => {
                assert_eq!(path, data_dir.join(LOCK_FILE));
                assert_eq!(pid, Some(std::process::id()));
            }
            other => panic!("expected Held, got {other:?}"),
        }
        // A refused acquire leaves the holder's pid in place.
        let content = fs::read_to_string(data_dir.join(LOCK_FILE)).expect("read");
        assert_eq!(content, format!("{}\n", std::process::id()));

        drop(first);
        assert!(!DataDirLock::is_held(&data_dir).expect("is_held"));
        let again = DataDirLock::acquire(&data_dir).expect("acquire after drop");
        assert!(DataDirLock::is_held(&data_dir).expect("is_held"));
        drop(again);
    }

    #[test]
    fn is_held_does_not_take_the_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(DataDirLock::acquire(dir.path()).expect("acquire"));
        assert!(!DataDirLock::is_held(dir.path()).expect("is_held"));
        let _lock = DataDirLock::acquire(dir.path()).expect("acquire after is_held");
    }

    #[test]
    fn held_error_names_the_directory_the_pid_and_the_lock() {
        let error = LockError::Held {
            path: PathBuf::from("/x/lock"),
            pid: Some(123),
        };
        assert_eq!(
            error.to_string(),
            "data directory /x is in use by another log-capturer process (pid 123; lock /x/lock)"
        );
        let error = LockError::Held {
            path: PathBuf::from("/x/lock"),
            pid: None,
        };
        assert!(error.to_string().contains("(pid unknown; lock /x/lock)"));
    }

    #[test]
    fn each_cause_has_its_own_message_and_hint() {
        let io = |kind: io::ErrorKind| LockError::Io {
            path: PathBuf::from("/x/lock"),
            error: io::Error::from(kind),
        };
        let held = LockError::Held {
            path: PathBuf::from("/x/lock"),
            pid: Some(42),
        };
        assert!(held.hint().contains("stop the other instance (pid 42)"));
        for (kind, cause, hint) in [
            (
                io::ErrorKind::PermissionDenied,
                "permission denied",
                "chown or chmod",
            ),
            (
                io::ErrorKind::ReadOnlyFilesystem,
                "read-only file system",
                "mount a writable volume",
            ),
            (io::ErrorKind::NotFound, "directory missing", "is missing"),
            (io::ErrorKind::NotADirectory, "not a directory", "is a file"),
        ] {
            let error = io(kind);
            let text = error.to_string();
            assert!(
                text.starts_with(&format!(
                    "cannot create or lock data directory /x ({cause}; lock /x/lock)"
                )),
                "{text}"
            );
            assert!(error.hint().contains(hint), "{kind:?}: {}", error.hint());
            assert!(!error.hint().contains("other instance"), "{}", error.hint());
        }
    }

    #[test]
    fn a_data_dir_that_is_a_file_is_an_io_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("not-a-dir");
        fs::write(&file, b"").expect("write");
        match DataDirLock::acquire(&file) {
            Err(LockError::Io { path, .. }) => assert_eq!(path, file.join(LOCK_FILE)),
            other => panic!("expected Io, got {other:?}"),
        }
    }
}
