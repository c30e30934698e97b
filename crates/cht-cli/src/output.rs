//! The CLI's stdout and stderr. `println!` panics when the reader of a pipe has gone
//! (`cht score … | head`, `cht train … 2>&1 | head -1`); these macros end the process quietly
//! instead: with status 0 when stdout closed (the reader has what it asked for), 2 when stderr
//! closed (the command did not get to finish its work).

/// `println!` that survives a closed pipe.
macro_rules! outln {
    () => { $crate::output::write(false, format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::write(false, format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` that survives a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::write(false, format_args!($($arg)*)) };
}

/// `eprintln!` that survives a closed pipe.
macro_rules! errln {
    () => { $crate::output::write(true, format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::write(true, format_args!("{}\n", format_args!($($arg)*))) };
}

/// `eprint!` that survives a closed pipe.
macro_rules! err {
    ($($arg:tt)*) => { $crate::output::write(true, format_args!($($arg)*)) };
}

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set on the ranks but 0 of a data-parallel run: they train silently (rank 0 reports for all);
/// errors still print (see [`write_error`]).
static QUIET: AtomicBool = AtomicBool::new(false);

/// Silences (or not) the macros above and the progress bars for the rest of the process.
pub(crate) fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether this process reports (rank 0, or not data-parallel).
pub(crate) fn is_quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Writes `args` to stderr or stdout; a closed pipe ends the process (see the module docs), any
/// other error (a detached terminal) is ignored as `println!`'s callers cannot act on it.
pub(crate) fn write(stderr: bool, args: std::fmt::Arguments<'_>) {
    if is_quiet() {
        return;
    }
    write_error_or(stderr, args);
}

/// [`write()`] even on a quiet rank: for the error that ends the process.
pub(crate) fn write_error(args: std::fmt::Arguments<'_>) {
    write_error_or(true, args);
}

fn write_error_or(stderr: bool, args: std::fmt::Arguments<'_>) {
    let result = if stderr {
        io::stderr().lock().write_fmt(args)
    } else {
        let mut out = io::stdout().lock();
        out.write_fmt(args).and_then(|()| out.flush())
    };
    if let Err(e) = result
        && e.kind() == io::ErrorKind::BrokenPipe
    {
        std::process::exit(if stderr { 2 } else { 0 });
    }
}
