//! The load-profile harness of log-capturer: load generators, a Loki-compatible receiver, the
//! run loop that measures the shipper as a separate process, and reports. It depends on both the
//! engine and the components, never the other way round.

pub mod docker_load;
pub mod load;
pub mod procfs;
pub mod profile;
pub mod receiver;
pub mod report;
pub mod run;
pub mod soak;

pub use log_capturer as engine;
pub use log_capturer_components as components;
