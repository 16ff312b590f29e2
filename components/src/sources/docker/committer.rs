//! The committer: saves the containers' committed cursors and checkpoints them.
//!
//! Guarantees:
//! - Cursors are saved (atomically, see [`crate::positions`]) at most `flush_interval` after
//!   one moved, and once more after every container task has ended (at shutdown, after the
//!   last acknowledgement); checkpoints every `checkpoint_interval` and at the end. Only
//!   while the engine is watched (`Shared::watching`): a save's time is what the next start
//!   trusts as seen.
//! - A removed container's cursor is dropped `removed_retention` after it was seen removed.
//! - A failing save is retried at the next flush, logged once and then at most every 30 s.
//! - A save or checkpoint that panics (a bug) is raised in the committer's task, which the source
//!   raises again: the shipper stops with an error naming the source. Before, the committer
//!   ended there and the shipper ran on without saving a cursor again.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::events::PositionsSaveFailed;
use super::{Entry, Settings};
use crate::event::now_ns;
use crate::positions::{ContainerPosition, PositionStore};
use crate::telemetry::{LogThrottle, TelemetryEvent};

pub(super) async fn run_committer(
    settings: Arc<Settings>,
    mut store: PositionStore,
    mut done: oneshot::Receiver<()>,
) {
    let flush = settings.config.flush_interval;
    let mut ticker = tokio::time::interval(flush.min(Duration::from_millis(250)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_save = Instant::now();
    let mut last_checkpoint = Instant::now();
    let mut log = LogThrottle::new(Duration::from_secs(30));
    let mut finished = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = &mut done, if !finished => finished = true,
        }
        let dirty = settings.shared.dirty.load(Ordering::Acquire);
        // Not while the engine is unwatched, not even at the end: a save would tell the next
        // start that containers which ran meanwhile were seen. Cursor moves since the last
        // save are then read again (duplicates), never skipped.
        let watching = settings.shared.watching.load(Ordering::Acquire);
        if watching && (finished || (dirty && last_save.elapsed() >= flush)) {
            settings.shared.dirty.store(false, Ordering::Release);
            let containers = snapshot(&settings);
            let fault_name = settings.key.to_string();
            let saved = crate::blocking::run(move || {
                crate::fault::point("docker_positions_save", &fault_name);
                let result = store.save_containers(&containers);
                (store, result)
            })
            .await;
            // Cancelled: the runtime is going away, nothing more can be saved.
            let Ok((returned, result)) = saved else {
                return;
            };
            store = returned;
            match result {
                Ok(()) => last_save = Instant::now(),
                Err(error) => {
                    settings.shared.dirty.store(true, Ordering::Release);
                    PositionsSaveFailed {
                        attrs: &settings.attrs,
                        what: "save",
                        error: &error,
                        log: &mut log,
                    }
                    .emit();
                }
            }
        }
        if finished || last_checkpoint.elapsed() >= settings.config.checkpoint_interval {
            last_checkpoint = Instant::now();
            let checkpointed = crate::blocking::run(move || {
                let result = store.checkpoint();
                (store, result)
            })
            .await;
            let Ok((returned, result)) = checkpointed else {
                return;
            };
            store = returned;
            if let Err(error) = result
                && error.kind() != std::io::ErrorKind::NotFound
            {
                PositionsSaveFailed {
                    attrs: &settings.attrs,
                    what: "checkpoint",
                    error: &error,
                    log: &mut log,
                }
                .emit();
            }
        }
        if finished {
            tracing::debug!(source = %settings.key, "Container positions committer finished.");
            return;
        }
    }
}

/// The cursors to save, sorted by name; removed containers past the retention are dropped.
fn snapshot(settings: &Settings) -> Vec<ContainerPosition> {
    let retention = i64::try_from(settings.config.removed_retention.as_nanos()).unwrap_or(i64::MAX);
    let now = now_ns();
    settings.shared.with_table(|table| {
        forget_expired(table, now, retention);
        let mut containers: Vec<ContainerPosition> =
            table.values().map(|e| e.position.clone()).collect();
        containers.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        containers
    })
}

/// Drops the cursors of containers seen removed `retention` ns or more before `now`; the others
/// (present containers, and removed ones still draining or within the grace period) stay.
fn forget_expired(table: &mut HashMap<String, Entry>, now: i64, retention: i64) {
    table.retain(|_, entry| {
        entry
            .position
            .removed_ns
            .is_none_or(|removed| now.saturating_sub(removed) < retention)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, removed_ns: Option<i64>) -> (String, Entry) {
        let position = ContainerPosition {
            id: id.to_string(),
            name: id.to_string(),
            image: "img".to_string(),
            read_ns: 5,
            committed_ns: 5,
            committed_hash: 1,
            removed_ns,
            updated_at: String::new(),
        };
        (
            id.to_string(),
            Entry {
                position,
                frozen: false,
            },
        )
    }

    #[test]
    fn a_removed_containers_cursor_is_kept_for_the_retention_then_forgotten() {
        let hour = 3_600_000_000_000i64;
        let now = 100 * hour;
        let mut table: HashMap<String, Entry> = [
            entry("running", None),
            entry("just-removed", Some(now - 1)),
            entry("removed-within", Some(now - hour + 1)),
            entry("removed-at-the-limit", Some(now - hour)),
            entry("removed-long-ago", Some(now - 10 * hour)),
        ]
        .into_iter()
        .collect();
        forget_expired(&mut table, now, hour);
        let mut kept: Vec<&str> = table.keys().map(String::as_str).collect();
        kept.sort_unstable();
        assert_eq!(kept, ["just-removed", "removed-within", "running"]);
    }
}
