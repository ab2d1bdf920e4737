//! What Multus v4.3.0 (the thin plugin, with the CNI library v1.3.0 it vendors) hands a delegate
//! plugin, reproduced for one NetworkAttachmentDefinition and one pod. docs/multus.md lists each
//! fact with its file and line in the Multus source; the short form:
//!
//! - the delegate config is the NAD's `spec.config`, with `name` filled in from the NAD when it
//!   is missing, and top-level `deviceID` and `pciBusID` set to the device the kubelet allocated
//!   for the NAD's `k8s.v1.cni.cncf.io/resourceName` (overwriting any the NAD has);
//! - the CNI library then sets `name` and `cniVersion` again, adds `prevResult` (the cached ADD
//!   result) on CHECK, and on DEL from cniVersion 0.4.0 on, and adds a `runtimeConfig` holding
//!   only the capability arguments (`deviceID`, `CNIDeviceInfoFile`, `mac`, `ips`, ...) whose key
//!   the config's `capabilities` map sets to true;
//! - CHECK is never sent for a cniVersion below 0.4.0;
//! - `CNI_ARGS` is `IgnoreUnknown=true;K8S_POD_NAMESPACE=..;K8S_POD_NAME=..;
//!   K8S_POD_INFRA_CONTAINER_ID=..;K8S_POD_UID=..`, then the runtime's own `CNI_ARGS` entries
//!   again, then on ADD only `MAC=` and `IP=` when the pod's network selection asks for them;
//! - `CNI_IFNAME` is `net<position>` (`net1` for the first additional network), `CNI_PATH` is
//!   Multus' `binDir` followed by the runtime's `CNI_PATH`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use sriov_tests::netbed::{Att, Bed, CniOut};

/// The pod's namespace, name and UID, and the sandbox (infra container) ID the runtime uses as
/// `CNI_CONTAINERID`.
pub const NAMESPACE: &str = "default";
pub const POD: &str = "samplepod";
pub const POD_UID: &str = "5c9e8f4a-1b2c-4d3e-8f90-0a1b2c3d4e5f";
pub const SANDBOX: &str = "9f2c4e6a8b0d1f3e5a7c9e1b3d5f7a9c0e2b4d6f8a1c3e5b7d9f0a2c4e6b8d0f";
/// The interface name Multus gives the first additional network.
pub const IFNAME: &str = "net1";

/// One pod's attachment to one NAD, as Multus runs it.
pub struct Multus<'a> {
    bed: &'a Bed,
    /// The plugin, wrapped so that it runs with the bed's directory as `/var/lib` (where
    /// host-local keeps its leases when the NAD names no `dataDir`).
    exec: PathBuf,
    /// `<namespace>/<NAD name>`: Multus' name for the delegate.
    nad: String,
    /// The delegate config, as Multus caches it.
    pub conf: Value,
    pub pod: PathBuf,
    pub device_id: String,
    /// The network selection element's `mac` and `ips`.
    pub mac: Option<String>,
    pub ips: Option<Vec<String>>,
}

/// `a.b.c` as numbers, for version comparisons.
fn version(v: &str) -> Vec<u32> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

impl<'a> Multus<'a> {
    /// The attachment of `pod` to the NAD `nad_name` whose `spec.config` is `spec_config`, with
    /// `device_id` allocated by the kubelet for the NAD's resource.
    pub fn new(
        bed: &'a Bed,
        plugin: &str,
        nad_name: &str,
        spec_config: &Value,
        pod: &Path,
        device_id: &str,
    ) -> Self {
        let mut conf = spec_config.clone();
        if conf["name"].as_str().unwrap_or_default().is_empty() {
            conf["name"] = json!(nad_name);
        }
        conf["deviceID"] = json!(device_id);
        conf["pciBusID"] = json!(device_id);
        Multus {
            bed,
            exec: private_var_lib(bed, plugin),
            nad: format!("{NAMESPACE}/{nad_name}"),
            conf,
            pod: pod.to_path_buf(),
            device_id: device_id.to_string(),
            mac: None,
            ips: None,
        }
    }

    /// The netconf's `cniVersion`.
    pub fn cni_version(&self) -> String {
        self.conf["cniVersion"].as_str().unwrap_or("").to_string()
    }

    /// Whether the CNI library sends CHECK, and a `prevResult` on DEL, for this cniVersion.
    pub fn has_check(&self) -> bool {
        version(&self.cni_version()) >= version("0.4.0")
    }

    /// The device-info path Multus generates for this attachment.
    pub fn device_info_file(&self) -> String {
        let f = format!("{}-{SANDBOX}_{IFNAME}", self.nad).replace('/', "-");
        format!("/var/run/k8s.cni.cncf.io/devinfo/cni/{f}")
    }

    /// Multus' capability arguments for this delegate.
    pub fn capability_args(&self) -> Map<String, Value> {
        let mut m = Map::new();
        if let Some(ips) = &self.ips {
            m.insert("ips".into(), json!(ips));
        }
        if let Some(mac) = &self.mac {
            m.insert("mac".into(), json!(mac));
        }
        m.insert("deviceID".into(), json!(self.device_id));
        m.insert("CNIDeviceInfoFile".into(), json!(self.device_info_file()));
        m
    }

    /// The config on the plugin's stdin.
    pub fn stdin(&self, prev: Option<&Value>) -> Value {
        let mut c = self.conf.clone();
        if let Some(p) = prev {
            c["prevResult"] = p.clone();
        }
        let caps = self.capability_args();
        let rc: Map<String, Value> = c["capabilities"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(_, on)| on.as_bool() == Some(true))
                    .filter_map(|(k, _)| Some((k.clone(), caps.get(k)?.clone())))
                    .collect()
            })
            .unwrap_or_default();
        if !rc.is_empty() {
            c["runtimeConfig"] = Value::Object(rc);
        }
        c
    }

    /// `CNI_ARGS`, as the thin plugin builds it from containerd's.
    pub fn cni_args(&self, add: bool) -> String {
        let k8s = format!(
            "K8S_POD_NAMESPACE={NAMESPACE};K8S_POD_NAME={POD};K8S_POD_INFRA_CONTAINER_ID={SANDBOX};K8S_POD_UID={POD_UID}"
        );
        let mut a = format!("IgnoreUnknown=true;{k8s};IgnoreUnknown=1;{k8s}");
        if add {
            if let Some(mac) = &self.mac {
                a.push_str(&format!(";MAC={mac}"));
            }
            if let Some(ips) = &self.ips {
                a.push_str(&format!(";IP={}", ips.join(",")));
            }
        }
        a
    }

    fn run(&self, cmd: &str, prev: Option<&Value>) -> CniOut {
        let att = Att {
            container_id: SANDBOX,
            netns: Some(&self.pod),
            ifname: IFNAME,
        };
        let bin_dir = self.bed.dir.path().join("opt-cni-bin");
        let _ = std::fs::create_dir_all(&bin_dir);
        let path = format!("{}:{}", bin_dir.display(), sriov_tests::netbed::CNI_PATH);
        let args = self.cni_args(cmd == "ADD");
        let exec = self.exec.to_string_lossy();
        self.bed.run(
            &exec,
            cmd,
            &self.stdin(prev),
            &att,
            &[("CNI_ARGS", &args), ("CNI_PATH", &path)],
        )
    }

    pub fn add(&self) -> CniOut {
        self.run("ADD", None)
    }

    /// CHECK with the cached ADD result; `None` below 0.4.0, where the library refuses CHECK
    /// itself.
    pub fn check(&self, cached: &Value) -> Option<CniOut> {
        self.has_check().then(|| self.run("CHECK", Some(cached)))
    }

    /// DEL, with the cached ADD result from cniVersion 0.4.0 on.
    pub fn del(&self, cached: Option<&Value>) -> CniOut {
        self.run("DEL", cached.filter(|_| self.has_check()))
    }

    /// The plugin called directly with `cmd` and this attachment's stdin (what Multus would
    /// never send, for asserting the plugin's side of a rule).
    pub fn raw(&self, cmd: &str, conf: &Value) -> CniOut {
        let att = Att {
            container_id: SANDBOX,
            netns: Some(&self.pod),
            ifname: IFNAME,
        };
        let exec = self.exec.to_string_lossy();
        self.bed.run(
            &exec,
            cmd,
            conf,
            &att,
            &[("CNI_ARGS", &self.cni_args(false))],
        )
    }

    /// Where host-local keeps this network's leases.
    pub fn leases(&self) -> PathBuf {
        let name = self.conf["name"].as_str().unwrap_or_default();
        self.bed.dir.path().join("var-lib/cni/networks").join(name)
    }
}

/// A script that runs `plugin` in a private mount namespace with `<bed>/var-lib` bound over
/// `/var/lib`, so that an IPAM section without `dataDir` (as upstream's examples are) keeps its
/// leases in the bed and never in the machine's `/var/lib/cni`.
fn private_var_lib(bed: &Bed, plugin: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let var_lib = bed.dir.path().join("var-lib");
    std::fs::create_dir_all(&var_lib).expect("var-lib");
    let script = bed.dir.path().join("plugin-private-var-lib.sh");
    let body = format!(
        "#!/bin/sh\nexec unshare --mount --propagation private -- sh -c 'mount --bind \"$1\" /var/lib && exec \"$0\"' '{plugin}' '{}'\n",
        var_lib.display()
    );
    std::fs::write(&script, body).expect("write wrapper");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script
}
