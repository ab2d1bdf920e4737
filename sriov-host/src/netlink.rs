//! Route netlink, synchronously, behind one small concrete type with one method per kernel
//! operation. A [`Netlink`] value is bound to the network namespace it was opened in: open it in
//! a pod's netns with [`Netlink::open_in`] and every call through it acts there.
//!
//! VF admin settings (MAC, VLAN, spoof check, trust, rates, link state) are PF-side: they are
//! read and written on the PF's link with `IFLA_VFINFO_LIST`.

use nix::errno::Errno;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::Path;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::link::{
    LinkAttribute, LinkExtentMask, LinkFlags, LinkMessage, LinkVfInfo, Prop, VfInfo as NlVfInfo,
    VfInfoLinkState, VfInfoMac, VfInfoRate, VfInfoSpoofCheck, VfInfoTrust, VfLinkState as NlState,
    VfVlan, VfVlanInfo, VlanProtocol,
};
use netlink_packet_route::route::RouteAddress;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use serde::{Deserialize, Serialize};

use crate::mac::MacAddr;
use crate::netns;

mod addr;
mod link;
mod vf;
use link::to_link;
pub use link::{Link, ParentDev};
pub use vf::{VfInfo, VfLinkState, VlanProto};

/// A netlink failure. Kernel refusals carry the operation, the link and the errno.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The kernel answered a request with an error.
    #[error("{op} on {target}: {source}")]
    Kernel {
        /// The operation, e.g. `set vf mac`.
        op: &'static str,
        /// The link (name or index) it was for.
        target: String,
        /// The errno as an I/O error.
        source: io::Error,
    },
    /// Opening, sending on or reading the socket failed (not a kernel refusal).
    #[error("netlink socket: {0}")]
    Socket(io::Error),
    /// The kernel's reply could not be decoded.
    #[error("{op} on {target}: cannot decode the kernel's reply: {msg}")]
    Decode {
        /// The operation.
        op: &'static str,
        /// The link (name or index) it was for.
        target: String,
        /// The decoder's message.
        msg: String,
    },
    /// No link of that name in the socket's network namespace.
    #[error("link {0} not found")]
    NoLink(String),
    /// Opening the socket inside another network namespace failed.
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
}

impl NetlinkError {
    /// The kernel's errno, when the kernel refused the request.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            NetlinkError::Kernel { source, .. } => source.raw_os_error().map(Errno::from_raw),
            _ => None,
        }
    }

    /// Whether the link does not exist (no such name, or the kernel said ENODEV).
    pub fn is_not_found(&self) -> bool {
        matches!(self, NetlinkError::NoLink(_)) || self.errno() == Some(Errno::ENODEV)
    }
}

/// A result whose error defaults to [`NetlinkError`].
pub type Result<T, E = NetlinkError> = std::result::Result<T, E>;

/// An IP address with its prefix length, as on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IpNet {
    /// The address.
    pub addr: IpAddr,
    /// The prefix length in bits (0-32 for IPv4, 0-128 for IPv6).
    pub prefix: u8,
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A route netlink socket in one network namespace.
pub struct Netlink {
    sock: Socket,
    seq: u32,
}

impl Netlink {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        sock.bind_auto().map_err(NetlinkError::Socket)?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Socket)?;
        Ok(Netlink { sock, seq: 1 })
    }

    /// A socket in the network namespace at `path` (e.g. `/run/netns/x`, `/proc/<pid>/ns/net`).
    /// The socket is created on a short-lived thread that entered the namespace; the calling
    /// thread never changes namespace.
    pub fn open_in(path: &Path) -> Result<Self> {
        netns::run_in(path, Netlink::open)?
    }

    /// [`Netlink::open_in`] without its thread: the calling thread enters the namespace to
    /// create the socket and comes back ([`netns::run_here`]). For single-threaded processes.
    pub fn open_here(path: &Path) -> Result<Self> {
        netns::run_here(path, Netlink::open)?
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Send one request and collect the replies until the ACK (or the end of a dump). Requests
    /// that are not dumps must carry `NLM_F_ACK`, or this would wait for an ACK forever.
    pub(crate) fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        op: &'static str,
        target: &str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let seq = self.next_seq();
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | flags;
        hdr.sequence_number = seq;
        let mut nl = NetlinkMessage::new(hdr, NetlinkPayload::from(msg));
        nl.finalize();
        let mut buf = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut buf);
        tracing::debug!(op, target, seq, "netlink request");
        self.sock.send(&buf, 0).map_err(NetlinkError::Socket)?;

        let decode = |msg: String| NetlinkError::Decode {
            op,
            target: target.to_string(),
            msg,
        };
        let mut out = Vec::new();
        let mut rbuf: Vec<u8> = Vec::with_capacity(1 << 20);
        loop {
            rbuf.clear();
            let n = self.sock.recv(&mut rbuf, 0).map_err(NetlinkError::Socket)?;
            let mut off = 0usize;
            while off + 16 <= n {
                let len =
                    u32::from_ne_bytes([rbuf[off], rbuf[off + 1], rbuf[off + 2], rbuf[off + 3]])
                        as usize;
                if len < 16 || off + len > n {
                    return Err(decode(format!("bad message length {len}")));
                }
                let reply =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rbuf[off..off + len])
                        .map_err(|e| decode(e.to_string()))?;
                off += (len + 3) & !3;
                if reply.header.sequence_number != seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(code) => Err(NetlinkError::Kernel {
                                op,
                                target: target.to_string(),
                                source: io::Error::from_raw_os_error(-code.get()),
                            }),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    _ => {}
                }
            }
        }
    }

    fn get_link(&mut self, msg: LinkMessage, target: &str) -> Result<LinkMessage> {
        let replies = match self.request(
            RouteNetlinkMessage::GetLink(msg),
            NLM_F_ACK,
            "get link",
            target,
        ) {
            Ok(r) => r,
            Err(e) if e.errno() == Some(Errno::ENODEV) => {
                return Err(NetlinkError::NoLink(target.to_string()))
            }
            Err(e) => return Err(e),
        };
        replies
            .into_iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })
            .ok_or_else(|| NetlinkError::NoLink(target.to_string()))
    }

    fn link_query(name: Option<&str>, index: u32, vfs: bool) -> LinkMessage {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        if let Some(n) = name {
            msg.attributes.push(LinkAttribute::IfName(n.to_string()));
        }
        if vfs {
            msg.attributes
                .push(LinkAttribute::ExtMask(vec![LinkExtentMask::Vf]));
        }
        msg
    }

    /// The link of that name in the socket's namespace ([`NetlinkError::NoLink`] when absent).
    pub fn link_by_name(&mut self, name: &str) -> Result<Link> {
        let m = self.get_link(Self::link_query(Some(name), 0, false), name)?;
        Ok(to_link(&m))
    }

    /// The link with that ifindex in the socket's namespace.
    pub fn link_by_index(&mut self, index: u32) -> Result<Link> {
        let m = self.get_link(
            Self::link_query(None, index, false),
            &format!("ifindex {index}"),
        )?;
        Ok(to_link(&m))
    }

    /// Every link in this network namespace.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let replies = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
            "list links",
            "all links",
        )?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(to_link(l)),
                _ => None,
            })
            .collect())
    }

    /// The VF admin state the PF reports, one entry per VF; empty when the link reports none
    /// (not an SR-IOV PF).
    pub fn vf_info(&mut self, pf: &str) -> Result<Vec<VfInfo>> {
        let m = self.get_link(Self::link_query(Some(pf), 0, true), pf)?;
        Ok(m.attributes
            .iter()
            .filter_map(|a| match a {
                LinkAttribute::VfInfoList(list) => Some(list),
                _ => None,
            })
            .flatten()
            .map(vf::from_netlink)
            .collect())
    }

    fn set_link(&mut self, msg: LinkMessage, op: &'static str, target: &str) -> Result<()> {
        self.request(RouteNetlinkMessage::SetLink(msg), NLM_F_ACK, op, target)
            .map(|_| ())
    }

    fn link_msg(index: u32, attrs: Vec<LinkAttribute>) -> LinkMessage {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes = attrs;
        msg
    }

    fn set_flags(&mut self, link: &Link, up: bool) -> Result<()> {
        let mut msg = Self::link_msg(link.index, vec![]);
        if up {
            msg.header.flags = LinkFlags::Up;
        }
        msg.header.change_mask = LinkFlags::Up;
        self.set_link(msg, if up { "set up" } else { "set down" }, &link.name)
    }

    /// Set `IFF_UP` (administratively up); carrier is the driver's business.
    pub fn set_up(&mut self, link: &Link) -> Result<()> {
        self.set_flags(link, true)
    }

    /// Clear `IFF_UP`.
    pub fn set_down(&mut self, link: &Link) -> Result<()> {
        self.set_flags(link, false)
    }

    /// Rename a link; the kernel refuses (`EBUSY`) while it is up, and `EEXIST` if the name is
    /// taken.
    pub fn rename(&mut self, link: &Link, new_name: &str) -> Result<()> {
        let msg = Self::link_msg(
            link.index,
            vec![LinkAttribute::IfName(new_name.to_string())],
        );
        self.set_link(msg, "rename", &format!("{} -> {new_name}", link.name))
    }

    /// The link's alternative names (`ip link property`).
    pub fn altnames(&mut self, link: &Link) -> Result<Vec<String>> {
        let m = self.get_link(Self::link_query(None, link.index, false), &link.name)?;
        Ok(m.attributes
            .iter()
            .filter_map(|a| match a {
                LinkAttribute::PropList(p) => Some(p),
                _ => None,
            })
            .flatten()
            .filter_map(|p| match p {
                Prop::AltIfName(n) => Some(n.clone()),
                _ => None,
            })
            .collect())
    }

    /// Remove one alternative name from a link (`RTM_DELLINKPROP`).
    pub fn del_altname(&mut self, link: &Link, name: &str) -> Result<()> {
        let msg = Self::link_msg(
            link.index,
            vec![LinkAttribute::PropList(vec![Prop::AltIfName(
                name.to_string(),
            )])],
        );
        self.request(
            RouteNetlinkMessage::DelLinkProp(msg),
            NLM_F_ACK,
            "delete altname",
            &format!("{} ({name})", link.name),
        )
        .map(|_| ())
    }

    /// Set the link's own MAC address (not the PF's administrative MAC for a VF).
    pub fn set_mac(&mut self, link: &Link, mac: MacAddr) -> Result<()> {
        let msg = Self::link_msg(link.index, vec![LinkAttribute::Address(mac.0.to_vec())]);
        self.set_link(msg, "set MAC", &format!("{} ({mac})", link.name))
    }

    /// Set the MTU in bytes; the driver refuses values outside its range.
    pub fn set_mtu(&mut self, link: &Link, mtu: u32) -> Result<()> {
        let msg = Self::link_msg(link.index, vec![LinkAttribute::Mtu(mtu)]);
        self.set_link(msg, "set MTU", &format!("{} ({mtu})", link.name))
    }

    /// Move a link into the network namespace open at `netns`, named `new_name` there, in one
    /// request: the name is never visible in the target under anything else.
    pub fn move_to_netns(
        &mut self,
        link: &Link,
        netns: &impl AsRawFd,
        new_name: &str,
    ) -> Result<()> {
        let msg = Self::link_msg(
            link.index,
            vec![
                LinkAttribute::NetNsFd(netns.as_raw_fd()),
                LinkAttribute::IfName(new_name.to_string()),
            ],
        );
        self.set_link(
            msg,
            "move to netns",
            &format!("{} -> {new_name}", link.name),
        )
    }

    fn set_vf(&mut self, pf: &str, info: NlVfInfo, op: &'static str, vf: u32) -> Result<()> {
        let index = self.link_by_name(pf)?.index;
        self.set_link(vf_msg(index, info), op, &format!("{pf} vf {vf}"))
    }

    /// Set VF `vf`'s administrative MAC through its PF (`ip link set PF vf N mac`);
    /// [`MacAddr::ZERO`] clears it.
    pub fn set_vf_mac(&mut self, pf: &str, vf: u32, mac: MacAddr) -> Result<()> {
        self.set_vf(
            pf,
            NlVfInfo::Mac(VfInfoMac::new(vf, &mac.0)),
            "set VF MAC",
            vf,
        )
    }

    /// Set VF `vf`'s port VLAN, 802.1p priority and tag protocol through its PF; VLAN 0 with
    /// QoS 0 removes it.
    pub fn set_vf_vlan(
        &mut self,
        pf: &str,
        vf: u32,
        vlan: u16,
        qos: u8,
        proto: VlanProto,
    ) -> Result<()> {
        self.set_vf(pf, vlan_info(vf, vlan, qos, proto), "set VF VLAN", vf)
    }

    /// Turn source-MAC spoof checking on VF `vf` on or off.
    pub fn set_vf_spoofchk(&mut self, pf: &str, vf: u32, on: bool) -> Result<()> {
        let info = NlVfInfo::SpoofCheck(VfInfoSpoofCheck::new(vf, on));
        self.set_vf(pf, info, "set VF spoofchk", vf)
    }

    /// Trust VF `vf` or not: a trusted VF may change its MAC and enter promiscuous or
    /// all-multicast mode.
    pub fn set_vf_trust(&mut self, pf: &str, vf: u32, on: bool) -> Result<()> {
        self.set_vf(
            pf,
            NlVfInfo::Trust(VfInfoTrust::new(vf, on)),
            "set VF trust",
            vf,
        )
    }

    /// Minimum and maximum TX rate in Mbps (0 = no limit).
    pub fn set_vf_rate(&mut self, pf: &str, vf: u32, min: u32, max: u32) -> Result<()> {
        self.set_vf(
            pf,
            NlVfInfo::Rate(VfInfoRate::new(vf, min, max)),
            "set VF rate",
            vf,
        )
    }

    /// Set VF `vf`'s link state: follow the PF, forced up, or forced down.
    pub fn set_vf_link_state(&mut self, pf: &str, vf: u32, state: VfLinkState) -> Result<()> {
        let st = match state {
            VfLinkState::Auto => NlState::Auto,
            VfLinkState::Enable => NlState::Enable,
            VfLinkState::Disable => NlState::Disable,
        };
        let info = NlVfInfo::LinkState(VfInfoLinkState::new(vf, st));
        self.set_vf(pf, info, "set VF link state", vf)
    }
}

/// `RTM_SETLINK` on the PF: `IFLA_VFINFO_LIST { IFLA_VF_INFO { <one setting> } }`.
fn vf_msg(pf_index: u32, info: NlVfInfo) -> LinkMessage {
    Netlink::link_msg(
        pf_index,
        vec![LinkAttribute::VfInfoList(vec![LinkVfInfo(vec![info])])],
    )
}

/// The VLAN setting as the kernel takes it, with the tag protocol (`IFLA_VF_VLAN_LIST`).
fn vlan_info(vf: u32, vlan: u16, qos: u8, proto: VlanProto) -> NlVfInfo {
    let proto = match proto {
        VlanProto::Dot1Q => VlanProtocol::Ieee8021Q,
        VlanProto::Dot1Ad => VlanProtocol::Ieee8021Ad,
    };
    NlVfInfo::VlanList(vec![VfVlan::Info(VfVlanInfo::new(
        vf,
        vlan.into(),
        qos.into(),
        proto,
    ))])
}

pub(crate) fn family(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

pub(crate) fn route_addr(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    }
}

#[cfg(test)]
#[path = "netlink/tests.rs"]
mod tests;
