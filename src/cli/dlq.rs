//! `log-capturer dlq stats | inspect | reprocess | purge`.
//!
//! `stats` and `inspect` only read. `purge` deletes, so it refuses while an instance holds the
//! data directory. `reprocess` asks the running instance, which owns the queues, through its API.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use log_capturer_components::dlq::{Dlq, DlqConfig};
use log_capturer_components::lock::DataDirLock;

use super::{DlqAction, api_base, exit_code, print_api_answer};
use crate::config::{self, ConfigSource};

pub async fn run(
    source: &ConfigSource,
    action: DlqAction,
    data_dir: Option<PathBuf>,
    only: Option<String>,
) -> ExitCode {
    let loaded = config::load(source);
    if let DlqAction::Reprocess { url, token } = action {
        let url = format!("{}/dlq/reprocess", api_base(url, loaded.as_ref().ok()));
        let token = token.or_else(|| {
            let config = loaded.as_ref().ok()?;
            config.api_token.as_ref().map(|t| t.expose().to_string())
        });
        return print_api_answer(
            http::Method::POST,
            &url,
            token.as_deref(),
            "reprocess needs a running instance",
        )
        .await;
    }
    let data_dir = match data_dir {
        Some(dir) => dir,
        None => match &loaded {
            Ok(config) => config.root.data_dir.clone(),
            Err(errors) => {
                eprint!("{errors}");
                eprintln!("(hint: pass --data-dir DIR to work without a valid configuration)");
                return ExitCode::FAILURE;
            }
        },
    };
    let sinks = match only {
        Some(name) => vec![name],
        None => Dlq::list_sinks(&data_dir),
    };
    if sinks.is_empty() {
        eprintln!("No dead-letter queues under {}.", data_dir.display());
        return ExitCode::SUCCESS;
    }
    match action {
        DlqAction::Stats => stats(&data_dir, &sinks),
        DlqAction::Inspect { limit, refused } => inspect(&data_dir, &sinks, limit, refused),
        DlqAction::Purge => {
            match DataDirLock::acquire(&data_dir) {
                Ok(lock) => std::mem::forget(lock),
                Err(err) => {
                    eprintln!("refusing: {err}; stop it first");
                    return ExitCode::FAILURE;
                }
            }
            purge(&data_dir, &sinks)
        }
        DlqAction::Reprocess { .. } => ExitCode::SUCCESS,
    }
}

fn stats(data_dir: &Path, sinks: &[String]) -> ExitCode {
    let mut ok = true;
    for sink in sinks {
        // Counting reads every record; `inspect` with no limit does exactly that, read-only.
        match Dlq::inspect(data_dir, sink, usize::MAX) {
            Ok(records) => {
                let entries: usize = records.iter().map(|r| r.entries.len()).sum();
                let oldest = records.first().map_or("-", |r| r.written_at.as_str());
                println!(
                    "sink {sink}: {} record(s), {entries} entr{} queued, oldest written {oldest}",
                    records.len(),
                    if entries == 1 { "y" } else { "ies" }
                );
                let mut reasons: std::collections::BTreeMap<&str, usize> = Default::default();
                for record in &records {
                    *reasons.entry(record.reason.as_str()).or_default() += record.entries.len();
                }
                for (reason, count) in reasons {
                    println!("  {reason}: {count}");
                }
                if let Ok(refused) = Dlq::inspect_refused(data_dir, sink, usize::MAX) {
                    let entries: usize = refused.iter().map(|r| r.entries.len()).sum();
                    if entries > 0 {
                        println!(
                            "  refused for good (archived; `dlq inspect --refused`): {entries}"
                        );
                    }
                }
            }
            Err(err) => {
                ok = false;
                eprintln!("sink {sink}: {err}");
            }
        }
    }
    exit_code(ok)
}

fn inspect(data_dir: &Path, sinks: &[String], limit: usize, refused: bool) -> ExitCode {
    let mut ok = true;
    for sink in sinks {
        let records = if refused {
            Dlq::inspect_refused(data_dir, sink, limit)
        } else {
            Dlq::inspect(data_dir, sink, limit)
        };
        match records {
            Ok(records) => {
                for record in records {
                    match serde_json::to_string(&record) {
                        Ok(line) => println!("{line}"),
                        Err(err) => eprintln!("sink {sink}: {err}"),
                    }
                }
            }
            Err(err) => {
                ok = false;
                eprintln!("sink {sink}: {err}");
            }
        }
    }
    exit_code(ok)
}

fn purge(data_dir: &Path, sinks: &[String]) -> ExitCode {
    let mut ok = true;
    for sink in sinks {
        match Dlq::open(data_dir, sink, DlqConfig::default()).and_then(|mut q| q.purge()) {
            Ok(removed) => println!(
                "sink {sink}: purged {} record(s), {} entr{}",
                removed.records,
                removed.entries,
                if removed.entries == 1 { "y" } else { "ies" }
            ),
            Err(err) => {
                ok = false;
                eprintln!("sink {sink}: cannot purge: {err}");
            }
        }
    }
    exit_code(ok)
}
