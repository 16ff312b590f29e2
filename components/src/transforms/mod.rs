//! Transforms: functions over a batch ([`FunctionTransform`]), stateful stages over the
//! stream of batches ([`crate::component::StreamTransform`]) and stages with named outputs
//! ([`crate::component::RouteTransform`]: `route`). [`condition`] is the event matching that
//! `filter` and `route` share.

pub mod condition;
pub mod dedup;
pub mod filter;
pub mod json;
pub mod labels;
pub mod logfmt;
pub mod multiline;
pub mod parse;
pub mod regex_parser;
pub mod route;
#[cfg(test)]
pub mod testing;
pub mod throttle;
pub mod timestamp;

use crate::component::{
    Component, FunctionTransform, Transform, TransformComponent, TransformContext,
};
use crate::{BuildError, EventBatch};

/// Passes batches on unchanged. For topologies under test and benchmarks.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PassthroughConfig {}

/// The `passthrough` transform.
#[derive(Debug, Default)]
pub struct Passthrough;

impl FunctionTransform for Passthrough {
    fn transform(&mut self, _batch: &mut EventBatch) {}
}

impl Component for PassthroughConfig {
    const TYPE: &'static str = "passthrough";
}

impl TransformComponent for PassthroughConfig {
    fn build(&self, _cx: TransformContext<Self>) -> Result<Transform, BuildError> {
        Ok(Transform::function(Passthrough))
    }
}
