//! The replicated state's vocabulary: plain data and the rules over it, with
//! no tokio, tonic, openraft or redb inside.

pub mod member;
pub mod rejection;
