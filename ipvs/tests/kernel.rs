//! The client against a real kernel, checked against what `ipvsadm` prints.
//!
//! Built only with `--features kernel-tests`; the test bed runs each test as root in a fresh
//! network namespace of a VM whose kernel has IPVS. A kernel without IPVS fails every test:
//! nothing here is skipped.

use std::net::IpAddr;
use std::process::Command;

use ipvs::{
    Client, DaemonState, Destination, Error, Family, ForwardingMethod, Protocol, Request, Service,
    ServiceFlags, ServiceKey, SyncDaemon, Timeouts, Tunnel, TunnelFlags, TunnelType,
};

fn ipvsadm(args: &[&str]) -> String {
    let program = std::env::var("IPVSADM").unwrap_or_else(|_| "ipvsadm".to_string());
    let out = Command::new(&program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("ipvsadm prints UTF-8")
}

/// `ipvsadm -Sn` as lines, the form every rule check compares against.
fn saved_rules() -> Vec<String> {
    ipvsadm(&["-Sn"]).lines().map(str::to_string).collect()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn connect() -> Client {
    match Client::connect().await {
        Ok(c) => c,
        Err(e) => panic!("IPVS must be available to the kernel tests: {e}"),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn tcp(addr: &str, port: u16) -> ServiceKey {
    ServiceKey::Addr {
        address: ip(addr),
        protocol: Protocol::Tcp,
        port,
    }
}

#[test]
fn info_matches_ipvsadm_header() {
    rt().block_on(async {
        let client = connect().await;
        let info = client.info().await.expect("info");
        assert_eq!(info.version_triple(), (1, 2, 1));
        let header = ipvsadm(&["-Ln"]);
        let first = header.lines().next().expect("ipvsadm -Ln prints a header");
        assert_eq!(
            first,
            format!(
                "IP Virtual Server version 1.2.1 (size={})",
                info.connection_table_size
            )
        );
    });
}

#[test]
fn service_lifecycle_matches_ipvsadm() {
    rt().block_on(async {
        let client = connect().await;
        let key = tcp("10.96.0.20", 443);
        let mut svc = Service::new(key, "sh");
        svc.flags = ServiceFlags::PERSISTENT | ServiceFlags::SCHED1 | ServiceFlags::SCHED2;
        svc.timeout = 600;
        client.add_service(&svc).await.expect("add service");
        assert_eq!(
            saved_rules(),
            ["-A -t 10.96.0.20:443 -s sh -p 600 -b sh-fallback,sh-port"]
        );

        let got = client.service(&key).await.expect("get service");
        assert_eq!(got.key, key);
        assert_eq!(got.scheduler, "sh");
        assert!(got.flags.contains(svc.flags), "flags {:?}", got.flags);
        assert!(got.flags.contains(ServiceFlags::HASHED));
        assert_eq!(got.timeout, 600);
        assert_eq!(got.netmask, 32);
        assert_eq!(client.services().await.expect("dump"), vec![got.clone()]);

        let mut changed = svc.clone();
        changed.scheduler = "wlc".to_string();
        changed.flags = ServiceFlags::PERSISTENT;
        changed.timeout = 300;
        changed.netmask = 24;
        client.update_service(&changed).await.expect("update");
        assert_eq!(
            saved_rules(),
            ["-A -t 10.96.0.20:443 -s wlc -p 300 -M 255.255.255.0"]
        );

        client.delete_service(&key).await.expect("delete");
        assert!(saved_rules().is_empty());
        assert!(matches!(
            client.service(&key).await,
            Err(Error::NotFound { .. })
        ));

        // A service as read back (HASHED set by the kernel) can be written again and is found.
        client
            .add_service(&got)
            .await
            .expect("re-add read-back service");
        assert_eq!(client.service(&key).await.expect("found again").key, key);
        assert_eq!(
            saved_rules(),
            ["-A -t 10.96.0.20:443 -s sh -p 600 -b sh-fallback,sh-port"]
        );
    });
}

#[test]
fn ipv6_udp_sctp_and_fwmark_services_match_ipvsadm() {
    rt().block_on(async {
        let client = connect().await;
        let v6 = ServiceKey::Addr {
            address: ip("fd00::10"),
            protocol: Protocol::Udp,
            port: 53,
        };
        let mut svc6 = Service::new(v6, "rr");
        svc6.flags = ServiceFlags::PERSISTENT;
        svc6.timeout = 10800;
        svc6.netmask = 64;
        let sctp = ServiceKey::Addr {
            address: ip("10.96.0.30"),
            protocol: Protocol::Sctp,
            port: 3868,
        };
        let fwm = ServiceKey::FwMark {
            mark: 7,
            family: Family::Inet,
        };
        let mut mh = Service::new(tcp("192.168.50.10", 30080), "mh");
        mh.flags = ServiceFlags::SCHED2 | ServiceFlags::ONEPACKET;
        client.add_service(&svc6).await.expect("ipv6");
        client
            .add_service(&Service::new(sctp, "wrr"))
            .await
            .expect("sctp");
        client
            .add_service(&Service::new(fwm, "wlc"))
            .await
            .expect("fwmark");
        client.add_service(&mh).await.expect("mh");
        let mut rules = saved_rules();
        rules.sort();
        let mut expected = vec![
            "-A -u [fd00::10]:53 -s rr -p 10800 -M 64".to_string(),
            "-A --sctp-service 10.96.0.30:3868 -s wrr".to_string(),
            "-A -f 7 -s wlc".to_string(),
            "-A -t 192.168.50.10:30080 -s mh -o -b mh-port".to_string(),
        ];
        expected.sort();
        assert_eq!(rules, expected);

        let read = client.services().await.expect("dump");
        let mut keys: Vec<_> = read.iter().map(|s| s.key).collect();
        keys.sort();
        let mut want = vec![v6, sctp, fwm, mh.key];
        want.sort();
        assert_eq!(keys, want);
        let got6 = read.iter().find(|s| s.key == v6).expect("ipv6 service");
        assert_eq!(got6.netmask, 64);
        assert_eq!(got6.timeout, 10800);
        let got_mh = read.iter().find(|s| s.key == mh.key).expect("mh service");
        assert_eq!(got_mh.flags.sched_flag_names("mh"), ["mh-port"]);
        assert!(got_mh.flags.contains(ServiceFlags::ONEPACKET));
    });
}

#[test]
fn destinations_match_ipvsadm() {
    rt().block_on(async {
        let client = connect().await;
        let key = tcp("10.96.0.40", 80);
        client
            .add_service(&Service::new(key, "wrr"))
            .await
            .expect("service");
        let masq = Destination::new(ip("10.244.0.7"), 8443);
        let mut route = Destination::new(ip("10.244.0.8"), 80);
        route.forwarding = ForwardingMethod::DirectRoute;
        route.weight = 3;
        route.upper_threshold = 100;
        route.lower_threshold = 10;
        let mut tunnel = Destination::new(ip("10.244.0.9"), 80);
        tunnel.forwarding = ForwardingMethod::Tunnel(Tunnel {
            kind: TunnelType::Gue,
            port: 6080,
            flags: TunnelFlags::CSUM,
        });
        for d in [&masq, &route, &tunnel] {
            client.add_destination(&key, d).await.expect("add dest");
        }
        let rules = saved_rules();
        assert_eq!(rules[0], "-A -t 10.96.0.40:80 -s wrr");
        let mut dests: Vec<_> = rules[1..].to_vec();
        dests.sort();
        assert_eq!(
            dests,
            [
                "-a -t 10.96.0.40:80 -r 10.244.0.7:8443 -m -w 1",
                "-a -t 10.96.0.40:80 -r 10.244.0.8:80 -g -w 3",
                "-a -t 10.96.0.40:80 -r 10.244.0.9:80 -i -w 1 --tun-type gue --tun-port 6080 --tun-csum",
            ]
        );

        // -S leaves thresholds out; --thresholds lists them (then the connection counts).
        let listed = ipvsadm(&["-Ln", "--thresholds"]);
        let route_line: Vec<&str> = listed
            .lines()
            .find(|l| l.contains("10.244.0.8:80"))
            .unwrap_or_else(|| panic!("no route destination in:\n{listed}"))
            .split_whitespace()
            .collect();
        assert_eq!(
            route_line,
            ["->", "10.244.0.8:80", "100", "10", "0", "0"],
            "{listed}"
        );

        let mut read = client.destinations(&key).await.expect("dump dests");
        read.sort_by_key(|d| d.address);
        assert_eq!(read, vec![masq.clone(), route.clone(), tunnel.clone()]);

        let mut quiesced = masq.clone();
        quiesced.weight = 0;
        client
            .update_destination(&key, &quiesced)
            .await
            .expect("update dest");
        assert!(saved_rules()
            .contains(&"-a -t 10.96.0.40:80 -r 10.244.0.7:8443 -m -w 0".to_string()));

        client
            .delete_destination(&key, &route)
            .await
            .expect("delete dest");
        assert_eq!(client.destinations(&key).await.expect("dump").len(), 2);
        assert!(matches!(
            client.delete_destination(&key, &route).await,
            Err(Error::NotFound { .. })
        ));
    });
}

#[test]
fn kernel_errors_are_typed() {
    rt().block_on(async {
        let client = connect().await;
        let key = tcp("10.96.0.50", 80);
        let svc = Service::new(key, "rr");
        client.add_service(&svc).await.expect("first add");
        assert!(matches!(
            client.add_service(&svc).await,
            Err(Error::AlreadyExists {
                command: "IPVS_CMD_NEW_SERVICE"
            })
        ));
        assert!(matches!(
            client.delete_service(&tcp("10.96.0.51", 80)).await,
            Err(Error::NotFound { .. })
        ));
        let bad = Service::new(tcp("10.96.0.52", 80), "nosuchsched");
        assert!(matches!(
            client.add_service(&bad).await,
            Err(Error::InvalidArgument {
                command: "IPVS_CMD_NEW_SERVICE"
            })
        ));
        // A name longer than the kernel takes never reaches it.
        let too_long = Service::new(tcp("10.96.0.52", 80), "no-such-scheduler");
        assert!(matches!(
            client.add_service(&too_long).await,
            Err(Error::NameTooLong {
                command: "IPVS_CMD_NEW_SERVICE",
                what: "scheduler",
                ..
            })
        ));
        assert!(matches!(
            client
                .add_destination(&tcp("10.96.0.53", 80), &Destination::new(ip("10.1.1.1"), 1))
                .await,
            Err(Error::NotFound { .. })
        ));
    });
}

#[test]
fn timeouts_match_ipvsadm() {
    rt().block_on(async {
        let client = connect().await;
        client
            .set_timeouts(&Timeouts {
                tcp: Some(900),
                tcp_fin: Some(120),
                udp: Some(300),
            })
            .await
            .expect("set");
        assert_eq!(
            ipvsadm(&["-L", "--timeout"]).trim(),
            "Timeout (tcp tcpfin udp): 900 120 300"
        );
        client
            .set_timeouts(&Timeouts {
                tcp: Some(1800),
                tcp_fin: None,
                udp: Some(0),
            })
            .await
            .expect("set tcp only");
        assert_eq!(
            client.timeouts().await.expect("get"),
            Timeouts {
                tcp: Some(1800),
                tcp_fin: Some(120),
                udp: Some(300),
            }
        );
    });
}

#[test]
fn flush_and_zero() {
    rt().block_on(async {
        let client = connect().await;
        for i in 1..=3u8 {
            client
                .add_service(&Service::new(tcp(&format!("10.96.1.{i}"), 80), "rr"))
                .await
                .expect("add");
        }
        client.zero(None).await.expect("zero all");
        client
            .zero(Some(&tcp("10.96.1.1", 80)))
            .await
            .expect("zero one");
        assert!(matches!(
            client.zero(Some(&tcp("10.96.1.9", 80))).await,
            Err(Error::NotFound { .. })
        ));
        assert_eq!(saved_rules().len(), 3);
        client.flush().await.expect("flush");
        assert!(saved_rules().is_empty());
        assert!(client.services().await.expect("dump").is_empty());
    });
}

#[test]
fn sync_daemon_lifecycle_matches_ipvsadm() {
    rt().block_on(async {
        let client = connect().await;
        let daemon = SyncDaemon {
            state: DaemonState::Master,
            interface: "lo".to_string(),
            sync_id: 5,
            max_len: None,
            group: None,
            port: None,
            ttl: None,
        };
        client.add_daemon(&daemon).await.expect("start daemon");
        let listed = client.daemons().await.expect("daemons");
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].state, DaemonState::Master);
        assert_eq!(listed[0].interface, "lo");
        assert_eq!(listed[0].sync_id, 5);
        let shown = ipvsadm(&["-L", "--daemon"]);
        assert!(
            shown.contains("master sync daemon (mcast=lo, syncid=5"),
            "ipvsadm --daemon: {shown}"
        );
        client
            .delete_daemon(DaemonState::Master)
            .await
            .expect("stop daemon");
        assert!(client.daemons().await.expect("daemons").is_empty());
        assert!(ipvsadm(&["-L", "--daemon"]).trim().is_empty());
    });
}

#[test]
fn sync_daemon_options_match_ipvsadm() {
    rt().block_on(async {
        let client = connect().await;
        let daemon = SyncDaemon {
            state: DaemonState::Master,
            interface: "lo".to_string(),
            sync_id: 9,
            max_len: Some(1400),
            group: Some(ip("224.0.0.81")),
            port: Some(8848),
            ttl: Some(2),
        };
        client.add_daemon(&daemon).await.expect("start daemon");
        let listed = client.daemons().await.expect("daemons");
        assert_eq!(listed, vec![daemon.clone()]);
        let shown = ipvsadm(&["-L", "--daemon"]);
        assert_eq!(
            shown.trim(),
            "master sync daemon (mcast=lo, syncid=9, maxlen=1400, group=224.0.0.81, port=8848, ttl=2)",
            "ipvsadm --daemon"
        );
        client
            .delete_daemon(DaemonState::Master)
            .await
            .expect("stop daemon");
        assert!(matches!(
            client.delete_daemon(DaemonState::Master).await,
            Err(Error::NotFound { .. }) | Err(Error::Kernel { .. })
        ));
    });
}

#[test]
fn execute_pipelines_and_reports_per_request() {
    rt().block_on(async {
        let client = connect().await;
        let mut requests = Vec::new();
        for i in 0..1500u32 {
            let key = tcp(&format!("10.97.{}.{}", i / 256, i % 256), 80);
            requests.push(Request::AddService(Service::new(key, "rr")));
            for j in 1..=3u8 {
                requests.push(Request::AddDestination(
                    key,
                    Destination::new(ip(&format!("10.245.0.{j}")), 8080),
                ));
            }
        }
        // One duplicate in the middle, past the first chunk that execute encodes and sends
        // (EXECUTE_CHUNK): only it fails, and every result is where its request was.
        requests.insert(
            4500,
            Request::AddService(Service::new(tcp("10.97.0.0", 80), "rr")),
        );
        assert!(requests.len() > ipvs::EXECUTE_CHUNK);
        let results = client.execute(&requests).await;
        assert_eq!(results.len(), 6001);
        for (i, r) in results.iter().enumerate() {
            if i == 4500 {
                assert!(
                    matches!(r, Err(Error::AlreadyExists { .. })),
                    "request 4500: {r:?}"
                );
            } else {
                assert!(r.is_ok(), "request {i}: {r:?}");
            }
        }
        let rules = saved_rules();
        assert_eq!(rules.iter().filter(|l| l.starts_with("-A ")).count(), 1500);
        assert_eq!(rules.iter().filter(|l| l.starts_with("-a ")).count(), 4500);

        // Everything again: every request fails, and each failure is reported as its own.
        let again = client.execute(requests).await;
        assert_eq!(again.len(), 6001);
        for (i, r) in again.iter().enumerate() {
            assert!(
                matches!(r, Err(Error::AlreadyExists { .. })),
                "request {i} again: {r:?}"
            );
        }

        let deletes = (0..1500u32)
            .map(|i| Request::DeleteService(tcp(&format!("10.97.{}.{}", i / 256, i % 256), 80)));
        assert!(client.execute(deletes).await.iter().all(Result::is_ok));
        assert!(saved_rules().is_empty());
    });
}

#[test]
fn ipvsadm_renderers_match_real_ipvsadm() {
    use ipvs::ipvsadm::{self as render, View};
    let commands = [
        "--set 900 120 300",
        "-A -t 10.96.0.20:443 -s sh -p 600 -b sh-fallback,sh-port",
        "-a -t 10.96.0.20:443 -r 10.244.0.7:8443 -m -w 1",
        "-a -t 10.96.0.20:443 -r 192.168.1.5:8443 -m -w 1",
        "-a -t 10.96.0.20:443 -r 100.64.1.1:8443 -m -w 0",
        "-a -t 10.96.0.20:443 -r 10.244.0.7:9443 -m -w 3 -x 100 -y 50",
        "-A -t 192.168.50.10:30080 -s mh -b mh-port",
        "-a -t 192.168.50.10:30080 -r 10.244.1.9:8080 -m",
        "-A -t 100.64.0.10:80 -s rr -b flag-1,flag-3",
        "-a -t 100.64.0.10:80 -r 127.0.0.1:80 -m",
        "-a -t 100.64.0.10:80 -r 172.16.0.5:80 -g -w 2",
        "-a -t 100.64.0.10:80 -r 172.16.0.6:80 -i -w 1",
        "-a -t 100.64.0.10:80 -r 172.16.0.7:80 -i --tun-type gue --tun-port 6080 --tun-csum",
        "-a -t 100.64.0.10:80 -r 172.16.0.8:80 -i --tun-type gre --tun-nocsum",
        "-a -t 100.64.0.10:80 -r 172.16.0.9:80 -i --tun-type gue --tun-port 6081 --tun-remcsum",
        "-a -t 100.64.0.10:80 -r [fd00::5]:80 -i",
        "-a -t 100.64.0.10:80 -r 200.1.1.1:80 -i",
        "-A -t 172.16.99.1:8080 -s sh -b flag-3",
        "-A -t 10.96.0.30:80 -s wlc -p 3600 -M 255.255.255.0",
        "-a -t 10.96.0.30:80 -r 10.244.2.2:80 -m -x 200 -y 100",
        "-A -u 10.96.0.10:53 -s rr -o",
        "-a -u 10.96.0.10:53 -r 10.244.0.3:53 -m",
        "-A -u 10.96.0.40:5060 -s rr -p 60 --pe sip",
        "-a -u 10.96.0.40:5060 -r 10.244.3.3:5060 -m",
        "-A --sctp-service 10.96.0.50:3868 -s lc",
        "-a --sctp-service 10.96.0.50:3868 -r 10.244.4.4:3868 -m",
        "-A -t [fd00::10]:80 -s wrr -p 300 -M 64",
        "-a -t [fd00::10]:80 -r [fd00:244::7]:8080 -m -w 2",
        "-a -t [fd00::10]:80 -r [2001:db8::7]:8080 -m",
        "-A -u [2001:db8::53]:53 -s rr",
        "-a -u [2001:db8::53]:53 -r [::10.1.2.3]:53 -m",
        "-A -f 7 -s wlc",
        "-a -f 7 -r 10.244.5.5:0 -m",
        "-A -f 9 -s rr -p 120 -M 255.255.0.0",
        "-a -f 9 -r 10.244.6.6:0 -g",
        "-A -f 8 -6 -s rr -p 30 -M 48",
        "-a -f 8 -6 -r fd00::8 -g",
        "-A -f 3000000000 -s lc",
        "-A -f 4294967295 -s rr",
    ];
    for command in commands {
        ipvsadm(&command.split_whitespace().collect::<Vec<_>>());
    }
    rt().block_on(async {
        let client = connect().await;
        let info = client.info().await.expect("info");
        let mut table = Vec::new();
        for service in client.services().await.expect("services") {
            let destinations = client.destinations(&service.key).await.expect("dests");
            table.push((service, destinations));
        }
        for (view, args) in [
            (View::Default, vec!["-Ln"]),
            (View::Stats, vec!["-Ln", "--stats"]),
            (View::Rate, vec!["-Ln", "--rate"]),
            (View::StatsExact, vec!["-Ln", "--stats", "--exact"]),
            (View::RateExact, vec!["-Ln", "--rate", "--exact"]),
            (View::Thresholds, vec!["-Ln", "--thresholds"]),
            (
                View::PersistentConnections,
                vec!["-Ln", "--persistent-conn"],
            ),
            (View::TunnelInfo, vec!["-Ln", "--tun-info"]),
        ] {
            let expected = ipvsadm(&args);
            let actual = render::list(&info, &table, view);
            println!("{expected}");
            assert_eq!(actual, expected, "view {view:?}");
        }
        let expected = ipvsadm(&["-Sn"]);
        println!("{expected}");
        assert_eq!(render::save(&table), expected);
        assert_eq!(
            render::timeouts(&client.timeouts().await.expect("timeouts")),
            ipvsadm(&["-L", "--timeout"])
        );
        // The kernel refuses sync daemons while destinations mix families.
        ipvsadm(&["-d", "-t", "100.64.0.10:80", "-r", "[fd00::5]:80"]);
        ipvsadm(&[
            "--start-daemon",
            "master",
            "--mcast-interface",
            "lo",
            "--syncid",
            "5",
        ]);
        ipvsadm(&[
            "--start-daemon",
            "backup",
            "--mcast-interface",
            "lo",
            "--syncid",
            "200",
            "--sync-maxlen",
            "1400",
            "--mcast-port",
            "8848",
        ]);
        let expected = ipvsadm(&["-L", "--daemon"]);
        println!("{expected}");
        assert_eq!(
            render::daemons(&client.daemons().await.expect("daemons")),
            expected
        );
    });
}

#[test]
fn dumps_asked_for_together_on_one_client_all_succeed() {
    // The kernel runs one dump per socket at a time; the client queues the others.
    for i in 0..20 {
        ipvsadm(&["-A", "-t", &format!("10.1.0.{i}:80"), "-s", "rr"]);
        ipvsadm(&[
            "-a",
            "-t",
            &format!("10.1.0.{i}:80"),
            "-r",
            &format!("10.2.0.{i}:80"),
            "-m",
        ]);
    }
    rt().block_on(async {
        let client = connect().await;
        let services = client.services().await.expect("services");
        assert_eq!(services.len(), 20);
        let (dumps, again) = tokio::join!(
            futures::future::join_all(services.iter().map(|s| client.destinations(&s.key))),
            client.services(),
        );
        for dump in &dumps {
            assert_eq!(dump.as_ref().expect("a destination dump").len(), 1);
        }
        assert_eq!(again.expect("a service dump").len(), 20);
    });
}

/// The benchmark example (`examples/bench_restore.rs`): in the test bed at /testbed/bin, else
/// built beside this test binary.
fn bench_restore_path() -> std::path::PathBuf {
    let staged = std::path::PathBuf::from("/testbed/bin/bench_restore");
    if staged.exists() {
        return staged;
    }
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join("bench_restore"))
        .filter(|p| p.exists())
        .expect("bench_restore is neither in /testbed/bin nor built beside the test binary")
}

#[test]
fn the_benchmark_writes_and_checks_both_tables() {
    // A small table: this keeps the benchmark working, it does not time anything.
    let out = Command::new(bench_restore_path())
        .env("BENCH_SERVICES", "20")
        .env("BENCH_DESTINATIONS", "3")
        .env("RUST_LOG", "warn")
        .output()
        .expect("running bench_restore");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench_restore failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("table: 20 services x 3 destinations (80 rules)"),
        "{stdout}"
    );
    assert!(stdout.contains("ratio (ipvsadm/client):"), "{stdout}");
}

#[test]
fn a_client_opened_in_another_network_namespace_writes_that_table() {
    let name = "ipvs-kernel-ns";
    let _ = Command::new("ip").args(["netns", "del", name]).status();
    let made = Command::new("ip")
        .args(["netns", "add", name])
        .status()
        .expect("running ip netns add");
    assert!(made.success(), "ip netns add {name} failed");
    // With lo down the kernel has no route to classify a destination's address by, and
    // refuses destinations (EINVAL).
    let up = Command::new("ip")
        .args(["-n", name, "link", "set", "lo", "up"])
        .status()
        .expect("running ip link set lo up");
    assert!(up.success(), "ip -n {name} link set lo up failed");
    rt().block_on(async {
        let client = Client::builder()
            .network_namespace(format!("/run/netns/{name}"))
            .timeout(std::time::Duration::from_secs(10))
            .connect()
            .await
            .expect("connect in the other namespace");
        let key = tcp("10.96.7.7", 80);
        client
            .add_service(&Service::new(key, "rr"))
            .await
            .expect("add a service there");
        let mut bypass = Destination::new(ip("10.244.7.7"), 80);
        bypass.forwarding = ForwardingMethod::Bypass;
        client
            .add_destination(&key, &bypass)
            .await
            .expect("the kernel takes a bypass destination");
        let read = client.destinations(&key).await.expect("destinations there");
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].forwarding, ForwardingMethod::Bypass);

        // Not here: this namespace's table is another one.
        assert!(
            !saved_rules().iter().any(|l| l.contains("10.96.7.7")),
            "{:?}",
            saved_rules()
        );
        let there = Command::new("ip")
            .args(["netns", "exec", name])
            .arg(std::env::var("IPVSADM").unwrap_or_else(|_| "ipvsadm".to_string()))
            .arg("-Sn")
            .output()
            .expect("ipvsadm in the other namespace");
        let there = String::from_utf8_lossy(&there.stdout);
        assert!(there.contains("-A -t 10.96.7.7:80 -s rr"), "{there}");

        match Client::builder()
            .network_namespace("/run/netns/no-such-namespace")
            .connect()
            .await
        {
            Err(Error::Namespace { .. }) => {}
            other => panic!("expected a namespace error, got {other:?}"),
        }
    });
    let _ = Command::new("ip").args(["netns", "del", name]).status();
}
