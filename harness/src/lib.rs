//! The load-profile harness of log-capturer (issue 5 fills it in): load generators, a
//! Loki-compatible receiver and reports. For now it only pins the dependency direction
//! `harness -> {log-capturer, log-capturer-components}`.

pub use log_capturer as engine;
pub use log_capturer_components as components;
