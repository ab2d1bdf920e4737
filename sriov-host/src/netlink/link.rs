//! A link as the kernel describes it (`RTM_NEWLINK`), including the device it belongs to.

use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use serde::{Deserialize, Serialize};

use crate::mac::MacAddr;
use crate::pci::PciAddress;

/// What the kernel says about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The ifindex: unique within the link's network namespace only.
    pub index: u32,
    /// The interface name.
    pub name: String,
    /// The hardware address; `None` when it is not 6 bytes (InfiniBand's is 20) or absent.
    pub mac: Option<MacAddr>,
    /// The MTU in bytes.
    pub mtu: u32,
    /// `IFF_UP`: administratively up.
    pub up: bool,
    /// The device the netdev belongs to; `None` for a virtual netdev (veth, macvlan, ...) and on
    /// kernels before 5.14, which do not report it.
    pub parent: Option<ParentDev>,
}

/// A netdev's parent device as `RTM_GETLINK` reports it (`IFLA_PARENT_DEV_BUS_NAME`,
/// `IFLA_PARENT_DEV_NAME`): bus `pci` and the PCI address for a VF's or PF's netdev. Only a
/// driver creates a netdev with a parent device; nothing in a network namespace can forge one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentDev {
    /// The bus name (`pci`); empty when the kernel reported none.
    pub bus: String,
    /// The device name on that bus (`0000:03:10.1`).
    pub name: String,
}

impl ParentDev {
    /// True when this is the PCI device `addr`.
    pub fn is_pci(&self, addr: PciAddress) -> bool {
        self.bus == "pci" && self.name.parse::<PciAddress>() == Ok(addr)
    }
}

impl std::fmt::Display for ParentDev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.bus, self.name)
    }
}

pub(crate) fn to_link(m: &LinkMessage) -> Link {
    let mut link = Link {
        index: m.header.index,
        name: String::new(),
        mac: None,
        mtu: 0,
        up: m.header.flags.contains(LinkFlags::Up),
        parent: None,
    };
    let (mut bus, mut parent) = (None, None);
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Address(b) if b.len() == 6 => {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(b);
                link.mac = Some(MacAddr(mac));
            }
            LinkAttribute::Mtu(m) => link.mtu = *m,
            LinkAttribute::ParentDevName(n) => parent = Some(n.clone()),
            LinkAttribute::ParentDevBusName(b) => bus = Some(b.clone()),
            _ => {}
        }
    }
    link.parent = parent.map(|name| ParentDev {
        bus: bus.unwrap_or_default(),
        name,
    });
    link
}
