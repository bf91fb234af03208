//! Taking a batch off a queue of writes: the first, and whatever queued
//! behind it while the last batch was in flight. The proposer batches a
//! node's writes into Raft entries this way, and the forwarder batches the
//! writes a node sends to its leader.

use tokio::sync::mpsc;

/// `first` and what is queued on `rx` now, up to `max` items, each while
/// `joins(batch, next)` allows it (it is asked once per item, just before
/// the item joins). The first item that may not join is left in `held`, to
/// start the next batch.
pub fn take_batch<T>(
    first: T,
    rx: &mut mpsc::UnboundedReceiver<T>,
    held: &mut Option<T>,
    max: usize,
    mut joins: impl FnMut(&[T], &T) -> bool,
) -> Vec<T> {
    let mut batch = vec![first];
    while batch.len() < max {
        match rx.try_recv() {
            Ok(next) if joins(&batch, &next) => batch.push(next),
            Ok(next) => {
                *held = Some(next);
                break;
            }
            Err(_) => break,
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_takes_what_queued_until_one_may_not_join_or_it_is_full() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        for n in [2, 3, 50, 4] {
            tx.send(n).unwrap();
        }
        let mut held = None;
        let mut sum = 1;
        let batch = take_batch(1, &mut rx, &mut held, 10, |_, next| {
            let joins = sum + next <= 10;
            if joins {
                sum += next;
            }
            joins
        });
        assert_eq!((batch, held), (vec![1, 2, 3], Some(50)));

        let mut held = None;
        assert_eq!(take_batch(50, &mut rx, &mut held, 1, |_, _| true), vec![50]);
        assert_eq!(held, None, "a full batch leaves the queue as it is");
        assert_eq!(take_batch(0, &mut rx, &mut held, 10, |_, _| true), vec![0, 4]);
    }
}
