//! The replicated state's types on the wire, as protobuf: conversions
//! between [`crate::state`] and `baton_proto`.
//!
//! Evolution rules: a field's number and type never change and a removed
//! field's number is never reused; fields are added only where their
//! absence keeps the old meaning; a decoder keeps what it does not know
//! safe (an unknown rejection kind is shown by its text).

pub mod json;
pub mod propose;
pub mod rejection;
