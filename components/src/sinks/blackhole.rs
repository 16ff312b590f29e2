//! The `blackhole` sink: accepts and discards everything. Delivered counts still move, which
//! makes it the reference sink for throughput measurements.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::EventBatch;
use crate::dispatcher::{PartitionKey, SendOutcome, SinkRequest, SinkService};

/// Configuration of the `blackhole` sink (no settings of its own).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BlackholeConfig {}

/// The running `blackhole` sink.
#[derive(Debug, Default)]
pub struct Blackhole;

impl SinkService for Blackhole {
    fn request(
        &self,
        _batch: &EventBatch,
        _partition: &PartitionKey,
    ) -> Result<SinkRequest, SendOutcome> {
        Ok(SinkRequest::new(()))
    }

    fn send<'a>(
        &'a self,
        _batch: &'a EventBatch,
        _request: &'a mut SinkRequest,
    ) -> BoxFuture<'a, SendOutcome> {
        Box::pin(std::future::ready(SendOutcome::Delivered))
    }
}

impl crate::component::Component for BlackholeConfig {
    const TYPE: &'static str = "blackhole";
}

impl crate::component::SinkComponent for BlackholeConfig {
    fn build(
        &self,
        _cx: &crate::component::SinkContext,
    ) -> Result<std::sync::Arc<dyn SinkService>, crate::BuildError> {
        Ok(std::sync::Arc::new(Blackhole))
    }
}
