//! Small helpers for files that must survive a crash, shared by the positions store and the
//! dead-letter queue.
//!
//! Guarantee of [`write_atomic`]: after it returns `Ok`, `target` holds `bytes` on disk; after a
//! crash at any point, `target` holds either its old content or the new one, never a mix.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::time::SystemTime;

/// Writes `bytes` to `tmp` (same directory as `target`), fsyncs it, renames it over `target`
/// and fsyncs the directory. On failure before the rename, `tmp` is removed and `target` is
/// intact.
pub fn write_atomic(target: &Path, tmp: &Path, bytes: &[u8]) -> io::Result<()> {
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(tmp)
            .map_err(context("create", tmp))?;
        file.write_all(bytes).map_err(context("write", tmp))?;
        file.sync_all().map_err(context("fsync", tmp))?;
        drop(file);
        fs::rename(tmp, target).map_err(context("rename over", target))
    })();
    if let Err(error) = written {
        if let Err(cleanup) = fs::remove_file(tmp)
            && cleanup.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %tmp.display(), error = %cleanup, "Cannot remove a failed atomic write.");
        }
        return Err(error);
    }
    sync_dir(target.parent().unwrap_or(Path::new(".")))
}

/// Makes creations, renames and removals in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)
        .and_then(|directory| directory.sync_all())
        .map_err(context("fsync directory", dir))
}

/// Removes `path`; a file that is already gone is fine.
pub fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(context("remove", path)(error)),
    }
}

/// Adds the operation and the path to an I/O error, keeping its kind.
pub fn context(operation: &'static str, path: &Path) -> impl FnOnce(io::Error) -> io::Error {
    let path = path.to_path_buf();
    move |error| {
        io::Error::new(
            error.kind(),
            format!("{operation} {}: {error}", path.display()),
        )
    }
}

/// Checks that a component name can be used as one file or directory name: not empty, not
/// `.` or `..`, without `/`, `\` or NUL. `what` says what the name would name, for the error.
pub fn check_name_component(kind: &str, name: &str, what: &str) -> io::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{kind} name {name:?} cannot name {what} (empty, '.', '..', or contains '/', '\\' or NUL)"
            ),
        ));
    }
    Ok(())
}

/// The current time as RFC 3339 with milliseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}
