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
