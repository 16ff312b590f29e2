//! The `file` source (work in progress).

pub mod positions;
