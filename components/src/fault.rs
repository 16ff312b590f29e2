//! Panics on purpose, so that the process tests can show what a panic does (debug builds only).
//!
//! `LC_TEST_FAULT=KIND:NAME@N` makes the `N`-th call of [`point`] with that kind and
//! component name panic (`transform:dedup@3`: the dedup transform's third batch). The points sit
//! where a bug would hurt most: a transform's batch (`transform`), the file source's reader turn
//! that sent lines (`file_reader`), its committer's commit (`file_committer`) and positions
//! save (`file_positions_save`), the docker source's supervisor starting to follow a selected
//! container (`docker_supervisor`) and its cursors' save (`docker_positions_save`), the file
//! sink's write (`file_sink_write`) and a dead-letter queue's append (`dlq_write`). The last
//! four run on blocking threads (see `crate::blocking`).
//!
//! Guarantees: in release builds [`point`] is an empty function, and the variable is never read.
//! In debug builds it is read once; an unset or malformed variable makes every point a no-op.

#[cfg(debug_assertions)]
mod armed {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Fault {
        point: String,
        at_call: u64,
        calls: AtomicU64,
    }

    fn configured() -> Option<&'static Fault> {
        static FAULT: OnceLock<Option<Fault>> = OnceLock::new();
        FAULT
            .get_or_init(|| {
                let value = std::env::var("LC_TEST_FAULT").ok()?;
                let (point, at_call) = value.rsplit_once('@')?;
                Some(Fault {
                    point: point.to_string(),
                    at_call: at_call.parse().ok()?,
                    calls: AtomicU64::new(0),
                })
            })
            .as_ref()
    }

    pub fn point(kind: &str, name: &str) {
        let Some(fault) = configured() else { return };
        let matches = fault
            .point
            .split_once(':')
            .is_some_and(|(k, n)| k == kind && n == name);
        if matches && fault.calls.fetch_add(1, Ordering::Relaxed) + 1 == fault.at_call {
            panic!("fault injected at {kind}:{name} (LC_TEST_FAULT)");
        }
    }
}

/// Panics here when `LC_TEST_FAULT` names this point and call (debug builds only).
#[cfg(debug_assertions)]
pub fn point(kind: &str, name: &str) {
    armed::point(kind, name);
}

/// Does nothing: faults are injected in debug builds only.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn point(_kind: &str, _name: &str) {}
