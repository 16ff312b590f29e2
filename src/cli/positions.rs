//! `log-capturer positions show | restore --generation N | reset`.
//!
//! `restore` and `reset` change files a running instance writes, so they refuse while the data
//! directory's lock is held, and always keep the replaced positions file as `<source>.json.bak`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use log_capturer_components::lock::DataDirLock;
use log_capturer_components::positions::{
    CHECKPOINT_GENERATIONS, CheckpointError, LoadOutcome, PositionStore, PositionsDocument,
};

use super::{PositionsAction, exit_code};
use crate::config::{self, ConfigSource};

pub fn run(
    source: &ConfigSource,
    action: PositionsAction,
    data_dir: Option<PathBuf>,
    only: Option<String>,
) -> ExitCode {
    let data_dir = match data_dir {
        Some(dir) => dir,
        None => match config::load(source) {
            Ok(config) => config.root.data_dir,
            Err(errors) => {
                eprint!("{errors}");
                eprintln!("(hint: pass --data-dir DIR to work without a valid configuration)");
                return ExitCode::FAILURE;
            }
        },
    };
    let sources = match only {
        Some(name) => vec![name],
        None => PositionStore::list_sources(&data_dir),
    };
    if sources.is_empty() {
        eprintln!("No saved positions under {}.", data_dir.display());
        return ExitCode::SUCCESS;
    }
    match action {
        PositionsAction::Show => show(&data_dir, &sources),
        PositionsAction::Restore { generation } => {
            if let Some(code) = refuse_if_running(&data_dir) {
                return code;
            }
            restore(&data_dir, &sources, generation)
        }
        PositionsAction::Reset => {
            if let Some(code) = refuse_if_running(&data_dir) {
                return code;
            }
            reset(&data_dir, &sources)
        }
    }
}

fn refuse_if_running(data_dir: &Path) -> Option<ExitCode> {
    match DataDirLock::acquire(data_dir) {
        // Held for the rest of this command, so no instance starts meanwhile.
        Ok(lock) => {
            std::mem::forget(lock);
            None
        }
        Err(err) => {
            eprintln!("refusing: {err}; stop it first");
            Some(ExitCode::FAILURE)
        }
    }
}

fn print_document(document: &PositionsDocument) {
    println!(
        "  sequence {}, saved {}, {} file(s), {} container(s)",
        document.sequence,
        document.updated_at,
        document.files.len(),
        document.containers.len()
    );
    for file in &document.files {
        println!(
            "    {}  committed {}  read {}  (dev {} inode {}, updated {})",
            file.path.display(),
            file.committed_offset,
            file.read_offset,
            file.dev,
            file.inode,
            file.updated_at
        );
    }
    for container in &document.containers {
        let id: String = container.id.chars().take(12).collect();
        println!(
            "    container {} ({id}, {})  committed {}  read {}{}  (updated {})",
            container.name,
            container.image,
            format_ns(container.committed_ns),
            format_ns(container.read_ns),
            if container.removed_ns.is_some() {
                "  removed"
            } else {
                ""
            },
            container.updated_at
        );
    }
}

/// A Docker timestamp (ns since the epoch) as RFC 3339 with nanoseconds; `-` for none.
fn format_ns(ns: i64) -> String {
    match u64::try_from(ns) {
        Ok(ns) if ns > 0 => humantime::format_rfc3339_nanos(
            std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns),
        )
        .to_string(),
        _ => "-".to_owned(),
    }
}

fn show(data_dir: &Path, sources: &[String]) -> ExitCode {
    let mut ok = true;
    for name in sources {
        let mut store = match PositionStore::open(data_dir, name) {
            Ok(store) => store,
            Err(err) => {
                eprintln!("{name}: {err}");
                ok = false;
                continue;
            }
        };
        println!("source {name} ({})", store.path().display());
        match store.load() {
            LoadOutcome::Fresh => println!("  no positions saved"),
            LoadOutcome::Loaded(document) => print_document(&document),
            LoadOutcome::Restored {
                generation,
                document,
                reason,
            } => {
                println!(
                    "  positions file unusable ({reason}); a start would use checkpoint {generation}:"
                );
                print_document(&document);
            }
            LoadOutcome::Unrecoverable { reasons } => {
                ok = false;
                println!("  positions file and checkpoints unusable:");
                for reason in reasons {
                    println!("    {reason}");
                }
            }
        }
        for generation in 0..CHECKPOINT_GENERATIONS {
            match store.read_generation(generation) {
                Ok(document) => println!(
                    "  checkpoint {generation}: sequence {}, saved {}, {} file(s), {} container(s)",
                    document.sequence,
                    document.updated_at,
                    document.files.len(),
                    document.containers.len()
                ),
                Err(CheckpointError::NotWritten(_)) => {
                    println!("  checkpoint {generation}: not written yet")
                }
                Err(error) => println!("  checkpoint {generation}: unusable: {error}"),
            }
        }
    }
    exit_code(ok)
}

fn restore(data_dir: &Path, sources: &[String], generation: usize) -> ExitCode {
    let mut ok = true;
    for name in sources {
        let result = PositionStore::open(data_dir, name)
            .map_err(|e| e.to_string())
            .and_then(|mut store| {
                store
                    .restore_generation(generation)
                    .map_err(|e| e.to_string())
            });
        match result {
            Ok(document) => {
                println!("source {name}: restored checkpoint {generation}");
                print_document(&document);
            }
            Err(err) => {
                ok = false;
                eprintln!("source {name}: cannot restore checkpoint {generation}: {err}");
            }
        }
    }
    exit_code(ok)
}

fn reset(data_dir: &Path, sources: &[String]) -> ExitCode {
    let mut ok = true;
    for name in sources {
        match PositionStore::open(data_dir, name).and_then(|mut store| store.reset()) {
            Ok(()) => println!("source {name}: positions reset (previous file kept as .bak)"),
            Err(err) => {
                ok = false;
                eprintln!("source {name}: cannot reset: {err}");
            }
        }
    }
    exit_code(ok)
}
