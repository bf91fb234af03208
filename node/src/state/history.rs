//! A task's recent committed ticks, for `tasks history`, kept compact.
//!
//! Every node keeps every task's last [`HISTORY_LEN`] ticks in memory, so
//! their size is most of a task's cost at scale: as plain records, 256 of
//! them take 10 KiB per task on every node. Consecutive ticks of a task
//! differ little (the tick number by one, the same epoch, node and module
//! version, the time by about the period), so the oldest record is kept
//! whole and each later one as a delta from the one before it: a flags byte
//! and the time's delta, about 3 bytes a tick.
//!
//! In JSON and in protobuf below cluster version 12 a [`History`] reads and
//! writes exactly the list of records it stands for. From cluster version
//! 12 (`COMPACT_HISTORY`) a snapshot keeps it as it is held here, the oldest
//! record and the deltas ([`History::deltas`], [`History::from_deltas`]):
//! at 120 ticks that is 360 bytes against about 2 KiB of records, and the
//! histories were most of a snapshot. Two histories of the same records are
//! equal, however they were read.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::state::member::NodeId;

/// Committed ticks kept per task for `tasks history`.
pub const HISTORY_LEN: usize = 256;

/// One committed tick, for `tasks history`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickRecord {
    pub tick: u64,
    pub epoch: u64,
    pub node: NodeId,
    pub committed_at_ms: u64,
    /// The module version that ran it.
    #[serde(default)]
    pub version: u32,
}

/// The flags byte of a delta: which fields are as the usual next tick's.
const NEXT_TICK: u8 = 1;
const SAME_EPOCH: u8 = 1 << 1;
const SAME_NODE: u8 = 1 << 2;
const SAME_VERSION: u8 = 1 << 3;

/// A task's committed ticks, oldest first (see the module docs).
///
/// The encoding of a sequence of records is canonical (the oldest whole,
/// each later one as its delta from the one before), so equal histories are
/// equal field by field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// The oldest record and the newest (the same when there is one).
    ends: Option<(TickRecord, TickRecord)>,
    /// Each record after the oldest, as its delta from the one before.
    deltas: Vec<u8>,
    len: usize,
}

impl History {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The oldest record kept.
    pub fn front(&self) -> Option<TickRecord> {
        self.ends.map(|(first, _)| first)
    }

    /// The newest record.
    pub fn back(&self) -> Option<TickRecord> {
        self.ends.map(|(_, last)| last)
    }

    /// The oldest record and each later one as its delta from the one
    /// before, as held: what a snapshot keeps from cluster version 12.
    pub fn deltas(&self) -> (Option<TickRecord>, &[u8]) {
        (self.front(), &self.deltas)
    }

    /// The history of `first` and the records `deltas` encode after it, as
    /// [`History::deltas`] gave them. The bytes come from outside (a
    /// snapshot), so each delta is checked, and the history is encoded anew:
    /// equal to one built from the same records whatever the bytes' form.
    pub fn from_deltas(first: TickRecord, mut deltas: &[u8]) -> Result<History, MalformedDeltas> {
        let mut history = History::default();
        history.push_unbounded(first);
        let mut prev = first;
        while !deltas.is_empty() {
            let (next, used) = try_decode_delta(&prev, deltas).ok_or(MalformedDeltas { record: history.len })?;
            history.push_unbounded(next);
            prev = next;
            deltas = &deltas[used..];
        }
        Ok(history)
    }

    /// The records, oldest first.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            next: self.front(),
            deltas: &self.deltas,
        }
    }

    /// Appends `record`, dropping the oldest once [`HISTORY_LEN`] are kept.
    pub fn push(&mut self, record: TickRecord) {
        // (A history read back longer than that, which no release writes,
        // comes down to the limit here too.)
        while self.len >= HISTORY_LEN {
            self.pop_front();
        }
        self.push_unbounded(record);
    }

    /// Appends `record` whatever the length (a history read back keeps what
    /// it was written with).
    fn push_unbounded(&mut self, record: TickRecord) {
        match &mut self.ends {
            None => self.ends = Some((record, record)),
            Some((_, last)) => {
                encode_delta(last, &record, &mut self.deltas);
                *last = record;
            }
        }
        self.len += 1;
    }

    /// Drops the oldest record.
    fn pop_front(&mut self) {
        let Some((first, _)) = &mut self.ends else {
            return;
        };
        if self.len == 1 {
            *self = History::default();
            return;
        }
        let (next, used) = decode_delta(first, &self.deltas);
        *first = next;
        self.deltas.drain(..used);
        self.len -= 1;
    }
}

impl FromIterator<TickRecord> for History {
    fn from_iter<I: IntoIterator<Item = TickRecord>>(records: I) -> Self {
        let mut history = History::default();
        for record in records {
            history.push_unbounded(record);
        }
        history
    }
}

/// The records of a [`History`], oldest first.
pub struct Iter<'a> {
    next: Option<TickRecord>,
    deltas: &'a [u8],
}

impl Iterator for Iter<'_> {
    type Item = TickRecord;

    fn next(&mut self) -> Option<TickRecord> {
        let current = self.next.take()?;
        if !self.deltas.is_empty() {
            let (next, used) = decode_delta(&current, self.deltas);
            self.next = Some(next);
            self.deltas = &self.deltas[used..];
        }
        Some(current)
    }
}

impl Serialize for History {
    /// As the list of its records, as before it was compact.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for History {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Vec::<TickRecord>::deserialize(deserializer)?.into_iter().collect())
    }
}

/// Appends `next` as its delta from `prev`.
fn encode_delta(prev: &TickRecord, next: &TickRecord, out: &mut Vec<u8>) {
    let mut flags = 0;
    if next.tick == prev.tick.wrapping_add(1) {
        flags |= NEXT_TICK;
    }
    if next.epoch == prev.epoch {
        flags |= SAME_EPOCH;
    }
    if next.node == prev.node {
        flags |= SAME_NODE;
    }
    if next.version == prev.version {
        flags |= SAME_VERSION;
    }
    out.push(flags);
    if flags & NEXT_TICK == 0 {
        put_varint(out, zigzag(next.tick.wrapping_sub(prev.tick)));
    }
    if flags & SAME_EPOCH == 0 {
        put_varint(out, zigzag(next.epoch.wrapping_sub(prev.epoch)));
    }
    if flags & SAME_NODE == 0 {
        put_varint(out, next.node);
    }
    if flags & SAME_VERSION == 0 {
        put_varint(out, u64::from(next.version));
    }
    put_varint(out, zigzag(next.committed_at_ms.wrapping_sub(prev.committed_at_ms)));
}

/// Deltas that do not decode: record `record` (counting the oldest as 0)
/// is cut short, has a flag no release writes, or a field out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the tick history's delta for record {record} is malformed")]
pub struct MalformedDeltas {
    pub record: usize,
}

/// The record after `prev` from the delta at the start of `bytes`, and the
/// bytes it took. The held deltas are this module's own, so one that does
/// not decode is a bug, not bad input.
fn decode_delta(prev: &TickRecord, bytes: &[u8]) -> (TickRecord, usize) {
    try_decode_delta(prev, bytes).expect("a history's own deltas decode")
}

/// As [`decode_delta`], for bytes from outside: `None` if they are cut
/// short or not as [`encode_delta`] writes.
fn try_decode_delta(prev: &TickRecord, bytes: &[u8]) -> Option<(TickRecord, usize)> {
    let flags = *bytes.first()?;
    if flags & !(NEXT_TICK | SAME_EPOCH | SAME_NODE | SAME_VERSION) != 0 {
        return None;
    }
    let mut at = 1;
    let next = |at: &mut usize| {
        let (value, used) = get_varint(bytes.get(*at..)?)?;
        *at += used;
        Some(value)
    };
    let tick = match flags & NEXT_TICK {
        0 => prev.tick.wrapping_add(unzigzag(next(&mut at)?)),
        _ => prev.tick.wrapping_add(1),
    };
    let epoch = match flags & SAME_EPOCH {
        0 => prev.epoch.wrapping_add(unzigzag(next(&mut at)?)),
        _ => prev.epoch,
    };
    let node = match flags & SAME_NODE {
        0 => next(&mut at)?,
        _ => prev.node,
    };
    let version = match flags & SAME_VERSION {
        0 => u32::try_from(next(&mut at)?).ok()?,
        _ => prev.version,
    };
    let committed_at_ms = prev.committed_at_ms.wrapping_add(unzigzag(next(&mut at)?));
    let record = TickRecord {
        tick,
        epoch,
        node,
        committed_at_ms,
        version,
    };
    Some((record, at))
}

/// A difference taken with wrapping arithmetic, as a small number whether
/// it is small forwards or small backwards.
fn zigzag(delta: u64) -> u64 {
    let signed = delta as i64;
    ((signed << 1) ^ (signed >> 63)) as u64
}

fn unzigzag(value: u64) -> u64 {
    ((value >> 1) as i64 ^ -((value & 1) as i64)) as u64
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A varint and the bytes it took; `None` if it is cut short or holds more
/// than a `u64` (ten bytes, the last with the 64th bit alone).
fn get_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().take(10).enumerate() {
        // The tenth byte holds the 64th bit alone.
        if i == 9 && *byte > 1 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(tick: u64, epoch: u64, node: NodeId, at: u64, version: u32) -> TickRecord {
        TickRecord {
            tick,
            epoch,
            node,
            committed_at_ms: at,
            version,
        }
    }

    /// A task every 200 ms that moves once and is upgraded once.
    fn usual(n: u64) -> Vec<TickRecord> {
        (1..=n)
            .map(|t| {
                let moved = t > n / 2;
                record(
                    t,
                    3 + u64::from(moved),
                    if moved { 2 } else { 1 },
                    1_700_000_000_000 + t * 200,
                    1 + u32::from(t > n - 3),
                )
            })
            .collect()
    }

    #[test]
    fn it_keeps_the_records_it_was_given_in_order() {
        let records = usual(40);
        let history: History = records.iter().copied().collect();
        assert_eq!(history.len(), 40);
        assert_eq!(history.iter().collect::<Vec<_>>(), records);
        assert_eq!(history.front(), records.first().copied());
        assert_eq!(history.back(), records.last().copied());
        assert!(History::default().iter().next().is_none());
    }

    #[test]
    fn it_keeps_the_last_ticks_only_and_stays_equal_to_a_history_built_from_them() {
        let records = usual(HISTORY_LEN as u64 + 37);
        let mut history = History::default();
        for r in &records {
            history.push(*r);
        }
        let kept = &records[records.len() - HISTORY_LEN..];
        assert_eq!(history.len(), HISTORY_LEN);
        assert_eq!(history.iter().collect::<Vec<_>>(), kept);
        assert_eq!(history, kept.iter().copied().collect::<History>());
    }

    #[test]
    fn a_usual_tick_takes_about_three_bytes() {
        let history: History = usual(HISTORY_LEN as u64).into_iter().collect();
        assert!(
            history.deltas.len() <= 3 * HISTORY_LEN,
            "{} bytes",
            history.deltas.len()
        );
    }

    #[test]
    fn any_records_round_trip_even_backwards_and_at_the_extremes() {
        let records = vec![
            record(5, 9, 1, 1_000, 2),
            record(3, 2, 7, 900, 0),
            record(u64::MAX, u64::MAX, u64::MAX, u64::MAX, u32::MAX),
            record(0, 0, 0, 0, 0),
            record(1, 0, 0, 0, 0),
        ];
        let history: History = records.iter().copied().collect();
        assert_eq!(history.iter().collect::<Vec<_>>(), records);
        let mut popped = history.clone();
        popped.pop_front();
        assert_eq!(popped.iter().collect::<Vec<_>>(), records[1..]);
    }

    #[test]
    fn a_history_read_back_longer_than_the_limit_comes_down_to_it_with_the_next_tick() {
        let records = usual(HISTORY_LEN as u64 + 10);
        let mut history: History = records[..HISTORY_LEN + 5].iter().copied().collect();
        assert_eq!(history.len(), HISTORY_LEN + 5);
        history.push(records[HISTORY_LEN + 5]);
        assert_eq!(history.len(), HISTORY_LEN);
        assert_eq!(history.iter().collect::<Vec<_>>(), records[6..HISTORY_LEN + 6]);
    }

    #[test]
    fn its_deltas_read_back_as_the_same_history() {
        let all = usual(HISTORY_LEN as u64);
        for records in [&all[..1], &all[..2], &all[..]] {
            let history: History = records.iter().copied().collect();
            let (first, deltas) = history.deltas();
            let back = History::from_deltas(first.unwrap(), deltas).unwrap();
            assert_eq!(back, history);
            assert_eq!(back.iter().collect::<Vec<_>>(), records);
            assert_eq!(back.back(), records.last().copied());
        }
        assert_eq!(History::default().deltas(), (None, &[][..]));
    }

    #[test]
    fn deltas_in_another_form_read_as_the_history_of_their_records() {
        let first = record(7, 1, 2, 1_000, 3);
        // The next tick written out in full (flags 0: tick +1 as zigzag 2,
        // epoch +0, node 2, version 3, time +200 as zigzag 400), its
        // varints padded to two bytes: no release writes it so.
        let deltas = [0x00, 0x82, 0x00, 0x80, 0x00, 0x82, 0x00, 0x83, 0x00, 0x90, 0x03];
        let read = History::from_deltas(first, &deltas).unwrap();
        let next = record(8, 1, 2, 1_200, 3);
        assert_eq!(read, [first, next].into_iter().collect::<History>());
    }

    #[test]
    fn malformed_deltas_are_refused_never_a_panic() {
        let records = usual(20);
        let history: History = records.iter().copied().collect();
        let (first, deltas) = history.deltas();
        let first = first.unwrap();
        // Every cut: at a record's end it reads the records before it;
        // anywhere else it is refused.
        let mut read_whole = 0;
        for cut in 0..deltas.len() {
            if let Ok(read) = History::from_deltas(first, &deltas[..cut]) {
                assert_eq!(read.iter().collect::<Vec<_>>(), records[..read.len()]);
                read_whole += 1;
            }
        }
        assert_eq!(
            read_whole,
            records.len() - 1,
            "one cut at each record's end before the last"
        );
        let refused = |bytes: &[u8]| History::from_deltas(first, bytes).unwrap_err();
        assert_eq!(refused(&[0x10, 0x02]), MalformedDeltas { record: 1 }, "an unknown flag");
        assert_eq!(refused(&[0x0f]), MalformedDeltas { record: 1 }, "no time");
        assert_eq!(
            refused(&[0x0f, 0x80]),
            MalformedDeltas { record: 1 },
            "a varint cut short"
        );
        let mut eleven = vec![0x0f];
        eleven.extend([0xff; 10]);
        eleven.push(0x01);
        assert_eq!(refused(&eleven), MalformedDeltas { record: 1 }, "a varint past a u64");
        let mut wide_time = vec![0x0f];
        wide_time.extend([0xff; 9]);
        wide_time.push(0x7f);
        assert_eq!(
            refused(&wide_time),
            MalformedDeltas { record: 1 },
            "ten bytes past 64 bits"
        );
        let mut max_time = vec![0x0f];
        max_time.extend([0xff; 9]);
        max_time.push(0x01);
        assert!(
            History::from_deltas(first, &max_time).is_ok(),
            "ten bytes within 64 bits"
        );
        // Version 2^32, which no u32 holds.
        let wide = [0x07, 0x80, 0x80, 0x80, 0x80, 0x10, 0x02];
        assert_eq!(refused(&wide), MalformedDeltas { record: 1 });
        assert_eq!(refused(&[0x0f, 0x02, 0x0f]), MalformedDeltas { record: 2 });
    }

    #[test]
    fn it_reads_and_writes_the_json_list_of_records_it_replaced() {
        let records = usual(5);
        let history: History = records.iter().copied().collect();
        assert_eq!(
            serde_json::to_string(&history).unwrap(),
            serde_json::to_string(&records).unwrap()
        );
        let back: History = serde_json::from_str(&serde_json::to_string(&records).unwrap()).unwrap();
        assert_eq!(back, history);
    }
}
