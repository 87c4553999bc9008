//! Errors a caller can act on.

use std::io;

/// What went wrong talking to IPVS.
#[derive(Debug, thiserror::Error)]
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
    /// The netlink socket failed.
    #[error("netlink socket: {0}")]
    Io(#[from] io::Error),
}
