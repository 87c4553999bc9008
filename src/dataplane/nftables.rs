//! ipvsd's nftables table, written through the `nft` tool.
//!
//! Why the tool rather than netlink: nftables' netlink protocol is a bytecode of expressions
//! that the `nft` tool compiles from its language, and kube-proxy's own nftables mode drives
//! the same tool the same way (text transactions on stdin). `nft -f` sends the whole text as
//! one netlink batch, which the kernel applies all or nothing, so a sync never leaves half a
//! ruleset. The node needs the `nft` binary (Debian's and Ubuntu's package `nftables`).

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// How long one `nft` run may take before it is killed; a 10,000-Service table takes well under
/// a second natively.
const NFT_TIMEOUT: Duration = Duration::from_secs(120);

/// Why ipvsd could not change its table.
#[derive(Debug, thiserror::Error)]
pub enum NftablesError {
    /// No `nft` on PATH.
    #[error(
        "the nft tool was not found on PATH ({path}): ipvsd writes its masquerading rules with \
         it; install nftables (Debian/Ubuntu package nftables, RHEL/Fedora nftables)"
    )]
    NotFound {
        /// The PATH searched.
        path: String,
    },
    /// `nft` could not be started or talked to.
    #[error("running {}", program.display())]
    Io {
        /// The program.
        program: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// `nft` refused the transaction; nothing of it was applied.
    #[error("nft refused the transaction ({status}): {stderr}")]
    Refused {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on standard error.
        stderr: String,
    },
    /// `nft` did not finish in time and was killed.
    #[error("nft did not finish within {0:?}")]
    TimedOut(Duration),
}

/// The `nft` tool.
#[derive(Debug, Clone)]
pub struct Nftables {
    program: PathBuf,
}

impl Nftables {
    /// Finds `nft` on PATH and checks that it runs.
    pub async fn find() -> Result<Nftables, NftablesError> {
        let path = std::env::var("PATH").unwrap_or_default();
        let program = std::env::split_paths(&path)
            .map(|dir| dir.join("nft"))
            .find(|p| is_executable(p))
            .ok_or(NftablesError::NotFound { path: path.clone() })?;
        let nft = Nftables { program };
        nft.run(&["--version"], None, NFT_TIMEOUT).await?;
        Ok(nft)
    }

    /// The program's path.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Applies a transaction written in the `nft -f` language.
    pub async fn apply(&self, script: &str) -> Result<(), NftablesError> {
        self.run(&["-f", "-"], Some(script), NFT_TIMEOUT)
            .await
            .map(drop)
    }

    /// What `nft list ARGS...` prints.
    pub async fn list(&self, args: &[&str]) -> Result<String, NftablesError> {
        self.list_within(args, NFT_TIMEOUT).await
    }

    /// [`Nftables::list`], waiting up to `timeout`.
    pub async fn list_within(
        &self,
        args: &[&str],
        timeout: Duration,
    ) -> Result<String, NftablesError> {
        let mut all = vec!["list"];
        all.extend_from_slice(args);
        self.run(&all, None, timeout).await
    }

    /// The names of the tables of `family` (e.g. `inet`).
    pub async fn tables(&self, family: &str) -> Result<Vec<String>, NftablesError> {
        let out = self
            .run(&["list", "tables", family], None, NFT_TIMEOUT)
            .await?;
        Ok(out
            .lines()
            .filter_map(|l| l.strip_prefix("table ")?.split_whitespace().nth(1))
            .map(str::to_owned)
            .collect())
    }

    async fn run(
        &self,
        args: &[&str],
        stdin: Option<&str>,
        timeout: Duration,
    ) -> Result<String, NftablesError> {
        let io_error = |source| NftablesError::Io {
            program: self.program.clone(),
            source,
        };
        let mut child = Command::new(&self.program)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(io_error)?;
        let input = stdin.map(str::to_owned);
        let mut pipe = child.stdin.take();
        let work = async move {
            if let (Some(mut pipe), Some(input)) = (pipe.take(), input) {
                pipe.write_all(input.as_bytes()).await?;
                pipe.shutdown().await?;
            }
            child.wait_with_output().await
        };
        let output = tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| NftablesError::TimedOut(timeout))?
            .map_err(io_error)?;
        if !output.status.success() {
            return Err(NftablesError::Refused {
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
