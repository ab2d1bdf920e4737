//! Addresses and routes on a link.

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::route::{
    RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::RouteNetlinkMessage;

use super::{family, route_addr, IpNet, Link, Netlink, Result};

impl Netlink {
    /// Add an address to a link (`ip addr add`); `EEXIST` if the link already has it.
    pub fn add_address(&mut self, link: &Link, net: IpNet) -> Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = family(net.addr);
        msg.header.prefix_len = net.prefix;
        msg.header.index = link.index;
        if net.addr.is_ipv4() {
            msg.attributes.push(AddressAttribute::Local(net.addr));
        }
        msg.attributes.push(AddressAttribute::Address(net.addr));
        self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            "add address",
            &format!("{} ({net})", link.name),
        )
        .map(|_| ())
    }

    /// The addresses on a link (both families).
    pub fn addresses(&mut self, link: &Link) -> Result<Vec<IpNet>> {
        let msg = AddressMessage::default();
        let replies = self.request(
            RouteNetlinkMessage::GetAddress(msg),
            NLM_F_DUMP,
            "list addresses",
            &link.name,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == link.index => {
                    let addr = a.attributes.iter().find_map(|x| match x {
                        AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    })?;
                    Some(IpNet {
                        addr,
                        prefix: a.header.prefix_len,
                    })
                }
                _ => None,
            })
            .collect())
    }

    /// A route in the main table through `link`: to `dst`, via `gw` when given.
    pub fn add_route(&mut self, link: &Link, dst: IpNet, gw: Option<IpAddr>) -> Result<()> {
        let mut msg = RouteMessage::default();
        msg.header = RouteHeader {
            address_family: family(dst.addr),
            destination_prefix_length: dst.prefix,
            table: RouteHeader::RT_TABLE_MAIN,
            protocol: RouteProtocol::Boot,
            scope: if gw.is_some() {
                RouteScope::Universe
            } else {
                RouteScope::Link
            },
            kind: RouteType::Unicast,
            ..msg.header
        };
        if dst.prefix > 0 {
            msg.attributes
                .push(RouteAttribute::Destination(route_addr(dst.addr)));
        }
        if let Some(g) = gw {
            msg.attributes.push(RouteAttribute::Gateway(route_addr(g)));
        }
        msg.attributes.push(RouteAttribute::Oif(link.index));
        let target = match gw {
            Some(g) => format!("{} ({dst} via {g})", link.name),
            None => format!("{} ({dst})", link.name),
        };
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            "add route",
            &target,
        )
        .map(|_| ())
    }
}
