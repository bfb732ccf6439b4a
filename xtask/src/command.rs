//! Running child commands with their command line in every error.

use std::{
    ffi::OsStr,
    process::{Command, Output},
};

use anyhow::{Context as _, bail};

/// A command about to run.
pub struct Step {
    command: Command,
    line: String,
    stdin: Option<String>,
}

/// `program args...`
pub fn cmd<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Step {
    let mut command = Command::new(program);
    command.args(args);
    let line = std::iter::once(program.to_owned())
        .chain(
            args.iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned()),
        )
        .collect::<Vec<_>>()
        .join(" ");
    Step {
        command,
        line,
        stdin: None,
    }
}

/// `cargo args...` with the cargo that runs this xtask.
pub fn cargo(args: &[&str]) -> Step {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut step = cmd(&cargo, args);
    step.line = format!("cargo {}", args.join(" "));
    step
}

impl Step {
    /// Sets an environment variable for the command.
    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    /// Feeds `text` to the command's standard input (for [`Step::output`]).
    pub fn stdin(mut self, text: &str) -> Self {
        self.stdin = Some(text.to_owned());
        self
    }

    /// Runs with inherited stdio; fails unless it exits 0.
    pub fn run(mut self) -> anyhow::Result<()> {
        let status = self.status()?;
        if !status.success() {
            bail!("`{}` failed ({status})", self.line);
        }
        Ok(())
    }

    /// Runs with inherited stdio as the last step: on failure the process exits with the
    /// command's code and prints nothing more, so the command's last line stays the last line.
    pub fn run_last(mut self) -> anyhow::Result<()> {
        let status = self.status()?;
        if !status.success() {
            std::process::exit(status.code().unwrap_or(1));
        }
        Ok(())
    }

    fn status(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        self.command
            .status()
            .with_context(|| format!("cannot start `{}`", self.line))
    }

    /// Runs capturing output; fails unless it exits 0.
    pub fn output(mut self) -> anyhow::Result<String> {
        let output = match self.stdin.take() {
            None => self.command.output(),
            Some(text) => {
                use std::io::Write as _;
                self.command
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped());
                self.command.spawn().and_then(|mut child| {
                    if let Some(mut input) = child.stdin.take() {
                        input.write_all(text.as_bytes())?;
                    }
                    child.wait_with_output()
                })
            }
        };
        let Output {
            status,
            stdout,
            stderr,
        } = output.with_context(|| format!("cannot start `{}`", self.line))?;
        if !status.success() {
            bail!(
                "`{}` failed ({status}): {}",
                self.line,
                String::from_utf8_lossy(&stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&stdout).into_owned())
    }

    /// True when the command runs and exits 0 (output discarded).
    pub fn succeeds(mut self) -> bool {
        self.command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}
