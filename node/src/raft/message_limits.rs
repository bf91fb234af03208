//! How large a message between nodes may be, in one place, so that no
//! message the cluster produces exceeds what its peers accept.
//!
//! The chain, from the task up: `[limits]` caps a task's state and config
//! (config validation refuses caps whose commands would not fit); a command
//! is at most [`MAX_COMMAND_BYTES`] encoded (the proposer and the forwarder
//! refuse a larger one before it reaches Raft); the proposer batches commands
//! into entries of at most [`MAX_BATCH_BYTES`] (a lone larger command goes
//! alone); an AppendEntries carries entries up to [`APPEND_BUDGET_BYTES`]
//! (the log reader stops there, always sending at least one); and every
//! service between nodes accepts [`PEER_MAX_MESSAGE_BYTES`], which holds the
//! largest AppendEntries with room to spare. Replication allows for what it
//! sends: [`rpc_timeout`] adds time for each byte to openraft's
//! heartbeat-based timeout, so a large but legal entry replicates instead of
//! timing out and being resent for ever.

use std::io::Write;
use std::time::Duration;

use serde::Serialize;

/// The decode and encode limit of every service between nodes (Raft and
/// Peer), on servers and clients alike.
pub const PEER_MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The largest command, encoded, that a node proposes or forwards.
pub const MAX_COMMAND_BYTES: usize = 8 * 1024 * 1024;

/// The most encoded bytes the proposer puts in one entry of several
/// commands.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// The most entry bytes one AppendEntries carries (its first entry goes
/// whatever its size, so an entry is never stuck).
pub const APPEND_BUDGET_BYTES: u64 = 8 * 1024 * 1024;

/// Room for an AppendEntries' envelope (vote, log ids, field names) and for
/// a snapshot's metadata.
pub const ENVELOPE_BYTES: usize = 64 * 1024;

/// The slowest transfer between nodes that replication allows for: a
/// loaded two-core machine encodes, sends, decodes and fsyncs at least this
/// many bytes a second.
pub const MIN_PEER_BYTES_PER_SEC: u64 = 2 * 1024 * 1024;

// The largest AppendEntries (a full budget, then one more entry of the
// largest kind) fits what peers accept.
const _: () = assert!(
    APPEND_BUDGET_BYTES as usize + MAX_COMMAND_BYTES + ENVELOPE_BYTES <= PEER_MAX_MESSAGE_BYTES,
    "an AppendEntries may exceed the peer message limit"
);
const _: () = assert!(MAX_BATCH_BYTES <= MAX_COMMAND_BYTES);

/// The most bytes a command carrying `state_bytes` of task state or
/// `config_bytes` of task config takes encoded: JSON writes a byte as up to
/// four characters ("255,"), plus the task's name (at most 128 bytes) and
/// the command's other fields; a task's spec may also carry a CA and HTTP
/// grants, at most [`HTTP_GRANTS_BYTES`], and secrets, at most
/// [`SECRETS_BYTES`].
pub fn worst_command_bytes(state_bytes: usize, config_bytes: usize) -> usize {
    4 * state_bytes.max(config_bytes) + HTTP_GRANTS_BYTES + SECRETS_BYTES + ENVELOPE_BYTES
}

/// The most a task's sealed secrets take in a command: nonces and sealed
/// values as JSON numbers, names, key ids and field names.
pub const SECRETS_BYTES: usize = {
    use crate::state::secrets::{MAX_SECRET_BYTES, MAX_SECRET_NAME_BYTES, MAX_SECRETS, SEALED_OVERHEAD_BYTES};
    MAX_SECRETS * (4 * (MAX_SECRET_BYTES + SEALED_OVERHEAD_BYTES) + MAX_SECRET_NAME_BYTES + 64)
};

/// The most a task's HTTP grants and CA take in a command: the CA's bytes
/// as JSON numbers, and each grant's `https://HOST:PORT` with its quotes.
pub const HTTP_GRANTS_BYTES: usize =
    4 * crate::runtime::MAX_HTTP_CA_BYTES + crate::runtime::MAX_HTTP_GRANTS * (crate::runtime::MAX_HOST_BYTES + 20);

/// The timeout of one replication call that sends `bytes`: openraft's
/// (from the heartbeat interval) plus the time the slowest allowed transfer
/// takes.
pub fn rpc_timeout(base: Duration, bytes: usize) -> Duration {
    let micros = bytes as u64 * 1_000_000 / MIN_PEER_BYTES_PER_SEC;
    base + Duration::from_micros(micros)
}

/// How many bytes `value` takes in the replicated formats (JSON, for now),
/// without building it.
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    let mut counter = Counter(0);
    // Writing to a counter cannot fail, and our types always serialize.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

struct Counter(usize);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MAX_CAP_BYTES;
    use crate::state::tasks::{TaskSpec, TickCommit};
    use crate::types::Command;

    fn tick_with_state(bytes: usize) -> Command {
        Command::CommitTick(TickCommit {
            task: "t".repeat(128),
            epoch: u64::MAX,
            tick: u64::MAX,
            node: u64::MAX,
            state: vec![255; bytes],
            next_due_ms: u64::MAX,
            committed_at_ms: u64::MAX,
            version: u32::MAX,
        })
    }

    #[test]
    fn encoded_len_is_the_length_of_the_encoding() {
        let command = tick_with_state(1000);
        assert_eq!(encoded_len(&command), serde_json::to_vec(&command).unwrap().len());
    }

    #[test]
    fn the_largest_legal_commands_fit_the_command_limit() {
        let tick = tick_with_state(MAX_CAP_BYTES);
        assert!(encoded_len(&tick) <= worst_command_bytes(MAX_CAP_BYTES, 0));
        let mut spec = TaskSpec::counter_every_second(&"t".repeat(128));
        spec.config = vec![255; MAX_CAP_BYTES];
        spec.http_ca = vec![255; crate::runtime::MAX_HTTP_CA_BYTES];
        let host = "h".repeat(crate::runtime::MAX_HOST_BYTES);
        spec.allow_http = (0..crate::runtime::MAX_HTTP_GRANTS)
            .map(|port| format!("https://{host}:{}", 65535 - port))
            .collect();
        let keys = crate::secrets::Keyring::of(&[[7; crate::secrets::KEY_BYTES]]);
        let largest = [255; crate::state::secrets::MAX_SECRET_BYTES];
        spec.secrets = (0..crate::state::secrets::MAX_SECRETS)
            .map(|i| {
                keys.seal(&spec.name, &format!("{:n<64}", format!("s{i:x}")), &largest)
                    .unwrap()
            })
            .collect();
        assert_eq!(spec.secrets[0].name.len(), crate::state::secrets::MAX_SECRET_NAME_BYTES);
        let add = Command::AddTask(spec);
        assert!(encoded_len(&add) <= worst_command_bytes(0, MAX_CAP_BYTES));
        assert!(worst_command_bytes(MAX_CAP_BYTES, MAX_CAP_BYTES) <= MAX_COMMAND_BYTES);
    }

    #[test]
    fn a_replication_call_gets_time_for_its_bytes() {
        let base = Duration::from_millis(37);
        assert_eq!(rpc_timeout(base, 0), base);
        // 2 MiB at the slowest allowed rate: one more second.
        assert_eq!(rpc_timeout(base, 2 * 1024 * 1024), base + Duration::from_secs(1));
        assert_eq!(
            rpc_timeout(base, MAX_COMMAND_BYTES),
            base + Duration::from_secs(4),
            "the largest command"
        );
    }
}
