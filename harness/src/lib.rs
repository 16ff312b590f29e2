//! The load-profile harness of log-capturer: load generators, a Loki-compatible receiver and
//! reports. It depends on both the engine and the components, never the other way round.

pub mod receiver;

pub use log_capturer as engine;
pub use log_capturer_components as components;
