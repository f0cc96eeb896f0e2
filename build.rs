//! Stamps the git revision into the binary (`waf-admission --version`).
//! A build without .git (a container build from a source tarball) passes
//! it in WAF_GIT_REVISION.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=WAF_GIT_REVISION");
    println!("cargo:rerun-if-changed=build.rs");
    // Where HEAD and the refs really are: in a `git worktree`, `.git` is a
    // file, and naming a path that does not exist makes cargo rerun this
    // script, and so rebuild the crate, on every build.
    for (what, file) in [("--git-dir", "HEAD"), ("--git-common-dir", "refs")] {
        if let Some(dir) = git(&["rev-parse", what]) {
            println!("cargo:rerun-if-changed={dir}/{file}");
        }
    }
    let revision = std::env::var("WAF_GIT_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=WAF_GIT_REVISION={revision}");
}

fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
}
