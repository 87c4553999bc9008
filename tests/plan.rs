//! The plan's behaviour, case by case: desired and actual rules in, ipvsadm-like operations out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipvs::{
    Destination, Family, ForwardingMethod, Protocol, Request, Service, ServiceFlags, ServiceKey,
};
use ipvsd::model::{AddressKind, Desired, RealServer, ServiceRef, VirtualServer};
use ipvsd::node_addresses::NodeAddresses;
use ipvsd::plan::{
    draining_destinations, parts, plan, plan_keys, Actual, ActualService, GracefulTermination,
    Operation, Ownership,
};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn tcp(address: &str, port: u16) -> ServiceKey {
    ServiceKey::Addr {
        address: ip(address),
        protocol: Protocol::Tcp,
        port,
    }
}

fn udp(address: &str, port: u16) -> ServiceKey {
    ServiceKey::Addr {
        address: ip(address),
        protocol: Protocol::Udp,
        port,
    }
}

fn sctp(address: &str, port: u16) -> ServiceKey {
    ServiceKey::Addr {
        address: ip(address),
        protocol: Protocol::Sctp,
        port,
    }
}

fn dest(address: &str, port: u16) -> Destination {
    Destination::new(ip(address), port)
}

/// A destination as the kernel reports it: with a weight and connection counts.
fn live(address: &str, port: u16, weight: u32, active: u32, inactive: u32) -> Destination {
    Destination {
        weight,
        active_connections: active,
        inactive_connections: inactive,
        ..dest(address, port)
    }
}

/// A real server as the model wants it: masqueraded, weight 1.
fn real(address: &str, port: u16) -> RealServer {
    RealServer::new(ip(address), port)
}

/// A desired virtual server with round-robin and the given real servers.
fn mk_vs(key: ServiceKey, real_servers: &[RealServer]) -> VirtualServer {
    VirtualServer {
        service: Service::new(key, "rr"),
        destinations: real_servers.iter().copied().collect(),
        origin: std::sync::Arc::new(ServiceRef {
            namespace: "default".into(),
            name: "web".into(),
            port_name: "http".into(),
        }),
        kind: AddressKind::ClusterIp,
        local_policy: false,
        local_destinations: Default::default(),
        source_ranges: None,
        cluster_ip: None,
    }
}

fn mk_desired(vss: Vec<VirtualServer>, bound: &[&str]) -> Desired {
    Desired {
        virtual_servers: vss
            .into_iter()
            .map(|vs| (vs.service.key, std::sync::Arc::new(vs)))
            .collect(),
        bound_addresses: bound.iter().map(|a| ip(a)).collect(),
        warnings: Vec::new(),
        ..Desired::default()
    }
}

/// A kernel service with round-robin, as the kernel shows it: HASHED set.
fn mk_actual_service(key: ServiceKey, destinations: &[Destination]) -> ActualService {
    let mut service = Service::new(key, "rr");
    service.flags = ServiceFlags::HASHED;
    ActualService {
        service,
        destinations: destinations.iter().map(Into::into).collect(),
    }
}

fn mk_actual(services: Vec<ActualService>, bound: &[&str]) -> Actual {
    Actual {
        services: services.into_iter().map(|s| (s.service.key, s)).collect(),
        bound_addresses: bound.iter().map(|a| ip(a)).collect(),
        undecodable: Vec::new(),
    }
}

fn ownership() -> Ownership {
    Ownership {
        node_addresses: ["192.168.1.10"]
            .iter()
            .map(|a| ip(a))
            .collect::<NodeAddresses>(),
        ..Ownership::default()
    }
}

struct Case {
    name: &'static str,
    desired: Desired,
    actual: Actual,
    ownership: Ownership,
    graceful: GracefulTermination,
    expect: &'static [&'static str],
}

fn case(
    name: &'static str,
    desired: Desired,
    actual: Actual,
    expect: &'static [&'static str],
) -> Case {
    Case {
        name,
        desired,
        actual,
        ownership: ownership(),
        graceful: GracefulTermination::default(),
        expect,
    }
}

fn now() -> Instant {
    // A fixed reference point far enough from the clock's origin that subtracting is safe.
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *START.get_or_init(|| Instant::now() + Duration::from_secs(3600))
}

fn since(key: ServiceKey, address: &str, port: u16, ago: Duration) -> GracefulTermination {
    GracefulTermination {
        timeout: Some(Duration::from_secs(60)),
        since: BTreeMap::from([((key, ip(address), port), now() - ago)]),
    }
}

fn cases() -> Vec<Case> {
    let web = tcp("10.96.0.10", 80);
    let dns = udp("10.96.0.53", 53);
    vec![
        case(
            "missing virtual server: bind, add the service, then its destinations",
            mk_desired(vec![mk_vs(web, &[real("10.244.0.11", 8080), real("10.244.0.12", 8080)])], &["10.96.0.10"]),
            mk_actual(vec![], &[]),
            &[
                "bind 10.96.0.10/32",
                "-A -t 10.96.0.10:80 -s rr",
                "-a -t 10.96.0.10:80 -r 10.244.0.11:8080 -m -w 1",
                "-a -t 10.96.0.10:80 -r 10.244.0.12:8080 -m -w 1",
            ],
        ),
        case(
            "in sync: HASHED and counters do not count as differences",
            mk_desired(vec![mk_vs(web, &[real("10.244.0.11", 8080)])], &["10.96.0.10"]),
            mk_actual(vec![mk_actual_service(web, &[live("10.244.0.11", 8080, 1, 5, 7)])], &["10.96.0.10"]),
            &[],
        ),
        case(
            "changed scheduler, flags and persistence: updated in place, never deleted and re-added",
            mk_desired(
                vec![{
                    let mut vs = mk_vs(web, &[real("10.244.0.11", 8080)]);
                    vs.service.scheduler = "mh".into();
                    vs.service.flags = ServiceFlags::SCHED2 | ServiceFlags::PERSISTENT;
                    vs.service.timeout = 600;
                    vs
                }],
                &["10.96.0.10"],
            ),
            mk_actual(vec![mk_actual_service(web, &[live("10.244.0.11", 8080, 1, 0, 0)])], &["10.96.0.10"]),
            &["-E -t 10.96.0.10:80 -s mh -p 600 -b mh-port"],
        ),
        case(
            "changed persistence engine and netmask are updates too",
            mk_desired(
                vec![{
                    let mut vs = mk_vs(web, &[]);
                    vs.service.persistence_engine = Some("sip".into());
                    vs
                }],
                &["10.96.0.10"],
            ),
            mk_actual(
                vec![{
                    let mut s = mk_actual_service(web, &[]);
                    s.service.netmask = 24;
                    s
                }],
                &["10.96.0.10"],
            ),
            &["-E -t 10.96.0.10:80 -s rr --pe sip"],
        ),
        case(
            "destination settings differ: updated",
            mk_desired(
                vec![mk_vs(
                    web,
                    &[real("10.244.0.11", 8080), real("10.244.0.12", 8080), real("10.244.0.13", 8080)],
                )],
                &["10.96.0.10"],
            ),
            mk_actual(
                vec![mk_actual_service(
                    web,
                    &[
                        Destination { forwarding: ForwardingMethod::DirectRoute, ..dest("10.244.0.11", 8080) },
                        Destination { upper_threshold: 100, ..dest("10.244.0.12", 8080) },
                        live("10.244.0.13", 8080, 3, 0, 0),
                    ],
                )],
                &["10.96.0.10"],
            ),
            &[
                "-e -t 10.96.0.10:80 -r 10.244.0.11:8080 -m -w 1",
                "-e -t 10.96.0.10:80 -r 10.244.0.12:8080 -m -w 1",
                "-e -t 10.96.0.10:80 -r 10.244.0.13:8080 -m -w 1",
            ],
        ),
        case(
            "a weight-0 destination desired again gets its weight back",
            mk_desired(vec![mk_vs(web, &[real("10.244.0.11", 8080)])], &["10.96.0.10"]),
            mk_actual(vec![mk_actual_service(web, &[live("10.244.0.11", 8080, 0, 4, 2)])], &["10.96.0.10"]),
            &["-e -t 10.96.0.10:80 -r 10.244.0.11:8080 -m -w 1"],
        ),
        case(
            "owned services no Service wants are deleted; foreign, fwmark and non-nodeport ones survive",
            mk_desired(vec![], &["10.96.0.20"]),
            mk_actual(
                vec![
                    // On an address ipvsd bound: ours.
                    mk_actual_service(tcp("10.96.0.10", 80), &[live("10.244.0.11", 8080, 1, 3, 0)]),
                    // On an address about to be bound: ours.
                    mk_actual_service(tcp("10.96.0.20", 443), &[]),
                    // A node port on a node address: ours.
                    mk_actual_service(tcp("192.168.1.10", 30080), &[]),
                    // An operator's rule on the node address outside the node port range.
                    mk_actual_service(tcp("192.168.1.10", 22), &[]),
                    // keepalived's virtual IP.
                    mk_actual_service(tcp("192.168.1.100", 443), &[live("192.168.1.21", 443, 1, 0, 0)]),
                    // A firewall-mark service.
                    ActualService {
                        service: Service::new(ServiceKey::FwMark { mark: 7, family: Family::Inet }, "wlc"),
                        destinations: vec![],
                    },
                ],
                &["10.96.0.10", "10.96.0.20"],
            ),
            &["-D -t 10.96.0.10:80", "-D -t 10.96.0.20:443", "-D -t 192.168.1.10:30080", "unbind 10.96.0.10/32"],
        ),
        Case {
            name: "a NodePort programmed earlier on an address the node has lost is still ipvsd's",
            desired: mk_desired(vec![], &[]),
            actual: mk_actual(
                vec![
                    mk_actual_service(tcp("192.168.2.10", 30080), &[]),
                    mk_actual_service(tcp("192.168.2.10", 30081), &[]),
                ],
                &[],
            ),
            ownership: Ownership {
                managed: [tcp("192.168.2.10", 30080)].into(),
                ..ownership()
            },
            graceful: GracefulTermination::default(),
            expect: &["-D -t 192.168.2.10:30080"],
        },
        Case {
            name: "excluded CIDRs: nothing created, changed, deleted, bound or unbound there",
            desired: mk_desired(
                vec![mk_vs(tcp("10.100.0.1", 80), &[real("10.244.0.11", 8080)]), mk_vs(web, &[])],
                &["10.100.0.1", "10.100.0.2", "10.96.0.10"],
            ),
            actual: mk_actual(
                vec![
                    mk_actual_service(tcp("10.100.0.9", 80), &[live("10.244.0.11", 8080, 1, 0, 0)]),
                    mk_actual_service(tcp("192.168.1.10", 30090), &[]),
                ],
                &["10.100.0.9", "10.96.0.10"],
            ),
            ownership: Ownership {
                exclude_cidrs: vec!["10.100.0.0/16".parse().unwrap(), "192.168.1.10/32".parse().unwrap()],
                ..ownership()
            },
            graceful: GracefulTermination::default(),
            expect: &["-A -t 10.96.0.10:80 -s rr"],
        },
        case(
            "TCP destination no longer desired with connections: weight 0 first",
            mk_desired(vec![mk_vs(web, &[real("10.244.0.11", 8080)])], &["10.96.0.10"]),
            mk_actual(
                vec![mk_actual_service(web, &[live("10.244.0.11", 8080, 1, 0, 0), live("10.244.0.12", 8080, 1, 2, 1)])],
                &["10.96.0.10"],
            ),
            &["-e -t 10.96.0.10:80 -r 10.244.0.12:8080 -m -w 0"],
        ),
        case(
            "TCP destination at weight 0 whose connections ended: deleted",
            mk_desired(vec![mk_vs(web, &[real("10.244.0.11", 8080)])], &["10.96.0.10"]),
            mk_actual(
                vec![mk_actual_service(web, &[live("10.244.0.11", 8080, 1, 0, 0), live("10.244.0.12", 8080, 0, 0, 0)])],
                &["10.96.0.10"],
            ),
            &["-d -t 10.96.0.10:80 -r 10.244.0.12:8080"],
        ),
        case(
            "TCP destination without connections: deleted at once, weight or not",
            mk_desired(vec![mk_vs(web, &[])], &["10.96.0.10"]),
            mk_actual(vec![mk_actual_service(web, &[live("10.244.0.12", 8080, 1, 0, 0)])], &["10.96.0.10"]),
            &["-d -t 10.96.0.10:80 -r 10.244.0.12:8080"],
        ),
        case(
            "UDP and SCTP destinations are deleted at once even with connections",
            mk_desired(vec![mk_vs(dns, &[]), mk_vs(sctp("10.96.0.53", 9), &[])], &["10.96.0.53"]),
            mk_actual(
                vec![
                    mk_actual_service(dns, &[live("10.244.0.11", 5353, 1, 0, 40)]),
                    mk_actual_service(sctp("10.96.0.53", 9), &[live("10.244.0.11", 9, 1, 3, 0)]),
                ],
                &["10.96.0.53"],
            ),
            &["-d -u 10.96.0.53:53 -r 10.244.0.11:5353", "-d --sctp-service 10.96.0.53:9 -r 10.244.0.11:9"],
        ),
        Case {
            name: "weight 0 with connections past the graceful timeout: deleted",
            desired: mk_desired(vec![mk_vs(web, &[])], &["10.96.0.10"]),
            actual: mk_actual(vec![mk_actual_service(web, &[live("10.244.0.12", 8080, 0, 9, 0)])], &["10.96.0.10"]),
            ownership: ownership(),
            graceful: since(web, "10.244.0.12", 8080, Duration::from_secs(60)),
            expect: &["-d -t 10.96.0.10:80 -r 10.244.0.12:8080"],
        },
        Case {
            name: "weight 0 with connections within the graceful timeout: left alone",
            desired: mk_desired(vec![mk_vs(web, &[])], &["10.96.0.10"]),
            actual: mk_actual(vec![mk_actual_service(web, &[live("10.244.0.12", 8080, 0, 9, 0)])], &["10.96.0.10"]),
            ownership: ownership(),
            graceful: since(web, "10.244.0.12", 8080, Duration::from_secs(59)),
            expect: &[],
        },
        Case {
            name: "weight 0 with connections and no timeout: waits however long it takes",
            desired: mk_desired(vec![mk_vs(web, &[])], &["10.96.0.10"]),
            actual: mk_actual(vec![mk_actual_service(web, &[live("10.244.0.12", 8080, 0, 9, 0)])], &["10.96.0.10"]),
            ownership: ownership(),
            graceful: GracefulTermination {
                timeout: None,
                ..since(web, "10.244.0.12", 8080, Duration::from_secs(86400))
            },
            expect: &[],
        },
        Case {
            name: "restart with weight-0 leftovers: idle ones deleted, busy ones kept until their timeout",
            desired: mk_desired(vec![mk_vs(web, &[real("10.244.0.11", 8080)])], &["10.96.0.10"]),
            actual: mk_actual(
                vec![mk_actual_service(
                    web,
                    &[
                        live("10.244.0.11", 8080, 1, 1, 0),
                        live("10.244.0.12", 8080, 0, 0, 0),
                        live("10.244.0.13", 8080, 0, 1, 0),
                        live("10.244.0.14", 8080, 0, 1, 0),
                    ],
                )],
                &["10.96.0.10"],
            ),
            ownership: ownership(),
            // The controller saw .13 and .14 at weight 0 after its restart; .13 long enough ago.
            graceful: GracefulTermination {
                timeout: Some(Duration::from_secs(60)),
                since: BTreeMap::from([
                    ((web, ip("10.244.0.13"), 8080), now() - Duration::from_secs(61)),
                    ((web, ip("10.244.0.14"), 8080), now()),
                ]),
            },
            expect: &["-d -t 10.96.0.10:80 -r 10.244.0.12:8080", "-d -t 10.96.0.10:80 -r 10.244.0.13:8080"],
        },
        case(
            "a deleted virtual server takes its destinations with it, connections or not",
            mk_desired(vec![], &[]),
            mk_actual(
                vec![mk_actual_service(web, &[live("10.244.0.11", 8080, 1, 5, 5), live("10.244.0.12", 8080, 0, 5, 5)])],
                &["10.96.0.10"],
            ),
            &["-D -t 10.96.0.10:80", "unbind 10.96.0.10/32"],
        ),
        case(
            "addresses: bind the missing, unbind the extra, IPv6 included",
            mk_desired(vec![], &["10.96.0.10", "fd00:96::10"]),
            mk_actual(vec![], &["10.96.0.10", "10.96.0.99", "fd00:96::99"]),
            &["bind fd00:96::10/128", "unbind 10.96.0.99/32", "unbind fd00:96::99/128"],
        ),
        case(
            "operation order: binds, service changes, destination changes, destination deletes, service deletes, unbinds",
            mk_desired(
                vec![
                    mk_vs(tcp("10.96.0.30", 80), &[real("10.244.0.31", 8080)]),
                    {
                        let mut vs = mk_vs(tcp("10.96.0.10", 80), &[real("10.244.0.11", 8080)]);
                        vs.service.scheduler = "wlc".into();
                        vs
                    },
                    mk_vs(dns, &[real("10.244.0.22", 5353)]),
                ],
                &["10.96.0.10", "10.96.0.30", "10.96.0.53"],
            ),
            mk_actual(
                vec![
                    mk_actual_service(tcp("10.96.0.10", 80), &[live("10.244.0.12", 8080, 1, 1, 0)]),
                    mk_actual_service(dns, &[live("10.244.0.21", 5353, 1, 0, 3)]),
                    mk_actual_service(tcp("10.96.0.40", 80), &[]),
                ],
                &["10.96.0.10", "10.96.0.40", "10.96.0.53"],
            ),
            &[
                "bind 10.96.0.30/32",
                "-E -t 10.96.0.10:80 -s wlc",
                "-A -t 10.96.0.30:80 -s rr",
                "-a -t 10.96.0.10:80 -r 10.244.0.11:8080 -m -w 1",
                "-e -t 10.96.0.10:80 -r 10.244.0.12:8080 -m -w 0",
                "-a -t 10.96.0.30:80 -r 10.244.0.31:8080 -m -w 1",
                "-a -u 10.96.0.53:53 -r 10.244.0.22:5353 -m -w 1",
                "-d -u 10.96.0.53:53 -r 10.244.0.21:5353",
                "-D -t 10.96.0.40:80",
                "unbind 10.96.0.40/32",
            ],
        ),
    ]
}

#[test]
fn plan_cases() {
    let mut failures = Vec::new();
    for case in cases() {
        let ops = plan(
            &case.desired,
            &case.actual,
            &case.ownership,
            &case.graceful,
            now(),
        );
        let got: Vec<String> = ops.iter().map(Operation::to_string).collect();
        if got != case.expect {
            failures.push(format!(
                "case {:?}\n  got:      {got:#?}\n  expected: {:#?}",
                case.name, case.expect
            ));
        }
        // The kernel lists destinations in its own order; the plan must not depend on it.
        let mut shuffled = case.actual.clone();
        for service in shuffled.services.values_mut() {
            service.destinations.reverse();
        }
        let again = plan(
            &case.desired,
            &shuffled,
            &case.ownership,
            &case.graceful,
            now(),
        );
        if again != ops {
            failures.push(format!(
                "case {:?}: depends on the kernel's destination order",
                case.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The virtual server or address an operation is about.
fn concerns(op: &Operation) -> (Option<ServiceKey>, Option<IpAddr>) {
    match op {
        Operation::Ipvs(request) => (request.service_key(), None),
        Operation::BindAddress(a) | Operation::UnbindAddress(a) => (None, Some(*a)),
    }
}

fn full_plan(case: &Case) -> Vec<Operation> {
    plan(
        &case.desired,
        &case.actual,
        &case.ownership,
        &case.graceful,
        now(),
    )
}

/// The operations of `case` for one scope.
fn keyed_plan(
    case: &Case,
    keys: &BTreeSet<ServiceKey>,
    addresses: &BTreeSet<IpAddr>,
) -> Vec<Operation> {
    plan_keys(
        &case.desired,
        &case.actual,
        &case.ownership,
        &case.graceful,
        now(),
        keys,
        addresses,
    )
}

#[test]
fn a_plan_in_parts_is_the_full_plan() {
    for case in cases() {
        let full = full_plan(&case);
        for size in [1, 2, 1000] {
            let scopes = parts(&case.desired, &case.actual, size);
            assert!(scopes.iter().all(|(keys, _)| keys.len() <= size));
            let parted: Vec<Operation> = scopes
                .iter()
                .flat_map(|(keys, addresses)| keyed_plan(&case, keys, addresses))
                .collect();
            let text = |ops: &[Operation]| {
                let mut lines: Vec<String> = ops.iter().map(ToString::to_string).collect();
                lines.sort();
                lines
            };
            assert_eq!(
                text(&parted),
                text(&full),
                "case {:?}, parts of {size}",
                case.name
            );
            // Binds come first and unbinds last, as in the full plan.
            let is_bind = |op: &&Operation| matches!(op, Operation::BindAddress(_));
            let is_unbind = |op: &&Operation| matches!(op, Operation::UnbindAddress(_));
            assert_eq!(
                parted.iter().take_while(is_bind).count(),
                parted.iter().filter(is_bind).count()
            );
            assert_eq!(
                parted.iter().rev().take_while(is_unbind).count(),
                parted.iter().filter(is_unbind).count()
            );
        }
    }
}

#[test]
fn keyed_planning_equals_the_full_plan_restricted_to_the_keys() {
    for case in cases() {
        let full = full_plan(&case);
        let keys: BTreeSet<ServiceKey> = case
            .desired
            .virtual_servers
            .keys()
            .chain(case.actual.services.keys())
            .copied()
            .collect();
        let addresses: BTreeSet<IpAddr> = case
            .desired
            .bound_addresses
            .iter()
            .chain(&case.actual.bound_addresses)
            .copied()
            .collect();
        // Every single key, every single address, and all of them together.
        let mut scopes: Vec<(BTreeSet<ServiceKey>, BTreeSet<IpAddr>)> = keys
            .iter()
            .map(|k| (BTreeSet::from([*k]), BTreeSet::new()))
            .chain(
                addresses
                    .iter()
                    .map(|a| (BTreeSet::new(), BTreeSet::from([*a]))),
            )
            .collect();
        scopes.push((keys.clone(), addresses.clone()));
        for (scope_keys, scope_addresses) in scopes {
            let keyed = keyed_plan(&case, &scope_keys, &scope_addresses);
            let restricted: Vec<Operation> = full
                .iter()
                .filter(|op| match concerns(op) {
                    (Some(k), _) => scope_keys.contains(&k),
                    (_, Some(a)) => scope_addresses.contains(&a),
                    _ => false,
                })
                .cloned()
                .collect();
            assert_eq!(
                keyed, restricted,
                "case {:?}, keys {scope_keys:?}, addresses {scope_addresses:?}",
                case.name
            );
        }
    }
}

#[test]
fn a_new_service_is_created_with_every_desired_setting() {
    let key = tcp("10.96.0.20", 443);
    let mut vs = mk_vs(key, &[]);
    vs.service.flags = ServiceFlags::PERSISTENT;
    vs.service.timeout = 10800;
    let ops = plan(
        &mk_desired(vec![vs.clone()], &[]),
        &mk_actual(vec![], &[]),
        &ownership(),
        &GracefulTermination::default(),
        now(),
    );
    assert_eq!(ops, vec![Operation::Ipvs(Request::AddService(vs.service))]);
}

#[test]
fn draining_destinations_are_the_undesired_ones_at_weight_zero() {
    let web = tcp("10.96.0.10", 80);
    let desired = mk_desired(
        vec![mk_vs(web, &[real("10.244.0.11", 8080)])],
        &["10.96.0.10"],
    );
    let actual = mk_actual(
        vec![
            mk_actual_service(
                web,
                &[
                    live("10.244.0.11", 8080, 0, 1, 0),
                    live("10.244.0.12", 8080, 0, 1, 0),
                    live("10.244.0.13", 8080, 1, 1, 0),
                ],
            ),
            mk_actual_service(tcp("10.96.0.40", 80), &[live("10.244.0.41", 8080, 0, 1, 0)]),
        ],
        &["10.96.0.10"],
    );
    assert_eq!(
        draining_destinations(&desired, &actual),
        BTreeSet::from([(web, ip("10.244.0.12"), 8080)])
    );
}

#[test]
fn entries_that_cannot_be_read_are_never_deleted_or_changed() {
    use ipvs::{EntryKind, Undecodable};
    // ipvsd's cluster IP 10.96.0.10:80 holds a real server of an unknown forwarding method; a
    // stale virtual server on a bound address holds another; the IPv6 one with a 129-bit mask
    // could not be read at all, and a Service wants its key.
    let owned = tcp("10.96.0.10", 80);
    let stale = tcp("10.96.0.11", 80);
    let masked = tcp("fd00:96::1", 80);
    let desired = mk_desired(
        vec![
            mk_vs(owned, &[real("10.244.0.1", 8080), real("10.244.0.9", 8080)]),
            mk_vs(masked, &[real("fd00:244::1", 8080)]),
        ],
        &["10.96.0.10", "fd00:96::1"],
    );
    let mut actual = mk_actual(
        vec![
            mk_actual_service(owned, &[]),
            mk_actual_service(stale, &[dest("10.244.0.2", 8080)]),
        ],
        &["10.96.0.10", "10.96.0.11", "fd00:96::1"],
    );
    let unreadable = |kind, service, destination: Option<(&str, u16)>| Undecodable {
        kind,
        service: Some(service),
        destination: destination.map(|(a, p)| (ip(a), p)),
        reason: "unknown forwarding method 4".into(),
    };
    actual.undecodable = vec![
        unreadable(EntryKind::Destination, owned, Some(("10.244.0.9", 8080))),
        unreadable(EntryKind::Destination, stale, None),
        unreadable(EntryKind::Service, masked, None),
    ];
    let ops: Vec<String> = plan(
        &desired,
        &actual,
        &ownership(),
        &GracefulTermination::default(),
        Instant::now(),
    )
    .iter()
    .map(|op| op.to_string())
    .collect();
    // The readable real server is added; the unreadable one is not added over, the stale
    // virtual server holding an unreadable entry is kept, the unreadable one not re-added.
    assert_eq!(
        ops,
        [
            "-a -t 10.96.0.10:80 -r 10.244.0.1:8080 -m -w 1",
            "unbind 10.96.0.11/32"
        ]
    );
}

#[test]
fn fingerprints_agree_exactly_where_settings_do() {
    let key = tcp("10.96.0.10", 80);
    let base = mk_actual_service(
        key,
        &[
            live("10.1.0.1", 8080, 1, 0, 0),
            live("10.1.0.2", 8080, 1, 0, 0),
        ],
    );
    // What the kernel counts, the order of the real servers and the HASHED flag are no
    // difference.
    let mut counted = base.clone();
    counted.destinations.reverse();
    counted.destinations[0].active_connections = 5;
    counted.destinations[1].persistent_connections = 2;
    counted.service.stats.connections = 9;
    counted.service.flags = ServiceFlags::empty();
    assert!(counted.settings_eq(&base));
    assert_eq!(counted.fingerprint(), base.fingerprint());

    // Every setting is.
    let mut changes: Vec<(&str, ActualService)> = Vec::new();
    let mut c = base.clone();
    c.destinations[0].weight = 2;
    changes.push(("weight", c));
    let mut c = base.clone();
    c.destinations[1].upper_threshold = 10;
    changes.push(("upper threshold", c));
    let mut c = base.clone();
    c.destinations[1].lower_threshold = 1;
    changes.push(("lower threshold", c));
    let mut c = base.clone();
    c.destinations[0].forwarding = ForwardingMethod::DirectRoute;
    changes.push(("forwarding", c));
    let mut c = base.clone();
    c.destinations[0].port = 8081;
    changes.push(("a real server's port", c));
    let mut c = base.clone();
    c.destinations.pop();
    changes.push(("a real server fewer", c));
    let mut c = base.clone();
    c.destinations.push(live("10.1.0.3", 8080, 1, 0, 0).into());
    changes.push(("a real server more", c));
    let mut c = base.clone();
    c.service.scheduler = "wrr".into();
    changes.push(("scheduler", c));
    let mut c = base.clone();
    c.service.flags = ServiceFlags::PERSISTENT;
    changes.push(("flags", c));
    let mut c = base.clone();
    c.service.timeout = 300;
    changes.push(("timeout", c));
    let mut c = base.clone();
    c.service.netmask = 24;
    changes.push(("netmask", c));
    let mut c = base.clone();
    c.service.persistence_engine = Some("sip".into());
    changes.push(("persistence engine", c));
    for (what, changed) in changes {
        assert!(!changed.settings_eq(&base), "{what}");
        assert_ne!(changed.fingerprint(), base.fingerprint(), "{what}");
    }
}

#[test]
fn the_cache_keeps_everything_of_a_destination_but_its_counters() {
    let mut read = live("10.1.0.1", 8080, 3, 4, 5);
    read.persistent_connections = 6;
    read.upper_threshold = 100;
    read.lower_threshold = 10;
    read.family = Some(Family::Inet);
    read.forwarding = ForwardingMethod::DirectRoute;
    read.stats.connections = 7;
    read.stats.bytes_in = 8;
    let cached = ipvsd::plan::ActualDestination::from(&read);
    let back = cached.to_destination();
    assert_eq!(back.stats, ipvs::Stats::default());
    assert_eq!(
        back,
        Destination {
            stats: ipvs::Stats::default(),
            ..read.clone()
        }
    );
    assert!(cached.settings_eq(&ipvsd::plan::ActualDestination::from(&read)));
    let mut other = read.clone();
    other.weight = 1;
    assert!(!cached.settings_eq(&other.into()));
}
