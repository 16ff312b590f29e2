//! The `console` sink: writes events to standard output (`text` by default, or `json`).

use std::io::Write;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::encoding::{Encoding, encode};
use crate::EventBatch;
use crate::dispatcher::{PartitionKey, SendOutcome, SinkRequest, SinkService};

/// Configuration of the `console` sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsoleConfig {
    /// `text` (the line as it is) or `json`.
    pub encoding: Encoding,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            encoding: Encoding::Text,
        }
    }
}

/// The running `console` sink.
#[derive(Debug)]
pub struct Console {
    encoding: Encoding,
}

impl ConsoleConfig {
    pub fn build(&self) -> Console {
        Console {
            encoding: self.encoding,
        }
    }
}

impl SinkService for Console {
    fn request(
        &self,
        batch: &EventBatch,
        _partition: &PartitionKey,
    ) -> Result<SinkRequest, SendOutcome> {
        let mut out = Vec::with_capacity(batch.len() * 128);
        for event in &batch.events {
            encode(self.encoding, event, &mut out);
        }
        Ok(SinkRequest::new(out))
    }

    fn send<'a>(
        &'a self,
        _batch: &'a EventBatch,
        request: &'a mut SinkRequest,
    ) -> BoxFuture<'a, SendOutcome> {
        let out: &[u8] = request.get::<Vec<u8>>().map_or(&[], Vec::as_slice);
        let outcome = match std::io::stdout().lock().write_all(out) {
            Ok(()) => SendOutcome::Delivered,
            Err(err) => SendOutcome::Retry {
                reason: "io_error",
                detail: format!("writing to stdout failed: {err}"),
                retry_after: None,
            },
        };
        Box::pin(std::future::ready(outcome))
    }
}

impl crate::component::Component for ConsoleConfig {
    const TYPE: &'static str = "console";
}

impl crate::component::SinkComponent for ConsoleConfig {
    fn build(
        &self,
        _cx: &crate::component::SinkContext,
    ) -> Result<std::sync::Arc<dyn SinkService>, crate::BuildError> {
        Ok(std::sync::Arc::new(ConsoleConfig::build(self)))
    }
}
