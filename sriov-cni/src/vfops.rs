//! The VF's network operations that ADD applies and teardown restores (PF-side VF settings, and
//! the rename-back of a VF netdev), as a trait: [`Netlink`] is the real one; the unit tests use
//! a fake, so the order of restores, a half-applied PF setting and the EEXIST/altname path are
//! tested without root.

use sriov_host::netlink::{Link, Netlink, NetlinkError, VfLinkState, VlanProto};
use sriov_host::MacAddr;

/// PF-side VF settings and the link operations of a rename-back.
pub trait VfOps {
    /// Set VF `vf`'s admin MAC on PF `pf`.
    fn set_vf_mac(&mut self, pf: &str, vf: u32, mac: MacAddr) -> Result<(), NetlinkError>;
    /// Set VF `vf`'s VLAN, QoS and protocol on PF `pf`.
    fn set_vf_vlan(
        &mut self,
        pf: &str,
        vf: u32,
        vlan: u16,
        qos: u8,
        proto: VlanProto,
    ) -> Result<(), NetlinkError>;
    /// Set VF `vf`'s spoof check on PF `pf`.
    fn set_vf_spoofchk(&mut self, pf: &str, vf: u32, on: bool) -> Result<(), NetlinkError>;
    /// Set VF `vf`'s trust on PF `pf`.
    fn set_vf_trust(&mut self, pf: &str, vf: u32, on: bool) -> Result<(), NetlinkError>;
    /// Set VF `vf`'s minimum and maximum TX rates (Mbps) on PF `pf`.
    fn set_vf_rate(&mut self, pf: &str, vf: u32, min: u32, max: u32) -> Result<(), NetlinkError>;
    /// Set VF `vf`'s link state on PF `pf`.
    fn set_vf_link_state(
        &mut self,
        pf: &str,
        vf: u32,
        state: VfLinkState,
    ) -> Result<(), NetlinkError>;
    /// Rename `link`.
    fn rename(&mut self, link: &Link, name: &str) -> Result<(), NetlinkError>;
    /// `link`'s alternative names.
    fn altnames(&mut self, link: &Link) -> Result<Vec<String>, NetlinkError>;
    /// Drop one of `link`'s alternative names.
    fn del_altname(&mut self, link: &Link, name: &str) -> Result<(), NetlinkError>;
}

impl VfOps for Netlink {
    fn set_vf_mac(&mut self, pf: &str, vf: u32, mac: MacAddr) -> Result<(), NetlinkError> {
        Netlink::set_vf_mac(self, pf, vf, mac)
    }
    fn set_vf_vlan(
        &mut self,
        pf: &str,
        vf: u32,
        vlan: u16,
        qos: u8,
        proto: VlanProto,
    ) -> Result<(), NetlinkError> {
        Netlink::set_vf_vlan(self, pf, vf, vlan, qos, proto)
    }
    fn set_vf_spoofchk(&mut self, pf: &str, vf: u32, on: bool) -> Result<(), NetlinkError> {
        Netlink::set_vf_spoofchk(self, pf, vf, on)
    }
    fn set_vf_trust(&mut self, pf: &str, vf: u32, on: bool) -> Result<(), NetlinkError> {
        Netlink::set_vf_trust(self, pf, vf, on)
    }
    fn set_vf_rate(&mut self, pf: &str, vf: u32, min: u32, max: u32) -> Result<(), NetlinkError> {
        Netlink::set_vf_rate(self, pf, vf, min, max)
    }
    fn set_vf_link_state(
        &mut self,
        pf: &str,
        vf: u32,
        state: VfLinkState,
    ) -> Result<(), NetlinkError> {
        Netlink::set_vf_link_state(self, pf, vf, state)
    }
    fn rename(&mut self, link: &Link, name: &str) -> Result<(), NetlinkError> {
        Netlink::rename(self, link, name)
    }
    fn altnames(&mut self, link: &Link) -> Result<Vec<String>, NetlinkError> {
        Netlink::altnames(self, link)
    }
    fn del_altname(&mut self, link: &Link, name: &str) -> Result<(), NetlinkError> {
        Netlink::del_altname(self, link, name)
    }
}

#[cfg(test)]
#[path = "vfops_tests.rs"]
mod tests;
