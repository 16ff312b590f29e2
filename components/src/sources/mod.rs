//! Sources: where events come from.

#[cfg(feature = "sources-docker")]
pub mod docker;
#[cfg(feature = "sources-file")]
pub mod file;
pub mod generator;
pub mod producer;
