//! `ipvsd list` prints what ipvsadm prints, byte for byte, on the same kernel table.

use std::net::SocketAddr;
use std::time::Duration;

use crate::controller::ipvsd;
use crate::pods::{ip, ipvsadm_path, require_ipvs, run, tcp_hello, udp_hello, Pod};

/// A table mixing IPv4 and IPv6, fwmark, TCP, UDP and SCTP, persistence with a netmask,
/// scheduler flags, one-packet scheduling, a persistence engine, every forwarding method and
/// thresholds — plus one service with live traffic, so counters and rates are not all zero.
const TABLE: &[&str] = &[
    "-A -t 10.96.0.10:80 -s rr",
    "-a -t 10.96.0.10:80 -r 10.244.0.11:8080 -m -w 1",
    "-a -t 10.96.0.10:80 -r 10.244.0.12:8080 -m -w 1",
    "-A -u 10.96.0.53:53 -s rr",
    "-a -u 10.96.0.53:53 -r 10.244.0.11:5353 -m -w 1",
    "-A -t 10.96.0.20:443 -s sh -p 600 -M 255.255.255.0 -b sh-fallback,sh-port",
    "-a -t 10.96.0.20:443 -r 10.244.0.7:8443 -m -w 1 -x 100 -y 50",
    "-a -t 10.96.0.20:443 -r 192.168.9.5:8443 -g -w 2",
    "-A -t 192.168.50.10:30080 -s mh -b mh-port",
    "-a -t 192.168.50.10:30080 -r 10.244.1.9:8080 -m",
    "-a -t 192.168.50.10:30080 -r 127.0.0.1:8080 -m",
    "-A -u 10.96.0.40:5060 -s rr -p 60 --pe sip -o",
    "-a -u 10.96.0.40:5060 -r 10.244.3.3:5060 -m",
    "-A --sctp-service 10.96.0.50:3868 -s lc",
    "-a --sctp-service 10.96.0.50:3868 -r 10.244.4.4:3868 -m",
    "-A -t [fd00:96::60]:80 -s wrr -p 300 -M 64",
    "-a -t [fd00:96::60]:80 -r [fd00:244::11]:8080 -m -w 5",
    "-a -t [fd00:96::60]:80 -r [fd00:244::12]:8080 -i --tun-type gue --tun-port 6080 --tun-csum",
    "-A -f 7 -s wlc",
    "-a -f 7 -r 10.244.5.5:0 -i --tun-type gre --tun-nocsum",
    "-A -f 8 -6 -s rr -p 30 -M 48",
    "-a -f 8 -6 -r fd00::8 -g",
];

fn ipvsadm(args: &[&str]) -> String {
    run(&ipvsadm_path(), args)
}

#[test]
fn ipvsd_list_prints_what_ipvsadm_prints() {
    require_ipvs();
    let _pods = [11, 12].map(|n| {
        Pod::start(
            &format!("pod{n}"),
            &format!("10.244.0.{n}/24"),
            "10.244.0.1",
            &[8080],
            &[5353],
        )
    });
    ip(&["link", "add", "vips", "type", "dummy"]);
    ip(&["addr", "add", "10.96.0.10/32", "dev", "vips"]);
    ip(&["addr", "add", "10.96.0.53/32", "dev", "vips"]);
    for rule in TABLE {
        ipvsadm(&rule.split_whitespace().collect::<Vec<_>>());
    }
    // Traffic, then a pause: the kernel's estimator publishes counters and rates every 2 s.
    let web: SocketAddr = "10.96.0.10:80".parse().unwrap();
    let dns: SocketAddr = "10.96.0.53:53".parse().unwrap();
    for _ in 0..20 {
        tcp_hello(web);
        udp_hello(dns);
    }
    std::thread::sleep(Duration::from_secs(3));

    for (ipvsd_args, ipvsadm_args) in [
        (vec!["list"], vec!["-Ln"]),
        (vec!["list", "--stats"], vec!["-Ln", "--stats"]),
        (vec!["list", "--rate"], vec!["-Ln", "--rate"]),
        (vec!["list", "--save"], vec!["-Sn"]),
    ] {
        // Rates move every 2 s: compare against ipvsadm's output taken just before and just
        // after, and retry the rare time they straddle an update.
        let mut attempts = 0;
        loop {
            let before = ipvsadm(&ipvsadm_args);
            let ours = ipvsd(&ipvsd_args);
            let after = ipvsadm(&ipvsadm_args);
            if before == after {
                assert_eq!(
                    ours,
                    before,
                    "`ipvsd {}` differs from `ipvsadm {}`",
                    ipvsd_args.join(" "),
                    ipvsadm_args.join(" ")
                );
                break;
            }
            attempts += 1;
            assert!(attempts < 10, "ipvsadm's output never held still");
        }
    }
    let stats = ipvsadm(&["-Ln", "--stats"]);
    assert!(
        stats
            .lines()
            .any(|l| l.starts_with("TCP  10.96.0.10:80")
                && l.split_whitespace().nth(2) == Some("20")),
        "the table carries live counters:\n{stats}"
    );
}
