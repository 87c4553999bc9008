//! Byte fixtures: every command and every attribute kind, laid out as `linux/ip_vs.h` and
//! `ip_vs_ctl.c` define them, checked both ways (parse gives the value, emit gives the bytes).
//!
//! Requests are what this crate sends: nested attributes carry `NLA_F_NESTED` (0x8000). Replies
//! are what the kernel sends: its nests (`nla_nest_start_noflag`) do not; [`check_reply`] says
//! where the flag differs when the parsed value is emitted again. Integers are little-endian
//! (the test machines' host order) except ports, which are big-endian on the wire.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{
    DefaultNla, Emitable, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    ParseableParametrized, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_generic::GenlMessage;

use super::convert::*;
use super::*;
use crate::{
    DaemonState, Destination, Family, ForwardingMethod, Protocol, Service, ServiceFlags,
    ServiceKey, Stats, SyncDaemon, Timeouts, Tunnel, TunnelFlags, TunnelType,
};

/// The family id the fixtures pretend the kernel assigned.
const FAMILY_ID: u16 = 0x24;

fn emit_genl(msg: &IpvsMessage) -> Vec<u8> {
    let genl = GenlMessage::from_payload(msg.clone());
    let mut buf = vec![0u8; Emitable::buffer_len(&genl)];
    Emitable::emit(&genl, &mut buf);
    buf
}

fn parse_genl(raw: &[u8]) -> IpvsMessage {
    GenlMessage::<IpvsMessage>::parse_with_param(raw, FAMILY_ID)
        .expect("fixture parses")
        .payload
}

/// A request: parse and emit are exact inverses.
fn check_request(msg: IpvsMessage, raw: &[u8]) {
    assert_eq!(parse_genl(raw), msg, "parse");
    assert_eq!(emit_genl(&msg), raw, "emit");
}

/// A kernel reply: parses to `msg`; emitting `msg` gives the same bytes except `NLA_F_NESTED`
/// on the nests whose type field starts at the offsets `nested_at`.
fn check_reply(msg: IpvsMessage, raw: &[u8], nested_at: &[usize]) {
    assert_eq!(parse_genl(raw), msg, "parse");
    let mut flagged = raw.to_vec();
    for &at in nested_at {
        // The type field follows the two length bytes; the flag is its top bit.
        assert_eq!(flagged[at + 3] & 0x80, 0, "offset {at} already nested");
        flagged[at + 3] |= 0x80;
    }
    assert_eq!(emit_genl(&msg), flagged, "emit");
}

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

fn tcp_443() -> ServiceKey {
    ServiceKey::Addr {
        address: v4([10, 96, 0, 20]),
        protocol: Protocol::Tcp,
        port: 443,
    }
}

#[rustfmt::skip]
const NEW_SERVICE: &[u8] = &[
    // nlmsghdr
    0x68, 0x00, 0x00, 0x00, // nlmsg_len = 104
    0x24, 0x00,             // nlmsg_type = IPVS family id
    0x05, 0x00,             // nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK
    0x01, 0x00, 0x00, 0x00, // nlmsg_seq = 1
    0x00, 0x00, 0x00, 0x00, // nlmsg_pid = 0
    // genlmsghdr
    0x01, 0x01, 0x00, 0x00, // cmd = IPVS_CMD_NEW_SERVICE, version = 1, reserved
    0x54, 0x00, 0x01, 0x80, // IPVS_CMD_ATTR_SERVICE | NLA_F_NESTED, len 84
    0x06, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, // IPVS_SVC_ATTR_AF = AF_INET (+2 pad)
    0x06, 0x00, 0x02, 0x00, 0x06, 0x00, 0x00, 0x00, // IPVS_SVC_ATTR_PROTOCOL = IPPROTO_TCP
    0x14, 0x00, 0x03, 0x00,                         // IPVS_SVC_ATTR_ADDR, len 20:
    0x0a, 0x60, 0x00, 0x14,                         //   10.96.0.20
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //   rest of the 16-byte nf_inet_addr
    0x00, 0x00, 0x00, 0x00,
    0x06, 0x00, 0x04, 0x00, 0x01, 0xbb, 0x00, 0x00, // IPVS_SVC_ATTR_PORT = 443, big-endian
    0x07, 0x00, 0x06, 0x00, b's', b'h', 0x00, 0x00, // IPVS_SVC_ATTR_SCHED_NAME = "sh\0" (+1 pad)
    0x0c, 0x00, 0x07, 0x00,                         // IPVS_SVC_ATTR_FLAGS, len 12:
    0x19, 0x00, 0x00, 0x00,                         //   flags = PERSISTENT|SCHED1|SCHED2
    0xff, 0xff, 0xff, 0xff,                         //   mask = all
    0x08, 0x00, 0x08, 0x00, 0x58, 0x02, 0x00, 0x00, // IPVS_SVC_ATTR_TIMEOUT = 600
    0x08, 0x00, 0x09, 0x00, 0xff, 0xff, 0xff, 0xff, // IPVS_SVC_ATTR_NETMASK = 255.255.255.255
];

fn sh_service() -> Service {
    let mut svc = Service::new(tcp_443(), "sh");
    svc.flags = ServiceFlags::PERSISTENT | ServiceFlags::SCHED1 | ServiceFlags::SCHED2;
    svc.timeout = 600;
    svc
}

#[test]
fn new_service_whole_netlink_message() {
    let msg = IpvsMessage::new(
        IpvsCmd::NewService,
        vec![CmdAttr::Service(service_attrs(&sh_service()))],
    );
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK;
    header.sequence_number = 1;
    let mut genl = GenlMessage::from_payload(msg.clone());
    genl.set_resolved_family_id(FAMILY_ID);
    let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(genl));
    nl.finalize();
    let mut buf = vec![0u8; nl.buffer_len()];
    nl.serialize(&mut buf);
    assert_eq!(buf, NEW_SERVICE);

    let parsed = NetlinkMessage::<GenlMessage<IpvsMessage>>::deserialize(NEW_SERVICE).unwrap();
    assert_eq!(parsed.header.message_type, FAMILY_ID);
    let NetlinkPayload::InnerMessage(genl) = parsed.payload else {
        panic!("not an inner message")
    };
    assert_eq!(genl.payload, msg);
    let CmdAttr::Service(attrs) = &genl.payload.attrs[0] else {
        panic!("no service")
    };
    assert_eq!(service_from_attrs(attrs).unwrap(), sh_service());
}

#[test]
fn bulk_writer_encodes_like_netlink_message() {
    let msg = IpvsMessage::new(
        IpvsCmd::NewService,
        vec![CmdAttr::Service(service_attrs(&sh_service()))],
    );
    let mut out = vec![0xaa; 3]; // appends after what is there
    crate::client::encode_request(&mut out, FAMILY_ID, 1, NLM_F_REQUEST | NLM_F_ACK, &msg);
    assert_eq!(&out[..3], &[0xaa; 3]);
    assert_eq!(&out[3..], NEW_SERVICE);
}

#[test]
fn a_service_read_back_is_written_without_the_hashed_flag() {
    let mut read_back = sh_service();
    read_back.flags = read_back.flags | ServiceFlags::HASHED;
    assert_eq!(service_attrs(&read_back), service_attrs(&sh_service()));
}

#[rustfmt::skip]
const SET_SERVICE_V6: &[u8] = &[
    0x02, 0x01, 0x00, 0x00, // cmd = IPVS_CMD_SET_SERVICE, version 1
    0x5c, 0x00, 0x01, 0x80, // IPVS_CMD_ATTR_SERVICE | NLA_F_NESTED, len 92
    0x06, 0x00, 0x01, 0x00, 0x0a, 0x00, 0x00, 0x00, // AF = AF_INET6 (10)
    0x06, 0x00, 0x02, 0x00, 0x11, 0x00, 0x00, 0x00, // PROTOCOL = IPPROTO_UDP (17)
    0x14, 0x00, 0x03, 0x00,                         // ADDR, len 20:
    0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //   fd00::
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, //   ...10
    0x06, 0x00, 0x04, 0x00, 0x00, 0x35, 0x00, 0x00, // PORT = 53, big-endian
    0x07, 0x00, 0x06, 0x00, b'r', b'r', 0x00, 0x00, // SCHED_NAME = "rr\0"
    0x08, 0x00, 0x0b, 0x00, b's', b'i', b'p', 0x00, // IPVS_SVC_ATTR_PE_NAME = "sip\0"
    0x0c, 0x00, 0x07, 0x00,                         // FLAGS, len 12:
    0x01, 0x00, 0x00, 0x00,                         //   flags = PERSISTENT
    0xff, 0xff, 0xff, 0xff,                         //   mask = all
    0x08, 0x00, 0x08, 0x00, 0x30, 0x2a, 0x00, 0x00, // TIMEOUT = 10800
    0x08, 0x00, 0x09, 0x00, 0x40, 0x00, 0x00, 0x00, // NETMASK = prefix 64, host-order u32
];

#[test]
fn set_service_ipv6_with_pe_and_prefix_netmask() {
    let key = ServiceKey::Addr {
        address: "fd00::10".parse().unwrap(),
        protocol: Protocol::Udp,
        port: 53,
    };
    let mut svc = Service::new(key, "rr");
    svc.flags = ServiceFlags::PERSISTENT;
    svc.timeout = 10800;
    svc.netmask = 64;
    svc.persistence_engine = Some("sip".to_string());
    let msg = IpvsMessage::new(
        IpvsCmd::SetService,
        vec![CmdAttr::Service(service_attrs(&svc))],
    );
    check_request(msg, SET_SERVICE_V6);
    let CmdAttr::Service(attrs) = &parse_genl(SET_SERVICE_V6).attrs[0] else {
        panic!()
    };
    assert_eq!(service_from_attrs(attrs).unwrap(), svc);
}

#[rustfmt::skip]
const DEL_SERVICE_FWMARK: &[u8] = &[
    0x03, 0x01, 0x00, 0x00, // cmd = IPVS_CMD_DEL_SERVICE
    0x14, 0x00, 0x01, 0x80, // IPVS_CMD_ATTR_SERVICE | NLA_F_NESTED, len 20
    0x06, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, // AF = AF_INET
    0x08, 0x00, 0x05, 0x00, 0x07, 0x00, 0x00, 0x00, // IPVS_SVC_ATTR_FWMARK = 7
];

#[test]
fn del_service_by_fwmark() {
    let key = ServiceKey::FwMark {
        mark: 7,
        family: Family::Inet,
    };
    check_request(
        IpvsMessage::new(
            IpvsCmd::DelService,
            vec![CmdAttr::Service(service_key_attrs(&key))],
        ),
        DEL_SERVICE_FWMARK,
    );
}

#[test]
fn attribute_less_commands() {
    // GET_SERVICE (dump), GET_DAEMON, GET_CONFIG, GET_INFO, FLUSH, ZERO (all): the genl header
    // alone, cmd then version 1 then two reserved bytes.
    for (cmd, n) in [
        (IpvsCmd::GetService, 4u8),
        (IpvsCmd::GetDaemon, 11),
        (IpvsCmd::GetConfig, 13),
        (IpvsCmd::GetInfo, 15),
        (IpvsCmd::Zero, 16),
        (IpvsCmd::Flush, 17),
    ] {
        check_request(IpvsMessage::new(cmd, vec![]), &[n, 0x01, 0x00, 0x00]);
    }
}

#[rustfmt::skip]
const ZERO_ONE: &[u8] = &[
    0x10, 0x01, 0x00, 0x00, // cmd = IPVS_CMD_ZERO
    0x30, 0x00, 0x01, 0x80, // IPVS_CMD_ATTR_SERVICE | NLA_F_NESTED, len 48
    0x06, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, // AF = AF_INET
    0x06, 0x00, 0x02, 0x00, 0x84, 0x00, 0x00, 0x00, // PROTOCOL = IPPROTO_SCTP (132)
    0x14, 0x00, 0x03, 0x00,                         // ADDR: 10.96.0.30
    0x0a, 0x60, 0x00, 0x1e, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x06, 0x00, 0x04, 0x00, 0x0f, 0x1c, 0x00, 0x00, // PORT = 3868, big-endian
];

#[test]
fn zero_one_sctp_service() {
    let key = ServiceKey::Addr {
        address: v4([10, 96, 0, 30]),
        protocol: Protocol::Sctp,
        port: 3868,
    };
    check_request(
        IpvsMessage::new(
            IpvsCmd::Zero,
            vec![CmdAttr::Service(service_key_attrs(&key))],
        ),
        ZERO_ONE,
    );
}

#[rustfmt::skip]
const SERVICE_REPLY: &[u8] = &[
    0x01, 0x01, 0x00, 0x00, // cmd = IPVS_CMD_NEW_SERVICE (each entry of a dump)
    0x34, 0x01, 0x01, 0x00, // IPVS_CMD_ATTR_SERVICE (no NLA_F_NESTED), len 308      @4
    0x06, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, // AF = AF_INET
    0x06, 0x00, 0x02, 0x00, 0x06, 0x00, 0x00, 0x00, // PROTOCOL = TCP
    0x14, 0x00, 0x03, 0x00,                         // ADDR: 10.96.0.20
    0x0a, 0x60, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x06, 0x00, 0x04, 0x00, 0x01, 0xbb, 0x00, 0x00, // PORT = 443
    0x07, 0x00, 0x06, 0x00, b'r', b'r', 0x00, 0x00, // SCHED_NAME = "rr"
    0x0c, 0x00, 0x07, 0x00,                         // FLAGS:
    0x02, 0x00, 0x00, 0x00,                         //   flags = HASHED
    0xff, 0xff, 0xff, 0xff,                         //   mask
    0x08, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, // TIMEOUT = 0
    0x08, 0x00, 0x09, 0x00, 0xff, 0xff, 0xff, 0x00, // NETMASK = 255.255.255.0 (/24)
    0x5c, 0x00, 0x0a, 0x00,                         // IPVS_SVC_ATTR_STATS, len 92         @88
    0x08, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, //   CONNS = 1 (u32)
    0x08, 0x00, 0x02, 0x00, 0x02, 0x00, 0x00, 0x00, //   INPKTS = 2
    0x08, 0x00, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, //   OUTPKTS = 3
    0x0c, 0x00, 0x04, 0x00,                         //   INBYTES = 4 (u64)
    0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x0c, 0x00, 0x05, 0x00,                         //   OUTBYTES = 5 (u64)
    0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x08, 0x00, 0x06, 0x00, 0x06, 0x00, 0x00, 0x00, //   CPS = 6
    0x08, 0x00, 0x07, 0x00, 0x07, 0x00, 0x00, 0x00, //   INPPS = 7
    0x08, 0x00, 0x08, 0x00, 0x08, 0x00, 0x00, 0x00, //   OUTPPS = 8
    0x08, 0x00, 0x09, 0x00, 0x09, 0x00, 0x00, 0x00, //   INBPS = 9
    0x08, 0x00, 0x0a, 0x00, 0x0a, 0x00, 0x00, 0x00, //   OUTBPS = 10
    0x7c, 0x00, 0x0c, 0x00,                         // IPVS_SVC_ATTR_STATS64 (12), len 124 @180
    0x0c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, // CONNS = 1<<32
    0x0c, 0x00, 0x02, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // INPKTS = 2
    0x0c, 0x00, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // OUTPKTS = 3
    0x0c, 0x00, 0x04, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // INBYTES = 4
    0x0c, 0x00, 0x05, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // OUTBYTES = 5
    0x0c, 0x00, 0x06, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // CPS = 6
    0x0c, 0x00, 0x07, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // INPPS = 7
    0x0c, 0x00, 0x08, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // OUTPPS = 8
    0x0c, 0x00, 0x09, 0x00, 0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // INBPS = 9
    0x0c, 0x00, 0x0a, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // OUTBPS = 10
    0x08, 0x00, 0x63, 0x00, 0xde, 0xad, 0xbe, 0xef, // attribute 99, unknown: kept as Other
];

#[test]
fn service_reply_with_both_stats_and_unknown_attribute() {
    let mut key_attrs = service_key_attrs(&tcp_443());
    key_attrs.extend([
        SvcAttr::SchedName("rr".into()),
        SvcAttr::Flags(SchedFlagsNla {
            flags: 0x2,
            mask: u32::MAX,
        }),
        SvcAttr::Timeout(0),
        SvcAttr::Netmask(u32::from_ne_bytes([0xff, 0xff, 0xff, 0x00])),
        SvcAttr::Stats(vec![
            StatsAttr::Conns(1),
            StatsAttr::InPkts(2),
            StatsAttr::OutPkts(3),
            StatsAttr::InBytes(4),
            StatsAttr::OutBytes(5),
            StatsAttr::Cps(6),
            StatsAttr::InPps(7),
            StatsAttr::OutPps(8),
            StatsAttr::InBps(9),
            StatsAttr::OutBps(10),
        ]),
        SvcAttr::Stats64(vec![
            Stats64Attr::Conns(1 << 32),
            Stats64Attr::InPkts(2),
            Stats64Attr::OutPkts(3),
            Stats64Attr::InBytes(4),
            Stats64Attr::OutBytes(5),
            Stats64Attr::Cps(6),
            Stats64Attr::InPps(7),
            Stats64Attr::OutPps(8),
            Stats64Attr::InBps(9),
            Stats64Attr::OutBps(10),
        ]),
        SvcAttr::Other(DefaultNla::new(99, vec![0xde, 0xad, 0xbe, 0xef])),
    ]);
    let msg = IpvsMessage::new(
        IpvsCmd::NewService,
        vec![CmdAttr::Service(key_attrs.clone())],
    );
    check_reply(msg, SERVICE_REPLY, &[4, 88, 180]);

    let svc = service_from_attrs(&key_attrs).unwrap();
    assert_eq!(svc.key, tcp_443());
    assert_eq!(svc.netmask, 24);
    assert_eq!(svc.flags, ServiceFlags::HASHED);
    // The 64-bit counters win over the 32-bit ones.
    assert_eq!(
        svc.stats,
        Stats {
            connections: 1 << 32,
            packets_in: 2,
            packets_out: 3,
            bytes_in: 4,
            bytes_out: 5,
            cps: 6,
            packets_in_rate: 7,
            packets_out_rate: 8,
            bytes_in_rate: 9,
            bytes_out_rate: 10,
        }
    );
    // Without STATS64, the 32-bit ones are used.
    let without64: Vec<_> = key_attrs
        .into_iter()
        .filter(|a| !matches!(a, SvcAttr::Stats64(_)))
        .collect();
    assert_eq!(service_from_attrs(&without64).unwrap().stats.connections, 1);
}

fn gue_destination() -> Destination {
    let mut d = Destination::new(v4([10, 244, 0, 9]), 80);
    d.forwarding = ForwardingMethod::Tunnel(Tunnel {
        kind: TunnelType::Gue,
        port: 6080,
        flags: TunnelFlags::CSUM,
    });
    d.weight = 2;
    d.upper_threshold = 100;
    d.lower_threshold = 10;
    d
}

#[rustfmt::skip]
const NEW_DEST: &[u8] = &[
    0x05, 0x01, 0x00, 0x00, // cmd = IPVS_CMD_NEW_DEST
    0x30, 0x00, 0x01, 0x80, // IPVS_CMD_ATTR_SERVICE | NLA_F_NESTED, len 48: the service key
    0x06, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, //   AF = AF_INET
    0x06, 0x00, 0x02, 0x00, 0x06, 0x00, 0x00, 0x00, //   PROTOCOL = TCP
    0x14, 0x00, 0x03, 0x00,                         //   ADDR: 10.96.0.20
    0x0a, 0x60, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x06, 0x00, 0x04, 0x00, 0x01, 0xbb, 0x00, 0x00, //   PORT = 443
    0x60, 0x00, 0x02, 0x80, // IPVS_CMD_ATTR_DEST | NLA_F_NESTED, len 96
    0x06, 0x00, 0x0b, 0x00, 0x02, 0x00, 0x00, 0x00, //   IPVS_DEST_ATTR_ADDR_FAMILY = AF_INET
    0x14, 0x00, 0x01, 0x00,                         //   IPVS_DEST_ATTR_ADDR: 10.244.0.9
    0x0a, 0xf4, 0x00, 0x09, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x06, 0x00, 0x02, 0x00, 0x00, 0x50, 0x00, 0x00, //   IPVS_DEST_ATTR_PORT = 80, big-endian
    0x08, 0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x00, //   FWD_METHOD = IP_VS_CONN_F_TUNNEL
    0x08, 0x00, 0x04, 0x00, 0x02, 0x00, 0x00, 0x00, //   WEIGHT = 2
    0x08, 0x00, 0x05, 0x00, 0x64, 0x00, 0x00, 0x00, //   U_THRESH = 100
    0x08, 0x00, 0x06, 0x00, 0x0a, 0x00, 0x00, 0x00, //   L_THRESH = 10
    0x05, 0x00, 0x0d, 0x00, 0x01, 0x00, 0x00, 0x00, //   TUN_TYPE = GUE (u8, +3 pad)
    0x06, 0x00, 0x0e, 0x00, 0x17, 0xc0, 0x00, 0x00, //   TUN_PORT = 6080, big-endian
    0x06, 0x00, 0x0f, 0x00, 0x01, 0x00, 0x00, 0x00, //   TUN_FLAGS = CSUM (u16)
];

#[test]
fn new_dest_tunnel_with_service_nested() {
    let d = gue_destination();
    let msg = IpvsMessage::new(
        IpvsCmd::NewDest,
        vec![
            CmdAttr::Service(service_key_attrs(&tcp_443())),
            CmdAttr::Dest(dest_attrs(&d)),
        ],
    );
    check_request(msg, NEW_DEST);
    let CmdAttr::Dest(attrs) = &parse_genl(NEW_DEST).attrs[1] else {
        panic!()
    };
    assert_eq!(dest_from_attrs(attrs, Family::Inet).unwrap(), d);
}

#[rustfmt::skip]
const SET_DEST_V6: &[u8] = &[
    0x06, 0x01, 0x00, 0x00, // cmd = IPVS_CMD_SET_DEST
    0x14, 0x00, 0x01, 0x80, // IPVS_CMD_ATTR_SERVICE | NLA_F_NESTED, len 20
    0x06, 0x00, 0x01, 0x00, 0x0a, 0x00, 0x00, 0x00, //   AF = AF_INET6
    0x08, 0x00, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00, //   FWMARK = 1
    0x48, 0x00, 0x02, 0x80, // IPVS_CMD_ATTR_DEST | NLA_F_NESTED, len 72
    0x06, 0x00, 0x0b, 0x00, 0x0a, 0x00, 0x00, 0x00, //   ADDR_FAMILY = AF_INET6
    0x14, 0x00, 0x01, 0x00,                         //   ADDR: fd00::7
    0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07,
    0x06, 0x00, 0x02, 0x00, 0x1f, 0x90, 0x00, 0x00, //   PORT = 8080
    0x08, 0x00, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, //   FWD_METHOD = IP_VS_CONN_F_DROUTE
    0x08, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, //   WEIGHT = 0 (quiescent)
    0x08, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, //   U_THRESH = 0
    0x08, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, //   L_THRESH = 0
];

#[rustfmt::skip]
const DEL_DEST_V6: &[u8] = &[
    0x07, 0x01, 0x00, 0x00, // cmd = IPVS_CMD_DEL_DEST
    0x14, 0x00, 0x01, 0x80, // IPVS_CMD_ATTR_SERVICE | NLA_F_NESTED, len 20
    0x06, 0x00, 0x01, 0x00, 0x0a, 0x00, 0x00, 0x00, //   AF = AF_INET6
    0x08, 0x00, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00, //   FWMARK = 1
    0x28, 0x00, 0x02, 0x80, // IPVS_CMD_ATTR_DEST | NLA_F_NESTED, len 40: identity only
    0x06, 0x00, 0x0b, 0x00, 0x0a, 0x00, 0x00, 0x00, //   ADDR_FAMILY = AF_INET6
    0x14, 0x00, 0x01, 0x00,                         //   ADDR: fd00::7
    0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07,
    0x06, 0x00, 0x02, 0x00, 0x1f, 0x90, 0x00, 0x00, //   PORT = 8080
];

#[test]
fn set_and_del_dest_of_ipv6_fwmark_service() {
    let key = ServiceKey::FwMark {
        mark: 1,
        family: Family::Inet6,
    };
    let mut d = Destination::new("fd00::7".parse().unwrap(), 8080);
    d.forwarding = ForwardingMethod::DirectRoute;
    d.weight = 0;
    let svc = CmdAttr::Service(service_key_attrs(&key));
    check_request(
        IpvsMessage::new(
            IpvsCmd::SetDest,
            vec![svc.clone(), CmdAttr::Dest(dest_attrs(&d))],
        ),
        SET_DEST_V6,
    );
    check_request(
        IpvsMessage::new(
            IpvsCmd::DelDest,
            vec![svc, CmdAttr::Dest(dest_key_attrs(&d))],
        ),
        DEL_DEST_V6,
    );
}

#[test]
fn get_dest_dump_names_the_service() {
    let mut raw = vec![0x08, 0x01, 0x00, 0x00]; // cmd = IPVS_CMD_GET_DEST
    raw.extend_from_slice(&DEL_SERVICE_FWMARK[4..]); // the fwmark 7 service, as above
    let key = ServiceKey::FwMark {
        mark: 7,
        family: Family::Inet,
    };
    check_request(
        IpvsMessage::new(
            IpvsCmd::GetDest,
            vec![CmdAttr::Service(service_key_attrs(&key))],
        ),
        &raw,
    );
}

#[rustfmt::skip]
const DEST_REPLY: &[u8] = &[
    0x05, 0x01, 0x00, 0x00, // cmd = IPVS_CMD_NEW_DEST (each entry of a dump)
    0x94, 0x00, 0x02, 0x00, // IPVS_CMD_ATTR_DEST (no NLA_F_NESTED), len 148           @4
    0x14, 0x00, 0x01, 0x00,                         //   ADDR: 10.244.0.7
    0x0a, 0xf4, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x06, 0x00, 0x02, 0x00, 0x20, 0xfb, 0x00, 0x00, //   PORT = 8443
    0x08, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, //   FWD_METHOD = MASQ
    0x08, 0x00, 0x04, 0x00, 0x01, 0x00, 0x00, 0x00, //   WEIGHT = 1
    0x05, 0x00, 0x0d, 0x00, 0x00, 0x00, 0x00, 0x00, //   TUN_TYPE = IPIP (not a tunnel: ignored)
    0x06, 0x00, 0x0e, 0x00, 0x00, 0x00, 0x00, 0x00, //   TUN_PORT = 0
    0x06, 0x00, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00, //   TUN_FLAGS = 0
    0x08, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, //   U_THRESH = 0
    0x08, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, //   L_THRESH = 0
    0x08, 0x00, 0x07, 0x00, 0x03, 0x00, 0x00, 0x00, //   IPVS_DEST_ATTR_ACTIVE_CONNS = 3
    0x08, 0x00, 0x08, 0x00, 0x04, 0x00, 0x00, 0x00, //   IPVS_DEST_ATTR_INACT_CONNS = 4
    0x08, 0x00, 0x09, 0x00, 0x05, 0x00, 0x00, 0x00, //   IPVS_DEST_ATTR_PERSIST_CONNS = 5
    0x06, 0x00, 0x0b, 0x00, 0x02, 0x00, 0x00, 0x00, //   ADDR_FAMILY = AF_INET
    0x0c, 0x00, 0x0a, 0x00,                         //   IPVS_DEST_ATTR_STATS, len 12    @124
    0x08, 0x00, 0x01, 0x00, 0x07, 0x00, 0x00, 0x00, //     CONNS = 7
    0x10, 0x00, 0x0c, 0x00,                         //   IPVS_DEST_ATTR_STATS64, len 16  @136
    0x0c, 0x00, 0x01, 0x00, 0x07, 0x00, 0x00, 0x00, //     CONNS = 7 (u64)
    0x00, 0x00, 0x00, 0x00,
];

#[test]
fn dest_reply_with_connection_counts() {
    let attrs = vec![
        DestAttr::Addr(InetAddr::from(v4([10, 244, 0, 7]))),
        DestAttr::Port(8443),
        DestAttr::FwdMethod(IP_VS_CONN_F_MASQ),
        DestAttr::Weight(1),
        DestAttr::TunType(0),
        DestAttr::TunPort(0),
        DestAttr::TunFlags(0),
        DestAttr::UThresh(0),
        DestAttr::LThresh(0),
        DestAttr::ActiveConns(3),
        DestAttr::InactConns(4),
        DestAttr::PersistConns(5),
        DestAttr::AddrFamily(AF_INET),
        DestAttr::Stats(vec![StatsAttr::Conns(7)]),
        DestAttr::Stats64(vec![Stats64Attr::Conns(7)]),
    ];
    check_reply(
        IpvsMessage::new(IpvsCmd::NewDest, vec![CmdAttr::Dest(attrs.clone())]),
        DEST_REPLY,
        &[4, 124, 136],
    );
    let mut want = Destination::new(v4([10, 244, 0, 7]), 8443);
    want.active_connections = 3;
    want.inactive_connections = 4;
    want.persistent_connections = 5;
    want.stats.connections = 7;
    assert_eq!(dest_from_attrs(&attrs, Family::Inet).unwrap(), want);
}

#[rustfmt::skip]
const NEW_DAEMON: &[u8] = &[
    0x09, 0x01, 0x00, 0x00, // cmd = IPVS_CMD_NEW_DAEMON
    0x40, 0x00, 0x03, 0x80, // IPVS_CMD_ATTR_DAEMON | NLA_F_NESTED, len 64
    0x08, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, //   IPVS_DAEMON_ATTR_STATE = MASTER
    0x09, 0x00, 0x02, 0x00,                         //   IPVS_DAEMON_ATTR_MCAST_IFN, len 9:
    b'e', b't', b'h', b'0', 0x00, 0x00, 0x00, 0x00, //     "eth0\0" (+3 pad)
    0x08, 0x00, 0x03, 0x00, 0x05, 0x00, 0x00, 0x00, //   IPVS_DAEMON_ATTR_SYNC_ID = 5
    0x06, 0x00, 0x04, 0x00, 0xdc, 0x05, 0x00, 0x00, //   IPVS_DAEMON_ATTR_SYNC_MAXLEN = 1500 (u16)
    0x08, 0x00, 0x05, 0x00, 0xe0, 0x00, 0x00, 0x51, //   IPVS_DAEMON_ATTR_MCAST_GROUP = 224.0.0.81
    0x06, 0x00, 0x07, 0x00, 0x90, 0x22, 0x00, 0x00, //   IPVS_DAEMON_ATTR_MCAST_PORT = 8848 (host u16)
    0x05, 0x00, 0x08, 0x00, 0x02, 0x00, 0x00, 0x00, //   IPVS_DAEMON_ATTR_MCAST_TTL = 2 (u8)
];

#[test]
fn new_daemon_with_every_option() {
    let d = SyncDaemon {
        state: DaemonState::Master,
        interface: "eth0".into(),
        sync_id: 5,
        max_len: Some(1500),
        group: Some(v4([224, 0, 0, 81])),
        port: Some(8848),
        ttl: Some(2),
    };
    check_request(
        IpvsMessage::new(IpvsCmd::NewDaemon, vec![CmdAttr::Daemon(daemon_attrs(&d))]),
        NEW_DAEMON,
    );
    let CmdAttr::Daemon(attrs) = &parse_genl(NEW_DAEMON).attrs[0] else {
        panic!()
    };
    assert_eq!(daemon_from_attrs(attrs).unwrap(), d);
}

#[rustfmt::skip]
const DAEMON_GROUP6_REPLY: &[u8] = &[
    0x09, 0x01, 0x00, 0x00, // cmd = IPVS_CMD_NEW_DAEMON (entry of a GET_DAEMON dump)
    0x30, 0x00, 0x03, 0x00, // IPVS_CMD_ATTR_DAEMON (no NLA_F_NESTED), len 48            @4
    0x08, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, //   STATE = BACKUP
    0x07, 0x00, 0x02, 0x00, b'l', b'o', 0x00, 0x00, //   MCAST_IFN = "lo\0"
    0x08, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, //   SYNC_ID = 0
    0x14, 0x00, 0x06, 0x00,                         //   IPVS_DAEMON_ATTR_MCAST_GROUP6 = ff02::51
    0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x51,
];

#[test]
fn daemon_reply_with_ipv6_group() {
    let attrs = vec![
        DaemonAttr::State(IP_VS_STATE_BACKUP),
        DaemonAttr::McastIfn("lo".into()),
        DaemonAttr::SyncId(0),
        DaemonAttr::McastGroup6("ff02::51".parse::<Ipv6Addr>().unwrap()),
    ];
    check_reply(
        IpvsMessage::new(IpvsCmd::NewDaemon, vec![CmdAttr::Daemon(attrs.clone())]),
        DAEMON_GROUP6_REPLY,
        &[4],
    );
    let d = daemon_from_attrs(&attrs).unwrap();
    assert_eq!(d.state, DaemonState::Backup);
    assert_eq!(d.group, Some("ff02::51".parse().unwrap()));
}

#[test]
fn del_daemon_names_the_state() {
    #[rustfmt::skip]
    let raw = [
        0x0a, 0x01, 0x00, 0x00, // cmd = IPVS_CMD_DEL_DAEMON
        0x0c, 0x00, 0x03, 0x80, // IPVS_CMD_ATTR_DAEMON | NLA_F_NESTED, len 12
        0x08, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, //   STATE = BACKUP
    ];
    check_request(
        IpvsMessage::new(
            IpvsCmd::DelDaemon,
            vec![CmdAttr::Daemon(daemon_state_attrs(DaemonState::Backup))],
        ),
        &raw,
    );
}

#[rustfmt::skip]
const SET_CONFIG: &[u8] = &[
    0x0c, 0x01, 0x00, 0x00, // cmd = IPVS_CMD_SET_CONFIG (also GET_CONFIG's reply)
    0x08, 0x00, 0x04, 0x00, 0x84, 0x03, 0x00, 0x00, // IPVS_CMD_ATTR_TIMEOUT_TCP = 900
    0x08, 0x00, 0x05, 0x00, 0x78, 0x00, 0x00, 0x00, // IPVS_CMD_ATTR_TIMEOUT_TCP_FIN = 120
    0x08, 0x00, 0x06, 0x00, 0x2c, 0x01, 0x00, 0x00, // IPVS_CMD_ATTR_TIMEOUT_UDP = 300
];

#[test]
fn set_config_timeouts_and_partial_set() {
    let t = Timeouts {
        tcp: Some(900),
        tcp_fin: Some(120),
        udp: Some(300),
    };
    let msg = IpvsMessage::new(IpvsCmd::SetConfig, timeouts_attrs(&t));
    check_request(msg.clone(), SET_CONFIG);
    assert_eq!(timeouts_from_attrs(&msg.attrs), t);
    // Only what is given (and non-zero) is sent: the kernel leaves the rest.
    let partial = Timeouts {
        tcp: None,
        tcp_fin: Some(0),
        udp: Some(300),
    };
    check_request(
        IpvsMessage::new(IpvsCmd::SetConfig, timeouts_attrs(&partial)),
        &[
            0x0c, 0x01, 0x00, 0x00, // cmd = IPVS_CMD_SET_CONFIG
            0x08, 0x00, 0x06, 0x00, 0x2c, 0x01, 0x00, 0x00, // TIMEOUT_UDP = 300
        ],
    );
}

#[rustfmt::skip]
const INFO_REPLY: &[u8] = &[
    0x0e, 0x01, 0x00, 0x00, // cmd = IPVS_CMD_SET_INFO (GET_INFO's reply)
    0x08, 0x00, 0x01, 0x00, 0x01, 0x02, 0x01, 0x00, // IPVS_INFO_ATTR_VERSION = 0x010201
    0x08, 0x00, 0x02, 0x00, 0x00, 0x10, 0x00, 0x00, // IPVS_INFO_ATTR_CONN_TAB_SIZE = 4096
];

#[test]
fn info_reply_reads_info_attributes_not_command_ones() {
    let msg = IpvsMessage::new(
        IpvsCmd::SetInfo,
        vec![
            CmdAttr::InfoVersion(0x010201),
            CmdAttr::InfoConnTabSize(4096),
        ],
    );
    check_reply(msg.clone(), INFO_REPLY, &[]);
    let info = info_from_attrs(&msg.attrs).unwrap();
    assert_eq!(info.version_triple(), (1, 2, 1));
    assert_eq!(info.connection_table_size, 4096);
}

#[rustfmt::skip]
const ERROR_EEXIST: &[u8] = &[
    // nlmsghdr
    0x24, 0x00, 0x00, 0x00, // nlmsg_len = 36
    0x02, 0x00,             // nlmsg_type = NLMSG_ERROR
    0x00, 0x01,             // nlmsg_flags = NLM_F_CAPPED
    0x07, 0x00, 0x00, 0x00, // nlmsg_seq = 7
    0x39, 0x30, 0x00, 0x00, // nlmsg_pid = 12345
    0xef, 0xff, 0xff, 0xff, // error = -17 (EEXIST)
    // the request's nlmsghdr, echoed
    0x68, 0x00, 0x00, 0x00, 0x24, 0x00, 0x05, 0x00,
    0x07, 0x00, 0x00, 0x00, 0x39, 0x30, 0x00, 0x00,
];

#[rustfmt::skip]
const ACK: &[u8] = &[
    0x24, 0x00, 0x00, 0x00, // nlmsg_len = 36
    0x02, 0x00,             // nlmsg_type = NLMSG_ERROR
    0x00, 0x01,             // nlmsg_flags = NLM_F_CAPPED
    0x08, 0x00, 0x00, 0x00, // nlmsg_seq = 8
    0x39, 0x30, 0x00, 0x00, // nlmsg_pid = 12345
    0x00, 0x00, 0x00, 0x00, // error = 0: an ack
    0x68, 0x00, 0x00, 0x00, 0x24, 0x00, 0x05, 0x00,
    0x08, 0x00, 0x00, 0x00, 0x39, 0x30, 0x00, 0x00,
];

#[test]
fn netlink_error_and_ack_parse_through_the_socket_frame() {
    let err = NetlinkMessage::<RawGenlFrame>::deserialize(ERROR_EEXIST).unwrap();
    assert_eq!(err.header.sequence_number, 7);
    let NetlinkPayload::Error(e) = &err.payload else {
        panic!("not an error: {err:?}")
    };
    assert_eq!(e.raw_code(), -17);
    let mapped = crate::client::kernel_error(IpvsCmd::NewService, e.raw_code());
    assert!(matches!(
        mapped,
        crate::Error::AlreadyExists {
            command: "IPVS_CMD_NEW_SERVICE"
        }
    ));
    let mut out = vec![0u8; err.buffer_len()];
    err.serialize(&mut out);
    assert_eq!(out, ERROR_EEXIST);

    let ack = NetlinkMessage::<RawGenlFrame>::deserialize(ACK).unwrap();
    let NetlinkPayload::Error(e) = &ack.payload else {
        panic!("not an ack: {ack:?}")
    };
    assert_eq!(e.code, None);
    let mut out = vec![0u8; ack.buffer_len()];
    ack.serialize(&mut out);
    assert_eq!(out, ACK);
}

#[test]
fn errno_mapping() {
    use crate::client::kernel_error;
    use crate::Error;
    assert!(matches!(
        kernel_error(IpvsCmd::NewDest, -1),
        Error::NotPermitted { .. }
    ));
    assert!(matches!(
        kernel_error(IpvsCmd::DelService, -3),
        Error::NotFound { .. }
    ));
    assert!(matches!(
        kernel_error(IpvsCmd::DelDest, -2),
        Error::NotFound { .. }
    ));
    // ENOENT on a service write: the scheduler or PE is missing.
    assert!(matches!(
        kernel_error(IpvsCmd::NewService, -2),
        Error::InvalidArgument { .. }
    ));
    assert!(matches!(
        kernel_error(IpvsCmd::SetDest, -22),
        Error::InvalidArgument { .. }
    ));
    match kernel_error(IpvsCmd::Flush, -16) {
        Error::Kernel { command, source } => {
            assert_eq!(command, "IPVS_CMD_FLUSH");
            assert_eq!(source.raw_os_error(), Some(16));
        }
        other => panic!("{other:?}"),
    }
    // i32::MIN has no absolute value: still an error, no overflow.
    assert!(matches!(
        kernel_error(IpvsCmd::Flush, i32::MIN),
        Error::Kernel { .. }
    ));
}

#[test]
fn reply_frame_decodes_like_a_genl_message() {
    let mut raw = vec![0u8; 16];
    raw.extend_from_slice(INFO_REPLY);
    let len = raw.len() as u32;
    raw[..4].copy_from_slice(&len.to_ne_bytes());
    raw[4..6].copy_from_slice(&FAMILY_ID.to_ne_bytes());
    let nl = NetlinkMessage::<RawGenlFrame>::deserialize(&raw).unwrap();
    let NetlinkPayload::InnerMessage(frame) = nl.payload else {
        panic!()
    };
    assert_eq!(frame.message_type, FAMILY_ID);
    assert_eq!(frame.to_ipvs().unwrap().payload.cmd, IpvsCmd::SetInfo);
    assert!(NetlinkBuffer::new_checked(&raw[..]).is_ok());
}

#[test]
fn ipv4_address_of_four_bytes_is_accepted() {
    #[rustfmt::skip]
    let raw = [
        0x01, 0x01, 0x00, 0x00, // cmd = IPVS_CMD_NEW_SERVICE
        0x14, 0x00, 0x01, 0x00, // IPVS_CMD_ATTR_SERVICE, len 20
        0x08, 0x00, 0x03, 0x00, 0x0a, 0x00, 0x00, 0x01, //   ADDR of 4 bytes: 10.0.0.1
        0x06, 0x00, 0x04, 0x00, 0x00, 0x50, 0x00, 0x00, //   PORT = 80
    ];
    let msg = parse_genl(&raw);
    let CmdAttr::Service(attrs) = &msg.attrs[0] else {
        panic!()
    };
    let SvcAttr::Addr(a) = attrs[0] else { panic!() };
    assert_eq!(a.to_ip(false), v4([10, 0, 0, 1]));
}

#[test]
fn corrupt_replies_are_errors_naming_the_attribute() {
    fn err(raw: &[u8]) -> String {
        GenlMessage::<IpvsMessage>::parse_with_param(raw, FAMILY_ID)
            .expect_err("corrupt input must not parse")
            .to_string()
    }
    // Port of 3 bytes.
    let e = err(&[
        0x04, 0x01, 0x00, 0x00, 0x0c, 0x00, 0x01, 0x00, 0x07, 0x00, 0x04, 0x00, 0x00, 0x50, 0x00,
        0x00,
    ]);
    assert!(e.contains("IPVS_SVC_ATTR_PORT"), "{e}");
    // Address of 5 bytes.
    let e = err(&[
        0x05, 0x01, 0x00, 0x00, 0x10, 0x00, 0x02, 0x00, 0x09, 0x00, 0x01, 0x00, 1, 2, 3, 4, 5, 0,
        0, 0,
    ]);
    assert!(e.contains("IPVS_DEST_ATTR_ADDR"), "{e}");
    // Attribute longer than the buffer.
    let e = err(&[0x0f, 0x01, 0x00, 0x00, 0xff, 0x00, 0x01, 0x00]);
    assert!(
        e.contains("IPVS_CMD_GET_INFO") || e.contains("IPVS message"),
        "{e}"
    );
    // Flags of 4 bytes.
    let e = err(&[
        0x01, 0x01, 0x00, 0x00, 0x0c, 0x00, 0x01, 0x00, 0x08, 0x00, 0x07, 0x00, 0, 0, 0, 0,
    ]);
    assert!(e.contains("IPVS_SVC_ATTR_FLAGS"), "{e}");
    // Genl header cut short.
    assert!(GenlMessage::<IpvsMessage>::parse_with_param(&[0x01][..], FAMILY_ID).is_err());
    // Daemon group of 3 bytes, stats counter of 2 bytes.
    err(&[
        0x09, 0x01, 0, 0, 0x0c, 0x00, 0x03, 0x00, 0x07, 0x00, 0x05, 0x00, 1, 2, 3, 0,
    ]);
    err(&[
        0x01, 0x01, 0, 0, 0x0c, 0x00, 0x01, 0x00, 0x08, 0x00, 0x0a, 0x00, 0x06, 0x00, 0x01, 0x00,
    ]);
}

#[test]
fn identity_errors_name_the_missing_attribute() {
    let e = service_from_attrs(&[SvcAttr::Af(AF_INET), SvcAttr::Port(80)]).unwrap_err();
    assert!(e.to_string().contains("IPVS_SVC_ATTR_ADDR"), "{e}");
    let e = dest_from_attrs(&[DestAttr::Port(1)], Family::Inet).unwrap_err();
    assert!(e.to_string().contains("IPVS_DEST_ATTR_ADDR"), "{e}");
    let e = service_from_attrs(&[SvcAttr::Af(99)]).unwrap_err();
    assert!(e.to_string().contains("99"), "{e}");
}

#[test]
fn netmask_wire_forms() {
    assert_eq!(
        netmask_to_wire(Family::Inet, 24).to_ne_bytes(),
        [0xff, 0xff, 0xff, 0x00]
    );
    assert_eq!(netmask_to_wire(Family::Inet, 0).to_ne_bytes(), [0, 0, 0, 0]);
    assert_eq!(netmask_to_wire(Family::Inet6, 128), 128);
    for p in 0..=32 {
        assert_eq!(
            netmask_from_wire(Family::Inet, netmask_to_wire(Family::Inet, p)).unwrap(),
            p
        );
    }
    assert!(netmask_from_wire(Family::Inet6, 129).is_err());
}

#[test]
fn a_tunnel_reads_back_as_written() {
    // Before, a tunnel written without settings read back with the kernel's defaults, so a
    // caller comparing the two rewrote it every time. The settings are now part of the method.
    for tunnel in [Tunnel::default(), gue_tunnel()] {
        let mut d = Destination::new(v4([10, 244, 0, 9]), 80);
        d.forwarding = ForwardingMethod::Tunnel(tunnel);
        assert_eq!(dest_from_attrs(&dest_attrs(&d), Family::Inet).unwrap(), d);
    }
    // A kernel too old to send tunnel settings has only IP in IP tunnels: the default.
    let mut d = Destination::new(v4([10, 244, 0, 9]), 80);
    d.forwarding = ForwardingMethod::Tunnel(Tunnel::default());
    let without: Vec<DestAttr> = dest_attrs(&d)
        .into_iter()
        .filter(|a| {
            !matches!(
                a,
                DestAttr::TunType(_) | DestAttr::TunPort(_) | DestAttr::TunFlags(_)
            )
        })
        .collect();
    assert_eq!(dest_from_attrs(&without, Family::Inet).unwrap(), d);
}

fn gue_tunnel() -> Tunnel {
    Tunnel {
        kind: TunnelType::Gue,
        port: 6080,
        flags: TunnelFlags::CSUM,
    }
}
