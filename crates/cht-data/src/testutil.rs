//! Helpers shared by the unit tests.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `cht-data-<pid>-<n>-<name>`; unique per process and call, so parallel tests never
    /// share one.
    pub fn new(name: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("cht-data-{}-{n}-{name}", std::process::id()));
        // A leftover from a crashed run with a recycled pid would otherwise leak into this test.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What [`Server`] answers for one path.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Clone, Debug)]
pub enum Reply {
    /// The bytes, honouring `Range: bytes=N-` (206, or 416 past the end).
    Bytes(Vec<u8>),
    /// Like `Bytes`, but the first `times` responses announce the full length and send only the
    /// first `send` bytes of it before closing the connection.
    Truncate {
        /// The file.
        bytes: Vec<u8>,
        /// Bytes of the body actually sent.
        send: usize,
        /// How many responses are cut short.
        times: usize,
    },
    /// An empty response with this status.
    Status(u16),
}

/// A tiny HTTP/1.1 server on 127.0.0.1 for the download tests: one request per connection,
/// `GET` only, routes by exact path; records each request as `"<path> <range or ->"`.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug)]
pub struct Server {
    addr: std::net::SocketAddr,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[cfg(not(target_arch = "wasm32"))]
impl Server {
    /// Starts serving `routes` (path → reply) on a free port.
    pub fn start(routes: Vec<(&str, Reply)>) -> Server {
        use std::sync::{Arc, Mutex, atomic::AtomicBool};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut routes: std::collections::HashMap<String, Reply> =
            routes.into_iter().map(|(p, r)| (p.to_owned(), r)).collect();
        let (log2, stop2) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let _ = serve(stream, &mut routes, &log2);
            }
        });
        Server { addr, log, stop }
    }

    /// `http://127.0.0.1:PORT/<prefix>`.
    pub fn url(&self, prefix: &str) -> String {
        format!("http://{}/{prefix}", self.addr)
    }

    /// The requests so far.
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so that it sees the flag.
        let _ = std::net::TcpStream::connect(self.addr);
    }
}

/// Answers one request on `stream`.
#[cfg(not(target_arch = "wasm32"))]
fn serve(
    mut stream: std::net::TcpStream,
    routes: &mut std::collections::HashMap<String, Reply>,
    log: &std::sync::Mutex<Vec<String>>,
) -> std::io::Result<()> {
    use std::io::{Read, Write};
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 << 10 {
        if stream.read(&mut byte)? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    let range: Option<usize> = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        let value = value.trim().strip_prefix("bytes=")?;
        (name.eq_ignore_ascii_case("range")).then(|| value.trim_end_matches('-').parse().ok())?
    });
    log.lock().unwrap().push(format!(
        "{path} {}",
        range.map_or("-".to_owned(), |r| format!("{r}-"))
    ));
    let status =
        |code: u16| format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let (bytes, send) = match routes.get_mut(&path) {
        None => return stream.write_all(status(404).as_bytes()),
        Some(Reply::Status(code)) => return stream.write_all(status(*code).as_bytes()),
        Some(Reply::Bytes(bytes)) => (bytes.clone(), usize::MAX),
        Some(Reply::Truncate { bytes, send, times }) => {
            let send = if *times > 0 { *send } else { usize::MAX };
            *times = times.saturating_sub(1);
            (bytes.clone(), send)
        }
    };
    let start = range.unwrap_or(0);
    if start > 0 && start >= bytes.len() {
        return stream.write_all(status(416).as_bytes());
    }
    let body = &bytes[start..];
    let head = if start > 0 {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
            body.len(),
            bytes.len() - 1,
            bytes.len()
        )
    } else {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
    };
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body[..send.min(body.len())])?;
    stream.flush()
}

/// The four `.gz` files (in `fetch::FILE_NAMES` order) of a stand-in for `kind`: all-zero images
/// and labels with the published per-class counts and first labels, so that they pass the
/// fetch's verification.
pub fn published_shape_files(kind: crate::DatasetKind) -> [Vec<u8>; 4] {
    use crate::Split;
    let gz = |bytes: Vec<u8>| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, &bytes).unwrap();
        enc.finish().unwrap()
    };
    let split = |split: Split| {
        let counts = kind.class_counts(split);
        let mut labels: Vec<u8> = kind.first_labels(split).map_or(Vec::new(), |f| f.to_vec());
        for (class, &count) in counts.iter().enumerate() {
            let have = labels.iter().filter(|&&l| usize::from(l) == class).count();
            labels.extend(std::iter::repeat_n(class as u8, count - have));
        }
        let n = labels.len() as u32;
        let images = vec![0u8; labels.len() * 784];
        (
            gz(crate::idx::encode(&[n, 28, 28], &images).unwrap()),
            gz(crate::idx::encode(&[n], &labels).unwrap()),
        )
    };
    let (a, b) = split(Split::Train);
    let (c, d) = split(Split::Test);
    [a, b, c, d]
}
