//! `tcp-exchange`: a task's one way onto the network. One request and its
//! reply over a new TCP connection to an address the task was granted,
//! every step bounded by a deadline (the tick's budget or the node's lease,
//! whichever ends first), so a peer that never answers costs the tick its
//! deadline and no more. While it waits to send or for the reply, it asks
//! the tick's fence again every `RECHECK`: a call whose task moved (a pause
//! and resume, a hand-off) or whose lease ended is cut off within that,
//! and one whose lease is renewed meanwhile may run on to the tick's
//! deadline (a slow downstream is no reason to fail a tick that still owns
//! its task).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How often an exchange waiting on the network asks whether the tick may
/// still act.
const RECHECK: Duration = Duration::from_millis(10);

/// The addresses `addr` names, looked up on a helper thread so that a slow
/// resolver cannot hold the tick past `deadline`.
fn resolve(addr: &str, deadline: Instant) -> Result<Vec<SocketAddr>, String> {
    if let Ok(one) = addr.parse::<SocketAddr>() {
        return Ok(vec![one]);
    }
    let (found_tx, found_rx) = mpsc::channel();
    let owned = addr.to_string();
    std::thread::spawn(move || {
        let _ = found_tx.send(owned.to_socket_addrs().map(|a| a.collect::<Vec<_>>()));
    });
    match found_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(e)) => Err(format!("looking up {addr}: {e}")),
        Err(_) => Err(format!("looking up {addr}: no answer before the tick's deadline")),
    }
}

/// Whether `addr` is one of `grants` (as written, or as the same address).
pub(crate) fn granted(addr: &str, grants: &[String], deadline: Instant) -> Result<Vec<SocketAddr>, String> {
    let refused = || {
        format!(
            "{addr} is not among the task's network grants ({}); add it with `batonctl tasks add --allow-net {addr}`",
            match grants.is_empty() {
                true => "it has none".to_string(),
                false => grants.join(", "),
            }
        )
    };
    if grants.iter().any(|g| g == addr) {
        return resolve(addr, deadline);
    }
    let wanted = addr.parse::<SocketAddr>().map_err(|_| refused())?;
    for grant in grants {
        if resolve(grant, deadline).is_ok_and(|addrs| addrs.contains(&wanted)) {
            return Ok(vec![wanted]);
        }
    }
    Err(refused())
}

/// The time left before `deadline`, or an error naming `what` was cut off.
fn left(deadline: Instant, what: &str) -> Result<Duration, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    match left.is_zero() {
        true => Err(format!("{what}: the tick's deadline passed")),
        false => Ok(left),
    }
}

/// Until when a call may act, asked again as it waits: `Ok(Some(t))` until
/// `t` (the lease's end as known now), `Ok(None)` unbounded, `Err` no more.
pub(crate) type Permit<'a> = &'a dyn Fn() -> Result<Option<Instant>, String>;

/// The time left for `what`: until `deadline` or what `permit` allows now,
/// whichever comes first.
fn allowed(deadline: Instant, permit: Permit<'_>, what: &str) -> Result<Duration, String> {
    let end = permit()?.map_or(deadline, |lease_end| lease_end.min(deadline));
    left(end, what)
}

/// The next wait on the socket: what is allowed, at most `RECHECK`.
fn slice(deadline: Instant, permit: Permit<'_>, what: &str) -> Result<Duration, String> {
    Ok(allowed(deadline, permit, what)?.min(RECHECK))
}

/// Connects to the first of `addrs` that answers, sends `request`, closes
/// the sending side and reads the reply until the peer closes, all before
/// `deadline`, and only while `permit` allows (asked every `RECHECK` while
/// it waits). Blocking.
pub(crate) fn exchange(
    addrs: &[SocketAddr],
    request: &[u8],
    max_reply: usize,
    deadline: Instant,
    permit: Permit<'_>,
) -> Result<Vec<u8>, String> {
    let mut last = String::from("no address to connect to");
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(addr, allowed(deadline, permit, "connecting")?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("connect {addr}: {e}"),
        }
    }
    let mut stream = stream.ok_or(last)?;
    // Closed (at the end, on a cut-off, or with the process) by a reset that
    // discards what is unsent, not a FIN after it: a request cut off in the
    // middle must not reach the peer later looking complete.
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .map_err(|e| format!("connect: {e}"))?;
    let waited = |e: &std::io::Error| matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
    let mut sent = 0;
    while sent < request.len() {
        stream
            .set_write_timeout(Some(slice(deadline, permit, "sending")?))
            .map_err(|e| e.to_string())?;
        match stream.write(&request[sent..]) {
            Ok(0) => return Err("sending: the peer closed the connection".into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::Interrupted || waited(&e) => {}
            Err(e) => return Err(format!("sending: {e}")),
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
    let mut reply = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        stream
            .set_read_timeout(Some(slice(deadline, permit, "waiting for the reply")?))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => return Ok(reply),
            Ok(n) if reply.len() + n > max_reply => {
                return Err(format!("the reply is larger than the {max_reply} bytes asked for"));
            }
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted || waited(&e) => {}
            Err(e) => return Err(format!("waiting for the reply: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn soon(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[test]
    fn only_granted_addresses_are_reachable() {
        let grants = vec!["127.0.0.1:7000".to_string()];
        assert!(granted("127.0.0.1:7000", &grants, soon(1000)).is_ok());
        let err = granted("127.0.0.1:7001", &grants, soon(1000)).unwrap_err();
        assert!(err.contains("--allow-net 127.0.0.1:7001"), "{err}");
        let none = granted("127.0.0.1:7000", &[], soon(1000)).unwrap_err();
        assert!(none.contains("it has none"), "{none}");
    }

    #[test]
    fn a_peer_that_never_answers_costs_the_deadline_and_no_more() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let started = Instant::now();
        let err = exchange(&[addr], b"ping", 1024, soon(200), &|| Ok(None)).unwrap_err();
        let took = started.elapsed();
        assert!(err.contains("deadline"), "{err}");
        assert!(took >= Duration::from_millis(190), "gave up early: {took:?}");
        assert!(took < Duration::from_secs(2), "held past its deadline: {took:?}");
        drop(listener);
    }

    #[test]
    fn a_call_whose_tick_may_no_longer_act_is_cut_off_while_it_waits() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let started = Instant::now();
        let moved_at = started + Duration::from_millis(100);
        let permit = || match Instant::now() < moved_at {
            true => Ok(Some(Instant::now() + Duration::from_secs(1))),
            false => Err("this node no longer owns the task at epoch 3".to_string()),
        };
        let err = exchange(&[addr], b"ping", 1024, soon(5000), &permit).unwrap_err();
        let took = started.elapsed();
        assert!(err.contains("no longer owns"), "{err}");
        assert!(took < Duration::from_millis(500), "waited on past the move: {took:?}");
        drop(listener);
    }

    #[test]
    fn a_call_whose_lease_is_renewed_may_run_on_to_the_ticks_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            s.read_to_end(&mut request).unwrap();
            // A slow downstream: longer than any one lease renewal covers.
            std::thread::sleep(Duration::from_millis(400));
            s.write_all(b"ok").unwrap();
        });
        // Each renewal holds 150 ms from now; the tick's deadline is 2 s.
        let renewed = || Ok(Some(Instant::now() + Duration::from_millis(150)));
        assert_eq!(exchange(&[addr], b"hi", 100, soon(2000), &renewed).unwrap(), b"ok");
        server.join().unwrap();
    }

    #[test]
    fn a_reply_is_read_until_the_peer_closes_and_capped() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for _ in 0..2 {
                let (mut s, _) = listener.accept().unwrap();
                let mut request = Vec::new();
                s.read_to_end(&mut request).unwrap();
                s.write_all(&[b'x'; 100]).unwrap();
            }
        });
        assert_eq!(
            exchange(&[addr], b"hi", 100, soon(2000), &|| Ok(None)).unwrap().len(),
            100
        );
        let err = exchange(&[addr], b"hi", 99, soon(2000), &|| Ok(None)).unwrap_err();
        assert!(err.contains("larger than the 99 bytes"), "{err}");
        server.join().unwrap();
    }
}
