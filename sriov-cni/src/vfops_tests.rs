use std::collections::HashMap;

use nix::errno::Errno;

use super::*;
use crate::del::{rename_back, TeardownError};
use crate::error::PF_SETTING;
use crate::netconf::PfSettings;
use crate::pf;
use sriov_host::netlink::VfInfo;

/// A VF's network operations recorded in order; an operation named in `refuse` fails with that
/// errno. `altnames` are the link's alternative names; a rename to one of them (or to a name in
/// `taken`) fails with EEXIST.
#[derive(Default)]
struct FakeVf {
    calls: Vec<String>,
    refuse: HashMap<&'static str, Errno>,
    altnames: Vec<String>,
    taken: Vec<String>,
}

impl FakeVf {
    fn call(&mut self, op: &'static str, what: String) -> Result<(), NetlinkError> {
        self.calls.push(format!("{op} {what}"));
        match self.refuse.get(op) {
            Some(e) => Err(kernel(op, *e)),
            None => Ok(()),
        }
    }
}

fn kernel(op: &'static str, e: Errno) -> NetlinkError {
    NetlinkError::Kernel {
        op,
        target: "pf0".into(),
        source: std::io::Error::from_raw_os_error(e as i32),
    }
}

impl VfOps for FakeVf {
    fn set_vf_mac(&mut self, _: &str, _: u32, mac: MacAddr) -> Result<(), NetlinkError> {
        self.call("mac", mac.to_string())
    }
    fn set_vf_vlan(
        &mut self,
        _: &str,
        _: u32,
        vlan: u16,
        qos: u8,
        _: VlanProto,
    ) -> Result<(), NetlinkError> {
        self.call("vlan", format!("{vlan}/{qos}"))
    }
    fn set_vf_spoofchk(&mut self, _: &str, _: u32, on: bool) -> Result<(), NetlinkError> {
        self.call("spoofchk", on.to_string())
    }
    fn set_vf_trust(&mut self, _: &str, _: u32, on: bool) -> Result<(), NetlinkError> {
        self.call("trust", on.to_string())
    }
    fn set_vf_rate(&mut self, _: &str, _: u32, min: u32, max: u32) -> Result<(), NetlinkError> {
        self.call("rate", format!("{min}-{max}"))
    }
    fn set_vf_link_state(
        &mut self,
        _: &str,
        _: u32,
        state: VfLinkState,
    ) -> Result<(), NetlinkError> {
        self.call("link_state", format!("{state:?}"))
    }
    fn rename(&mut self, _: &Link, name: &str) -> Result<(), NetlinkError> {
        self.calls.push(format!("rename {name}"));
        if self.altnames.iter().chain(&self.taken).any(|n| n == name) {
            return Err(kernel("rename", Errno::EEXIST));
        }
        Ok(())
    }
    fn altnames(&mut self, _: &Link) -> Result<Vec<String>, NetlinkError> {
        Ok(self.altnames.clone())
    }
    fn del_altname(&mut self, _: &Link, name: &str) -> Result<(), NetlinkError> {
        self.calls.push(format!("del_altname {name}"));
        self.altnames.retain(|n| n != name);
        Ok(())
    }
}

fn orig() -> VfInfo {
    VfInfo {
        index: 3,
        vlan: 0,
        spoofchk: Some(true),
        trust: Some(false),
        ..Default::default()
    }
}

#[test]
fn a_refused_pf_setting_leaves_only_what_took_effect_recorded_and_that_is_what_is_restored() {
    let mut nl = FakeVf::default();
    nl.refuse.insert("trust", Errno::EOPNOTSUPP);
    let want = PfSettings {
        vlan: Some(100),
        spoofchk: Some(false),
        trust: Some(true),
        link_state: Some(VfLinkState::Enable),
        ..Default::default()
    };
    let mut applied = PfSettings::default();
    let e = pf::apply(&mut nl, "pf0", 3, &want, &orig(), &mut applied).unwrap_err();
    assert_eq!(e.code, PF_SETTING);
    assert!(e.msg.contains("does not support this setting"), "{}", e.msg);
    // Stopped at trust: link_state never tried; vlan and spoofchk took effect.
    assert_eq!(nl.calls, ["vlan 100/0", "spoofchk false", "trust true"]);
    assert_eq!(
        (
            applied.vlan,
            applied.spoofchk,
            applied.trust,
            applied.link_state
        ),
        (Some(100), Some(false), None, None)
    );

    nl.calls.clear();
    nl.refuse.clear();
    let mut errors = Vec::new();
    pf::restore(&mut nl, "pf0", &orig(), &applied, &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    // In reverse: spoofchk back to on, then the VLAN back to none; trust was never changed.
    assert_eq!(nl.calls, ["spoofchk true", "vlan 0/0"]);
}

#[test]
fn a_restore_that_fails_part_way_goes_on_and_reports_each_failure_with_its_errno() {
    let mut nl = FakeVf::default();
    nl.refuse.insert("spoofchk", Errno::EPERM);
    let applied = PfSettings {
        vlan: Some(100),
        spoofchk: Some(false),
        trust: Some(true),
        ..Default::default()
    };
    let mut errors = Vec::new();
    pf::restore(&mut nl, "pf0", &orig(), &applied, &mut errors);
    assert_eq!(nl.calls, ["trust false", "spoofchk true", "vlan 0/0"]);
    match errors.as_slice() {
        [TeardownError::PfSetting {
            vf: 3,
            what,
            source,
            ..
        }] => {
            assert_eq!(what, "spoofchk");
            assert_eq!(source.errno(), Some(Errno::EPERM));
        }
        other => panic!("{other:?}"),
    }
}

fn link(name: &str) -> Link {
    Link {
        index: 7,
        name: name.into(),
        mac: None,
        mtu: 1500,
        up: false,
        parent: None,
    }
}

#[test]
fn renaming_back_to_the_netdevs_own_altname_drops_the_altname_first() {
    let mut nl = FakeVf {
        altnames: vec!["enp1s0v1".into()],
        ..Default::default()
    };
    rename_back(&mut nl, &link("eth0"), "enp1s0v1").unwrap();
    assert_eq!(
        nl.calls,
        ["rename enp1s0v1", "del_altname enp1s0v1", "rename enp1s0v1"]
    );
}

#[test]
fn a_name_taken_by_another_netdev_is_an_eexist_error_and_no_altname_is_touched() {
    let mut nl = FakeVf {
        altnames: vec!["other".into()],
        taken: vec!["enp1s0v1".into()],
        ..Default::default()
    };
    let e = rename_back(&mut nl, &link("eth0"), "enp1s0v1").unwrap_err();
    assert_eq!(e.errno(), Some(Errno::EEXIST));
    assert_eq!(nl.calls, ["rename enp1s0v1"]);
}
