//! ctnetlink messages against annotated bytes, both ways: what this module sends is compared
//! with the bytes the kernel expects, and what the kernel sends is parsed, turned into an
//! [`Entry`], and emitted again unchanged. Byte order: netlink headers in host order (these
//! fixtures are little-endian), `nfgenmsg.res_id`, ports and `CTA_*` integers big-endian.

use super::*;

/// `conntrack -L -p udp` of one IPv4 entry, as a dump answer: a client 192.168.50.20:40000 sent
/// to the cluster IP 10.96.0.53:53, and IPVS turned the reply tuple to the real server
/// 10.244.0.11:5353.
const DUMP_ANSWER_V4: &[u8] = &[
    0x94, 0x00, 0x00, 0x00, // nlmsg_len 148
    0x00, 0x01, // nlmsg_type: NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_NEW
    0x02, 0x00, // nlmsg_flags: NLM_F_MULTI
    0x01, 0x00, 0x00, 0x00, // nlmsg_seq 1
    0x00, 0x00, 0x00, 0x00, // nlmsg_pid
    0x02, 0x00, 0x00, 0x00, // nfgenmsg: AF_INET, NFNETLINK_V0, res_id 0
    0x34, 0x00, 0x01, 0x80, // CTA_TUPLE_ORIG (nested), 52 bytes
    0x14, 0x00, 0x01, 0x80, //   CTA_TUPLE_IP (nested), 20 bytes
    0x08, 0x00, 0x01, 0x00, //     CTA_IP_V4_SRC
    0xc0, 0xa8, 0x32, 0x14, //       192.168.50.20
    0x08, 0x00, 0x02, 0x00, //     CTA_IP_V4_DST
    0x0a, 0x60, 0x00, 0x35, //       10.96.0.53
    0x1c, 0x00, 0x02, 0x80, //   CTA_TUPLE_PROTO (nested), 28 bytes
    0x05, 0x00, 0x01, 0x00, //     CTA_PROTO_NUM
    0x11, 0x00, 0x00, 0x00, //       IPPROTO_UDP, padding
    0x06, 0x00, 0x02, 0x00, //     CTA_PROTO_SRC_PORT
    0x9c, 0x40, 0x00, 0x00, //       40000, padding
    0x06, 0x00, 0x03, 0x00, //     CTA_PROTO_DST_PORT
    0x00, 0x35, 0x00, 0x00, //       53, padding
    0x34, 0x00, 0x02, 0x80, // CTA_TUPLE_REPLY (nested), 52 bytes
    0x14, 0x00, 0x01, 0x80, //   CTA_TUPLE_IP
    0x08, 0x00, 0x01, 0x00, //     CTA_IP_V4_SRC
    0x0a, 0xf4, 0x00, 0x0b, //       10.244.0.11
    0x08, 0x00, 0x02, 0x00, //     CTA_IP_V4_DST
    0xc0, 0xa8, 0x32, 0x14, //       192.168.50.20
    0x1c, 0x00, 0x02, 0x80, //   CTA_TUPLE_PROTO
    0x05, 0x00, 0x01, 0x00, //     CTA_PROTO_NUM
    0x11, 0x00, 0x00, 0x00, //       IPPROTO_UDP
    0x06, 0x00, 0x02, 0x00, //     CTA_PROTO_SRC_PORT
    0x14, 0xe9, 0x00, 0x00, //       5353
    0x06, 0x00, 0x03, 0x00, //     CTA_PROTO_DST_PORT
    0x9c, 0x40, 0x00, 0x00, //       40000
    0x08, 0x00, 0x03, 0x00, // CTA_STATUS
    0x00, 0x00, 0x01,
    0x8e, //   SEEN_REPLY | ASSURED | CONFIRMED | SRC_NAT_DONE | DST_NAT_DONE
    0x08, 0x00, 0x07, 0x00, // CTA_TIMEOUT
    0x00, 0x00, 0x00, 0x78, //   120 s
    0x08, 0x00, 0x0c, 0x00, // CTA_ID: not interpreted, kept as Other
    0x12, 0x34, 0x56, 0x78, //
];

/// The delete request for an IPv6 entry in zone 7: client [fd00:50::20]:40000 to the cluster IP
/// [fd00:96::53]:53.
const DELETE_REQUEST_V6: &[u8] = &[
    0x68, 0x00, 0x00, 0x00, // nlmsg_len 104
    0x02, 0x01, // nlmsg_type: NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_DELETE
    0x05, 0x00, // nlmsg_flags: NLM_F_REQUEST | NLM_F_ACK
    0x07, 0x00, 0x00, 0x00, // nlmsg_seq 7
    0x00, 0x00, 0x00, 0x00, // nlmsg_pid
    0x0a, 0x00, 0x00, 0x00, // nfgenmsg: AF_INET6, NFNETLINK_V0, res_id 0
    0x4c, 0x00, 0x01, 0x80, // CTA_TUPLE_ORIG (nested), 76 bytes
    0x2c, 0x00, 0x01, 0x80, //   CTA_TUPLE_IP (nested), 44 bytes
    0x14, 0x00, 0x03, 0x00, //     CTA_IP_V6_SRC
    0xfd, 0x00, 0x00, 0x50, 0x00, 0x00, 0x00, 0x00, //       fd00:50::20
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, //
    0x14, 0x00, 0x04, 0x00, //     CTA_IP_V6_DST
    0xfd, 0x00, 0x00, 0x96, 0x00, 0x00, 0x00, 0x00, //       fd00:96::53
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x53, //
    0x1c, 0x00, 0x02, 0x80, //   CTA_TUPLE_PROTO (nested), 28 bytes
    0x05, 0x00, 0x01, 0x00, //     CTA_PROTO_NUM
    0x11, 0x00, 0x00, 0x00, //       IPPROTO_UDP
    0x06, 0x00, 0x02, 0x00, //     CTA_PROTO_SRC_PORT
    0x9c, 0x40, 0x00, 0x00, //       40000
    0x06, 0x00, 0x03, 0x00, //     CTA_PROTO_DST_PORT
    0x00, 0x35, 0x00, 0x00, //       53
    0x06, 0x00, 0x12, 0x00, // CTA_ZONE
    0x00, 0x07, 0x00, 0x00, //   7, padding
];

/// The dump request for IPv4 entries.
const DUMP_REQUEST_V4: &[u8] = &[
    0x14, 0x00, 0x00, 0x00, // nlmsg_len 20
    0x01, 0x01, // nlmsg_type: NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_GET
    0x01, 0x03, // nlmsg_flags: NLM_F_REQUEST | NLM_F_DUMP
    0x03, 0x00, 0x00, 0x00, // nlmsg_seq 3
    0x00, 0x00, 0x00, 0x00, // nlmsg_pid
    0x02, 0x00, 0x00, 0x00, // nfgenmsg: AF_INET (the family filters the dump), NFNETLINK_V0
];

fn udp(source: &str, source_port: u16, destination: &str, destination_port: u16) -> Tuple {
    Tuple {
        protocol: IPPROTO_UDP,
        source: source.parse().unwrap(),
        source_port,
        destination: destination.parse().unwrap(),
        destination_port,
    }
}

fn parse(bytes: &[u8]) -> NetlinkMessage<NetfilterMessage> {
    NetlinkMessage::<NetfilterMessage>::deserialize(bytes).expect("the fixture parses")
}

fn emit(message: &NetlinkMessage<NetfilterMessage>) -> Vec<u8> {
    let mut buf = vec![0; message.buffer_len()];
    message.serialize(&mut buf);
    buf
}

#[test]
fn a_dump_answer_becomes_an_entry_and_is_emitted_back_unchanged() {
    let message = parse(DUMP_ANSWER_V4);
    let NetlinkPayload::InnerMessage(inner) = &message.payload else {
        panic!("not a conntrack message: {message:?}");
    };
    assert_eq!(
        entry_of(inner),
        Some(Entry {
            original: udp("192.168.50.20", 40000, "10.96.0.53", 53),
            reply: udp("10.244.0.11", 5353, "192.168.50.20", 40000),
            zone: 0,
        })
    );
    let NetfilterMessageInner::Conntrack(ConntrackMessage::New(attributes)) = &inner.inner else {
        panic!("not IPCTNL_MSG_CT_NEW: {inner:?}");
    };
    assert!(
        attributes.iter().any(|a| matches!(a,
            ConntrackAttribute::Other(nla) if nla.kind() == 12)),
        "CTA_ID is kept: {attributes:?}"
    );
    assert_eq!(emit(&message), DUMP_ANSWER_V4);
}

#[test]
fn a_delete_request_names_the_original_tuple_and_the_zone() {
    let entry = Entry {
        original: udp("fd00:50::20", 40000, "fd00:96::53", 53),
        reply: udp("fd00:244::11", 5353, "fd00:50::20", 40000),
        zone: 7,
    };
    assert_eq!(delete_request(&entry, 7), DELETE_REQUEST_V6);

    let message = parse(DELETE_REQUEST_V6);
    assert_eq!(message.header.flags, NLM_F_REQUEST | NLM_F_ACK);
    let NetlinkPayload::InnerMessage(inner) = &message.payload else {
        panic!("not a conntrack message: {message:?}");
    };
    assert_eq!(inner.header.family, NetfilterProtoFamily::IPv6);
    assert_eq!(
        inner.inner,
        NetfilterMessageInner::Conntrack(ConntrackMessage::Delete(vec![
            ConntrackAttribute::CtaTupleOrig(cta_tuple(&entry.original)),
            ConntrackAttribute::Other(DefaultNla::new(CTA_ZONE, vec![0, 7])),
        ]))
    );
}

#[test]
fn the_default_zone_is_left_out_of_a_delete_request() {
    let entry = Entry {
        original: udp("192.168.50.20", 40000, "10.96.0.53", 53),
        reply: udp("10.244.0.11", 5353, "192.168.50.20", 40000),
        zone: 0,
    };
    let bytes = delete_request(&entry, 1);
    // Header, nfgenmsg and CTA_TUPLE_ORIG (52 bytes, as in the dump answer): nothing more.
    assert_eq!(bytes.len(), 16 + 4 + 52);
    assert_eq!(&bytes[20..], &DUMP_ANSWER_V4[20..72]);
}

#[test]
fn a_dump_request_asks_for_one_family() {
    assert_eq!(dump_request(NetfilterProtoFamily::IPv4, 3), DUMP_REQUEST_V4);
    let message = parse(DUMP_REQUEST_V4);
    let NetlinkPayload::InnerMessage(inner) = &message.payload else {
        panic!("not a conntrack message: {message:?}");
    };
    assert_eq!(inner.header.family, NetfilterProtoFamily::IPv4);
    assert_eq!(
        inner.inner,
        NetfilterMessageInner::Conntrack(ConntrackMessage::Get(vec![]))
    );
}

#[test]
fn an_entry_without_ports_is_not_an_entry() {
    // An ICMP entry: CTA_PROTO_ICMP_ID/TYPE/CODE instead of ports.
    let icmp = vec![
        CtaTuple::Ip(vec![
            IPTuple::SourceAddress("10.0.0.1".parse().unwrap()),
            IPTuple::DestinationAddress("10.0.0.2".parse().unwrap()),
        ]),
        CtaTuple::Proto(vec![
            ProtoTuple::Protocol(Protocol::Icmp),
            ProtoTuple::Other(DefaultNla::new(4, vec![0, 1])),
        ]),
    ];
    let message = NetfilterMessage::new(
        NetfilterHeader::new(NetfilterProtoFamily::IPv4, NFNETLINK_V0, 0),
        ConntrackMessage::New(vec![
            ConntrackAttribute::CtaTupleOrig(icmp.clone()),
            ConntrackAttribute::CtaTupleReply(icmp),
        ]),
    );
    assert_eq!(entry_of(&message), None);
}
