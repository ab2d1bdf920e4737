use serde_json::json;

use super::*;

fn parse(v: serde_json::Value) -> Result<NetConf> {
    NetConf::parse(v.to_string().as_bytes(), &CniArgs::default())
}

fn base() -> serde_json::Value {
    json!({"cniVersion":"1.0.0","name":"n","type":"sriov","deviceID":"0000:03:02.0"})
}

fn with(k: &str, v: serde_json::Value) -> serde_json::Value {
    let mut b = base();
    b[k] = v;
    b
}

#[test]
fn parses_every_field() {
    let c = parse(
        json!({"cniVersion":"1.1.0","name":"n","type":"sriov","deviceID":"0000:03:02.0",
        "vlan":100,"vlanQoS":3,"vlanProto":"802.1AD","mac":"02:00:00:00:00:0a","spoofchk":"off",
        "trust":"on","link_state":"disable","min_tx_rate":10,"max_tx_rate":100,"mtu":1400,
        "ipam":{"type":"host-local"},"foreign":{"x":1},
        "runtimeConfig":{"CNIDeviceInfoFile":"/var/run/k8s.cni.cncf.io/devinfo/cni/x.json"}}),
    )
    .unwrap();
    assert_eq!(c.device_id, Some("0000:03:02.0".parse().unwrap()));
    assert_eq!(c.pf.vlan, Some(100));
    assert_eq!(c.pf.vlan_qos, Some(3));
    assert_eq!(c.pf.vlan_proto, Some(VlanProto::Dot1Ad));
    assert_eq!(c.pf.spoofchk, Some(false));
    assert_eq!(c.pf.trust, Some(true));
    assert_eq!(c.pf.link_state, Some(VfLinkState::Disable));
    assert_eq!((c.pf.min_tx_rate, c.pf.max_tx_rate), (Some(10), Some(100)));
    assert_eq!(c.mtu, Some(1400));
    assert_eq!(c.ipam_type.as_deref(), Some("host-local"));
    assert_eq!(c.pf.requested().len(), 9);
}

#[test]
fn cni_device_info_file_is_accepted_whatever_it_holds() {
    for v in [
        json!("/etc/passwd"),
        json!("rel.json"),
        json!(7),
        json!(null),
    ] {
        parse(with("runtimeConfig", json!({ "CNIDeviceInfoFile": v }))).unwrap();
    }
}

#[test]
fn device_id_sources() {
    // Only in runtimeConfig, or in both with the same value (Multus with the capability).
    let mut v = base();
    v.as_object_mut().unwrap().remove("deviceID");
    v["runtimeConfig"] = json!({"deviceID":"0000:04:00.1"});
    assert_eq!(
        parse(v).unwrap().device_id,
        Some("0000:04:00.1".parse().unwrap())
    );
    let mut v = base();
    v["runtimeConfig"] = json!({"deviceID":"0000:03:02.0"});
    assert_eq!(
        parse(v).unwrap().device_id,
        Some("0000:03:02.0".parse().unwrap())
    );
    // Different: a runtimeConfig written into the NAD may not override the VF Multus injected.
    let mut v = base();
    v["runtimeConfig"] = json!({"deviceID":"0000:04:00.1"});
    let e = parse(v).unwrap_err();
    assert_eq!(e.code, 7);
    assert!(
        e.msg
            .starts_with("runtimeConfig.deviceID: 0000:04:00.1 differs from deviceID 0000:03:02.0"),
        "{}",
        e.msg
    );
    let mut v = base();
    v.as_object_mut().unwrap().remove("deviceID");
    let c = parse(v).unwrap();
    assert_eq!(c.require_device_id().unwrap_err().code, 7);
}

#[test]
fn mac_precedence() {
    let args = CniArgs::parse("MAC=02:00:00:00:00:02").unwrap();
    let mut v = with("mac", json!("02:00:00:00:00:01"));
    let c = NetConf::parse(v.to_string().as_bytes(), &args).unwrap();
    assert_eq!(c.pf.mac.unwrap().to_string(), "02:00:00:00:00:02");
    v["runtimeConfig"] = json!({"mac":"02:00:00:00:00:03"});
    let c = NetConf::parse(v.to_string().as_bytes(), &args).unwrap();
    assert_eq!(c.pf.mac.unwrap().to_string(), "02:00:00:00:00:03");
    let c = parse(with("mac", json!("02:00:00:00:00:01"))).unwrap();
    assert_eq!(c.pf.mac.unwrap().to_string(), "02:00:00:00:00:01");
}

#[test]
fn every_rule_rejects_with_code_7_naming_the_field() {
    let cases: Vec<(serde_json::Value, &str, &str)> = vec![
        (
            with("deviceID", json!("../../etc")),
            "deviceID",
            "dddd:bb:dd.f",
        ),
        (
            with("deviceID", json!("0000:03:02")),
            "deviceID",
            "dddd:bb:dd.f",
        ),
        (with("deviceID", json!(5)), "deviceID", "PCI address"),
        (with("vlan", json!(4095)), "vlan", "0..4094"),
        (with("vlan", json!(-1)), "vlan", "0..4094"),
        (with("vlan", json!("100")), "vlan", "0..4094"),
        (with("vlanQoS", json!(1)), "vlanQoS", "needs vlan"),
        (
            json!({"cniVersion":"1.0.0","name":"n","deviceID":"0000:03:02.0","vlan":10,"vlanQoS":8}),
            "vlanQoS",
            "0..7",
        ),
        (
            json!({"cniVersion":"1.0.0","name":"n","deviceID":"0000:03:02.0","vlan":0,"vlanQoS":2}),
            "vlanQoS",
            "non-zero vlan",
        ),
        (
            json!({"cniVersion":"1.0.0","name":"n","deviceID":"0000:03:02.0","vlanProto":"802.1ad"}),
            "vlanProto",
            "non-zero vlan",
        ),
        (
            json!({"cniVersion":"1.0.0","name":"n","deviceID":"0000:03:02.0","vlan":0,"vlanProto":"802.1ad"}),
            "vlanProto",
            "non-zero vlan",
        ),
        (
            json!({"cniVersion":"1.0.0","name":"n","deviceID":"0000:03:02.0","vlan":5,"vlanProto":"qinq"}),
            "vlanProto",
            "\"802.1q\" or \"802.1ad\"",
        ),
        (
            with("mac", json!("zz:00:00:00:00:00")),
            "mac",
            "six hex octets",
        ),
        (with("mac", json!("01:00:5e:00:00:01")), "mac", "unicast"),
        (
            with("spoofchk", json!("yes")),
            "spoofchk",
            "\"on\" or \"off\"",
        ),
        (with("trust", json!(true)), "trust", "not a string"),
        (
            with("link_state", json!("up")),
            "link_state",
            "\"auto\", \"enable\" or \"disable\"",
        ),
        (with("min_tx_rate", json!(-5)), "min_tx_rate", "0.."),
        (with("max_tx_rate", json!(1.5)), "max_tx_rate", "0.."),
        (
            json!({"cniVersion":"1.0.0","name":"n","deviceID":"0000:03:02.0","min_tx_rate":200,"max_tx_rate":100}),
            "min_tx_rate",
            "<= max_tx_rate",
        ),
        (with("mtu", json!(20)), "mtu", "68..65535"),
        (
            with("ipam", json!({"subnet":"10.0.0.0/24"})),
            "ipam.type",
            "missing",
        ),
        (
            with("ipam", json!({"type":"../bin/x"})),
            "ipam.type",
            "plugin name",
        ),
        (with("ipam", json!("host-local")), "ipam", "not an object"),
        (
            with("runtimeConfig", json!({"mac":"nope"})),
            "runtimeConfig.mac",
            "six hex octets",
        ),
        (
            with("runtimeConfig", json!({"deviceID":"x"})),
            "runtimeConfig.deviceID",
            "dddd:bb:dd.f",
        ),
    ];
    for (v, field, hint) in cases {
        let e = parse(v.clone()).unwrap_err();
        assert_eq!(e.code, 7, "{v}: {e}");
        assert!(e.msg.starts_with(field), "{v}: {}", e.msg);
        assert!(e.msg.contains(hint), "{v}: {}", e.msg);
    }
}

#[test]
fn allowed_edge_values() {
    for (k, v) in [
        ("vlan", json!(0)),
        ("vlan", json!(4094)),
        ("spoofchk", json!("on")),
        ("link_state", json!("auto")),
        ("max_tx_rate", json!(0)),
    ] {
        parse(with(k, v.clone())).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
    }
    // max_tx_rate 0 means no limit: any min is fine.
    parse(json!({"cniVersion":"1.0.0","name":"n","deviceID":"0000:03:02.0","min_tx_rate":200,"max_tx_rate":0})).unwrap();
    parse(json!({"cniVersion":"1.0.0","name":"n","deviceID":"0000:03:02.0","vlan":0,"vlanQoS":0}))
        .unwrap();
    parse(json!({"cniVersion":"1.0.0","name":"n","deviceID":"0000:03:02.0","vlan":7,"vlanProto":"802.1Q"})).unwrap();
}

#[test]
fn decode_and_version_errors() {
    let e = NetConf::parse(b"{not json", &CniArgs::default()).unwrap_err();
    assert_eq!(e.code, 6);
    let e = NetConf::parse(b"[1]", &CniArgs::default()).unwrap_err();
    assert_eq!(e.code, 6);
    let e = parse(with("cniVersion", json!("0.2.0"))).unwrap_err();
    assert_eq!(e.code, 1);
    assert!(e.msg.contains("0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"));
    let mut v = base();
    v.as_object_mut().unwrap().remove("cniVersion");
    assert_eq!(parse(v).unwrap_err().code, 7);
}
