//! The `loki` sink (work in progress).

pub mod proto;
