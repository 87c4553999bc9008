//! Shared pieces of the attribute nests: the 16-byte address union and C strings.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{parse_string, DecodeError};

/// A C string: up to the first NUL (the kernel may send a fixed-size, NUL-padded buffer).
pub(crate) fn parse_c_string(payload: &[u8]) -> Result<String, DecodeError> {
    let end = payload
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(payload.len());
    parse_string(&payload[..end])
}

pub(crate) fn emit_string(buffer: &mut [u8], s: &str) {
    buffer[..s.len()].copy_from_slice(s.as_bytes());
    buffer[s.len()] = 0;
}

/// `union nf_inet_addr`: the 16 bytes every IPVS address attribute carries. An IPv4 address
/// fills the first four; which one it is comes from the family attribute next to it, so the
/// bytes are kept as sent and read with [`InetAddr::to_ip`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct InetAddr(pub [u8; 16]);

impl InetAddr {
    /// Reads an address attribute: 16 bytes as the kernel sends, or 4 as some tools do.
    pub fn parse(payload: &[u8]) -> Result<InetAddr, DecodeError> {
        let mut out = [0u8; 16];
        match payload.len() {
            4 | 16 => out[..payload.len()].copy_from_slice(payload),
            n => {
                return Err(DecodeError::from(format!(
                    "address of {n} bytes, expected 4 or 16"
                )))
            }
        }
        Ok(InetAddr(out))
    }

    /// The address, read as IPv4 or IPv6.
    pub fn to_ip(self, ipv6: bool) -> IpAddr {
        if ipv6 {
            IpAddr::V6(Ipv6Addr::from(self.0))
        } else {
            IpAddr::V4(Ipv4Addr::new(self.0[0], self.0[1], self.0[2], self.0[3]))
        }
    }
}

impl From<IpAddr> for InetAddr {
    fn from(addr: IpAddr) -> InetAddr {
        let mut out = [0u8; 16];
        match addr {
            IpAddr::V4(a) => out[..4].copy_from_slice(&a.octets()),
            IpAddr::V6(a) => out = a.octets(),
        }
        InetAddr(out)
    }
}
