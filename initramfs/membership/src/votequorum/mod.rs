//! votequorum's messages between nodes (exec/votequorum.c). A node's votes count
//! only once its NODEINFO has arrived; RECONFIGURE changes expected or node votes
//! cluster-wide (e.g. from corosync-quorumtool -e / -v).

use crate::codec::{Put, Reader};
use crate::service::{ServiceHeader, SERVICE_VOTEQUORUM};
use crate::WireError;

pub const FN_NODEINFO: u16 = 0;
pub const FN_RECONFIGURE: u16 = 1;
pub const NODEINFO_LEN: usize = 32;
pub const RECONFIGURE_LEN: usize = 32;

/// NODEINFO flags.
pub mod flags {
    pub const QUORATE: u32 = 1;
    pub const LEAVING: u32 = 2;
    pub const WFA_STATUS: u32 = 4;
    pub const FIRST: u32 = 8;
    pub const QDEVICE_REGISTERED: u32 = 16;
    pub const QDEVICE_ALIVE: u32 = 32;
    pub const QDEVICE_CAST_VOTE: u32 = 64;
    pub const QDEVICE_MASTER_WINS: u32 = 128;
}

/// What a RECONFIGURE changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconfigureParam {
    ExpectedVotes,
    NodeVotes,
    CancelWaitForAll,
}

impl ReconfigureParam {
    fn wire(self) -> u8 {
        match self {
            ReconfigureParam::ExpectedVotes => 1,
            ReconfigureParam::NodeVotes => 2,
            ReconfigureParam::CancelWaitForAll => 3,
        }
    }

    fn from_wire(v: u8) -> Result<Self, WireError> {
        match v {
            1 => Ok(ReconfigureParam::ExpectedVotes),
            2 => Ok(ReconfigureParam::NodeVotes),
            3 => Ok(ReconfigureParam::CancelWaitForAll),
            _ => Err(WireError::InvalidValue {
                what: "votequorum reconfigure param",
                value: v.into(),
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeInfo {
    /// 0 is the quorum device slot, which every node also reports.
    pub nodeid: u32,
    pub votes: u32,
    pub expected_votes: u32,
    /// Bits from [`flags`].
    pub flags: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconfigure {
    pub nodeid: u32,
    pub value: u32,
    pub param: ReconfigureParam,
}

/// The votequorum messages a member must understand. Quorum-device registration
/// messages (functions 2 and 3) stay opaque in [`crate::service::ServiceMessage::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VotequorumMessage {
    NodeInfo(NodeInfo),
    Reconfigure(Reconfigure),
}

impl VotequorumMessage {
    pub(crate) fn handles(header: &ServiceHeader) -> bool {
        header.service() == SERVICE_VOTEQUORUM
            && matches!(header.function(), FN_NODEINFO | FN_RECONFIGURE)
    }

    /// Decodes a whole service message whose header [`Self::handles`] accepted.
    pub(crate) fn decode(header: ServiceHeader, msg: &[u8]) -> Result<Self, WireError> {
        let what = if header.function() == FN_NODEINFO {
            "votequorum nodeinfo"
        } else {
            "votequorum reconfigure"
        };
        header.expect_size(what, msg.len())?;
        let mut r = Reader::new(msg, what);
        r.skip(crate::service::SERVICE_HEADER_LEN)?;
        let msg = if header.function() == FN_NODEINFO {
            VotequorumMessage::NodeInfo(NodeInfo {
                nodeid: r.u32()?,
                votes: r.u32()?,
                expected_votes: r.u32()?,
                flags: r.u32()?,
            })
        } else {
            let nodeid = r.u32()?;
            let value = r.u32()?;
            let param = ReconfigureParam::from_wire(r.u8()?)?;
            // Three padding bytes, then four more because the header's 8-byte
            // alignment rounds the struct up to 32; ignored as corosync ignores them.
            r.skip(7)?;
            VotequorumMessage::Reconfigure(Reconfigure {
                nodeid,
                value,
                param,
            })
        };
        r.finish()?;
        Ok(msg)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(NODEINFO_LEN);
        match self {
            VotequorumMessage::NodeInfo(n) => {
                ServiceHeader::new(SERVICE_VOTEQUORUM, FN_NODEINFO, NODEINFO_LEN).encode(&mut out);
                out.put_u32(n.nodeid);
                out.put_u32(n.votes);
                out.put_u32(n.expected_votes);
                out.put_u32(n.flags);
            }
            VotequorumMessage::Reconfigure(c) => {
                ServiceHeader::new(SERVICE_VOTEQUORUM, FN_RECONFIGURE, RECONFIGURE_LEN)
                    .encode(&mut out);
                out.put_u32(c.nodeid);
                out.put_u32(c.value);
                out.put_u8(c.param.wire());
                out.put_zeros(7);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::ServiceMessage;

    #[test]
    fn nodeinfo_layout() {
        let m = VotequorumMessage::NodeInfo(NodeInfo {
            nodeid: 2,
            votes: 1,
            expected_votes: 3,
            flags: flags::QUORATE | flags::FIRST,
        });
        let bytes = m.encode();
        assert_eq!(bytes.len(), 32);
        assert_eq!(&bytes[..4], &(5i32 << 16).to_le_bytes());
        assert_eq!(&bytes[8..12], &32i32.to_le_bytes());
        assert_eq!(&bytes[16..20], &2u32.to_le_bytes());
        assert_eq!(&bytes[24..28], &3u32.to_le_bytes());
        assert_eq!(&bytes[28..32], &9u32.to_le_bytes());
        assert_eq!(
            ServiceMessage::decode(&bytes),
            Ok(ServiceMessage::Votequorum(m))
        );
    }

    #[test]
    fn reconfigure_layout_and_bad_param() {
        let m = VotequorumMessage::Reconfigure(Reconfigure {
            nodeid: 1,
            value: 5,
            param: ReconfigureParam::ExpectedVotes,
        });
        let mut bytes = m.encode();
        assert_eq!(bytes.len(), 32);
        assert_eq!(&bytes[..4], &((5i32 << 16) | 1).to_le_bytes());
        assert_eq!(bytes[24], 1);
        assert_eq!(
            ServiceMessage::decode(&bytes),
            Ok(ServiceMessage::Votequorum(m))
        );
        bytes[24] = 9;
        assert!(matches!(
            ServiceMessage::decode(&bytes),
            Err(WireError::InvalidValue { .. })
        ));
        assert!(matches!(
            ServiceMessage::decode(&bytes[..20]),
            Err(WireError::LengthMismatch { .. })
        ));
    }
}
