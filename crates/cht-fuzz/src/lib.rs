//! A small, deterministic mutation fuzzer for cht's readers, run by plain `cargo test`.
//!
//! Every reader of untrusted bytes (masks, IDX files, corpora, tokenizers, the web subset) has a
//! fuzz test: valid example files (the *seeds*) are mutated — bits flipped, bytes set to
//! interesting values, ranges inserted, deleted, duplicated or spliced from another seed, digit
//! runs replaced by extreme numbers, little-endian words replaced by boundary values — and the
//! reader must answer `Ok` or `Err` for every one of them: no panic, no case slower than
//! 10 seconds, and no single allocation larger than a stated bound (so a header that claims a huge
//! size cannot make the reader allocate it).
//!
//! ```no_run
//! #[global_allocator]
//! static ALLOC: cht_fuzz::CountingAlloc = cht_fuzz::CountingAlloc;
//!
//! # fn parse(_: &[u8]) -> Result<(), ()> { Ok(()) }
//! cht_fuzz::Fuzz::new("my-reader")
//!     .seeds(vec![b"a valid file".to_vec()])
//!     .max_alloc(1 << 20)
//!     .run(|bytes| {
//!         let _ = parse(bytes);
//!     });
//! ```
//!
//! The budget comes from the environment: `CHT_FUZZ_CASES` cases (default 10 000), or, when
//! `CHT_FUZZ_SECONDS` is set, as many cases as fit in that many seconds. Case `i` of the fuzzer
//! named `name` always gets the same input, so a failure is reproducible; the failing input is
//! also written to `target/fuzz-failures/<name>/<case>.bin`, ready to be added to the reader's
//! regression corpus, which [`replay`] runs.
//!
//! Allocations are measured per thread by [`CountingAlloc`], which the test binary installs as
//! its global allocator. A request the system cannot satisfy at all (or one above 16 × the bound)
//! cannot be turned into a panic — an allocator must not unwind — so the harness writes the input
//! and aborts the process with the report instead; a case that runs past the time limit is
//! reported the same way by a watchdog thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Default bound on the largest single allocation of one case: 256 MiB.
pub const DEFAULT_MAX_ALLOC: usize = 256 << 20;
/// Default number of cases when neither `CHT_FUZZ_CASES` nor `CHT_FUZZ_SECONDS` is set.
pub const DEFAULT_CASES: u64 = 10_000;
/// A case slower than this fails.
pub const CASE_TIME_LIMIT: Duration = Duration::from_secs(10);
/// Mutated inputs are kept below this many bytes.
pub const MAX_INPUT: usize = 1 << 20;

thread_local! {
    /// The largest single allocation or reallocation request on this thread since the last reset.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    /// Requests above this size abort the process with a report (`usize::MAX`: none).
    static HARD_LIMIT: Cell<usize> = const { Cell::new(usize::MAX) };
    /// The case running on this thread, for the report of an aborting allocation.
    static RUNNING: RefCell<Option<Arc<Mutex<Running>>>> = const { RefCell::new(None) };
}

/// A global allocator over [`System`] that records, per thread, the largest single allocation
/// request since the last reset; the fuzzer resets it before each case and reads it after.
///
/// Install it in a test binary with
/// `#[global_allocator] static ALLOC: cht_fuzz::CountingAlloc = cht_fuzz::CountingAlloc;`.
/// Without it the fuzzer still runs, but reports a largest allocation of 0 and cannot check the
/// bound.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAlloc;

impl CountingAlloc {
    /// The largest single request on this thread since the last [`CountingAlloc::reset`].
    pub fn largest() -> usize {
        LARGEST.try_with(Cell::get).unwrap_or(0)
    }

    /// Forgets the requests made so far on this thread.
    pub fn reset() {
        let _ = LARGEST.try_with(|c| c.set(0));
    }
}

/// Records `size` and, when it is beyond the hard limit of a running case, reports and aborts.
fn record(size: usize) {
    let _ = LARGEST.try_with(|c| {
        if size > c.get() {
            c.set(size);
        }
    });
    if size > HARD_LIMIT.try_with(Cell::get).unwrap_or(usize::MAX) {
        abort_case(&format!(
            "a single allocation of {size} bytes, far above the bound"
        ));
    }
}

/// Writes the running case's input, prints the report and aborts (an allocator cannot unwind).
/// Disarms the hard limit first, so that the allocations made here are not checked again.
fn abort_case(reason: &str) {
    let _ = HARD_LIMIT.try_with(|c| c.set(usize::MAX));
    let running = RUNNING
        .try_with(|r| r.try_borrow().ok().and_then(|r| r.clone()))
        .ok()
        .flatten();
    match running {
        Some(running) => match running.lock() {
            Ok(state) => to_stderr(&state.save(reason)),
            Err(_) => to_stderr(&format!("cht-fuzz: {reason}")),
        },
        None => to_stderr(&format!("cht-fuzz: {reason}")),
    }
    std::process::abort();
}

/// Writes a line to the process's standard error, past the test harness's output capture (which
/// an aborting process would never print).
fn to_stderr(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract holds exactly as it does for `System`; the bookkeeping around the calls
// only touches const-initialised thread-local `Cell`s (no allocation, no destructor, no
// unwinding), except on the abort path, which disarms itself before allocating and never returns.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: the caller upholds `alloc`'s contract for `layout`.
        let ptr = unsafe { System.alloc(layout) };
        if ptr.is_null() {
            failed(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: the caller upholds `alloc_zeroed`'s contract for `layout`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if ptr.is_null() {
            failed(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: the caller upholds `realloc`'s contract; `ptr` came from `System`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if new.is_null() {
            failed(new_size);
        }
        new
    }
}

/// A request the system refused: inside a fuzz case this is the reader's fault, so report it
/// with the input before the standard library aborts with a bare message.
fn failed(size: usize) {
    let armed = HARD_LIMIT.try_with(Cell::get).unwrap_or(usize::MAX) != usize::MAX;
    if armed {
        abort_case(&format!(
            "a single allocation of {size} bytes, which the system refused"
        ));
    }
}

/// The case in progress, shared with the watchdog thread and the allocator's abort path.
#[derive(Debug)]
struct Running {
    name: String,
    case: u64,
    input: Vec<u8>,
    started: Instant,
    /// False between cases.
    active: bool,
    /// Set when the run ends, to stop the watchdog.
    finished: bool,
    /// Where failing inputs go.
    dir: PathBuf,
}

impl Running {
    /// Writes the input and returns the report line.
    fn save(&self, reason: &str) -> String {
        let path = self.dir.join(format!("{}.bin", self.case));
        let written = std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(&path, &self.input))
            .map(|()| format!("input written to {}", path.display()))
            .unwrap_or_else(|e| format!("could not write the input to {}: {e}", path.display()));
        format!(
            "fuzz {}: case {} failed: {reason}; {written} ({} bytes)",
            self.name,
            self.case,
            self.input.len()
        )
    }
}

/// A fuzzer for one reader; see the [crate documentation](crate).
#[derive(Debug, Clone)]
pub struct Fuzz {
    name: String,
    seeds: Vec<Vec<u8>>,
    max_alloc: usize,
    cases: Option<u64>,
    time_limit: Duration,
}

impl Fuzz {
    /// A fuzzer named `name` (it names the failure folder and keys the mutations), without seeds
    /// (then inputs are random bytes) and with the default allocation bound
    /// ([`DEFAULT_MAX_ALLOC`]).
    pub fn new(name: &str) -> Fuzz {
        Fuzz {
            name: name.to_owned(),
            seeds: Vec::new(),
            max_alloc: DEFAULT_MAX_ALLOC,
            cases: None,
            time_limit: CASE_TIME_LIMIT,
        }
    }

    /// Valid example inputs to mutate (empty seeds are ignored).
    pub fn seeds(mut self, seeds: Vec<Vec<u8>>) -> Fuzz {
        self.seeds = seeds.into_iter().filter(|s| !s.is_empty()).collect();
        self
    }

    /// The bound on the largest single allocation of one case, in bytes.
    pub fn max_alloc(mut self, bytes: usize) -> Fuzz {
        self.max_alloc = bytes;
        self
    }

    /// A fixed number of cases, overriding `CHT_FUZZ_CASES` and `CHT_FUZZ_SECONDS` (for tests of
    /// the harness itself).
    pub fn cases(mut self, cases: u64) -> Fuzz {
        self.cases = Some(cases);
        self
    }

    /// The time limit of one case (default [`CASE_TIME_LIMIT`]).
    pub fn time_limit(mut self, limit: Duration) -> Fuzz {
        self.time_limit = limit;
        self
    }

    /// The input of case `case`: a mutation of the seeds keyed by the name and the case index.
    pub fn input(&self, case: u64) -> Vec<u8> {
        let mut rng = Rng::keyed(&self.name, case);
        mutate(&mut rng, &self.seeds)
    }

    /// Runs `check` on mutated inputs for the budget of the environment (see the crate
    /// documentation) and prints one summary line. Panics, naming the case and the file the input
    /// was written to, when `check` panics, a case takes too long or allocates above the bound.
    pub fn run(&self, check: impl Fn(&[u8])) {
        let budget = self.budget();
        let start = Instant::now();
        let session = Session::new(self);
        let mut case = 0u64;
        loop {
            let more = match budget {
                Budget::Cases(n) => case < n,
                Budget::Time(t) => start.elapsed() < t,
            };
            if !more {
                break;
            }
            let input = self.input(case);
            session.check(case, &input, &check);
            case += 1;
        }
        session.finish(case);
    }

    /// Runs `check` on every file of `dir` (a regression corpus; a missing folder holds nothing),
    /// in name order, with the checks of [`Fuzz::run`]; a failure names the file.
    pub fn replay(&self, dir: &Path, check: impl Fn(&[u8])) {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect(),
            Err(_) => return,
        };
        files.sort();
        let session = Session::new(self);
        for (case, file) in files.iter().enumerate() {
            let input = match std::fs::read(file) {
                Ok(bytes) => bytes,
                Err(e) => panic!("fuzz {}: cannot read {}: {e}", self.name, file.display()),
            };
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                session.check(case as u64, &input, &check)
            }));
            if let Err(payload) = outcome {
                panic!(
                    "fuzz {}: regression input {} fails: {}",
                    self.name,
                    file.display(),
                    panic_message(payload.as_ref())
                );
            }
        }
        eprintln!(
            "fuzz {} replay: {} files of {}, slowest case {} ms, largest allocation {} bytes",
            self.name,
            files.len(),
            dir.display(),
            session.slowest.get().as_millis(),
            session.largest.get()
        );
    }

    fn budget(&self) -> Budget {
        if let Some(n) = self.cases {
            return Budget::Cases(n);
        }
        let env = |k: &str| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let Some(s) = env("CHT_FUZZ_SECONDS") {
            return Budget::Time(Duration::from_secs(s));
        }
        Budget::Cases(env("CHT_FUZZ_CASES").unwrap_or(DEFAULT_CASES))
    }
}

/// Runs `check` on every file in `dir` (the regression corpus of a reader: inputs that once
/// failed) with the default allocation bound; see [`Fuzz::replay`].
pub fn replay(dir: &Path, check: impl Fn(&[u8])) {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "replay".to_owned());
    Fuzz::new(&name).replay(dir, check);
}

enum Budget {
    Cases(u64),
    Time(Duration),
}

/// One run: the shared state, its watchdog and the statistics.
struct Session<'a> {
    fuzz: &'a Fuzz,
    running: Arc<Mutex<Running>>,
    watchdog: Option<std::thread::JoinHandle<()>>,
    slowest: Cell<Duration>,
    largest: Cell<usize>,
}

impl<'a> Session<'a> {
    fn new(fuzz: &'a Fuzz) -> Session<'a> {
        let running = Arc::new(Mutex::new(Running {
            name: fuzz.name.clone(),
            case: 0,
            input: Vec::new(),
            started: Instant::now(),
            active: false,
            finished: false,
            dir: failure_dir(&fuzz.name),
        }));
        let shared = Arc::clone(&running);
        let limit = fuzz.time_limit;
        let watchdog = std::thread::Builder::new()
            .name(format!("fuzz-watchdog-{}", fuzz.name))
            .spawn(move || watch(&shared, limit))
            .ok();
        Session {
            fuzz,
            running,
            watchdog,
            slowest: Cell::new(Duration::ZERO),
            largest: Cell::new(0),
        }
    }

    /// Runs one case; panics with the report when it fails.
    fn check(&self, case: u64, input: &[u8], check: &impl Fn(&[u8])) {
        if let Ok(mut r) = self.running.lock() {
            r.case = case;
            r.input.clear();
            r.input.extend_from_slice(input);
            r.started = Instant::now();
            r.active = true;
        }
        let previous = RUNNING.with(|c| c.replace(Some(Arc::clone(&self.running))));
        let hard = self.fuzz.max_alloc.saturating_mul(16);
        CountingAlloc::reset();
        HARD_LIMIT.with(|c| c.set(hard));
        let started = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| check(input)));
        let elapsed = started.elapsed();
        HARD_LIMIT.with(|c| c.set(usize::MAX));
        let largest = CountingAlloc::largest();
        RUNNING.with(|c| c.replace(previous));
        if let Ok(mut r) = self.running.lock() {
            r.active = false;
        }
        self.slowest.set(self.slowest.get().max(elapsed));
        self.largest.set(self.largest.get().max(largest));
        let reason = match outcome {
            Err(payload) => Some(format!("panic: {}", panic_message(payload.as_ref()))),
            Ok(()) if elapsed > self.fuzz.time_limit => Some(format!(
                "took {} ms, more than the limit of {} ms",
                elapsed.as_millis(),
                self.fuzz.time_limit.as_millis()
            )),
            Ok(()) if largest > self.fuzz.max_alloc => Some(format!(
                "a single allocation of {largest} bytes, above the bound of {} bytes",
                self.fuzz.max_alloc
            )),
            Ok(()) => None,
        };
        if let Some(reason) = reason {
            let report = match self.running.lock() {
                Ok(r) => r.save(&reason),
                Err(_) => format!("fuzz {}: case {case} failed: {reason}", self.fuzz.name),
            };
            panic!("{report}");
        }
    }

    fn finish(self, cases: u64) {
        println!(
            "fuzz {}: {cases} cases, slowest case {} ms, largest allocation {} bytes",
            self.fuzz.name,
            self.slowest.get().as_millis(),
            self.largest.get()
        );
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        if let Ok(mut r) = self.running.lock() {
            r.finished = true;
        }
        if let Some(w) = self.watchdog.take() {
            w.thread().unpark();
            let _ = w.join();
        }
    }
}

/// Aborts with a report when a case runs past `limit` (a hung reader would otherwise hang the
/// test run without saying which input did it).
fn watch(running: &Mutex<Running>, limit: Duration) {
    loop {
        std::thread::park_timeout(Duration::from_millis(200));
        let Ok(r) = running.lock() else { return };
        if r.finished {
            return;
        }
        // Some slack over the limit: a case just over it is reported by the run itself, with a
        // panic rather than an abort.
        let slack = limit.saturating_mul(2).max(limit + Duration::from_secs(5));
        if r.active && r.started.elapsed() > slack {
            to_stderr(&r.save(&format!(
                "still running after {} ms (hung?)",
                r.started.elapsed().as_millis()
            )));
            std::process::abort();
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a non-string panic payload)".to_owned()
    }
}

/// `<target>/fuzz-failures/<name>`: the workspace's target folder (`CARGO_TARGET_DIR` if set,
/// else `target/` at the root of the workspace of `CARGO_MANIFEST_DIR`), or the temporary folder.
fn failure_dir(name: &str) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    target_dir().join("fuzz-failures").join(safe)
}

fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(manifest) = std::env::var_os("CARGO_MANIFEST_DIR") {
        let manifest = PathBuf::from(manifest);
        // The outermost folder with a `[workspace]` manifest; else the package's own folder.
        let root = manifest
            .ancestors()
            .filter(|d| {
                std::fs::read_to_string(d.join("Cargo.toml"))
                    .is_ok_and(|t| t.lines().any(|l| l.trim() == "[workspace]"))
            })
            .last()
            .map(Path::to_path_buf)
            .unwrap_or(manifest);
        return root.join("target");
    }
    std::env::temp_dir().join("cht-fuzz")
}

/// SplitMix64: small, fast, and good enough to drive mutations.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    /// Keyed by the fuzzer's name (FNV-1a) and the case index.
    fn keyed(name: &str, case: u64) -> Rng {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let mut rng = Rng(h ^ case.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        rng.next();
        rng
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`0` when `n == 0`).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next() % n as u64) as usize
    }

    /// True with probability `1 / n`.
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }

    /// A length biased towards small values: mostly a few bytes, sometimes up to `max`.
    fn len(&mut self, max: usize) -> usize {
        let cap = match self.below(4) {
            0 => 1,
            1 => 8,
            2 => 64,
            _ => max,
        };
        self.below(cap.min(max) + 1)
    }
}

const INTERESTING_BYTES: &[u8] = b"\x00\xff\x7f\x80<'(),:{}\"=[]\n0123456789 .-";

const EXTREME_NUMBERS: &[&str] = &[
    "0",
    "-1",
    "4294967296",
    "18446744073709551615",
    "2305843009213693952",
    "1e308",
    "nan",
    "inf",
    "-0",
    "99999999999999999999999999",
    "65536",
];

const EXTREME_WORDS: &[u64] = &[0, 1, u32::MAX as u64, u64::MAX, 1 << 31, 1 << 61];

/// One mutated input: a seed (or random bytes) with several mutations applied.
fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = match rng.pick(seeds) {
        Some(seed) if !rng.one_in(16) => seed.clone(),
        _ => {
            let n = rng.len(256);
            (0..n).map(|_| rng.next() as u8).collect()
        }
    };
    let rounds = 1 + rng.below(6);
    for _ in 0..rounds {
        mutate_once(rng, seeds, &mut data);
        data.truncate(MAX_INPUT - 1);
    }
    data
}

fn mutate_once(rng: &mut Rng, seeds: &[Vec<u8>], data: &mut Vec<u8>) {
    let n = data.len();
    match rng.below(12) {
        // Bit flips.
        0 | 1 => {
            for _ in 0..=rng.below(4) {
                if n > 0 {
                    let i = rng.below(n);
                    if let Some(b) = data.get_mut(i) {
                        *b ^= 1 << rng.below(8);
                    }
                }
            }
        }
        // Bytes set to interesting values.
        2 | 3 => {
            for _ in 0..=rng.below(3) {
                let v = rng.pick(INTERESTING_BYTES).copied().unwrap_or(0);
                let i = rng.below(n);
                if let Some(b) = data.get_mut(i) {
                    *b = v;
                }
            }
        }
        // Insertion of random or interesting bytes.
        4 => {
            let at = rng.below(n + 1);
            let len = rng.len(64);
            let bytes: Vec<u8> = if rng.one_in(2) {
                (0..len).map(|_| rng.next() as u8).collect()
            } else {
                let v = rng.pick(INTERESTING_BYTES).copied().unwrap_or(0);
                vec![v; len]
            };
            data.splice(at..at, bytes);
        }
        // Deletion of a range.
        5 => {
            let at = rng.below(n + 1);
            let len = rng.len(n - at);
            data.drain(at..at + len);
        }
        // Duplication of a range.
        6 => {
            let at = rng.below(n + 1);
            let len = rng.len(n - at);
            let range: Vec<u8> = data[at..at + len].to_vec();
            let to = rng.below(n + 1);
            let times = if rng.one_in(8) { 1 + rng.below(64) } else { 1 };
            for _ in 0..times {
                data.splice(to..to, range.iter().copied());
                if data.len() >= MAX_INPUT {
                    break;
                }
            }
        }
        // Truncation.
        7 => {
            let keep = rng.below(n + 1);
            data.truncate(keep);
        }
        // Splicing with another seed.
        8 => {
            if let Some(other) = rng.pick(seeds) {
                let cut = rng.below(n + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
        }
        // A run of ASCII digits replaced by an extreme number.
        9 | 10 => {
            let starts: Vec<usize> = (0..n)
                .filter(|&i| data[i].is_ascii_digit() && (i == 0 || !data[i - 1].is_ascii_digit()))
                .collect();
            if let Some(&start) = rng.pick(&starts) {
                let end = (start..n).find(|&i| !data[i].is_ascii_digit()).unwrap_or(n);
                let number = rng.pick(EXTREME_NUMBERS).copied().unwrap_or("0");
                data.splice(start..end, number.bytes());
            } else if let Some(number) = rng.pick(EXTREME_NUMBERS) {
                let at = rng.below(n + 1);
                data.splice(at..at, number.bytes());
            }
        }
        // A little-endian 4- or 8-byte word replaced by a boundary value.
        _ => {
            let width = if rng.one_in(2) { 4 } else { 8 };
            if n >= width {
                let at = rng.below(n - width + 1);
                let value = rng.pick(EXTREME_WORDS).copied().unwrap_or(0);
                let bytes = value.to_le_bytes();
                let word = if rng.one_in(4) {
                    // Big-endian too: IDX headers are big-endian.
                    let mut be = bytes;
                    be[..width].reverse();
                    be
                } else {
                    bytes
                };
                data[at..at + width].copy_from_slice(&word[..width]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static ALLOC: CountingAlloc = CountingAlloc;

    fn failure(run: impl FnOnce()) -> String {
        let err = catch_unwind(AssertUnwindSafe(run)).expect_err("the harness must report");
        panic_message(err.as_ref())
    }

    #[test]
    fn inputs_are_deterministic_varied_and_bounded() {
        let fuzz = Fuzz::new("harness-determinism").seeds(vec![b"{'shape': (2, 3)}".to_vec()]);
        let a: Vec<Vec<u8>> = (0..500).map(|i| fuzz.input(i)).collect();
        let b: Vec<Vec<u8>> = (0..500).map(|i| fuzz.input(i)).collect();
        assert_eq!(a, b);
        let mut distinct = a.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() > 400, "{} distinct inputs", distinct.len());
        assert!(a.iter().all(|x| x.len() < MAX_INPUT));
        // Extreme numbers and random inputs both occur.
        assert!(a.iter().any(|x| x.windows(10).any(|w| w == b"4294967296")));
        let other = Fuzz::new("another-name").seeds(vec![b"{'shape': (2, 3)}".to_vec()]);
        assert_ne!(
            a[..50],
            (0..50).map(|i| other.input(i)).collect::<Vec<_>>()[..]
        );
    }

    #[test]
    fn a_panicking_check_is_reported_with_the_input_file() {
        let fuzz = Fuzz::new("harness-panic")
            .seeds(vec![b"shape 12, 34".to_vec()])
            .cases(5_000);
        let msg = failure(|| {
            fuzz.run(|bytes| {
                // Panics only on some mutations (a `{` appears), like a real parser bug.
                assert!(!bytes.contains(&b'{'), "brace found");
            })
        });
        assert!(
            msg.contains("case ") && msg.contains("brace found"),
            "{msg}"
        );
        let path = msg
            .split("input written to ")
            .nth(1)
            .and_then(|s| s.split(" (").next())
            .unwrap_or_else(|| panic!("no path in {msg:?}"));
        let input = std::fs::read(path).unwrap();
        assert!(input.contains(&b'{'));
        // The file reproduces the failure through `replay`.
        let dir = Path::new(path).parent().unwrap();
        let msg = failure(|| replay(dir, |bytes| assert!(!bytes.contains(&b'{'), "brace")));
        assert!(msg.contains(".bin fails"), "{msg}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_allocation_above_the_bound_is_reported() {
        let fuzz = Fuzz::new("harness-alloc")
            .seeds(vec![vec![1, 2, 3, 4]])
            .max_alloc(1 << 20)
            .cases(200);
        let msg = failure(|| {
            fuzz.run(|bytes| {
                // Allocates from a size the input claims, like a careless header parser.
                let n = usize::from(bytes.first().copied().unwrap_or(0)) << 16;
                let v = std::hint::black_box(vec![0u8; n]);
                drop(v);
            })
        });
        assert!(msg.contains("above the bound of 1048576 bytes"), "{msg}");
        let _ = std::fs::remove_dir_all(failure_dir("harness-alloc"));
        // Within the bound, all is well and the largest allocation is measured.
        Fuzz::new("harness-alloc-ok")
            .seeds(vec![vec![1, 2, 3, 4]])
            .max_alloc(1 << 20)
            .cases(200)
            .run(|bytes| {
                let n = usize::from(bytes.first().copied().unwrap_or(0)) << 8;
                drop(std::hint::black_box(vec![0u8; n]));
            });
    }

    #[test]
    fn a_slow_case_is_reported() {
        let fuzz = Fuzz::new("harness-slow")
            .cases(3)
            .time_limit(Duration::from_millis(20));
        let msg = failure(|| fuzz.run(|_| std::thread::sleep(Duration::from_millis(30))));
        assert!(msg.contains("more than the limit of 20 ms"), "{msg}");
        let _ = std::fs::remove_dir_all(failure_dir("harness-slow"));
    }

    #[test]
    fn replay_of_a_missing_folder_is_nothing() {
        replay(Path::new("/nonexistent/cht-fuzz-corpus"), |_| {
            panic!("no input")
        });
    }

    #[test]
    fn counting_alloc_sees_the_largest_request() {
        CountingAlloc::reset();
        let v: Vec<u8> = std::hint::black_box(Vec::with_capacity(12_345));
        drop(v);
        assert!(CountingAlloc::largest() >= 12_345);
        CountingAlloc::reset();
        assert_eq!(CountingAlloc::largest(), 0);
    }
}
