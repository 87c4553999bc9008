//! Byte fixtures of the counters nests, both ways, and their conversions. (A whole service reply
//! with both nests is in the service fixtures.)

use netlink_packet_core::{Emitable, NlaBuffer, Parseable};

use super::*;
use crate::message::fixtures::counters;
use crate::Stats;

/// Emits one attribute and parses it back: the bytes and the value both ways.
fn check_nla<T>(attr: &T, raw: &[u8])
where
    T: Nla + std::fmt::Debug + PartialEq + for<'a> Parseable<NlaBuffer<&'a [u8]>>,
{
    let mut out = vec![0u8; attr.buffer_len()];
    attr.emit(&mut out);
    assert_eq!(out, raw, "emit");
    let parsed = T::parse(&NlaBuffer::new_checked(raw).unwrap()).unwrap();
    assert_eq!(&parsed, attr, "parse");
}

#[test]
fn counters_of_32_bits_but_the_byte_counters() {
    check_nla(
        &StatsAttr::Conns(0x0102_0304),
        &[
            0x08, 0x00, 0x01, 0x00, // IPVS_STATS_ATTR_CONNS, len 8
            0x04, 0x03, 0x02, 0x01, //   u32, host order
        ],
    );
    check_nla(
        &StatsAttr::InBytes(1 << 40),
        &[
            0x0c, 0x00, 0x04, 0x00, // IPVS_STATS_ATTR_INBYTES, len 12
            0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, //   u64
        ],
    );
    check_nla(
        &StatsAttr::OutBps(9),
        &[0x08, 0x00, 0x0a, 0x00, 0x09, 0x00, 0x00, 0x00], // IPVS_STATS_ATTR_OUTBPS = 9
    );
    // IPVS_STATS_ATTR_PAD (11) and anything newer: kept as sent.
    check_nla(
        &StatsAttr::Other(netlink_packet_core::DefaultNla::new(11, vec![])),
        &[0x04, 0x00, 0x0b, 0x00],
    );
}

#[test]
fn counters_of_64_bits() {
    check_nla(
        &Stats64Attr::Conns(1 << 32),
        &[
            0x0c, 0x00, 0x01, 0x00, // IPVS_STATS_ATTR_CONNS, len 12
            0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, //   u64
        ],
    );
    check_nla(
        &Stats64Attr::Cps(6),
        &[
            0x0c, 0x00, 0x06, 0x00, // IPVS_STATS_ATTR_CPS, len 12
            0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ],
    );
}

#[test]
fn a_counter_of_the_wrong_width_is_an_error_naming_it() {
    let raw = [0x06, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00]; // CONNS of 2 bytes
    let e = StatsAttr::parse(&NlaBuffer::new_checked(&raw[..]).unwrap()).unwrap_err();
    assert!(e.to_string().contains("IPVS_STATS_ATTR_CONNS"), "{e}");
}

#[test]
fn the_64_bit_counters_win_and_read_back_as_written() {
    let stats = counters(1 << 33);
    let wide: Vec<Stats64Attr> = (&stats).into();
    assert_eq!(Stats::from(wide.as_slice()), stats);
    let narrow = [StatsAttr::Conns(1), StatsAttr::InBytes(1 << 40)];
    assert_eq!(stats_of(Some(&wide), Some(&narrow)), stats);
    let read = stats_of(None, Some(&narrow));
    assert_eq!((read.connections, read.bytes_in), (1, 1 << 40));
    assert_eq!(stats_of(None, None), Stats::default());
}
