//! Byte fixtures of the top-level attributes (timeouts, info) and of the commands without
//! attributes, both ways.

use netlink_packet_core::{NetlinkBuffer, NetlinkMessage, NetlinkPayload};

use super::*;
use crate::message::fixtures::*;
use crate::message::{IpvsCmd, IpvsMessage, RawGenlFrame};
use crate::{Info, Timeouts};

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
    let msg = IpvsMessage::new(IpvsCmd::SetConfig, Vec::<CmdAttr>::from(&t));
    check_request(msg.clone(), SET_CONFIG);
    assert_eq!(Timeouts::from(&msg.attrs[..]), t);
    // Only what is given (and non-zero) is sent: the kernel leaves the rest.
    let partial = Timeouts {
        tcp: None,
        tcp_fin: Some(0),
        udp: Some(300),
    };
    check_request(
        IpvsMessage::new(IpvsCmd::SetConfig, Vec::<CmdAttr>::from(&partial)),
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
    let info = Info::try_from(&msg.attrs[..]).unwrap();
    assert_eq!(info.version_triple(), (1, 2, 1));
    assert_eq!(info.connection_table_size, 4096);
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
