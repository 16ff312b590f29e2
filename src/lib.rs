//! The log-capturer engine: configuration, topology assembly, telemetry, the HTTP API, reload,
//! and the command line. The components themselves live in `log-capturer-components`.

pub mod api;
pub mod app;
pub mod cli;
pub mod client;
pub mod config;
pub mod otlp;
pub mod tap;
pub mod tasks;
pub mod telemetry;
pub mod topology;

pub use log_capturer_components as components;
