//! Transforms: synchronous functions over a batch.

pub mod dedup;
pub mod filter;

use crate::{EventBatch, FunctionTransform};

/// Passes batches on unchanged. For topologies under test and benchmarks.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PassthroughConfig {}

/// The `passthrough` transform.
#[derive(Debug, Default)]
pub struct Passthrough;

impl FunctionTransform for Passthrough {
    fn transform(&mut self, _batch: &mut EventBatch) {}
}
