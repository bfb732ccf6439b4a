//! Builds the eBPF programs (`gateway-ebpf`) for `bpfel-unknown-none` and leaves the object in
//! `OUT_DIR`, where `intercept::loader` embeds it.
//!
//! The eBPF crate is compiled by the toolchain named by `TOLLGATE_EBPF_TOOLCHAIN` (default
//! `debian`: Debian's rustc 1.96, linked into rustup by `cargo xtask setup`, which ships a
//! prebuilt BPF `core`). `AYA_BUILD_SKIP=1` skips it (aya-build then writes an empty object and
//! the gateway reports that interception is unavailable).
use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

fn main() -> anyhow::Result<()> {
    println!("cargo::rerun-if-env-changed=TOLLGATE_EBPF_TOOLCHAIN");
    println!("cargo::rerun-if-env-changed=AYA_BUILD_SKIP");
    if std::env::var_os("AYA_BUILD_SKIP").is_some_and(|v| v == "1" || v == "true") {
        // No eBPF object (fuzzing, jobs without bpf-linker): embed an empty one; the gateway
        // then refuses interception.mode = "cgroup" and says why.
        let out_dir = std::env::var("OUT_DIR").context("OUT_DIR")?;
        std::fs::write(std::path::Path::new(&out_dir).join("tollgate"), [])
            .context("writing the empty eBPF object")?;
        println!("cargo::warning=AYA_BUILD_SKIP set: building without the eBPF programs");
        return Ok(());
    }
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|package| package.name.as_str() == "gateway-ebpf")
        .ok_or_else(|| anyhow!("gateway-ebpf package not found in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    let package = aya_build::Package {
        name: ebpf.name.as_str(),
        root_dir: root_dir.as_str(),
        ..Default::default()
    };
    let toolchain_name =
        std::env::var("TOLLGATE_EBPF_TOOLCHAIN").unwrap_or_else(|_| "debian".to_owned());
    // aya-build wants a &'static str; a build script runs once, so leaking it is fine.
    let toolchain = Toolchain::Custom(Box::leak(toolchain_name.into_boxed_str()));
    aya_build::build_ebpf([package], toolchain)
}
