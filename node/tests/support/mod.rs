//! Shared pieces of the in-process tests.

pub mod cluster;
pub mod router;
