//! totempg: the layer between totemsrp and the services. It packs several small
//! application messages into one MCAST and cuts large ones into fragments
//! (exec/totempg.c), and prefixes each message with the groups it is for.

mod assembly;
mod group;
mod packer;
mod packet;

pub use assembly::{Assembled, Reassembler, MESSAGE_SIZE_MAX};
pub use group::{GroupMessage, GROUP_SERVICES, GROUP_SYNC, MAX_GROUPS_PER_MSG};
pub use packer::{Packer, UDPU_MAX_PACKET_LEN};
pub use packet::{TotempgPacket, TOTEMPG_HEADER_LEN};
