//! Link state from the kernel's rtnetlink broadcast (RTNLGRP_LINK): how health follows a PF's
//! admin state and carrier without a timer. The monitor is blocking; run it on its own thread.

use std::io;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// `RTMGRP_LINK`: link state changes.
const RTMGRP_LINK: u32 = 1;

/// One link's state as the kernel announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    /// The interface index (stable while the link lives in this netns).
    pub index: u32,
    /// The interface name at the time of the message.
    pub name: String,
    /// `IFF_UP`: administratively up.
    pub admin_up: bool,
    /// `IFF_LOWER_UP`: the physical layer has carrier.
    pub carrier: bool,
    /// The link was deleted (or moved to another network namespace).
    pub removed: bool,
}

impl LinkState {
    /// Usable for traffic: up and with carrier.
    pub fn healthy(&self) -> bool {
        !self.removed && self.admin_up && self.carrier
    }
}

/// A socket subscribed to link notifications in the caller's network namespace.
pub struct LinkMonitor {
    sock: Socket,
    buf: Vec<u8>,
}

impl LinkMonitor {
    /// Open a rtnetlink socket in the calling thread's network namespace, joined to the link
    /// multicast group (receiving needs no privilege).
    pub fn open() -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind(&SocketAddr::new(0, RTMGRP_LINK))?;
        Ok(LinkMonitor {
            sock,
            buf: Vec::with_capacity(1 << 16),
        })
    }

    /// Ask for every link's state; the answers arrive through [`LinkMonitor::recv`] like any
    /// notification, so a change that races with the dump is never lost.
    pub fn request_dump(&mut self) -> io::Result<()> {
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | NLM_F_DUMP;
        hdr.sequence_number = 1;
        let mut nl = NetlinkMessage::new(
            hdr,
            NetlinkPayload::from(RouteNetlinkMessage::GetLink(LinkMessage::default())),
        );
        nl.finalize();
        let mut buf = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut buf);
        self.sock.send_to(&buf, &SocketAddr::new(0, 0), 0)?;
        Ok(())
    }

    /// Block until the kernel sends something; return the link states it carried (possibly
    /// none, e.g. for the end of a dump). Overflow (`ENOBUFS`) is reported as an error so the
    /// caller can re-dump.
    pub fn recv(&mut self) -> io::Result<Vec<LinkState>> {
        self.buf.clear();
        let n = self.sock.recv(&mut self.buf, 0)?;
        let mut out = Vec::new();
        let mut off = 0usize;
        while off + 16 <= n {
            let b = &self.buf;
            let len = u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]]) as usize;
            if len < 16 || off + len > n {
                break;
            }
            if let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&b[off..off + len])
            {
                match msg.payload {
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => {
                        out.push(state(&m, false))
                    }
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(m)) => {
                        out.push(state(&m, true))
                    }
                    _ => {}
                }
            }
            off += (len + 3) & !3;
        }
        Ok(out)
    }
}

fn state(m: &LinkMessage, removed: bool) -> LinkState {
    let name = m
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
        .unwrap_or_default();
    LinkState {
        index: m.header.index,
        name,
        admin_up: m.header.flags.contains(LinkFlags::Up),
        carrier: m.header.flags.contains(LinkFlags::LowerUp),
        removed,
    }
}
