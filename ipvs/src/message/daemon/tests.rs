//! Byte fixtures of the sync daemon nest, both ways, and its conversions.

use std::net::Ipv6Addr;

use super::*;
use crate::message::fixtures::*;
use crate::message::{CmdAttr, IpvsCmd, IpvsMessage};
use crate::{DaemonState, SyncDaemon};

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
        IpvsMessage::new(
            IpvsCmd::NewDaemon,
            vec![CmdAttr::Daemon(Vec::<DaemonAttr>::from(&d))],
        ),
        NEW_DAEMON,
    );
    let CmdAttr::Daemon(attrs) = &parse_genl(NEW_DAEMON).attrs[0] else {
        panic!()
    };
    assert_eq!(SyncDaemon::try_from(&attrs[..]).unwrap(), d);
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
    let d = SyncDaemon::try_from(&attrs[..]).unwrap();
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
            vec![CmdAttr::Daemon(Vec::<DaemonAttr>::from(
                DaemonState::Backup,
            ))],
        ),
        &raw,
    );
}
