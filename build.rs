//! Stamps the git revision into the binary (`waf-admission --version`).
//! A build without .git (a container build from a source tarball) passes
//! it in WAF_GIT_REVISION.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=WAF_GIT_REVISION");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs");
    let revision = std::env::var("WAF_GIT_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| {
            Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=WAF_GIT_REVISION={revision}");
}
