//! What travels through the netlink socket: a generic-netlink message kept as bytes.
//!
//! The socket layer (netlink-proto) drops any message its payload type fails to parse, and the
//! request that waited for it would then wait forever. So the socket carries this frame, whose
//! parsing cannot fail, and the client decodes the IPVS message itself, turning a bad reply into
//! an error of the request it answers.

use netlink_packet_core::{
    Emitable, NetlinkDeserializable, NetlinkHeader, NetlinkSerializable, ParseableParametrized,
};
use netlink_packet_generic::{GenlFamily, GenlMessage};
use std::convert::Infallible;

use super::IpvsMessage;
use netlink_packet_core::DecodeError;

/// A generic-netlink message as bytes: the netlink message type (the family id) and the payload
/// that follows the netlink header (genl header and attributes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawGenlFrame {
    /// `nlmsg_type`: the generic-netlink family id.
    pub message_type: u16,
    /// Everything after the netlink header.
    pub payload: Vec<u8>,
}

impl RawGenlFrame {
    /// Emits a generic-netlink message of any family into a frame for `family_id`.
    pub fn from_genl<F: GenlFamily + Emitable + std::fmt::Debug>(
        family_id: u16,
        message: &GenlMessage<F>,
    ) -> RawGenlFrame {
        let mut payload = vec![0u8; Emitable::buffer_len(message)];
        Emitable::emit(message, &mut payload);
        RawGenlFrame {
            message_type: family_id,
            payload,
        }
    }

    /// Decodes the frame as an IPVS message.
    pub fn to_ipvs(&self) -> Result<GenlMessage<IpvsMessage>, DecodeError> {
        GenlMessage::<IpvsMessage>::parse_with_param(&self.payload[..], self.message_type)
    }
}

impl NetlinkSerializable for RawGenlFrame {
    fn message_type(&self) -> u16 {
        self.message_type
    }

    fn buffer_len(&self) -> usize {
        self.payload.len()
    }

    fn serialize(&self, buffer: &mut [u8]) {
        buffer[..self.payload.len()].copy_from_slice(&self.payload)
    }
}

impl NetlinkDeserializable for RawGenlFrame {
    type Error = Infallible;

    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<RawGenlFrame, Infallible> {
        Ok(RawGenlFrame {
            message_type: header.message_type,
            payload: payload.to_vec(),
        })
    }
}
