//! Routing of reassembled totempg messages to services. A message for group "a"
//! starts with a libqb request header whose id is service << 16 | function
//! (exec/main.c); a message for group "sync" is a sync protocol message.

use crate::codec::{Put, Reader};
use crate::sync::SyncMessage;
use crate::totempg::{GroupMessage, GROUP_SERVICES, GROUP_SYNC};
use crate::votequorum::VotequorumMessage;
use crate::WireError;

/// libqb's qb_ipc_request_header: i32 id and i32 size, each 8-byte aligned.
pub const SERVICE_HEADER_LEN: usize = 16;

pub const SERVICE_CMAP: u16 = 0;
pub const SERVICE_CFG: u16 = 1;
pub const SERVICE_CPG: u16 = 2;
pub const SERVICE_QUORUM: u16 = 3;
pub const SERVICE_VOTEQUORUM: u16 = 5;

/// cfg's MESSAGE_REQ_EXEC_CFG_RELOAD_CONFIG (exec/cfg.c): what
/// `corosync-cfgtool -R` multicasts so every node re-reads corosync.conf.
pub const CFG_RELOAD_CONFIG: u16 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceHeader {
    pub id: i32,
    /// Whole message length, header included, as the sender declared it.
    pub size: i32,
}

impl ServiceHeader {
    pub fn new(service: u16, function: u16, size: usize) -> Self {
        ServiceHeader {
            id: (i32::from(service) << 16) | i32::from(function),
            size: size as i32,
        }
    }

    pub fn service(&self) -> u16 {
        (self.id >> 16) as u16
    }

    pub fn function(&self) -> u16 {
        (self.id & 0xffff) as u16
    }

    /// Reads the header; the alignment padding is ignored, as corosync ignores it.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let id = r.i32()?;
        r.skip(4)?;
        let size = r.i32()?;
        r.skip(4)?;
        Ok(ServiceHeader { id, size })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put_i32(self.id);
        out.put_zeros(4);
        out.put_i32(self.size);
        out.put_zeros(4);
    }

    /// Checks a fixed-size message: corosync always declares the true size, so a
    /// mismatch means a damaged or foreign message.
    pub(crate) fn expect_size(&self, what: &'static str, actual: usize) -> Result<(), WireError> {
        if i64::from(self.size) == actual as i64 {
            Ok(())
        } else {
            Err(WireError::LengthMismatch {
                what,
                declared: self.size.into(),
                actual,
            })
        }
    }
}

/// A service message of group "a".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceMessage {
    Votequorum(VotequorumMessage),
    /// Services this layer does not interpret yet (cmap, cpg, ...), kept whole.
    Other {
        header: ServiceHeader,
        body: Vec<u8>,
    },
}

impl ServiceMessage {
    pub fn decode(msg: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(msg, "service header");
        let header = ServiceHeader::decode(&mut r)?;
        if VotequorumMessage::handles(&header) {
            return VotequorumMessage::decode(header, msg).map(ServiceMessage::Votequorum);
        }
        Ok(ServiceMessage::Other {
            header,
            body: r.rest().to_vec(),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        match self {
            ServiceMessage::Votequorum(m) => m.encode(),
            ServiceMessage::Other { header, body } => {
                let mut out = Vec::with_capacity(SERVICE_HEADER_LEN + body.len());
                header.encode(&mut out);
                out.extend_from_slice(body);
                out
            }
        }
    }
}

/// A reassembled totempg message, routed by group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppMessage {
    Sync(SyncMessage),
    Service(ServiceMessage),
    /// Groups corosync itself does not use; kept whole.
    OtherGroup(GroupMessage),
}

impl AppMessage {
    pub fn decode(msg: &[u8]) -> Result<Self, WireError> {
        let group = GroupMessage::decode(msg)?;
        if group.groups.len() != 1 {
            return Ok(AppMessage::OtherGroup(group));
        }
        if group.is_for(GROUP_SYNC) {
            SyncMessage::decode(&group.payload).map(AppMessage::Sync)
        } else if group.is_for(GROUP_SERVICES) {
            ServiceMessage::decode(&group.payload).map(AppMessage::Service)
        } else {
            Ok(AppMessage::OtherGroup(group))
        }
    }

    /// The group message to hand to [`crate::totempg::Packer`].
    pub fn to_group(&self) -> GroupMessage {
        match self {
            AppMessage::Sync(m) => GroupMessage::new(GROUP_SYNC, m.encode()),
            AppMessage::Service(m) => GroupMessage::new(GROUP_SERVICES, m.encode()),
            AppMessage::OtherGroup(g) => g.clone(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        self.to_group().encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_services_are_kept_whole() {
        let mut payload = Vec::new();
        ServiceHeader::new(SERVICE_CPG, 5, 20).encode(&mut payload);
        payload.extend_from_slice(&[1, 2, 3, 4]);
        let bytes = GroupMessage::new(GROUP_SERVICES, payload).encode();
        let msg = AppMessage::decode(&bytes).unwrap();
        match &msg {
            AppMessage::Service(ServiceMessage::Other { header, body }) => {
                assert_eq!((header.service(), header.function()), (SERVICE_CPG, 5));
                assert_eq!(body, &[1, 2, 3, 4]);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(msg.encode(), bytes);
    }

    #[test]
    fn truncated_service_header_is_an_error() {
        let bytes = GroupMessage::new(GROUP_SERVICES, vec![0; 15]).encode();
        assert!(matches!(
            AppMessage::decode(&bytes),
            Err(WireError::Truncated { .. })
        ));
    }
}
