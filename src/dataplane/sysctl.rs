//! Kernel settings IPVS service proxying depends on.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tracing::{debug, info};

/// Which optional settings to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sysctls {
    /// Answer ARP only for addresses on the receiving interface and announce only those, so
    /// the node does not answer ARP for service addresses bound to the dummy interface
    /// (needed with MetalLB-style L2 announcements).
    pub strict_arp: bool,
    /// The kernel's IPVS rate estimation (`net.ipv4.vs.run_estimation`, from Linux 5.16):
    /// `Some(false)` turns it off, `Some(true)` on, `None` leaves it alone. Before 6.2 the
    /// kernel estimates every virtual and real server in one timer every 2 s, in softirq: at
    /// 330,000 of them that holds a CPU for 0.3–0.4 s in the test bed's VM (and upstream
    /// reported 200 ms at 50,000 services on real hardware), during which that CPU neither runs
    /// a process nor receives packets. On those kernels the same timer also refreshes the
    /// counters the kernel reports (`ipvsadm -Ln --stats`, ipvsd's traffic metrics), so
    /// turning it off freezes them as well as the rates.
    pub rate_estimation: Option<bool>,
}

/// One setting that was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlChange {
    /// Dotted name, e.g. `net.ipv4.ip_forward`.
    pub name: &'static str,
    pub old: String,
    pub new: &'static str,
}

/// A setting that could not be read or written; names the sysctl and its /proc path.
#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    #[error("cannot read sysctl {name} ({})", path.display())]
    Read {
        name: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot set sysctl {name} ({}) to {value}", path.display())]
    Write {
        name: &'static str,
        path: PathBuf,
        value: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Settings every node needs:
/// - `ip_forward`: masqueraded replies and pod traffic are forwarded;
/// - `vs.conntrack`: keep netfilter conntrack entries for IPVS connections, which SNAT
///   (masquerade) of service traffic needs;
/// - `vs.expire_nodest_conn`: drop connections whose real server was deleted instead of
///   black-holing their packets until they time out;
/// - `vs.expire_quiescent_template`: let persistence (session affinity) templates pointing
///   at a weight-0 real server expire, so new connections go to live endpoints.
const ALWAYS: [(&str, &str); 4] = [
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv4.vs.conntrack", "1"),
    ("net.ipv4.vs.expire_nodest_conn", "1"),
    ("net.ipv4.vs.expire_quiescent_template", "1"),
];

/// Settings for [`Sysctls::strict_arp`].
const STRICT_ARP: [(&str, &str); 2] = [
    ("net.ipv4.conf.all.arp_ignore", "1"),
    ("net.ipv4.conf.all.arp_announce", "2"),
];

/// Sets net.ipv4.ip_forward=1, net.ipv4.vs.conntrack=1, net.ipv4.vs.expire_nodest_conn=1,
/// net.ipv4.vs.expire_quiescent_template=1, with `strict_arp` net.ipv4.conf.all.arp_ignore=1
/// and arp_announce=2, and net.ipv4.vs.run_estimation as `rate_estimation` says. Only a value that differs is written; each change is logged and
/// returned. The net.ipv4.vs.* settings exist only once the kernel's IPVS is loaded, so call
/// this after the IPVS client has connected.
pub fn apply(s: &Sysctls) -> Result<Vec<SysctlChange>, SysctlError> {
    apply_under(Path::new("/proc/sys"), s)
}

/// [`apply`] against another root than /proc/sys.
pub fn apply_under(root: &Path, s: &Sysctls) -> Result<Vec<SysctlChange>, SysctlError> {
    let wanted = ALWAYS
        .iter()
        .chain(if s.strict_arp { &STRICT_ARP[..] } else { &[] });
    let mut changes = Vec::new();
    let estimation = s
        .rate_estimation
        .map(|on| (RUN_ESTIMATION, if on { "1" } else { "0" }));
    for &(name, value) in wanted.chain(estimation.as_ref()) {
        if let Some(change) = ensure(root, name, value)? {
            changes.push(change);
        }
    }
    // Before 5.9, conn_reuse_mode=1 makes IPVS drop the first packet of a connection that
    // reuses the source port of one in TIME_WAIT, a one-second stall per connection under load
    // (kubernetes#81775); from 5.9 on the kernel's default is right (kubernetes#93297).
    let release = fs::read_to_string(root.join("kernel/osrelease")).unwrap_or_default();
    if release_before(release.trim(), (5, 9)) {
        if let Some(change) = ensure(root, CONN_REUSE_MODE, "0")? {
            changes.push(change);
        }
    }
    Ok(changes)
}

/// Whether the kernel estimates IPVS rates in one softirq timer over every virtual and real
/// server (before Linux 6.2) and estimation is on (or cannot be turned off: before 5.16).
pub fn estimator_in_softirq(root: &Path) -> bool {
    let release = fs::read_to_string(root.join("kernel/osrelease")).unwrap_or_default();
    let on = fs::read_to_string(root.join(RUN_ESTIMATION.replace('.', "/")))
        .map_or(true, |v| v.trim() != "0");
    release_before(release.trim(), (6, 2)) && on
}

const CONN_REUSE_MODE: &str = "net.ipv4.vs.conn_reuse_mode";
const RUN_ESTIMATION: &str = "net.ipv4.vs.run_estimation";

/// Whether a kernel release such as `5.4.0-150-generic` is older than `major.minor`; an
/// unreadable release is not.
fn release_before(release: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(a)), Some(Ok(b))) => (a, b) < (major, minor),
        _ => false,
    }
}

fn ensure(
    root: &Path,
    name: &'static str,
    value: &'static str,
) -> Result<Option<SysctlChange>, SysctlError> {
    let path = root.join(name.replace('.', "/"));
    let old = fs::read_to_string(&path)
        .map_err(|source| SysctlError::Read {
            name,
            path: path.clone(),
            source,
        })?
        .trim()
        .to_owned();
    if old == value {
        debug!(sysctl = name, value, "sysctl already set");
        return Ok(None);
    }
    fs::write(&path, value).map_err(|source| SysctlError::Write {
        name,
        path: path.clone(),
        value,
        source,
    })?;
    info!(sysctl = name, %old, new = value, "set sysctl");
    Ok(Some(SysctlChange {
        name,
        old,
        new: value,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_proc_sys(values: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, value) in values {
            let path = dir.path().join(name.replace('.', "/"));
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, format!("{value}\n")).unwrap();
        }
        dir
    }

    fn read(dir: &tempfile::TempDir, name: &str) -> String {
        fs::read_to_string(dir.path().join(name.replace('.', "/"))).unwrap()
    }

    const ALL_ZERO: [(&str, &str); 6] = [
        ("net.ipv4.ip_forward", "0"),
        ("net.ipv4.vs.conntrack", "0"),
        ("net.ipv4.vs.expire_nodest_conn", "0"),
        ("net.ipv4.vs.expire_quiescent_template", "0"),
        ("net.ipv4.conf.all.arp_ignore", "0"),
        ("net.ipv4.conf.all.arp_announce", "0"),
    ];

    #[test]
    fn writes_only_differing_values_and_reports_them() {
        let dir = mk_proc_sys(&[
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.vs.conntrack", "0"),
            ("net.ipv4.vs.expire_nodest_conn", "0"),
            ("net.ipv4.vs.expire_quiescent_template", "1"),
        ]);
        let changes = apply_under(dir.path(), &Sysctls::default()).unwrap();
        let names: Vec<_> = changes
            .iter()
            .map(|c| (c.name, c.old.as_str(), c.new))
            .collect();
        assert_eq!(
            names,
            [
                ("net.ipv4.vs.conntrack", "0", "1"),
                ("net.ipv4.vs.expire_nodest_conn", "0", "1"),
            ]
        );
        // The untouched file keeps its trailing newline: it was not rewritten.
        assert_eq!(read(&dir, "net.ipv4.ip_forward"), "1\n");
        assert_eq!(read(&dir, "net.ipv4.vs.conntrack"), "1");
        assert!(apply_under(dir.path(), &Sysctls::default())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn conn_reuse_mode_is_cleared_on_kernels_before_5_9_only() {
        assert!(release_before("5.4.0-150-generic", (5, 9)));
        assert!(release_before("4.19.0", (5, 9)));
        assert!(!release_before("5.9.0", (5, 9)));
        assert!(!release_before("6.1.0-57-amd64", (5, 9)));
        assert!(!release_before("", (5, 9)));

        let mut values = ALL_ZERO.to_vec();
        values.push(("kernel.osrelease", "5.4.0-150-generic"));
        values.push((CONN_REUSE_MODE, "1"));
        let dir = mk_proc_sys(&values);
        apply_under(dir.path(), &Sysctls::default()).unwrap();
        assert_eq!(read(&dir, CONN_REUSE_MODE), "0");

        let mut values = ALL_ZERO.to_vec();
        values.push(("kernel.osrelease", "6.1.0-57-amd64"));
        values.push((CONN_REUSE_MODE, "1"));
        let dir = mk_proc_sys(&values);
        apply_under(dir.path(), &Sysctls::default()).unwrap();
        assert_eq!(read(&dir, CONN_REUSE_MODE), "1\n");
    }

    #[test]
    fn strict_arp_sets_arp_ignore_and_announce() {
        let dir = mk_proc_sys(&ALL_ZERO);
        apply_under(dir.path(), &Sysctls::default()).unwrap();
        assert_eq!(read(&dir, "net.ipv4.conf.all.arp_ignore"), "0\n");
        let changes = apply_under(
            dir.path(),
            &Sysctls {
                strict_arp: true,
                ..Sysctls::default()
            },
        )
        .unwrap();
        assert_eq!(changes.len(), 2);
        assert_eq!(read(&dir, "net.ipv4.conf.all.arp_ignore"), "1");
        assert_eq!(read(&dir, "net.ipv4.conf.all.arp_announce"), "2");
    }

    #[test]
    fn rate_estimation_is_set_only_when_asked() {
        let mut values = ALL_ZERO.to_vec();
        values.push((RUN_ESTIMATION, "1"));
        let dir = mk_proc_sys(&values);
        apply_under(dir.path(), &Sysctls::default()).unwrap();
        assert_eq!(read(&dir, RUN_ESTIMATION), "1\n");
        let off = Sysctls {
            rate_estimation: Some(false),
            ..Sysctls::default()
        };
        let changes = apply_under(dir.path(), &off).unwrap();
        assert_eq!(
            changes.last().map(|c| (c.name, c.old.as_str(), c.new)),
            Some((RUN_ESTIMATION, "1", "0"))
        );
        assert_eq!(read(&dir, RUN_ESTIMATION), "0");
        apply_under(dir.path(), &Sysctls::default()).unwrap();
        assert_eq!(read(&dir, RUN_ESTIMATION), "0");
        let on = Sysctls {
            rate_estimation: Some(true),
            ..Sysctls::default()
        };
        apply_under(dir.path(), &on).unwrap();
        assert_eq!(read(&dir, RUN_ESTIMATION), "1");
    }

    #[test]
    fn the_estimator_runs_in_softirq_before_6_2_while_on() {
        for (release, value, expected) in [
            ("6.1.0-57-amd64", Some("1"), true),
            ("6.1.0-57-amd64", Some("0"), false),
            ("5.10.0", None, true),
            ("6.2.0", Some("1"), false),
            ("6.12.9", Some("1"), false),
        ] {
            let mut values = vec![("kernel.osrelease", release)];
            values.extend(value.map(|v| (RUN_ESTIMATION, v)));
            let dir = mk_proc_sys(&values);
            assert_eq!(
                estimator_in_softirq(dir.path()),
                expected,
                "{release} {value:?}"
            );
        }
    }

    #[test]
    fn rate_estimation_on_a_kernel_without_the_setting_is_named_in_the_error() {
        let dir = mk_proc_sys(&ALL_ZERO);
        let off = Sysctls {
            rate_estimation: Some(false),
            ..Sysctls::default()
        };
        let err = apply_under(dir.path(), &off).unwrap_err();
        assert!(
            matches!(
                &err,
                SysctlError::Read {
                    name: RUN_ESTIMATION,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("net.ipv4.vs.run_estimation"),
            "{err}"
        );
    }

    #[test]
    fn missing_sysctl_is_named_in_the_error() {
        let dir = mk_proc_sys(&[("net.ipv4.ip_forward", "1")]);
        let err = apply_under(dir.path(), &Sysctls::default()).unwrap_err();
        let expected_path = dir.path().join("net/ipv4/vs/conntrack");
        match &err {
            SysctlError::Read { name, path, source } => {
                assert_eq!(*name, "net.ipv4.vs.conntrack");
                assert_eq!(path, &expected_path);
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            format!(
                "cannot read sysctl net.ipv4.vs.conntrack ({})",
                expected_path.display()
            )
        );
    }
}
