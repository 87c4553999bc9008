//! Byte fixtures of the destination nest, both ways, and its conversions.

use super::*;
use crate::message::fixtures::*;
use crate::message::{
    service::AF_INET, CmdAttr, IpvsCmd, IpvsMessage, Stats64Attr, StatsAttr, SvcAttr,
};
use crate::{Destination, Family, ForwardingMethod, ServiceKey, Tunnel, TunnelFlags, TunnelType};

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
            CmdAttr::Service(Vec::<SvcAttr>::from(&tcp_443())),
            CmdAttr::Dest(Vec::<DestAttr>::from(&d)),
        ],
    );
    check_request(msg, NEW_DEST);
    let CmdAttr::Dest(attrs) = &parse_genl(NEW_DEST).attrs[1] else {
        panic!()
    };
    assert_eq!(
        Destination::try_from((&attrs[..], Family::Inet)).unwrap(),
        d
    );
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
    let svc = CmdAttr::Service(Vec::<SvcAttr>::from(&key));
    check_request(
        IpvsMessage::new(
            IpvsCmd::SetDest,
            vec![svc.clone(), CmdAttr::Dest(Vec::<DestAttr>::from(&d))],
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
    let raw = genl(0x08, &FWMARK_7_NEST); // cmd = IPVS_CMD_GET_DEST
    let key = ServiceKey::FwMark {
        mark: 7,
        family: Family::Inet,
    };
    check_request(
        IpvsMessage::new(
            IpvsCmd::GetDest,
            vec![CmdAttr::Service(Vec::<SvcAttr>::from(&key))],
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
    assert_eq!(
        Destination::try_from((&attrs[..], Family::Inet)).unwrap(),
        want
    );
}

#[test]
fn identity_errors_name_the_missing_attribute() {
    let e = Destination::try_from((&[DestAttr::Port(1)][..], Family::Inet)).unwrap_err();
    assert!(e.to_string().contains("IPVS_DEST_ATTR_ADDR"), "{e}");
}

#[test]
fn a_tunnel_reads_back_as_written() {
    // Before, a tunnel written without settings read back with the kernel's defaults, so a
    // caller comparing the two rewrote it every time. The settings are now part of the method.
    for tunnel in [Tunnel::default(), gue_tunnel()] {
        let mut d = Destination::new(v4([10, 244, 0, 9]), 80);
        d.forwarding = ForwardingMethod::Tunnel(tunnel);
        assert_eq!(
            Destination::try_from((&Vec::<DestAttr>::from(&d)[..], Family::Inet)).unwrap(),
            d
        );
    }
    // A kernel too old to send tunnel settings has only IP in IP tunnels: the default.
    let mut d = Destination::new(v4([10, 244, 0, 9]), 80);
    d.forwarding = ForwardingMethod::Tunnel(Tunnel::default());
    let without: Vec<DestAttr> = Vec::<DestAttr>::from(&d)
        .into_iter()
        .filter(|a| {
            !matches!(
                a,
                DestAttr::TunType(_) | DestAttr::TunPort(_) | DestAttr::TunFlags(_)
            )
        })
        .collect();
    assert_eq!(
        Destination::try_from((&without[..], Family::Inet)).unwrap(),
        d
    );
}

fn gue_tunnel() -> Tunnel {
    Tunnel {
        kind: TunnelType::Gue,
        port: 6080,
        flags: TunnelFlags::CSUM,
    }
}
