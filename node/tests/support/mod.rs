//! Shared pieces of the in-process tests. Each test binary uses a part of
//! them, so the rest is dead code to it.
#![allow(dead_code)]

pub mod cluster;
pub mod heart;
pub mod router;
