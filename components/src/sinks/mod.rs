//! Sinks: where events go. Each is a [`crate::dispatcher::SinkService`].

pub mod blackhole;
pub mod console;
pub mod encoding;
pub mod file;
#[cfg(feature = "sinks-loki")]
pub mod loki;
