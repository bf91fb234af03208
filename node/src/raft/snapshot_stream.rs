//! A snapshot sent as a stream of chunks, so that no message grows with the
//! cluster's state: the sender cuts the data into [`SNAPSHOT_CHUNK_BYTES`]
//! pieces, the first of which carries the vote, the metadata and the total
//! size; the receiver gathers them into one buffer sized from the start and
//! refuses a stream that carries more or less than it announced.

use std::sync::Arc;

use baton_proto::SnapshotChunk;

use super::message_limits::{ENVELOPE_BYTES, PEER_MAX_MESSAGE_BYTES};

/// The most snapshot data one chunk carries: far below what peers accept,
/// and large enough that a chunk's envelope costs nothing.
pub const SNAPSHOT_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// The most a receiver reserves up front on a stream's word (the buffer
/// grows past it only as data actually arrives).
const MAX_RESERVE_BYTES: u64 = 64 * 1024 * 1024;

/// How many chunks a snapshot of `total` bytes takes: at least one, the one
/// with the header.
pub fn chunk_count(total: usize, chunk_bytes: usize) -> usize {
    total.div_ceil(chunk_bytes).max(1)
}

/// Whether a snapshot of `total` bytes fits one message of the Raft service
/// (for a peer of an earlier release, without the streaming call).
pub fn fits_one_message(total: usize) -> bool {
    total + ENVELOPE_BYTES <= PEER_MAX_MESSAGE_BYTES
}

/// The chunks of one snapshot stream, made one at a time as they are sent.
pub fn chunks(
    vote: Vec<u8>,
    meta: Vec<u8>,
    data: Arc<Vec<u8>>,
    chunk_bytes: usize,
) -> impl Iterator<Item = SnapshotChunk> + Send + 'static {
    assert!(chunk_bytes > 0, "chunks must carry data");
    let total_bytes = data.len() as u64;
    let count = chunk_count(data.len(), chunk_bytes);
    let mut header = Some((vote, meta));
    (0..count).map(move |i| {
        let start = i * chunk_bytes;
        let end = (start + chunk_bytes).min(data.len());
        let (vote, meta) = header.take().unwrap_or_default();
        SnapshotChunk {
            vote,
            meta,
            total_bytes: if i == 0 { total_bytes } else { 0 },
            data: data[start..end].to_vec(),
        }
    })
}

/// Why a snapshot stream was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssemblyError {
    #[error("the snapshot stream carried no chunk")]
    Empty,
    #[error("the snapshot stream's first chunk has no vote or no metadata")]
    NoHeader,
    #[error("a snapshot chunk after the first carries a header; chunks must follow one first chunk")]
    StrayHeader,
    #[error("the snapshot stream carries more than the {total} bytes its first chunk announced")]
    TooLong { total: u64 },
    #[error("the snapshot stream ended after {received} of the {total} bytes it announced")]
    Short { received: u64, total: u64 },
}

/// A snapshot being received, chunk by chunk.
#[derive(Debug)]
pub struct SnapshotAssembly {
    vote: Vec<u8>,
    meta: Vec<u8>,
    total: u64,
    data: Vec<u8>,
}

/// A whole snapshot as received: the vote and metadata still encoded.
#[derive(Debug, PartialEq, Eq)]
pub struct ReceivedSnapshot {
    pub vote: Vec<u8>,
    pub meta: Vec<u8>,
    pub data: Vec<u8>,
}

impl SnapshotAssembly {
    /// Starts from a stream's first chunk, or refuses a stream that has
    /// none.
    pub fn start(first: Option<SnapshotChunk>) -> Result<Self, AssemblyError> {
        let first = first.ok_or(AssemblyError::Empty)?;
        if first.vote.is_empty() || first.meta.is_empty() {
            return Err(AssemblyError::NoHeader);
        }
        let mut assembly = SnapshotAssembly {
            vote: first.vote,
            meta: first.meta,
            total: first.total_bytes,
            data: Vec::with_capacity(first.total_bytes.min(MAX_RESERVE_BYTES) as usize),
        };
        assembly.append(&first.data)?;
        Ok(assembly)
    }

    /// The first chunk's vote and metadata, still encoded: decode them
    /// before taking the rest.
    pub fn header(&self) -> (&[u8], &[u8]) {
        (&self.vote, &self.meta)
    }

    /// Adds the next chunk.
    pub fn push(&mut self, chunk: SnapshotChunk) -> Result<(), AssemblyError> {
        if !chunk.vote.is_empty() || !chunk.meta.is_empty() || chunk.total_bytes != 0 {
            return Err(AssemblyError::StrayHeader);
        }
        self.append(&chunk.data)
    }

    fn append(&mut self, data: &[u8]) -> Result<(), AssemblyError> {
        if self.data.len() as u64 + data.len() as u64 > self.total {
            return Err(AssemblyError::TooLong { total: self.total });
        }
        self.data.extend_from_slice(data);
        Ok(())
    }

    /// The whole snapshot, once the stream has ended.
    pub fn finish(self) -> Result<ReceivedSnapshot, AssemblyError> {
        let received = self.data.len() as u64;
        if received != self.total {
            return Err(AssemblyError::Short {
                received,
                total: self.total,
            });
        }
        Ok(ReceivedSnapshot {
            vote: self.vote,
            meta: self.meta,
            data: self.data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assemble(chunks: impl IntoIterator<Item = SnapshotChunk>) -> Result<ReceivedSnapshot, AssemblyError> {
        let mut chunks = chunks.into_iter();
        let mut assembly = SnapshotAssembly::start(chunks.next())?;
        for chunk in chunks {
            assembly.push(chunk)?;
        }
        assembly.finish()
    }

    fn header() -> (Vec<u8>, Vec<u8>) {
        (b"{\"vote\":1}".to_vec(), b"{\"meta\":2}".to_vec())
    }

    #[test]
    fn any_size_round_trips_in_chunks_no_larger_than_the_limit() {
        for size in [0usize, 1, 9, 10, 11, 99, 100, 101] {
            let data: Vec<u8> = (0..size).map(|i| i as u8).collect();
            let (vote, meta) = header();
            let chunks: Vec<_> = chunks(vote.clone(), meta.clone(), Arc::new(data.clone()), 10).collect();
            assert_eq!(chunks.len(), size.div_ceil(10).max(1), "size {size}");
            assert!(chunks.iter().all(|c| c.data.len() <= 10));
            assert_eq!(
                assemble(chunks),
                Ok(ReceivedSnapshot { vote, meta, data }),
                "size {size}"
            );
        }
    }

    #[test]
    fn only_the_first_chunk_carries_the_header() {
        let (vote, meta) = header();
        let chunks: Vec<_> = chunks(vote, meta, Arc::new(vec![7; 25]), 10).collect();
        assert_eq!(chunks[0].total_bytes, 25);
        assert!(
            chunks[1..]
                .iter()
                .all(|c| c.vote.is_empty() && c.meta.is_empty() && c.total_bytes == 0)
        );
    }

    #[test]
    fn a_stream_with_more_or_less_than_it_announced_is_refused() {
        let (vote, meta) = header();
        let mut all: Vec<_> = chunks(vote.clone(), meta.clone(), Arc::new(vec![1; 30]), 10).collect();
        let last = all.pop().unwrap();
        assert_eq!(
            assemble(all.clone()),
            Err(AssemblyError::Short {
                received: 20,
                total: 30
            })
        );
        all.push(last.clone());
        all.push(last);
        assert_eq!(assemble(all), Err(AssemblyError::TooLong { total: 30 }));

        let mut lying: Vec<_> = chunks(vote, meta, Arc::new(vec![1; 30]), 10).collect();
        lying[0].total_bytes = 5;
        assert_eq!(assemble(lying), Err(AssemblyError::TooLong { total: 5 }));
    }

    #[test]
    fn a_stream_without_its_header_or_with_two_is_refused() {
        assert_eq!(assemble([]).unwrap_err(), AssemblyError::Empty);
        let (vote, meta) = header();
        let mut chunks: Vec<_> = chunks(vote, meta, Arc::new(vec![1; 30]), 10).collect();
        let mut headless = chunks.clone();
        headless[0].vote.clear();
        assert_eq!(assemble(headless).unwrap_err(), AssemblyError::NoHeader);
        chunks[2] = chunks[0].clone();
        assert_eq!(assemble(chunks).unwrap_err(), AssemblyError::StrayHeader);
    }
}
