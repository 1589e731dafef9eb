//! The sync protocol (exec/sync.c), carried in group "sync". After every new ring
//! each member announces the services it runs (SERVICE_BUILD), then each service
//! synchronizes and every member sends a BARRIER; a member that never sends its
//! barriers blocks the whole cluster's sync.

use crate::codec::{check_count, Put, Reader};
use crate::service::ServiceHeader;
use crate::wire::RingId;
use crate::WireError;

pub const SYNC_BARRIER: u16 = 0;
pub const SYNC_SERVICE_BUILD: u16 = 1;
pub const BARRIER_LEN: usize = 32;
/// The list is a fixed array of 128 entries, sent whole.
pub const SERVICE_LIST_MAX: usize = 128;
pub const SERVICE_BUILD_LEN: usize = 40 + 4 * SERVICE_LIST_MAX;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncMessage {
    Barrier {
        ring_id: RingId,
    },
    /// Service ids in the order the sender runs them (observed: 0, 2, 3, 5).
    ServiceBuild {
        ring_id: RingId,
        services: Vec<i32>,
    },
}

impl SyncMessage {
    pub fn ring_id(&self) -> RingId {
        match self {
            SyncMessage::Barrier { ring_id } | SyncMessage::ServiceBuild { ring_id, .. } => {
                *ring_id
            }
        }
    }

    pub fn decode(msg: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(msg, "sync message");
        let header = ServiceHeader::decode(&mut r)?;
        // The service part of the id is 0: sync is not a registered service.
        match u32::try_from(header.id) {
            Ok(id) if id == u32::from(SYNC_BARRIER) => decode_barrier(header, msg, r),
            Ok(id) if id == u32::from(SYNC_SERVICE_BUILD) => decode_service_build(header, msg, r),
            _ => Err(WireError::InvalidValue {
                what: "sync message id",
                value: header.id.into(),
            }),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            SyncMessage::Barrier { ring_id } => {
                ServiceHeader::new(0, SYNC_BARRIER, BARRIER_LEN).encode(&mut out);
                encode_ring_id(ring_id, &mut out);
            }
            SyncMessage::ServiceBuild { ring_id, services } => {
                ServiceHeader::new(0, SYNC_SERVICE_BUILD, SERVICE_BUILD_LEN).encode(&mut out);
                encode_ring_id(ring_id, &mut out);
                let listed = &services[..services.len().min(SERVICE_LIST_MAX)];
                out.put_i32(listed.len() as i32);
                out.put_zeros(4);
                for s in listed {
                    out.put_i32(*s);
                }
                out.resize(SERVICE_BUILD_LEN, 0);
            }
        }
        out
    }
}

/// The ring id field is 8-byte aligned and padded to 16 bytes.
fn decode_ring_id(r: &mut Reader<'_>) -> Result<RingId, WireError> {
    let ring_id = RingId::decode(r)?;
    r.skip(4)?;
    Ok(ring_id)
}

fn encode_ring_id(ring_id: &RingId, out: &mut Vec<u8>) {
    ring_id.encode(out);
    out.put_zeros(4);
}

fn decode_barrier(
    header: ServiceHeader,
    msg: &[u8],
    mut r: Reader<'_>,
) -> Result<SyncMessage, WireError> {
    header.expect_size("sync barrier", msg.len())?;
    let ring_id = decode_ring_id(&mut r)?;
    r.finish()?;
    Ok(SyncMessage::Barrier { ring_id })
}

fn decode_service_build(
    header: ServiceHeader,
    msg: &[u8],
    mut r: Reader<'_>,
) -> Result<SyncMessage, WireError> {
    header.expect_size("sync service_build", msg.len())?;
    let ring_id = decode_ring_id(&mut r)?;
    let raw = r.i32()?;
    let n = check_count(raw.into(), SERVICE_LIST_MAX, "sync service_list")?;
    r.skip(4)?;
    let list: Vec<i32> = (0..SERVICE_LIST_MAX)
        .map(|_| r.i32())
        .collect::<Result<_, _>>()?;
    r.finish()?;
    // Unused slots are ignored by corosync; it always sends them zeroed.
    Ok(SyncMessage::ServiceBuild {
        ring_id,
        services: list[..n].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RING: RingId = RingId { rep: 1, seq: 0x10 };

    #[test]
    fn barrier_layout() {
        let m = SyncMessage::Barrier { ring_id: RING };
        let bytes = m.encode();
        assert_eq!(bytes.len(), BARRIER_LEN);
        assert_eq!(&bytes[..4], &[0, 0, 0, 0]);
        assert_eq!(&bytes[8..12], &32i32.to_le_bytes());
        assert_eq!(&bytes[16..20], &1u32.to_le_bytes());
        assert_eq!(&bytes[20..28], &0x10u64.to_le_bytes());
        assert_eq!(SyncMessage::decode(&bytes), Ok(m));
    }

    #[test]
    fn service_build_layout() {
        let m = SyncMessage::ServiceBuild {
            ring_id: RING,
            services: vec![0, 2, 3, 5],
        };
        let bytes = m.encode();
        assert_eq!(bytes.len(), 552);
        assert_eq!(&bytes[..4], &1i32.to_le_bytes());
        assert_eq!(&bytes[32..36], &4i32.to_le_bytes());
        assert_eq!(&bytes[44..48], &2i32.to_le_bytes());
        assert_eq!(SyncMessage::decode(&bytes), Ok(m));
    }

    #[test]
    fn hostile_sync_messages() {
        let mut bytes = SyncMessage::ServiceBuild {
            ring_id: RING,
            services: vec![],
        }
        .encode();
        bytes[32..36].copy_from_slice(&129i32.to_le_bytes());
        assert!(matches!(
            SyncMessage::decode(&bytes),
            Err(WireError::TooManyEntries { .. })
        ));
        let mut bytes = SyncMessage::Barrier { ring_id: RING }.encode();
        bytes[8] = 31;
        assert!(matches!(
            SyncMessage::decode(&bytes),
            Err(WireError::LengthMismatch { .. })
        ));
        bytes[8] = 32;
        bytes[0] = 2;
        assert!(matches!(
            SyncMessage::decode(&bytes),
            Err(WireError::InvalidValue { .. })
        ));
    }
}
