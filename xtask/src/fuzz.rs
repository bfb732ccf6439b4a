//! `cargo xtask fuzz`: coverage-guided fuzzing (cargo-fuzz, libFuzzer) of everything that parses
//! peer input, for a bounded time per target, starting from the seed corpus kept in
//! `gateway-user/fuzz/corpus/`. Needs rustup's nightly toolchain (libFuzzer).

use std::path::Path;

use anyhow::Context as _;

use crate::command::cmd;

/// The fuzz targets in `gateway-user/fuzz/fuzz_targets/`.
const TARGETS: &[&str] = &["packets", "compressed", "config", "classify", "mask"];

/// Fuzzes each target (or only `only`) for `seconds`.
pub fn run(root: &Path, seconds: u32, only: Option<&str>) -> anyhow::Result<()> {
    if !cmd("cargo", &["fuzz", "--version"]).succeeds() {
        println!("==> installing cargo-fuzz");
        cmd("cargo", &["install", "--locked", "cargo-fuzz"]).run()?;
    }
    let dir = root.join("gateway-user");
    std::env::set_current_dir(&dir).context("entering gateway-user")?;
    for target in TARGETS.iter().filter(|t| only.is_none_or(|o| o == **t)) {
        println!("==> fuzzing `{target}` for {seconds} s");
        // New inputs go to a scratch corpus (git-ignored); the seeds in fuzz/corpus/ are read.
        let scratch = format!("fuzz/corpus-found/{target}");
        let seeds = format!("fuzz/corpus/{target}");
        std::fs::create_dir_all(dir.join(&scratch)).context("creating the scratch corpus")?;
        cmd(
            "cargo",
            &[
                "+nightly",
                "fuzz",
                "run",
                // librdkafka's build (a dependency of the library) does not configure under
                // AddressSanitizer; the targets are safe Rust, where libFuzzer finds panics,
                // overflows and hangs without it.
                "--sanitizer",
                "none",
                target,
                &scratch,
                &seeds,
                "--",
                &format!("-max_total_time={seconds}"),
            ],
        )
        // The eBPF object is not needed to fuzz parsers.
        .env("AYA_BUILD_SKIP", "1")
        .run()?;
    }
    Ok(())
}
