//! Records the git commit cht is built from (`CHT_GIT_COMMIT`: the commit `HEAD` points at; edits
//! not yet committed are not reflected) for `summary.json` and `config.toml`; nothing when not
//! built from a git checkout (e.g. from crates.io).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn main() {
    // Rebuild when HEAD moves: a checkout (HEAD) or a commit (the branch's ref, or packed refs).
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for path in &watched {
        // A path that does not exist would rerun this script on every build.
        if let Some(p) = git(&["rev-parse", "--git-path", path])
            && std::path::Path::new(&p).exists()
        {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    if let Some(commit) = git(&["rev-parse", "--short=12", "HEAD"]) {
        println!("cargo:rustc-env=CHT_GIT_COMMIT={commit}");
    }
}
