//! Sources: where events come from.

pub mod generator;
pub mod file;
