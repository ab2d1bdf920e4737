//! The bytes the kernel gets for PF-side VF settings (no SR-IOV hardware needed), and VF info
//! decoded from a kernel-shaped reply.

use netlink_packet_core::{Emitable, NlaBuffer, Parseable};

use super::link::to_link;

use super::*;

/// Walk netlink attributes: (type without flags, payload).
fn attrs(mut b: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        out.push((ty, b[4..len].to_vec()));
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    out
}

fn only(b: &[u8], ty: u16) -> Vec<u8> {
    let a = attrs(b);
    assert_eq!(a.len(), 1, "one attribute expected: {a:?}");
    assert_eq!(a[0].0, ty, "attribute type");
    a[0].1.clone()
}

/// The single setting inside IFLA_VFINFO_LIST(22) / IFLA_VF_INFO(1).
fn setting(info: NlVfInfo) -> (u16, Vec<u8>) {
    let msg = vf_msg(7, info);
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.emit(&mut buf);
    assert_eq!(
        u32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]),
        7,
        "ifindex of the PF"
    );
    let list = only(&buf[16..], 22);
    let vf_info = only(&list, 1);
    let a = attrs(&vf_info);
    assert_eq!(a.len(), 1);
    a[0].clone()
}

fn u32s(b: &[u8]) -> Vec<u32> {
    b.chunks(4)
        .filter(|c| c.len() == 4)
        .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn vlan_with_protocol_is_a_vlan_list() {
    let (ty, payload) = setting(vlan_info(3, 100, 5, VlanProto::Dot1Ad));
    assert_eq!(ty, 12, "IFLA_VF_VLAN_LIST");
    let info = only(&payload, 1); // IFLA_VF_VLAN_INFO
    assert_eq!(info.len(), 16, "struct ifla_vf_vlan_info");
    assert_eq!(&u32s(&info[..12]), &[3, 100, 5]);
    assert_eq!(
        &info[12..14],
        &[0x88, 0xa8],
        "802.1ad in network byte order"
    );
}

#[test]
fn mac_rate_spoofchk_trust_link_state() {
    let mac: MacAddr = "02:00:00:00:00:0a".parse().unwrap();
    let (ty, p) = setting(NlVfInfo::Mac(VfInfoMac::new(2, &mac.0)));
    assert_eq!((ty, p.len()), (1, 36), "IFLA_VF_MAC, struct ifla_vf_mac");
    assert_eq!(u32s(&p[..4]), [2]);
    assert_eq!(&p[4..10], &mac.0);
    let (ty, p) = setting(NlVfInfo::Rate(VfInfoRate::new(2, 10, 100)));
    assert_eq!((ty, u32s(&p)), (6, vec![2, 10, 100]), "IFLA_VF_RATE");
    let (ty, p) = setting(NlVfInfo::SpoofCheck(VfInfoSpoofCheck::new(2, false)));
    assert_eq!((ty, u32s(&p)), (4, vec![2, 0]), "IFLA_VF_SPOOFCHK");
    let (ty, p) = setting(NlVfInfo::Trust(VfInfoTrust::new(2, true)));
    assert_eq!((ty, u32s(&p)), (9, vec![2, 1]), "IFLA_VF_TRUST");
    let (ty, p) = setting(NlVfInfo::LinkState(VfInfoLinkState::new(
        2,
        NlState::Disable,
    )));
    assert_eq!((ty, u32s(&p)), (5, vec![2, 2]), "IFLA_VF_LINK_STATE");
}

/// Build one IFLA_VF_INFO as a driver reports it and decode it into our type.
#[test]
fn decodes_vf_info_as_reported() {
    fn nla(ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((payload.len() + 4) as u16).to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(payload);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }
    let words = |w: &[u32]| w.iter().flat_map(|x| x.to_ne_bytes()).collect::<Vec<u8>>();
    let mut mac = words(&[4]);
    mac.extend_from_slice(&[2, 0, 0, 0, 0, 0x0b]);
    mac.resize(36, 0);
    let mut vlan_info = words(&[4, 100, 3]);
    vlan_info.extend_from_slice(&[0x81, 0x00, 0, 0]);
    let mut inner = Vec::new();
    inner.extend(nla(1, &mac));
    inner.extend(nla(2, &words(&[4, 100, 3])));
    inner.extend(nla(12, &nla(1, &vlan_info)));
    inner.extend(nla(6, &words(&[4, 0, 1000])));
    inner.extend(nla(4, &words(&[4, 1])));
    inner.extend(nla(9, &words(&[4, 0])));
    inner.extend(nla(5, &words(&[4, 0])));
    // The crate hands LinkVfInfo the payload of IFLA_VF_INFO.
    let parsed = LinkVfInfo::parse(&NlaBuffer::new_checked(&inner[..]).unwrap()).unwrap();
    let v = vf::from_netlink(&parsed);
    assert_eq!(
        v,
        VfInfo {
            index: 4,
            mac: "02:00:00:00:00:0b".parse().unwrap(),
            vlan: 100,
            qos: 3,
            proto: VlanProto::Dot1Q,
            spoofchk: Some(true),
            trust: Some(false),
            min_tx_rate: 0,
            max_tx_rate: 1000,
            link_state: Some(VfLinkState::Auto),
        }
    );
}

/// One netlink attribute, padded.
fn nla(ty: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&((payload.len() + 4) as u16).to_ne_bytes());
    v.extend_from_slice(&ty.to_ne_bytes());
    v.extend_from_slice(payload);
    while v.len() % 4 != 0 {
        v.push(0);
    }
    v
}

/// An RTM_NEWLINK payload as the kernel sends it for ifindex 9, with `extra` attributes.
fn link_reply(extra: &[u8]) -> Link {
    let mut b = vec![0u8; 16]; // struct ifinfomsg
    b[4..8].copy_from_slice(&9i32.to_ne_bytes());
    b[8..12].copy_from_slice(&1u32.to_ne_bytes()); // IFF_UP
    b.extend(nla(3, b"enp3s0v1\0")); // IFLA_IFNAME
    b.extend(nla(1, &[2, 0, 0, 0, 0x10, 1])); // IFLA_ADDRESS
    b.extend(nla(4, &1500u32.to_ne_bytes())); // IFLA_MTU
    b.extend_from_slice(extra);
    let m = <LinkMessage as Parseable<[u8]>>::parse(&b[..]).unwrap();
    to_link(&m)
}

#[test]
fn decodes_the_parent_device_of_a_link() {
    let mut parent = nla(56, b"0000:03:10.1\0"); // IFLA_PARENT_DEV_NAME
    parent.extend(nla(57, b"pci\0")); // IFLA_PARENT_DEV_BUS_NAME
    let l = link_reply(&parent);
    assert_eq!(
        (l.index, l.name.as_str(), l.mtu, l.up),
        (9, "enp3s0v1", 1500, true)
    );
    let p = l.parent.expect("parent device");
    assert_eq!(p.to_string(), "pci/0000:03:10.1");
    assert!(p.is_pci("0000:03:10.1".parse().unwrap()));
    assert!(!p.is_pci("0000:03:10.2".parse().unwrap()));
    let other_bus = ParentDev {
        bus: "virtio".into(),
        name: "0000:03:10.1".into(),
    };
    assert!(!other_bus.is_pci("0000:03:10.1".parse().unwrap()));
    // A virtual netdev (veth): no parent reported.
    assert_eq!(link_reply(&[]).parent, None);
}

// The same against this machine's kernel: tests/tests/netlink.rs.
