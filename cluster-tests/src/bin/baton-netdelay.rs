//! `baton-netdelay --delay-ms D [--queue N]`: holds every packet netfilter
//! queues to it (NFQUEUE) for D milliseconds, then lets it through. The
//! chaos tests run it in a node container's network namespace (`nsenter
//! -n`) with an iptables rule that queues the node's packets to its peers:
//! a network delay where the kernel has no netem. It runs until killed.

use std::collections::VecDeque;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser)]
#[command(name = "baton-netdelay")]
struct Args {
    /// How long each packet is held.
    #[arg(long)]
    delay_ms: u64,
    /// The NFQUEUE number the iptables rule sends packets to.
    #[arg(long, default_value_t = 0)]
    queue: u16,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: baton-netdelay: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> std::io::Result<()> {
    let delay = Duration::from_millis(args.delay_ms);
    let mut queue = nfq::Queue::open()?;
    queue.bind(args.queue)?;
    // Only the packet's metadata: the verdict does not change its bytes.
    queue.set_copy_range(args.queue, 0)?;
    queue.set_nonblocking(true);
    let mut held: VecDeque<(Instant, nfq::Message)> = VecDeque::new();
    loop {
        let mut received = false;
        loop {
            match queue.recv() {
                Ok(message) => {
                    held.push_back((Instant::now() + delay, message));
                    received = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        // One delay for all, so the packets fall due in the order they came.
        let now = Instant::now();
        while held.front().is_some_and(|(due, _)| *due <= now) {
            let (_, mut message) = held.pop_front().expect("checked above");
            message.set_verdict(nfq::Verdict::Accept);
            queue.verdict(message)?;
        }
        if !received {
            let next = held.front().map_or(Duration::from_millis(1), |(due, _)| {
                due.saturating_duration_since(now).min(Duration::from_millis(1))
            });
            std::thread::sleep(next);
        }
    }
}
