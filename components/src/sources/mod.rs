//! Sources: where events come from.

pub mod file;
pub mod generator;
