//! Where a guest waits: `wasi:io/poll`, which a module reaches when it
//! sleeps (`std::thread::sleep`, Python's `time.sleep`) or waits on a
//! stream, and the `blocking-*` calls of `wasi:io/streams`, which wait for
//! a stream themselves (an HTTP body, read or written).
//!
//! WASI's own implementation blocks the thread until what the guest waits
//! for is ready. No guest code runs meanwhile, so the epoch checks that end
//! a tick at its budget or when its fence closes never come: a module that
//! sleeps for an hour would hold its thread, its pooled instance and its
//! tick slot for the hour, and run on past its lease. This one waits as
//! long as the tick may ([`Verdict`], the rule the epoch checks follow,
//! asked every [`RECHECK`]), with the tick's slot given up meanwhile; past
//! that the tick ends as a blown budget or as fenced, as if the guest had
//! been running.

use std::future::Future;
use std::time::{Duration, Instant};

use wasmtime::Trap;
use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::io::poll::{Host as AsyncPoll, HostPollable as AsyncPollable};
use wasmtime_wasi::p2::bindings::io::streams::{
    HostInputStream as AsyncInputStream, HostOutputStream as AsyncOutputStream,
};
use wasmtime_wasi::p2::bindings::sync::io::poll;
use wasmtime_wasi::p2::bindings::sync::io::streams::{self, InputStream, OutputStream};
use wasmtime_wasi::p2::{DynPollable, StreamError, StreamResult};

use super::fence::{Fence, FenceError};
use super::host::TaskContext;

/// How often a wait asks the fence again (as the epoch checks do).
pub(crate) const RECHECK: Duration = Duration::from_millis(10);

/// What a call into a task must do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Go on: its fence holds and its budget is not spent.
    GoOn,
    /// Its budget is spent.
    OverBudget,
    /// Its fence closed: this node's turn with the task is over (checked
    /// first: a tick frozen past both its lease and its budget was stopped
    /// by the former, not the module's fault).
    Fenced(FenceError),
}

impl Verdict {
    /// The verdict at `now` for a call under `fence` with its budget
    /// ending at `deadline`.
    pub(crate) fn at(fence: &Fence, deadline: Instant, now: Instant) -> Verdict {
        match fence.permit(now) {
            Ok(Some(lease_end)) if now >= lease_end => Verdict::Fenced(FenceError::LeaseEnded),
            Err(e) => Verdict::Fenced(e),
            Ok(_) if now >= deadline => Verdict::OverBudget,
            Ok(_) => Verdict::GoOn,
        }
    }
}

/// The `wasi:io/poll` of one instance: its resources, and the tick whose
/// waits they are.
pub(crate) struct Waits<'a> {
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) task: &'a TaskContext,
    pub(crate) deadline: Instant,
}

/// Names [`Waits`] to the linker.
pub(crate) struct GuestWaits;

impl HasData for GuestWaits {
    type Data<'a> = Waits<'a>;
}

/// Replaces WASI's `wasi:io/poll` and `wasi:io/streams` in `linker` with
/// [`Waits`].
pub(crate) fn shadow_waits<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    waits: fn(&mut T) -> Waits<'_>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let added = poll::add_to_linker::<T, GuestWaits>(linker, waits)
        .and_then(|()| streams::add_to_linker::<T, GuestWaits>(linker, waits));
    linker.allow_shadowing(false);
    added
}

/// [`wait`] for a stream's call: a stop is a trap through the stream's
/// error.
fn wait_stream<T>(
    task: &TaskContext,
    deadline: Instant,
    ready: impl Future<Output = StreamResult<T>>,
) -> StreamResult<T> {
    match wait(task, deadline, async { Ok(ready.await) }) {
        Ok(done) => done,
        Err(stop) => Err(StreamError::Trap(stop)),
    }
}

/// Waits for `ready` while the tick may, with its slot given up; a trap
/// ([`Trap::Interrupt`] for a spent budget, or the [`FenceError`]) once it
/// may not.
fn wait<T>(
    task: &TaskContext,
    deadline: Instant,
    ready: impl Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    let stopped = |verdict: Verdict| match verdict {
        Verdict::GoOn => None,
        Verdict::OverBudget => Some(wasmtime::Error::from(Trap::Interrupt)),
        Verdict::Fenced(e) => Some(wasmtime::Error::from(e)),
    };
    if let Some(stop) = stopped(Verdict::at(&task.fence, deadline, Instant::now())) {
        return Err(stop);
    }
    task.slot.released_until_stop(|| {
        wasmtime_wasi::runtime::in_tokio(async {
            let mut ready = std::pin::pin!(ready);
            loop {
                let now = Instant::now();
                if let Some(stop) = stopped(Verdict::at(&task.fence, deadline, now)) {
                    return Err(stop);
                }
                let next = (now + RECHECK).min(deadline);
                tokio::select! {
                    biased;
                    done = &mut ready => return done,
                    _ = tokio::time::sleep_until(next.into()) => {}
                }
            }
        })
    })
}

impl poll::Host for Waits<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        let Waits { table, task, deadline } = self;
        wait(task, *deadline, AsyncPoll::poll(&mut **table, pollables))
    }
}

impl poll::HostPollable for Waits<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        // Does not wait.
        wasmtime_wasi::runtime::in_tokio(AsyncPollable::ready(&mut *self.table, pollable))
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        let Waits { table, task, deadline } = self;
        wait(task, *deadline, AsyncPollable::block(&mut **table, pollable))
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        AsyncPollable::drop(&mut *self.table, pollable)
    }
}

// The streams as WASI has them, but for the calls that wait, which wait as
// [`wait`] does.

impl streams::Host for Waits<'_> {
    fn convert_stream_error(&mut self, err: StreamError) -> wasmtime::Result<streams::StreamError> {
        streams::Host::convert_stream_error(&mut *self.table, err)
    }
}

impl streams::HostInputStream for Waits<'_> {
    fn drop(&mut self, stream: Resource<InputStream>) -> wasmtime::Result<()> {
        streams::HostInputStream::drop(&mut *self.table, stream)
    }

    fn read(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<Vec<u8>> {
        streams::HostInputStream::read(&mut *self.table, stream, len)
    }

    fn blocking_read(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<Vec<u8>> {
        let Waits { table, task, deadline } = self;
        wait_stream(
            task,
            *deadline,
            AsyncInputStream::blocking_read(&mut **table, stream, len),
        )
    }

    fn skip(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<u64> {
        streams::HostInputStream::skip(&mut *self.table, stream, len)
    }

    fn blocking_skip(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<u64> {
        let Waits { table, task, deadline } = self;
        wait_stream(
            task,
            *deadline,
            AsyncInputStream::blocking_skip(&mut **table, stream, len),
        )
    }

    fn subscribe(&mut self, stream: Resource<InputStream>) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostInputStream::subscribe(&mut *self.table, stream)
    }
}

impl streams::HostOutputStream for Waits<'_> {
    fn drop(&mut self, stream: Resource<OutputStream>) -> wasmtime::Result<()> {
        streams::HostOutputStream::drop(&mut *self.table, stream)
    }

    fn check_write(&mut self, stream: Resource<OutputStream>) -> StreamResult<u64> {
        streams::HostOutputStream::check_write(&mut *self.table, stream)
    }

    fn write(&mut self, stream: Resource<OutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        streams::HostOutputStream::write(&mut *self.table, stream, bytes)
    }

    fn blocking_write_and_flush(&mut self, stream: Resource<OutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        let Waits { table, task, deadline } = self;
        wait_stream(
            task,
            *deadline,
            AsyncOutputStream::blocking_write_and_flush(&mut **table, stream, bytes),
        )
    }

    fn blocking_write_zeroes_and_flush(&mut self, stream: Resource<OutputStream>, len: u64) -> StreamResult<()> {
        let Waits { table, task, deadline } = self;
        wait_stream(
            task,
            *deadline,
            AsyncOutputStream::blocking_write_zeroes_and_flush(&mut **table, stream, len),
        )
    }

    fn subscribe(&mut self, stream: Resource<OutputStream>) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostOutputStream::subscribe(&mut *self.table, stream)
    }

    fn write_zeroes(&mut self, stream: Resource<OutputStream>, len: u64) -> StreamResult<()> {
        streams::HostOutputStream::write_zeroes(&mut *self.table, stream, len)
    }

    fn flush(&mut self, stream: Resource<OutputStream>) -> StreamResult<()> {
        streams::HostOutputStream::flush(&mut *self.table, stream)
    }

    fn blocking_flush(&mut self, stream: Resource<OutputStream>) -> StreamResult<()> {
        let Waits { table, task, deadline } = self;
        let borrowed = Resource::new_borrow(stream.rep());
        wait_stream(
            task,
            *deadline,
            AsyncOutputStream::blocking_flush(&mut **table, borrowed),
        )
    }

    fn splice(&mut self, dst: Resource<OutputStream>, src: Resource<InputStream>, len: u64) -> StreamResult<u64> {
        streams::HostOutputStream::splice(&mut *self.table, dst, src, len)
    }

    fn blocking_splice(
        &mut self,
        dst: Resource<OutputStream>,
        src: Resource<InputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        let Waits { table, task, deadline } = self;
        wait_stream(
            task,
            *deadline,
            AsyncOutputStream::blocking_splice(&mut **table, dst, src, len),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::runtime::fence::TickFence;

    struct Until(Result<Instant, FenceError>);

    impl TickFence for Until {
        fn permit(&self, _now: Instant) -> Result<Instant, FenceError> {
            self.0.clone()
        }
    }

    #[test]
    fn a_call_goes_on_while_its_fence_holds_and_its_budget_lasts() {
        let now = Instant::now();
        let later = now + Duration::from_secs(1);
        let lease = |end| Fence::new(Arc::new(Until(Ok(end))));
        assert_eq!(Verdict::at(&Fence::none(), later, now), Verdict::GoOn);
        assert_eq!(Verdict::at(&lease(later), later, now), Verdict::GoOn);
        assert_eq!(Verdict::at(&Fence::none(), now, now), Verdict::OverBudget);
        // The lease's end wins over the budget's.
        assert_eq!(
            Verdict::at(&lease(now), now, now),
            Verdict::Fenced(FenceError::LeaseEnded)
        );
        let moved = Fence::new(Arc::new(Until(Err(FenceError::NotOwner { epoch: 4 }))));
        assert_eq!(
            Verdict::at(&moved, later, now),
            Verdict::Fenced(FenceError::NotOwner { epoch: 4 })
        );
    }
}
