//! What the byte fixtures of every nest share: the family id they pretend the kernel gave, and
//! the checks both ways (parse gives the value, emit gives the bytes).
//!
//! Requests are what this crate sends: nested attributes carry `NLA_F_NESTED` (0x8000). Replies
//! are what the kernel sends: its nests (`nla_nest_start_noflag`) do not; [`check_reply`] says
//! where the flag differs when the parsed value is emitted again. Integers are little-endian
//! (the test machines' host order) except ports, which are big-endian on the wire.

use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{Emitable, ParseableParametrized};
use netlink_packet_generic::GenlMessage;

use super::IpvsMessage;
use crate::{Protocol, ServiceKey, Stats};

/// The family id the fixtures pretend the kernel assigned.
pub(crate) const FAMILY_ID: u16 = 0x24;

pub(crate) fn emit_genl(msg: &IpvsMessage) -> Vec<u8> {
    let genl = GenlMessage::from_payload(msg.clone());
    let mut buf = vec![0u8; Emitable::buffer_len(&genl)];
    Emitable::emit(&genl, &mut buf);
    buf
}

pub(crate) fn parse_genl(raw: &[u8]) -> IpvsMessage {
    GenlMessage::<IpvsMessage>::parse_with_param(raw, FAMILY_ID)
        .expect("fixture parses")
        .payload
}

/// A request: parse and emit are exact inverses.
pub(crate) fn check_request(msg: IpvsMessage, raw: &[u8]) {
    assert_eq!(parse_genl(raw), msg, "parse");
    assert_eq!(emit_genl(&msg), raw, "emit");
}

/// A kernel reply: parses to `msg`; emitting `msg` gives the same bytes except `NLA_F_NESTED`
/// on the nests whose type field starts at the offsets `nested_at`.
pub(crate) fn check_reply(msg: IpvsMessage, raw: &[u8], nested_at: &[usize]) {
    assert_eq!(parse_genl(raw), msg, "parse");
    let mut flagged = raw.to_vec();
    for &at in nested_at {
        // The type field follows the two length bytes; the flag is its top bit.
        assert_eq!(flagged[at + 3] & 0x80, 0, "offset {at} already nested");
        flagged[at + 3] |= 0x80;
    }
    assert_eq!(emit_genl(&msg), flagged, "emit");
}

pub(crate) fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

/// The service most fixtures use: TCP 10.96.0.20:443.
pub(crate) fn tcp_443() -> ServiceKey {
    ServiceKey::Addr {
        address: v4([10, 96, 0, 20]),
        protocol: Protocol::Tcp,
        port: 443,
    }
}

/// The service nest naming IPv4 firewall-mark service 7, as every command about it carries it.
#[rustfmt::skip]
pub(crate) const FWMARK_7_NEST: [u8; 20] = [
    0x14, 0x00, 0x01, 0x80, // IPVS_CMD_ATTR_SERVICE | NLA_F_NESTED, len 20
    0x06, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, //   AF = AF_INET
    0x08, 0x00, 0x05, 0x00, 0x07, 0x00, 0x00, 0x00, //   IPVS_SVC_ATTR_FWMARK = 7
];

/// A request of command number `cmd`, version 1, with `attrs` after the genl header.
pub(crate) fn genl(cmd: u8, attrs: &[u8]) -> Vec<u8> {
    [&[cmd, 0x01, 0x00, 0x00][..], attrs].concat()
}

/// Counters of 2 to 10 in the order of `IPVS_STATS_ATTR_*`, and `connections` first.
pub(crate) fn counters(connections: u64) -> Stats {
    Stats {
        connections,
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
}
