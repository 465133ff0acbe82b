//! The simulated service `debug-500` investigates: an HTTP server on a
//! loopback port whose 500s come from connection-pool exhaustion under bursts.
//!
//! Each request takes a connection from a small pool for a few milliseconds
//! (longer for bigger payloads). A request that waits longer than
//! [`POOL_WAIT`] for one fails with 500 `connection pool exhausted`, which
//! steady load never causes and bursts wider than the pool do. Its upstream
//! always answers in time and its shared state stays consistent, so the
//! other two hypotheses of `debug-500` find no support.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a request waits for a pooled connection before failing.
pub const POOL_WAIT: Duration = Duration::from_millis(20);

/// The pool's size when the service starts.
pub const DEFAULT_POOL_SIZE: usize = 4;

#[derive(Debug, Default)]
struct Pool {
    size: usize,
    in_use: usize,
    peak: usize,
    served: u64,
    exhausted: u64,
}

/// A running simulated service.
#[derive(Clone)]
pub struct Service {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    state: Arc<(Mutex<Pool>, Condvar)>,
}

impl Service {
    /// Starts the service on a free loopback port; it serves until the
    /// process exits.
    pub fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new((
            Mutex::new(Pool {
                size: DEFAULT_POOL_SIZE,
                ..Pool::default()
            }),
            Condvar::new(),
        ));
        let service = Self { url, state };
        let serving = service.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let service = serving.clone();
                std::thread::spawn(move || {
                    let _ = service.handle(stream);
                });
            }
        });
        Ok(service)
    }

    fn handle(&self, stream: TcpStream) -> std::io::Result<()> {
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut request_line = String::new();
        reader.read_line(&mut request_line)?;
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length.min(1 << 20)];
        reader.read_exact(&mut body)?;
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("");
        let target = parts.next().unwrap_or("/");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let (status, text) = match (method, path) {
            ("GET", "/metrics") => (200, self.metrics()),
            ("GET", "/state") => (
                200,
                r#"{"consistent":true,"checksum_mismatches":0}"#.to_owned(),
            ),
            ("GET", "/upstream") => (
                200,
                r#"{"latency_ms":1,"timeout_ms":200,"timeouts":0}"#.to_owned(),
            ),
            ("POST", "/admin/pool") => self.resize(&body),
            ("GET", "/") => self.serve(query),
            _ => (404, r#"{"error":"not found"}"#.to_owned()),
        };
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            _ => "Internal Server Error",
        };
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        )?;
        stream.flush()
    }

    /// One request: a pooled connection for a few milliseconds, or a 500.
    fn serve(&self, query: &str) -> (u16, String) {
        let bytes: u64 = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("bytes="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(100);
        let (lock, freed) = &*self.state;
        let deadline = Instant::now() + POOL_WAIT;
        let mut pool = lock.lock().unwrap_or_else(|e| e.into_inner());
        while pool.in_use >= pool.size {
            let now = Instant::now();
            if now >= deadline {
                pool.exhausted += 1;
                return (
                    500,
                    format!(
                        r#"{{"error":"connection pool exhausted","pool_size":{},"waited_ms":{}}}"#,
                        pool.size,
                        POOL_WAIT.as_millis()
                    ),
                );
            }
            pool = freed
                .wait_timeout(pool, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        pool.in_use += 1;
        pool.peak = pool.peak.max(pool.in_use);
        drop(pool);
        // The query holds the connection; bigger payloads hold it longer.
        std::thread::sleep(Duration::from_micros(5_000 + bytes / 10));
        let mut pool = lock.lock().unwrap_or_else(|e| e.into_inner());
        pool.in_use -= 1;
        pool.served += 1;
        drop(pool);
        freed.notify_one();
        (200, format!(r#"{{"ok":true,"bytes":{bytes}}}"#))
    }

    fn metrics(&self) -> String {
        let pool = self.state.0.lock().unwrap_or_else(|e| e.into_inner());
        format!(
            r#"{{"pool_size":{},"in_use":{},"peak_in_use":{},"served":{},"pool_exhausted":{},"upstream_timeouts":0,"state_checksum_mismatches":0}}"#,
            pool.size, pool.in_use, pool.peak, pool.served, pool.exhausted
        )
    }

    fn resize(&self, body: &[u8]) -> (u16, String) {
        let size = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["size"].as_u64())
            .filter(|&n| (1..=1024).contains(&n));
        let Some(size) = size else {
            return (
                400,
                r#"{"error":"expected {\"size\": 1..1024}"}"#.to_owned(),
            );
        };
        let (lock, freed) = &*self.state;
        let mut pool = lock.lock().unwrap_or_else(|e| e.into_inner());
        let before = pool.size;
        pool.size = size as usize;
        drop(pool);
        freed.notify_all();
        (200, format!(r#"{{"pool_size":{size},"was":{before}}}"#))
    }
}
