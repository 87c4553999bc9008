//! Errors a caller can act on.

use std::io;

/// What went wrong talking to IPVS.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The generic-netlink family "IPVS" is not registered: the kernel lacks IPVS or the `ip_vs`
    /// module is not loaded.
    #[error("IPVS is not available in this kernel: load the ip_vs module (modprobe ip_vs)")]
    IpvsUnavailable,
    /// The kernel refused for lack of privileges.
    #[error("{command}: operation not permitted: IPVS needs CAP_NET_ADMIN")]
    NotPermitted {
        /// The command that was refused.
        command: &'static str,
    },
    /// The service or destination already exists (`EEXIST`).
    #[error("{command}: already exists")]
    AlreadyExists {
        /// The command that failed.
        command: &'static str,
    },
    /// The service, destination or daemon does not exist (`ESRCH`, `ENOENT`).
    #[error("{command}: not found")]
    NotFound {
        /// The command that failed.
        command: &'static str,
    },
    /// The kernel rejected the request's arguments (`EINVAL`), or a scheduler or persistence
    /// engine it could not find.
    #[error("{command}: invalid argument")]
    InvalidArgument {
        /// The command that failed.
        command: &'static str,
    },
    /// Any other error code the kernel answered with.
    #[error("{command}: kernel error: {source}")]
    Kernel {
        /// The command that failed.
        command: &'static str,
        /// The errno as an I/O error.
        #[source]
        source: io::Error,
    },
    /// The kernel's answer could not be decoded.
    #[error("{command}: malformed reply: {reason}")]
    Decode {
        /// The command whose reply was malformed.
        command: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// A request could not be encoded: a name longer than the kernel takes.
    #[error("{command}: {what} of {len} bytes is longer than the kernel's limit of {max}")]
    NameTooLong {
        /// The command that was not sent.
        command: &'static str,
        /// Which name (`scheduler`, `persistence engine`, `interface`).
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The longest the kernel takes, without the terminating NUL.
        max: usize,
    },
    /// The request could not be sent: the kernel has not seen it.
    #[error("{command}: sending the request failed: {source}")]
    Send {
        /// The command that was not sent.
        command: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The request was sent but its answer never came (the kernel drops answers that do not
    /// fit the socket's receive buffer): whether it was carried out is unknown.
    #[error("{command}: the kernel's answer was lost")]
    AnswerLost {
        /// The command whose answer is missing.
        command: &'static str,
    },
    /// No answer came within the client's time limit.
    #[error("{command}: no answer from the kernel within {seconds} s")]
    TimedOut {
        /// The command that was not answered.
        command: &'static str,
        /// The limit.
        seconds: u64,
    },
    /// The netlink connection ended before the answer was complete.
    #[error("{command}: the netlink connection closed")]
    ConnectionClosed {
        /// The command that was not answered.
        command: &'static str,
    },
    /// The task writing requests failed (it panicked or was cancelled): whether the request
    /// was sent is unknown.
    #[error("{command}: the writer task failed: {reason}")]
    WriterFailed {
        /// The command that was being written.
        command: &'static str,
        /// What the task's failure said.
        reason: String,
    },
    /// The netlink socket failed.
    #[error("netlink socket: {0}")]
    Io(#[from] io::Error),
    /// The network namespace asked for with [`crate::ClientBuilder::network_namespace`] could not
    /// be entered (no such file, not a network namespace, or no CAP_SYS_ADMIN).
    #[error("cannot enter the network namespace {}: {source}", path.display())]
    Namespace {
        /// The namespace file.
        path: std::path::PathBuf,
        /// Why.
        source: io::Error,
    },
}
