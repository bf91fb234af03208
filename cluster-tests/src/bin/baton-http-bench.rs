//! `baton-http-bench`: what an HTTP request costs a task's tick, in
//! process. One engine runs, in turn:
//!
//! - an empty tick (the `counter` example), for scale;
//! - a `webwatch` tick that GETs a local server once, over plain HTTP and
//!   over HTTPS (a CA made here, which the task is told to trust);
//! - the same two for the Python examples (`counter_py`, `webwatch_py`);
//! - the same GET from a plain Rust client (std's `TcpStream`, and rustls
//!   over it for HTTPS), a new connection each time, as the task makes.
//!
//! The server answers every request with the same 1 KiB body and closes
//! the connection. The overhead per request is a tick's time less an empty
//! tick's, beside the plain client's time for the request. Prints Markdown
//! tables.
//!
//! Run from the repository root: `scripts/bench-http.sh`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use baton_cluster_tests::witness::https_identity;
use baton_cluster_tests::{example_module, machine, quantile};
use baton_node::runtime::{CompiledModule, HttpAccess, HttpGrant, RuntimeLimits, TaskContext, TaskEngine};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Measures what an HTTP request costs a Baton task's tick")]
struct Args {
    /// Requests (and ticks) measured for each row, in rounds.
    #[arg(long, default_value_t = 600)]
    requests: usize,
    /// Rounds the measurements are interleaved in, so that a busy moment of
    /// the machine falls on every row alike.
    #[arg(long, default_value_t = 6)]
    rounds: usize,
}

const BODY: [u8; 1024] = [b'x'; 1024];

/// Serves every connection on `listener` (over TLS with `tls`): reads a
/// request's head, answers with [`BODY`], closes.
fn serve(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) {
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            let _ = tcp.set_nodelay(true);
            let _ = match &tls {
                None => answer(tcp),
                Some(config) => rustls::ServerConnection::new(config.clone())
                    .map_err(std::io::Error::other)
                    .and_then(|conn| {
                        let mut stream = rustls::StreamOwned::new(conn, tcp);
                        answer(&mut stream)?;
                        stream.conn.send_close_notify();
                        stream.flush()
                    }),
            };
        }
    });
}

fn answer(mut stream: impl Read + Write) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf)? {
            0 => return Ok(()),
            n => head.extend_from_slice(&buf[..n]),
        }
    }
    let reply = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        BODY.len()
    );
    stream.write_all(&[reply.as_bytes(), &BODY].concat())?;
    stream.flush()
}

/// One GET of `/` from `host:port` by a plain client, over a new
/// connection; the body's length.
fn plain_get(addr: SocketAddr, host: &str, tls: Option<&Arc<rustls::ClientConfig>>) -> usize {
    let tcp = TcpStream::connect((host, addr.port())).expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let request = format!("GET / HTTP/1.1\r\nhost: {host}:{}\r\n\r\n", addr.port());
    let mut response = Vec::new();
    match tls {
        None => {
            let mut tcp = tcp;
            tcp.write_all(request.as_bytes()).expect("write");
            tcp.read_to_end(&mut response).expect("read");
        }
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from(host.to_string()).expect("a server name");
            let conn = rustls::ClientConnection::new(config.clone(), name).expect("a TLS client");
            let mut stream = rustls::StreamOwned::new(conn, tcp);
            stream.write_all(request.as_bytes()).expect("write");
            stream.read_to_end(&mut response).expect("read");
        }
    }
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a head");
    response.len() - end - 4
}

/// What one row measures: one request or tick, timed.
struct Row {
    name: &'static str,
    run: Box<dyn Fn()>,
    samples: Vec<u64>,
}

fn main() {
    let args = Args::parse();
    baton_node::tls::install_crypto_provider();
    let engine = TaskEngine::new(RuntimeLimits::default(), None).expect("an engine");
    let counter = engine.load(&example_module("counter")).expect("counter");
    let webwatch = engine.load(&example_module("webwatch")).expect("webwatch");
    let counter_py = engine.load(&example_module("counter_py")).expect("counter_py");
    let webwatch_py = engine.load(&example_module("webwatch_py")).expect("webwatch_py");

    let plain = TcpListener::bind("127.0.0.1:0").unwrap();
    let plain_addr = plain.local_addr().unwrap();
    serve(plain, None);
    let (server_config, ca_pem) = https_identity();
    let secure = TcpListener::bind("127.0.0.1:0").unwrap();
    let secure_addr = secure.local_addr().unwrap();
    serve(secure, Some(server_config));

    let plain_url = format!("http://127.0.0.1:{}/", plain_addr.port());
    let secure_url = format!("https://localhost:{}/", secure_addr.port());
    let plain_access = HttpAccess::granted(vec![HttpGrant::parse(&plain_url[..plain_url.len() - 1]).unwrap()]);
    let secure_access = HttpAccess::granted(vec![HttpGrant::parse(&secure_url[..secure_url.len() - 1]).unwrap()])
        .with_ca(ca_pem.as_bytes())
        .unwrap();
    let client_tls = Arc::new({
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth()
    });

    let engine = Arc::new(engine);
    let tick = |module: Arc<CompiledModule>, url: Option<(String, HttpAccess)>| {
        let engine = engine.clone();
        Box::new(move || {
            let task = match &url {
                None => TaskContext {
                    name: "bench".into(),
                    ..TaskContext::default()
                },
                Some((url, access)) => TaskContext {
                    name: "bench".into(),
                    config: format!(r#"{{"url": "{url}"}}"#).into_bytes(),
                    http: access.clone(),
                    ..TaskContext::default()
                },
            };
            engine.tick(&module, task, b"").expect("a tick");
        }) as Box<dyn Fn()>
    };
    let client_tls_for_row = client_tls.clone();
    let mut rows = vec![
        Row {
            name: "an empty tick (counter)",
            run: tick(counter.clone(), None),
            samples: Vec::new(),
        },
        Row {
            name: "a webwatch tick, one GET over HTTP",
            run: tick(webwatch.clone(), Some((plain_url.clone(), plain_access.clone()))),
            samples: Vec::new(),
        },
        Row {
            name: "the same GET, plain Rust client (std TcpStream)",
            run: Box::new(move || assert_eq!(plain_get(plain_addr, "127.0.0.1", None), BODY.len())),
            samples: Vec::new(),
        },
        Row {
            name: "a webwatch tick, one GET over HTTPS",
            run: tick(webwatch.clone(), Some((secure_url.clone(), secure_access.clone()))),
            samples: Vec::new(),
        },
        Row {
            name: "the same GET, plain Rust client (rustls)",
            run: Box::new(move || {
                assert_eq!(
                    plain_get(secure_addr, "localhost", Some(&client_tls_for_row)),
                    BODY.len()
                )
            }),
            samples: Vec::new(),
        },
        Row {
            name: "a Python counter tick (counter_py)",
            run: tick(counter_py.clone(), None),
            samples: Vec::new(),
        },
        Row {
            name: "a Python webwatch tick, one GET over HTTP",
            run: tick(webwatch_py.clone(), Some((plain_url.clone(), plain_access))),
            samples: Vec::new(),
        },
        Row {
            name: "a Python webwatch tick, one GET over HTTPS",
            run: tick(webwatch_py.clone(), Some((secure_url.clone(), secure_access))),
            samples: Vec::new(),
        },
    ];
    // Warm up: compiled modules, the pool's first instances, TLS sessions'
    // first key exchanges.
    for row in &rows {
        for _ in 0..20 {
            (row.run)();
        }
    }
    let per_round = args.requests.div_ceil(args.rounds.max(1));
    for _ in 0..args.rounds.max(1) {
        for row in &mut rows {
            for _ in 0..per_round {
                let started = Instant::now();
                (row.run)();
                row.samples.push(started.elapsed().as_micros() as u64);
            }
        }
    }

    println!(
        "Machine: {}. {} requests or ticks per row, in {} rounds.\n",
        machine(),
        per_round * args.rounds.max(1),
        args.rounds.max(1)
    );
    println!("| what | p50 | p99 | mean |");
    println!("| --- | --- | --- | --- |");
    let mut p50 = Vec::new();
    for row in &rows {
        let mean = row.samples.iter().sum::<u64>() as f64 / row.samples.len() as f64;
        println!(
            "| {} | {} µs | {} µs | {:.0} µs |",
            row.name,
            quantile(&row.samples, 0.5),
            quantile(&row.samples, 0.99),
            mean
        );
        p50.push(quantile(&row.samples, 0.5) as f64);
    }
    let empty = p50[0];
    println!();
    println!("| request | in a tick, less an empty tick of its language (p50) | plain client (p50) | ratio |");
    println!("| --- | --- | --- | --- |");
    let empty_py = p50[5];
    for (name, tick, empty, client) in [
        ("HTTP, Rust task", p50[1], empty, p50[2]),
        ("HTTPS, Rust task", p50[3], empty, p50[4]),
        ("HTTP, Python task", p50[6], empty_py, p50[2]),
        ("HTTPS, Python task", p50[7], empty_py, p50[4]),
    ] {
        let overhead = tick - empty;
        println!(
            "| {name} | {overhead:.0} µs | {client:.0} µs | {:.2}x |",
            overhead / client
        );
    }
}
