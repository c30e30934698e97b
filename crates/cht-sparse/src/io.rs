//! The one way cht reads and writes files: bounded, regular files only, atomic replacement.
//!
//! Every reader of untrusted files (masks, IDX images, configs, checkpoints, corpora, tokenizer
//! files, the web subset) starts with [`read_bounded`]: it refuses anything but a regular file
//! (a FIFO with no writer would block forever, `/dev/zero` would never end) and any file larger
//! than the reader's stated limit, before allocating. Parsers then work on the bytes in memory with
//! checked arithmetic.
//!
//! Every writer of a result (checkpoints, configs, plots, mask scores, the web subset) goes
//! through [`write_atomic`]: a new temporary file created exclusively (`O_EXCL`: a planted
//! symlink cannot redirect it) next to the target, written, `fsync`ed, renamed over the target,
//! and the directory `fsync`ed; on failure the temporary is removed. A target that exists and is
//! not a regular file (a device such as `/dev/full`, a FIFO, a directory) is refused rather than
//! replaced.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// What can go wrong reading or writing a file; every message names the file and what it is for.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The operating system refused (missing file, permissions, disk full, …).
    #[error("cannot {action} {what} {path}: {source}")]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// What the file is for (`checkpoint`, `config`, `mask`, …).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: io::Error,
    },
    /// A directory, device, FIFO or socket where a regular file was expected.
    #[error("{what} {path} is {kind}, not a regular file")]
    NotRegular {
        /// What the file is for.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// What it is instead (`a directory`, `a FIFO`, `a character device`, …).
        kind: &'static str,
    },
    /// Larger than the reader's limit.
    #[error("{what} {path} is larger than {limit} bytes, the limit for {what} files")]
    TooLarge {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },
    /// Text expected, other bytes found.
    #[error("{what} {path} is not UTF-8 text (invalid byte at offset {offset})")]
    NotUtf8 {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// First invalid byte.
        offset: usize,
    },
}

/// Reads the whole of `path`, which must be a regular file of at most `limit` bytes; `what`
/// names it in errors (`"checkpoint"`, `"mask"`). Nothing larger than the file (or the limit) is
/// allocated, and a special file is refused before it is opened.
///
/// ```rust
/// use cht_sparse::io::{FileError, read_bounded};
///
/// let dir = std::env::temp_dir();
/// let err = read_bounded(&dir, "config", 1 << 20).unwrap_err();
/// assert!(matches!(err, FileError::NotRegular { kind: "a directory", .. }));
/// ```
pub fn read_bounded(path: &Path, what: &'static str, limit: u64) -> Result<Vec<u8>, FileError> {
    let read_err = |source| FileError::Io {
        action: "read",
        what,
        path: path.to_owned(),
        source,
    };
    // Checked before opening: opening a FIFO with no writer blocks.
    let meta = fs::metadata(path).map_err(read_err)?;
    regular(&meta, what, path)?;
    let file = open_for_reading(path).map_err(read_err)?;
    // Checked again on the handle: the path may have been swapped in between.
    let meta = file.metadata().map_err(read_err)?;
    regular(&meta, what, path)?;
    if meta.len() > limit {
        return Err(FileError::TooLarge {
            what,
            path: path.to_owned(),
            limit,
        });
    }
    // The length is a hint only (the file may grow): read at most limit + 1 bytes.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > limit {
        return Err(FileError::TooLarge {
            what,
            path: path.to_owned(),
            limit,
        });
    }
    Ok(bytes)
}

/// [`read_bounded`] for UTF-8 text.
pub fn read_text_bounded(path: &Path, what: &'static str, limit: u64) -> Result<String, FileError> {
    let bytes = read_bounded(path, what, limit)?;
    String::from_utf8(bytes).map_err(|e| FileError::NotUtf8 {
        what,
        path: path.to_owned(),
        offset: e.utf8_error().valid_up_to(),
    })
}

/// Replaces `path` with `bytes` atomically: readers see the old file or the new one, never a
/// part. The temporary file is created exclusively in the same directory, synced, renamed over
/// `path`, and the directory synced; on failure it is removed. A `path` that exists and is not a
/// regular file (or a link to one) is refused. `what` names the file in errors.
///
/// ```rust
/// use cht_sparse::io::{read_bounded, write_atomic};
///
/// let path = std::env::temp_dir().join(format!("cht-io-doc-{}.txt", std::process::id()));
/// write_atomic(&path, "example", b"hello")?;
/// write_atomic(&path, "example", b"world")?;
/// assert_eq!(read_bounded(&path, "example", 16)?, b"world");
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), cht_sparse::io::FileError>(())
/// ```
pub fn write_atomic(path: &Path, what: &'static str, bytes: &[u8]) -> Result<(), FileError> {
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| FileError::Io {
            action: "write",
            what,
            path,
            source,
        }
    };
    match fs::metadata(path) {
        Ok(meta) => regular(&meta, what, path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(write_err(path)(e)),
    }
    let name = path
        .file_name()
        .ok_or_else(|| FileError::NotRegular {
            what,
            path: path.to_owned(),
            kind: "a directory name",
        })?
        .to_string_lossy();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let (tmp, mut file) = create_temporary(dir, &name).map_err(write_err(path))?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| {
            // Closed before the rename (where `File` has no destructor, wasm32, there is nothing
            // to close).
            #[allow(clippy::drop_non_drop)]
            drop(file);
            fs::rename(&tmp, path)
        });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(write_err(path)(e));
    }
    sync_dir(dir).map_err(write_err(dir))
}

/// Numbers temporary files within this process.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Creates a new file `.<name>.<pid>.<n>.tmp` in `dir` with `O_EXCL`, trying fresh names while
/// one exists (a leftover of a killed process, or something planted there).
fn create_temporary(dir: &Path, name: &str) -> io::Result<(PathBuf, File)> {
    let mut last = None;
    for _ in 0..64 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free temporary file name")))
}

/// Makes a rename in `dir` durable (Unix; elsewhere renames are durable once the file is synced
/// or the platform gives no way to sync a directory).
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Opens for reading without blocking on a FIFO that was swapped in after the check.
fn open_for_reading(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    options.open(path)
}

/// Errors unless `meta` describes a regular file.
fn regular(meta: &fs::Metadata, what: &'static str, path: &Path) -> Result<(), FileError> {
    if meta.is_file() {
        return Ok(());
    }
    Err(FileError::NotRegular {
        what,
        path: path.to_owned(),
        kind: kind_of(meta),
    })
}

fn kind_of(meta: &fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "not a regular file"
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cht-io-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reads_regular_files_within_the_limit_only() {
        let dir = temp_dir("read");
        let path = dir.join("f");
        fs::write(&path, b"12345").unwrap();
        assert_eq!(read_bounded(&path, "test", 5).unwrap(), b"12345");
        assert!(matches!(
            read_bounded(&path, "test", 4),
            Err(FileError::TooLarge { limit: 4, .. })
        ));
        assert!(matches!(
            read_bounded(&dir, "test", 4),
            Err(FileError::NotRegular {
                kind: "a directory",
                ..
            })
        ));
        let missing = read_bounded(&dir.join("nope"), "mask", 4).unwrap_err();
        assert!(
            missing.to_string().starts_with("cannot read mask "),
            "{missing}"
        );
        fs::write(&path, [0xff, b'a']).unwrap();
        assert!(matches!(
            read_text_bounded(&path, "test", 5),
            Err(FileError::NotUtf8 { offset: 0, .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn special_files_are_refused_without_blocking_or_reading_forever() {
        for (path, kind) in [
            ("/dev/zero", "a character device"),
            ("/dev/urandom", "a character device"),
        ] {
            match read_bounded(Path::new(path), "corpus", 1 << 30) {
                Err(FileError::NotRegular { kind: k, .. }) => assert_eq!(k, kind),
                other => panic!("{path}: {other:?}"),
            }
        }
        let dir = temp_dir("fifo");
        let fifo = dir.join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        assert!(matches!(
            read_bounded(&fifo, "config", 1 << 20),
            Err(FileError::NotRegular { kind: "a FIFO", .. })
        ));
        assert!(matches!(
            write_atomic(&fifo, "plot", b"x"),
            Err(FileError::NotRegular { kind: "a FIFO", .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn writes_replace_atomically_refuse_devices_and_ignore_planted_links() {
        let dir = temp_dir("write");
        let path = dir.join("out.bin");
        write_atomic(&path, "test", b"one").unwrap();
        write_atomic(&path, "test", b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        // Only the target is left: no temporary behind.
        let names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap()).collect();
        assert_eq!(names.len(), 1);
        // A link planted at every temporary name the next write could use is never followed.
        let victim = dir.join("victim");
        fs::write(&victim, b"precious").unwrap();
        let next = NEXT.load(Ordering::Relaxed);
        for n in next..next + 8 {
            let _ = std::os::unix::fs::symlink(
                &victim,
                dir.join(format!(".out.bin.{}.{n}.tmp", std::process::id())),
            );
        }
        write_atomic(&path, "test", b"three").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(fs::read(&path).unwrap(), b"three");
        // Devices are refused, not replaced by a regular file.
        assert!(matches!(
            write_atomic(Path::new("/dev/null"), "subset", b"x"),
            Err(FileError::NotRegular {
                kind: "a character device",
                ..
            })
        ));
        assert!(!Path::new("/dev/null").metadata().unwrap().is_file());
        // A failed write (no such directory) leaves nothing and names the file.
        let err = write_atomic(&dir.join("missing/out"), "plot", b"x").unwrap_err();
        assert!(err.to_string().contains("missing/out"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
