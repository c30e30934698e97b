//! Downloading the four IDX `.gz` files of a data set from HTTP(S) mirrors, each checked against
//! its md5 (native builds only; used by [`crate::fetch()`]).
//!
//! One file at a time, mirror after mirror: the bytes go to `<name>.part` next to the final file,
//! a later attempt resumes it with an HTTP `Range` request, and only a file whose md5 matches is
//! renamed to its final name (same folder, so it appears whole or not at all). A response larger
//! than the size limit, a wrong checksum, an HTTP error or a broken connection is reported through
//! the progress callback and the next mirror is tried.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::fetch::{Digests, FetchOptions, Progress, Transfer};

/// Attempts per file and mirror: a connection that breaks after delivering bytes is resumed, a
/// resumed file with the wrong checksum is downloaded once more from the start.
const ATTEMPTS: usize = 3;

/// Bytes read per chunk (and per progress report).
const CHUNK: usize = 64 << 10;

/// Why [`download_all`] stopped.
pub(crate) enum DownloadError {
    /// No mirror delivered this file: each mirror's failure, in order.
    NoMirror(String, Vec<Failure>),
    /// Something at the destination prevents any download (e.g. a directory where the file goes).
    Local(String),
}

/// Why one file could not be taken from one mirror.
pub(crate) struct Failure {
    /// The mirror's base URL.
    pub mirror: String,
    /// What went wrong, e.g. `HTTP status 404` or `md5 … expected …`.
    pub reason: String,
}

/// The HTTP agent with the options' timeouts; redirects are followed, bodies are not decoded
/// (the md5s are those of the `.gz` files as published).
fn agent(options: &FetchOptions) -> ureq::Agent {
    let t = Some(options.timeout);
    ureq::Agent::config_builder()
        .timeout_resolve(t)
        .timeout_connect(t)
        .timeout_send_request(t)
        .timeout_recv_response(t)
        .timeout_per_read(t)
        .max_redirects(10)
        .user_agent(format!("cht-data/{}", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// `base` joined with `name`: exactly one `/` between them.
pub(crate) fn join_url(base: &str, name: &str) -> String {
    format!("{}/{name}", base.trim_end_matches('/'))
}

/// Makes `folder/<name>` hold each of `names` with its md5 from `digests`, downloading the missing
/// or wrong ones from `mirrors` in order. Files already in place with the right md5 are kept
/// without any request. Stops at the first file that no mirror delivers.
pub(crate) fn download_all(
    folder: &Path,
    names: &[&str; 4],
    digests: &Digests,
    options: &FetchOptions,
    mirrors: &[String],
    progress: &mut dyn Progress,
) -> Result<(), DownloadError> {
    let agent = agent(options);
    for (i, name) in names.iter().enumerate() {
        let expected = digests.md5[i];
        let dest = folder.join(name);
        match existing_md5(&dest) {
            Ok(Some(found)) if found == expected => {
                progress.message(&format!("{name}: already here, md5 verified"));
                continue;
            }
            Ok(Some(found)) => progress.message(&format!(
                "{name}: the file here has md5 {}, expected {}; downloading it again",
                hex(&found),
                hex(&expected)
            )),
            Ok(None) => {}
            Err(reason) => return Err(DownloadError::Local(reason)),
        }
        if let Err(reason) = part_len(&part_path(&dest)) {
            return Err(DownloadError::Local(reason));
        }
        let mut failures = Vec::new();
        let mut done = false;
        for mirror in mirrors {
            let url = join_url(mirror, name);
            progress.message(&format!("{name}: downloading {url}"));
            match download_one(&agent, &url, name, &dest, expected, options, progress) {
                Ok(bytes) => {
                    progress.message(&format!("{name}: {bytes} bytes, md5 verified"));
                    done = true;
                    break;
                }
                Err(reason) => {
                    progress.message(&format!(
                        "{name} from {mirror}: {reason}; trying the next mirror"
                    ));
                    failures.push(Failure {
                        mirror: mirror.clone(),
                        reason,
                    });
                }
            }
        }
        if !done {
            return Err(DownloadError::NoMirror(name.to_string(), failures));
        }
    }
    Ok(())
}

/// The md5 of `path` when it is a regular file, `None` when it does not exist; an error (as text)
/// when it is something else or cannot be read.
fn existing_md5(path: &Path) -> Result<Option<[u8; 16]>, String> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: cannot inspect: {e}", path.display())),
        Ok(meta) if !meta.is_file() => Err(format!(
            "{} exists and is not a regular file; move it away",
            path.display()
        )),
        Ok(_) => md5_file(path).map(Some),
    }
}

/// The md5 of a regular file, read in chunks.
fn md5_file(path: &Path) -> Result<[u8; 16], String> {
    let mut file = File::open(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let mut context = md5::Context::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => context.consume(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
        }
    }
    Ok(context.finalize().0)
}

/// Lower-case hex of a digest.
pub(crate) fn hex(digest: &[u8; 16]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The partial download of `dest`: `<dest>.part`.
fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_owned();
    name.push(".part");
    dest.with_file_name(name)
}

/// The length of the partial file, 0 when there is none; an error when it is not a regular file.
fn part_len(part: &Path) -> Result<u64, String> {
    match std::fs::metadata(part) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(format!("{}: cannot inspect: {e}", part.display())),
        Ok(meta) if !meta.is_file() => Err(format!(
            "{} exists and is not a regular file; move it away",
            part.display()
        )),
        Ok(meta) => Ok(meta.len()),
    }
}

/// Downloads `url` to `dest` through `<dest>.part` (resumed when present), checks the md5 and
/// renames. Returns the file's size, or why this mirror did not deliver it. A `.part` with the
/// wrong checksum or over the size limit is removed; one left by a broken connection is kept for
/// the next mirror (or run) to resume.
fn download_one(
    agent: &ureq::Agent,
    url: &str,
    name: &str,
    dest: &Path,
    expected: [u8; 16],
    options: &FetchOptions,
    progress: &mut dyn Progress,
) -> Result<u64, String> {
    let part = part_path(dest);
    let remove_part = || {
        let _ = std::fs::remove_file(&part);
    };
    let mut last_error = String::new();
    for attempt in 1..=ATTEMPTS {
        let mut offset = part_len(&part)?;
        if offset > options.max_file_bytes {
            remove_part();
            offset = 0;
        }
        let received = match receive(agent, url, name, &part, offset, options, progress) {
            Ok(received) => received,
            Err(Receive::Retry(reason)) if attempt < ATTEMPTS => {
                progress.message(&format!("{name} from {url}: {reason}; trying again"));
                last_error = reason;
                continue;
            }
            Err(Receive::Retry(reason)) => return Err(reason),
            Err(Receive::Restart(reason)) => {
                remove_part();
                if attempt < ATTEMPTS {
                    progress.message(&format!(
                        "{name} from {url}: {reason}; downloading it again from the start"
                    ));
                    last_error = reason;
                    continue;
                }
                return Err(reason);
            }
            Err(Receive::Fail(reason)) => return Err(reason),
            Err(Receive::Discard(reason)) => {
                remove_part();
                return Err(reason);
            }
        };
        let found = md5_file(&part)?;
        if found != expected {
            remove_part();
            let reason = format!(
                "md5 {}, expected {} (corrupted download)",
                hex(&found),
                hex(&expected)
            );
            // A resumed file may have started from someone else's bad bytes: once more, whole.
            if received.resumed && attempt < ATTEMPTS {
                progress.message(&format!(
                    "{name} from {url}: {reason}; downloading it again from the start"
                ));
                last_error = reason;
                continue;
            }
            return Err(reason);
        }
        std::fs::rename(&part, dest)
            .map_err(|e| format!("cannot move {} into place: {e}", part.display()))?;
        return Ok(received.total);
    }
    Err(last_error)
}

/// How a receive attempt failed.
enum Receive {
    /// The connection broke (after bytes arrived or not): the `.part` stays, try again.
    Retry(String),
    /// This mirror cannot deliver (HTTP error, bad URL, unreachable host): the `.part` stays.
    Fail(String),
    /// The partial file cannot be resumed (HTTP 416, another range than asked for): the `.part`
    /// goes, try again from the start.
    Restart(String),
    /// What arrived is unusable (over the size limit): the `.part` goes.
    Discard(String),
}

/// What a completed receive produced.
struct Received {
    /// The size of the `.part` file.
    total: u64,
    /// Whether it continued an earlier partial file.
    resumed: bool,
}

/// One HTTP request: appends to `part` from `offset` (a `Range` request) or rewrites it when the
/// server sends the whole file.
fn receive(
    agent: &ureq::Agent,
    url: &str,
    name: &str,
    part: &Path,
    offset: u64,
    options: &FetchOptions,
    progress: &mut dyn Progress,
) -> Result<Received, Receive> {
    let mut request = agent.get(url);
    if offset > 0 {
        request = request.header("Range", format!("bytes={offset}-"));
    }
    let mut response = match request.call() {
        Ok(response) => response,
        // The part is complete already, or longer than the file: start again.
        Err(ureq::Error::StatusCode(416)) if offset > 0 => {
            return Err(Receive::Restart(
                "the server refused to resume the partial file (HTTP 416)".into(),
            ));
        }
        Err(ureq::Error::StatusCode(code)) => {
            return Err(Receive::Fail(format!("HTTP status {code}")));
        }
        // Unreachable hosts, refused connections, timeouts, bad URLs: the next mirror.
        Err(e) => return Err(Receive::Fail(e.to_string())),
    };
    let status = response.status().as_u16();
    let resumed = match status {
        206 if offset > 0 => {
            let range = response
                .headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !range.starts_with(&format!("bytes {offset}-")) {
                return Err(Receive::Restart(format!(
                    "asked for bytes {offset}- but the server sent the range `{range}`"
                )));
            }
            true
        }
        200 => false,
        other => return Err(Receive::Fail(format!("unexpected HTTP status {other}"))),
    };
    let start = if resumed { offset } else { 0 };
    let body = response.body_mut();
    let length = body.content_length();
    let total = length.map(|l| start.saturating_add(l));
    if let Some(total) = total
        && total > options.max_file_bytes
    {
        return Err(Receive::Discard(format!(
            "the file is {total} bytes, over the limit of {} bytes",
            options.max_file_bytes
        )));
    }
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .open(part)
        .map_err(|e| Receive::Fail(format!("cannot write {}: {e}", part.display())))?;
    let mut reader = body.as_reader();
    let mut buf = vec![0u8; CHUNK];
    let mut done = start;
    let report = |progress: &mut dyn Progress, done, finished| {
        progress.transfer(Transfer {
            file: name,
            done,
            total,
            finished,
        });
    };
    report(progress, done, false);
    let outcome = loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                break Err(Receive::Retry(format!(
                    "the connection broke after {} of {} bytes ({e})",
                    done,
                    total.map_or_else(|| "?".to_string(), |t| t.to_string())
                )));
            }
        };
        done += n as u64;
        if done > options.max_file_bytes {
            break Err(Receive::Discard(format!(
                "the response exceeds the limit of {} bytes",
                options.max_file_bytes
            )));
        }
        if let Err(e) = file.write_all(&buf[..n]) {
            break Err(Receive::Fail(format!(
                "cannot write {}: {e}",
                part.display()
            )));
        }
        report(progress, done, false);
    };
    report(progress, done, true);
    outcome?;
    if let Some(total) = total
        && done < total
    {
        return Err(Receive::Retry(format!(
            "the connection closed after {done} of {total} bytes (truncated)"
        )));
    }
    file.sync_all()
        .map_err(|e| Receive::Fail(format!("cannot write {}: {e}", part.display())))?;
    Ok(Received {
        total: done,
        resumed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::{FILE_NAMES, fetch_with};
    use crate::testutil::{Reply, Server, TempDir, published_shape_files};
    use crate::{DatasetKind, Error};
    use std::time::Duration;

    /// Four small distinct files standing in for the data set.
    fn files() -> [Vec<u8>; 4] {
        std::array::from_fn(|i| (0..1000 + 300 * i).map(|b| (b * 7 + i) as u8).collect())
    }

    fn digests_of(files: &[Vec<u8>; 4]) -> Digests {
        Digests {
            md5: std::array::from_fn(|i| md5::compute(&files[i]).0),
        }
    }

    fn options(mirrors: Vec<String>, digests: Digests) -> FetchOptions {
        FetchOptions {
            mirrors,
            digests,
            registry_fallback: false,
            max_file_bytes: 1 << 20,
            timeout: Duration::from_secs(10),
        }
    }

    /// Routes serving `files` under `/<prefix>/`.
    fn routes(prefix: &str, files: &[Vec<u8>; 4]) -> Vec<(String, Reply)> {
        FILE_NAMES
            .iter()
            .zip(files)
            .map(|(n, f)| (format!("/{prefix}/{n}"), Reply::Bytes(f.clone())))
            .collect()
    }

    fn start(routes: Vec<(String, Reply)>) -> Server {
        Server::start(
            routes
                .iter()
                .map(|(p, r)| (p.as_str(), r.clone()))
                .collect(),
        )
    }

    /// Runs [`download_all`] into `dir`; returns the messages and the outcome.
    fn run(dir: &Path, options: &FetchOptions) -> (Vec<String>, Result<(), DownloadError>) {
        let mut lines = Vec::new();
        let result = download_all(
            dir,
            &FILE_NAMES,
            &options.digests,
            options,
            &options.mirrors,
            &mut |l: &str| lines.push(l.to_owned()),
        );
        (lines, result)
    }

    fn assert_in_place(dir: &Path, files: &[Vec<u8>; 4]) {
        for (name, bytes) in FILE_NAMES.iter().zip(files) {
            assert_eq!(&std::fs::read(dir.join(name)).unwrap(), bytes, "{name}");
            assert!(
                !dir.join(format!("{name}.part")).exists(),
                "{name}.part left"
            );
        }
    }

    #[test]
    fn good_download_is_verified_and_not_repeated() {
        let files = files();
        let server = start(routes("a", &files));
        let dir = TempDir::new("dl-good");
        let opts = options(vec![server.url("a")], digests_of(&files));
        let (lines, result) = run(dir.path(), &opts);
        assert!(result.is_ok(), "{lines:?}");
        assert_in_place(dir.path(), &files);
        assert_eq!(server.requests().len(), 4, "{:?}", server.requests());
        assert!(
            lines.iter().any(|l| l.contains("md5 verified")),
            "{lines:?}"
        );
        // Again: every file is in place with the right md5, so no request at all.
        let (lines, result) = run(dir.path(), &opts);
        assert!(result.is_ok(), "{lines:?}");
        assert_eq!(server.requests().len(), 4, "{:?}", server.requests());
        assert!(
            lines.iter().all(|l| l.contains("already here")),
            "{lines:?}"
        );
    }

    #[test]
    fn corrupted_file_is_rejected_and_the_next_mirror_taken() {
        let files = files();
        let mut bad = files.clone();
        bad[0][500] ^= 0xff;
        let mut all = routes("a", &bad);
        all.extend(routes("b", &files));
        let server = start(all);
        let dir = TempDir::new("dl-corrupt");
        let opts = options(vec![server.url("a"), server.url("b")], digests_of(&files));
        let (lines, result) = run(dir.path(), &opts);
        assert!(result.is_ok(), "{lines:?}");
        assert_in_place(dir.path(), &files);
        let expected = hex(&opts.digests.md5[0]);
        let found = hex(&md5::compute(&bad[0]).0);
        let line = format!(
            "train-images-idx3-ubyte.gz from {}: md5 {found}, expected {expected} (corrupted \
             download); trying the next mirror",
            server.url("a")
        );
        assert!(lines.contains(&line), "{lines:?}");
        let requests = server.requests();
        assert_eq!(
            requests[..2],
            [
                "/a/train-images-idx3-ubyte.gz -",
                "/b/train-images-idx3-ubyte.gz -"
            ]
        );
        // Mirror a is still first for the other files (its copies of them are fine).
        assert_eq!(requests[2], "/a/train-labels-idx1-ubyte.gz -");
    }

    #[test]
    fn truncated_response_is_resumed() {
        let files = files();
        let mut all = routes("a", &files);
        all[2].1 = Reply::Truncate {
            bytes: files[2].clone(),
            send: 700,
            times: 1,
        };
        let server = start(all);
        let dir = TempDir::new("dl-truncated");
        let opts = options(vec![server.url("a")], digests_of(&files));
        let (lines, result) = run(dir.path(), &opts);
        assert!(result.is_ok(), "{lines:?}");
        assert_in_place(dir.path(), &files);
        let requests = server.requests();
        assert!(
            requests.contains(&"/a/t10k-images-idx3-ubyte.gz 700-".to_owned()),
            "{requests:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("t10k-images-idx3-ubyte.gz") && l.contains("trying again")),
            "{lines:?}"
        );
    }

    #[test]
    fn truncated_every_time_is_a_failure_and_the_part_is_resumed_by_the_next_mirror() {
        let files = files();
        let mut all = routes("a", &files);
        all[0].1 = Reply::Truncate {
            bytes: files[0].clone(),
            send: 100,
            times: usize::MAX,
        };
        all.extend(routes("b", &files));
        let server = start(all);
        let dir = TempDir::new("dl-truncated-always");
        let opts = options(vec![server.url("a"), server.url("b")], digests_of(&files));
        let (lines, result) = run(dir.path(), &opts);
        assert!(result.is_ok(), "{lines:?}");
        assert_in_place(dir.path(), &files);
        let requests = server.requests();
        assert_eq!(
            requests[..4],
            [
                "/a/train-images-idx3-ubyte.gz -",
                "/a/train-images-idx3-ubyte.gz 100-",
                "/a/train-images-idx3-ubyte.gz 200-",
                "/b/train-images-idx3-ubyte.gz 300-",
            ]
        );
    }

    #[test]
    fn resumed_file_with_a_bad_start_is_downloaded_again_whole() {
        let files = files();
        let server = start(routes("a", &files));
        let dir = TempDir::new("dl-bad-part");
        // A stale part whose bytes are not the file's start.
        std::fs::write(
            dir.path().join("train-images-idx3-ubyte.gz.part"),
            [0xAA; 10],
        )
        .unwrap();
        let opts = options(vec![server.url("a")], digests_of(&files));
        let (lines, result) = run(dir.path(), &opts);
        assert!(result.is_ok(), "{lines:?}");
        assert_in_place(dir.path(), &files);
        assert_eq!(
            server.requests()[..2],
            [
                "/a/train-images-idx3-ubyte.gz 10-",
                "/a/train-images-idx3-ubyte.gz -"
            ]
        );
    }

    #[test]
    fn part_longer_than_the_file_is_restarted() {
        let files = files();
        let server = start(routes("a", &files));
        let dir = TempDir::new("dl-long-part");
        std::fs::write(
            dir.path().join("train-labels-idx1-ubyte.gz.part"),
            vec![1u8; 5000],
        )
        .unwrap();
        let opts = options(vec![server.url("a")], digests_of(&files));
        let (lines, result) = run(dir.path(), &opts);
        assert!(result.is_ok(), "{lines:?}");
        assert_in_place(dir.path(), &files);
        assert!(lines.iter().any(|l| l.contains("HTTP 416")), "{lines:?}");
    }

    #[test]
    fn all_mirrors_bad_is_one_error_naming_each_failure() {
        let files = files();
        let mut bad = files.clone();
        bad[0].truncate(10);
        let mut all = vec![(
            "/a/train-images-idx3-ubyte.gz".to_owned(),
            Reply::Status(500),
        )];
        all.extend(routes("b", &bad));
        let server = start(all);
        // A port nobody listens on: bind one, note it, close it.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mirrors = vec![
            server.url("a"),
            server.url("missing"),
            server.url("b"),
            format!("http://{closed}/"),
            "not a url".to_owned(),
            "ftp://127.0.0.1/x".to_owned(),
        ];
        let dir = TempDir::new("dl-all-bad");
        let opts = options(mirrors.clone(), digests_of(&files));
        let mut lines = Vec::new();
        let err = fetch_with(DatasetKind::Mnist, dir.path(), &opts, &mut |l: &str| {
            lines.push(l.to_owned())
        })
        .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Mirrors { .. }), "{msg}");
        assert!(
            msg.starts_with("mnist: no mirror delivered train-images-idx3-ubyte.gz:\n"),
            "{msg}"
        );
        assert_eq!(msg.lines().count(), 1 + mirrors.len(), "{msg}");
        for (line, mirror) in msg.lines().skip(1).zip(&mirrors) {
            assert!(line.starts_with(&format!("  {mirror}: ")), "{msg}");
        }
        assert!(msg.contains("HTTP status 500"), "{msg}");
        assert!(msg.contains("HTTP status 404"), "{msg}");
        assert!(msg.contains("(corrupted download)"), "{msg}");
        let target = dir.path().join("mnist");
        assert!(!target.join(FILE_NAMES[0]).exists());
        assert!(!target.join(format!("{}.part", FILE_NAMES[0])).exists());
    }

    #[test]
    fn oversized_response_is_refused() {
        let files = files();
        let server = start(routes("a", &files));
        let dir = TempDir::new("dl-huge");
        let mut opts = options(vec![server.url("a")], digests_of(&files));
        opts.max_file_bytes = 999;
        let (lines, result) = run(dir.path(), &opts);
        let Err(DownloadError::NoMirror(file, failures)) = result else {
            panic!("{lines:?}");
        };
        assert_eq!(file, FILE_NAMES[0]);
        assert_eq!(
            failures[0].reason,
            "the file is 1000 bytes, over the limit of 999 bytes"
        );
        assert!(!dir.path().join(format!("{file}.part")).exists());
    }

    #[test]
    fn directory_at_the_destination_is_refused_without_a_request() {
        let files = files();
        let server = start(routes("a", &files));
        let dir = TempDir::new("dl-dir");
        std::fs::create_dir(dir.path().join(FILE_NAMES[0])).unwrap();
        let opts = options(vec![server.url("a")], digests_of(&files));
        let (_, result) = run(dir.path(), &opts);
        let Err(DownloadError::Local(reason)) = result else {
            panic!("expected a local error");
        };
        assert!(reason.contains("is not a regular file"), "{reason}");
        assert!(server.requests().is_empty());
        std::fs::remove_dir(dir.path().join(FILE_NAMES[0])).unwrap();
        std::fs::create_dir(dir.path().join(format!("{}.part", FILE_NAMES[0]))).unwrap();
        let (_, result) = run(dir.path(), &opts);
        assert!(matches!(result, Err(DownloadError::Local(_))));
        assert!(server.requests().is_empty());
    }

    #[test]
    fn fetch_verifies_the_set_and_a_complete_folder_needs_no_request() {
        let kind = DatasetKind::FashionMnist;
        let files = published_shape_files(kind);
        let server = start(routes("f", &files));
        let dir = TempDir::new("dl-fetch");
        let opts = options(vec![server.url("f")], digests_of(&files));
        let mut lines = Vec::new();
        let target = fetch_with(kind, dir.path(), &opts, &mut |l: &str| {
            lines.push(l.to_owned())
        })
        .unwrap();
        assert_eq!(target, dir.path().join("fashion-mnist"));
        assert_in_place(&target, &files);
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("fashion-mnist: verified (train 60000")),
            "{lines:?}"
        );
        assert_eq!(server.requests().len(), 4);
        let again = fetch_with(kind, dir.path(), &opts, &mut |_: &str| {}).unwrap();
        assert_eq!(again, target);
        assert_eq!(server.requests().len(), 4, "{:?}", server.requests());
    }

    #[test]
    fn join_url_puts_one_slash() {
        assert_eq!(join_url("http://h/a/", "f.gz"), "http://h/a/f.gz");
        assert_eq!(join_url("http://h/a", "f.gz"), "http://h/a/f.gz");
    }
}
