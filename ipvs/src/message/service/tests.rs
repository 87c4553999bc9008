//! Byte fixtures of the service nest, both ways, and its conversions.

use netlink_packet_core::{
    DefaultNla, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_generic::GenlMessage;

use super::*;
use crate::message::fixtures::*;
use crate::message::{CmdAttr, IpvsCmd, IpvsMessage, Stats64Attr, StatsAttr};
use crate::{Family, Protocol, Service, ServiceFlags, ServiceKey};

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
        vec![CmdAttr::Service(Vec::<SvcAttr>::from(&sh_service()))],
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
    assert_eq!(Service::try_from(&attrs[..]).unwrap(), sh_service());
}

#[test]
fn bulk_writer_encodes_like_netlink_message() {
    let msg = IpvsMessage::new(
        IpvsCmd::NewService,
        vec![CmdAttr::Service(Vec::<SvcAttr>::from(&sh_service()))],
    );
    let mut out = vec![0xaa; 3]; // appends after what is there
    crate::client::encode_request(&mut out, FAMILY_ID, 1, NLM_F_REQUEST | NLM_F_ACK, &msg);
    assert_eq!(&out[..3], &[0xaa; 3]);
    assert_eq!(&out[3..], NEW_SERVICE);
}

#[test]
fn a_service_read_back_is_written_without_the_hashed_flag() {
    let mut read_back = sh_service();
    read_back.flags |= ServiceFlags::HASHED;
    assert_eq!(
        Vec::<SvcAttr>::from(&read_back),
        Vec::<SvcAttr>::from(&sh_service())
    );
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
        vec![CmdAttr::Service(Vec::<SvcAttr>::from(&svc))],
    );
    check_request(msg, SET_SERVICE_V6);
    let CmdAttr::Service(attrs) = &parse_genl(SET_SERVICE_V6).attrs[0] else {
        panic!()
    };
    assert_eq!(Service::try_from(&attrs[..]).unwrap(), svc);
}

#[test]
fn del_service_by_fwmark() {
    let key = ServiceKey::FwMark {
        mark: 7,
        family: Family::Inet,
    };
    check_request(
        IpvsMessage::new(
            IpvsCmd::DelService,
            vec![CmdAttr::Service(Vec::<SvcAttr>::from(&key))],
        ),
        &genl(0x03, &FWMARK_7_NEST), // cmd = IPVS_CMD_DEL_SERVICE
    );
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
            vec![CmdAttr::Service(Vec::<SvcAttr>::from(&key))],
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
    let mut key_attrs = Vec::<SvcAttr>::from(&tcp_443());
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

    let svc = Service::try_from(&key_attrs[..]).unwrap();
    assert_eq!(svc.key, tcp_443());
    assert_eq!(svc.netmask, 24);
    assert_eq!(svc.flags, ServiceFlags::HASHED);
    // The 64-bit counters win over the 32-bit ones.
    assert_eq!(svc.stats, counters(1 << 32));
    // Without STATS64, the 32-bit ones are used.
    let without64: Vec<_> = key_attrs
        .into_iter()
        .filter(|a| !matches!(a, SvcAttr::Stats64(_)))
        .collect();
    assert_eq!(
        Service::try_from(&without64[..]).unwrap().stats.connections,
        1
    );
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
fn identity_errors_name_the_missing_attribute() {
    let e = Service::try_from(&[SvcAttr::Af(AF_INET), SvcAttr::Port(80)][..]).unwrap_err();
    assert!(e.to_string().contains("IPVS_SVC_ATTR_ADDR"), "{e}");
    let e = Service::try_from(&[SvcAttr::Af(99)][..]).unwrap_err();
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
