//! Fetches one data set and loads it back: `cargo run -p cht-data --example fetch -- mnist data`.
//!
//! The same steps as `cht data fetch`, for trying the fetch without the CLI.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use cht_data::{DatasetKind, MnistLike};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kind, data_dir] = args.as_slice() else {
        eprintln!("usage: fetch <mnist|fashion-mnist> <data-dir>");
        return ExitCode::from(2);
    };
    let kind: DatasetKind = match kind.parse() {
        Ok(kind) => kind,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let data_dir = PathBuf::from(data_dir);
    let start = Instant::now();
    if let Err(e) = cht_data::fetch(kind, &data_dir, |line| println!("{line}")) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let fetched = start.elapsed();
    let start = Instant::now();
    match MnistLike::load(&data_dir, kind) {
        Ok((train, test)) => {
            let loaded = start.elapsed();
            for set in [&train, &test] {
                println!(
                    "{}: {} samples, per class {:?}",
                    set.name,
                    set.n,
                    set.class_counts()
                );
            }
            println!(
                "fetch {:.1} s, load {:.2} s",
                fetched.as_secs_f64(),
                loaded.as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
