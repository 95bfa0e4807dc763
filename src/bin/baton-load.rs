//! baton-load: load a baton-serve with signed requests over kept-alive connections, for
//! `make bench` (wrk cannot sign). Prints one JSON object: requests, errors, requests per
//! second, and latency percentiles in microseconds. Not installed by `make install`.

use baton_proto::auth::Key;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Options {
    addr: String,
    key: Option<Key>,
    connections: usize,
    seconds: u64,
    path: String,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        addr: String::new(),
        key: None,
        connections: 16,
        seconds: 10,
        path: "/v1/signals?match=did.%2A".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--addr" => o.addr = value()?,
            "--key" => o.key = Some(Key::load(value()?.as_ref()).map_err(|e| e.message)?),
            "--connections" => o.connections = value()?.parse().map_err(|_| "bad --connections")?,
            "--seconds" => o.seconds = value()?.parse().map_err(|_| "bad --seconds")?,
            "--path" => o.path = value()?,
            _ => return Err(format!("unknown argument '{a}' (--addr A [--key FILE] [--connections N] [--seconds S] [--path P])")),
        }
    }
    if o.addr.is_empty() || o.connections == 0 {
        return Err("--addr is required, and --connections must be at least 1".into());
    }
    Ok(o)
}

/// One connection's loop: requests until `end`; latencies in microseconds and errors.
fn drive(o: &Options, end: Instant) -> (Vec<u32>, u64) {
    let mut latencies = Vec::new();
    let mut errors = 0;
    let Ok(stream) = TcpStream::connect(&o.addr) else {
        return (latencies, 1);
    };
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return (latencies, 1),
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while Instant::now() < end {
        let auth = match &o.key {
            Some(k) => {
                let ts = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                match k.authorization("GET", &o.path, ts) {
                    Ok(h) => format!("Authorization: {h}\r\n"),
                    Err(_) => return (latencies, errors + 1),
                }
            }
            None => String::new(),
        };
        let request = format!("GET {} HTTP/1.1\r\nHost: bench\r\n{auth}\r\n", o.path);
        let start = Instant::now();
        if writer.write_all(request.as_bytes()).is_err() {
            return (latencies, errors + 1);
        }
        // Status line, headers (for Content-Length), body.
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return (latencies, errors + 1);
        }
        let ok = line.starts_with("HTTP/1.1 200");
        let mut length = 0usize;
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return (latencies, errors + 1);
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return (latencies, errors + 1);
        }
        latencies.push(start.elapsed().as_micros().min(u32::MAX as u128) as u32);
        if !ok {
            errors += 1;
        }
    }
    (latencies, errors)
}

fn main() -> ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("baton-load: {e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let end = started + Duration::from_secs(o.seconds);
    let results: Vec<(Vec<u32>, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..o.connections)
            .map(|_| s.spawn(|| drive(&o, end)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let errors: u64 = results.iter().map(|r| r.1).sum();
    let mut all: Vec<u32> = results.into_iter().flat_map(|r| r.0).collect();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "{{\"requests\":{},\"errors\":{errors},\"rps\":{:.0},\"p50_us\":{},\"p99_us\":{}}}",
        all.len(),
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99)
    );
    ExitCode::SUCCESS
}
