//! The committer: saves the containers' committed cursors and checkpoints them.
//!
//! Guarantees:
//! - Cursors are saved (atomically, see [`crate::positions`]) at most `flush_interval` after
//!   one moved, and once more after every container task has ended (at shutdown, after the
//!   last acknowledgement); checkpoints every `checkpoint_interval` and at the end.
//! - A removed container's cursor is dropped `removed_retention` after it was seen removed.
//! - A failing save is retried at the next flush, logged once and then at most every 30 s.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::Settings;
use super::events::PositionsSaveFailed;
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
        if finished || (dirty && last_save.elapsed() >= flush) {
            settings.shared.dirty.store(false, Ordering::Release);
            let containers = snapshot(&settings);
            let (returned, result) = tokio::task::spawn_blocking(move || {
                let result = store.save_containers(&containers);
                (store, result)
            })
            .await
            .map_err(|join| join.to_string())
            .map(|(store, result)| (Some(store), result.map_err(|e| e.to_string())))
            .unwrap_or_else(|join| (None, Err(join)));
            let Some(returned) = returned else {
                tracing::error!(source = %settings.key, "Container positions store lost; cursors are no longer saved.");
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
            let (returned, result) = tokio::task::spawn_blocking(move || {
                let result = store.checkpoint();
                (store, result)
            })
            .await
            .map(|(store, result)| (Some(store), result))
            .unwrap_or_else(|join| (None, Err(std::io::Error::other(join.to_string()))));
            let Some(returned) = returned else {
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
        table.retain(|_, entry| {
            entry
                .position
                .removed_ns
                .is_none_or(|removed| now.saturating_sub(removed) < retention)
        });
        let mut containers: Vec<ContainerPosition> =
            table.values().map(|e| e.position.clone()).collect();
        containers.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        containers
    })
}
