//! What the benchmarks share: a network namespace made fresh for one measurement, running a
//! command and reading a count from the environment.
//!
//! One file, included with `#[path]` by the ipvs crate's example and by ipvsd's examples
//! (`#[path = "../ipvs/examples/support/mod.rs"] mod support;`): the helpers are test-bed glue
//! for programs that run as root, so they stay out of both crates' APIs, and the file lives in
//! the ipvs crate so that crate's example builds on its own. Each includer uses a part of it.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

/// The count in environment variable `name`, or `default` when it is not set.
pub fn env_usize(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v:?} is not a count")),
        Err(_) => Ok(default),
    }
}

/// Runs `cmd` without standard input; its standard output, or an error with its standard
/// error when it fails.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` with `input` on its standard input; returns how long it took.
pub fn run_with_input(cmd: &mut Command, input: &str) -> Result<Duration> {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {cmd:?}"))?;
    child
        .stdin
        .take()
        .context("standard input of the child")?
        .write_all(input.as_bytes())
        .with_context(|| format!("writing to {cmd:?}"))?;
    let status = child.wait()?;
    let elapsed = start.elapsed();
    ensure!(status.success(), "{cmd:?} failed: {status}");
    Ok(elapsed)
}

/// A network namespace made for one measurement (`ip netns add`, loopback up) and deleted
/// when dropped. IPVS and nftables keep one table per namespace, so each contender starts from
/// nothing.
pub struct Namespace(String);

impl Namespace {
    /// Makes namespace `name`, deleting first one left by an interrupted run (it would not be
    /// fresh).
    pub fn new(name: &str) -> Result<Namespace> {
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(Stdio::null())
            .status();
        run(Command::new("ip").args(["netns", "add", name]))?;
        // With lo down the kernel takes no address for a unicast one and refuses destinations.
        run(Command::new("ip").args(["-n", name, "link", "set", "lo", "up"]))?;
        Ok(Namespace(name.to_string()))
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// `ip netns exec NAME program`: iproute2 execs the program, so its pid is the child's.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.0]).arg(program);
        cmd
    }

    /// The namespace file, for `ipvs::Client::builder().network_namespace(..)`.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}
