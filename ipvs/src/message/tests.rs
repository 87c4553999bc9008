//! Fixtures of whole netlink messages that are no one nest's: errors and acks, errno mapping,
//! corrupt input.

use netlink_packet_core::{NetlinkMessage, NetlinkPayload, ParseableParametrized};
use netlink_packet_generic::GenlMessage;

use super::fixtures::FAMILY_ID;
use super::*;

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
