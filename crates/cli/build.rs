//! Records the commit the binary is built from (`gatehouse -V`, `deck version`). A build outside git (an exported
//! tarball) says `unknown`, or what `GATEHOUSE_BUILD_COMMIT` names.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=GATEHOUSE_BUILD_COMMIT");
    let commit = std::env::var("GATEHOUSE_BUILD_COMMIT").ok().filter(|c| !c.is_empty()).or_else(|| {
        let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
        // Rebuild when HEAD moves: HEAD itself (a checkout), the branch it names (a commit), packed refs.
        let branch = git(&["symbolic-ref", "-q", "HEAD"]);
        for name in ["HEAD", "packed-refs"].into_iter().chain(branch.as_deref()) {
            let Some(file) = git(&["rev-parse", "--git-path", name]) else { continue };
            let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            // A missing file would make cargo run this script on every build.
            if file.exists() {
                println!("cargo:rerun-if-changed={}", file.display());
            }
        }
        Some(commit)
    });
    println!("cargo:rustc-env=GATEHOUSE_COMMIT={}", commit.as_deref().unwrap_or("unknown"));
}
