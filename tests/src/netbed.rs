//! A throwaway network test bed: a "host" network namespace of its own (the machine's root
//! netns is never touched), a fake sysfs tree whose VF `net/` entries name real veth ends in
//! that namespace, a state directory, pod namespaces, and a runner that executes a CNI plugin
//! binary inside the host namespace. Everything is removed on drop.
//!
//! Needs root; [`Bed::new`] returns `None` otherwise, after [`crate::gate`] reported the test
//! skipped (or failed it, in strict mode).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

use crate::fakesys::{Dev, FakeSysfs, BRCM, PS225_PF, PS225_VF};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The PF stand-in's PCI address and netdev name in every bed.
pub const PF_PCI: &str = "0000:03:00.0";
pub const PF_NETDEV: &str = "pf0";
/// The second PF's PCI address (`add_second_pf`); its netdev is `pf1`.
pub const PF1_PCI: &str = "0000:04:00.0";
/// Where Debian's reference plugins live.
pub const CNI_PATH: &str = "/usr/lib/cni";

pub use crate::gate::is_root;

/// Run `ip` with arguments; panic with its stderr on failure.
pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A link as `ip -j link` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    pub mac: String,
    pub mtu: u32,
    pub up: bool,
}

/// One plugin run.
#[derive(Debug)]
pub struct CniOut {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
    pub json: Value,
}

impl CniOut {
    /// The error code, when the run failed.
    pub fn code(&self) -> Option<u64> {
        if self.ok {
            None
        } else {
            self.json.get("code").and_then(Value::as_u64)
        }
    }
    pub fn msg(&self) -> String {
        self.json
            .get("msg")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }
}

/// Who an invocation is for: `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`.
#[derive(Debug, Clone, Copy)]
pub struct Att<'a> {
    pub container_id: &'a str,
    pub netns: Option<&'a Path>,
    pub ifname: &'a str,
}

/// A VF whose netdev is a veth end in the bed's host netns.
#[derive(Debug, Clone)]
pub struct BedVf {
    pub pci: String,
    pub netdev: String,
    pub mac: String,
    pub mtu: u32,
}

pub struct Bed {
    pub prefix: String,
    pub host: String,
    pub sys: FakeSysfs,
    pub dir: tempfile::TempDir,
    pods: std::sync::Mutex<Vec<String>>,
}

impl Bed {
    /// A new bed with a PF stand-in (`pf0`, a veth end: this kernel may lack the dummy driver).
    /// `None` when not root: the test is then reported skipped, or fails in strict mode
    /// ([`crate::gate`]); `tag` names the bed in that report.
    pub fn new(tag: &str) -> Option<Bed> {
        if !is_root() {
            crate::gate::skip(&format!("needs root for network namespaces (bed {tag})"));
            return None;
        }
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("svt{}-{n}", std::process::id());
        let host = format!("{prefix}-host");
        ip(&["netns", "add", &host]);
        let bed = Bed {
            prefix,
            host,
            sys: FakeSysfs::new(),
            dir: tempfile::Builder::new()
                .prefix("svbed")
                .tempdir()
                .expect("tempdir"),
            pods: Default::default(),
        };
        bed.ip_host(&["link", "set", "lo", "up"]);
        bed.ip_host(&[
            "link", "add", PF_NETDEV, "type", "veth", "peer", "name", "pf0peer",
        ]);
        bed.ip_host(&["link", "set", PF_NETDEV, "up"]);
        bed.sys.add_pf(
            &Dev::new(PF_PCI, BRCM, PS225_PF)
                .driver("bnxt_en")
                .netdev(PF_NETDEV),
            8,
        );
        Some(bed)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    /// `ip -n <host> ...`
    pub fn ip_host(&self, args: &[&str]) -> String {
        let mut a = vec!["-n", self.host.as_str()];
        a.extend_from_slice(args);
        ip(&a)
    }

    /// Both PFs' links carrying carrier: `pf0`'s peer set up, and a second PF, the veth `pf1`
    /// (peer `pf1peer`, both up) at `PF1_PCI`, a PS225 PF with 8 total VFs and none created.
    pub fn add_second_pf(&self) {
        self.ip_host(&["link", "set", "pf0peer", "up"]);
        self.ip_host(&[
            "link", "add", "pf1", "type", "veth", "peer", "name", "pf1peer",
        ]);
        self.ip_host(&["link", "set", "pf1", "up"]);
        self.ip_host(&["link", "set", "pf1peer", "up"]);
        self.sys.add_pf(
            &Dev::new(PF1_PCI, BRCM, PS225_PF)
                .driver("bnxt_en")
                .netdev("pf1"),
            8,
        );
    }

    /// VF `index` of the PF: PCI `0000:03:10.<index>` (`0000:03:11.0` from index 8 on),
    /// netdev `vf<index>` (a veth whose peer `vp<index>` stays in the host netns), bound to
    /// `bnxt_en`.
    pub fn add_vf(&self, index: u32) -> BedVf {
        let pci = format!("0000:03:{:02x}.{}", 0x10 + index / 8, index % 8);
        let netdev = format!("vf{index}");
        let mac = format!("02:00:00:00:10:{index:02x}");
        self.ip_host(&[
            "link",
            "add",
            &netdev,
            "address",
            &mac,
            "mtu",
            "1500",
            "type",
            "veth",
            "peer",
            "name",
            &format!("vp{index}"),
        ]);
        self.ip_host(&["link", "set", &format!("vp{index}"), "up"]);
        self.sys.add_vf(
            PF_PCI,
            index,
            &Dev::new(&pci, BRCM, PS225_VF)
                .driver("bnxt_en")
                .netdev(&netdev),
        );
        BedVf {
            pci,
            netdev,
            mac,
            mtu: 1500,
        }
    }

    /// VF `index` bound to `vfio-pci`, without a netdev.
    pub fn add_dpdk_vf(&self, index: u32) -> String {
        let pci = format!("0000:03:10.{index}");
        self.sys.add_vf(
            PF_PCI,
            index,
            &Dev::new(&pci, BRCM, PS225_VF)
                .driver("vfio-pci")
                .iommu_group(40 + index),
        );
        pci
    }

    /// A pod network namespace; returns its path (`/run/netns/<name>`).
    pub fn pod(&self, tag: &str) -> PathBuf {
        let name = format!("{}-{tag}", self.prefix);
        ip(&["netns", "add", &name]);
        self.pods.lock().expect("pods").push(name.clone());
        PathBuf::from("/run/netns").join(name)
    }

    /// Delete a pod namespace (as the runtime does when a pod dies).
    pub fn delete_pod(&self, path: &Path) {
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        ip(&["netns", "del", &name]);
    }

    /// A link in `netns` (a pod path, or `None` for the bed's host netns).
    pub fn link(&self, netns: Option<&Path>, name: &str) -> Option<LinkInfo> {
        self.links_matching(netns, &["dev", name]).pop()
    }

    /// Every link in `netns`, by name.
    pub fn links(&self, netns: Option<&Path>) -> Vec<LinkInfo> {
        let mut all = self.links_matching(netns, &[]);
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    fn links_matching(&self, netns: Option<&Path>, filter: &[&str]) -> Vec<LinkInfo> {
        let ns = self.ns_name(netns);
        let out = Command::new("ip")
            .args(["-j", "-n", &ns, "link", "show"])
            .args(filter)
            .output()
            .expect("ip");
        if !out.status.success() {
            return Vec::new();
        }
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let parse = |l: &Value| {
            Some(LinkInfo {
                index: l["ifindex"].as_u64()? as u32,
                name: l["ifname"].as_str()?.to_string(),
                mac: l["address"].as_str()?.to_string(),
                mtu: l["mtu"].as_u64()? as u32,
                up: l["flags"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x == "UP")),
            })
        };
        v.as_array()
            .map(|a| a.iter().filter_map(parse).collect())
            .unwrap_or_default()
    }

    /// `addr/prefix` strings on a link.
    pub fn addrs(&self, netns: Option<&Path>, name: &str) -> Vec<String> {
        let ns = self.ns_name(netns);
        let out = ip(&["-j", "-n", &ns, "addr", "show", "dev", name]);
        let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        v.get(0)
            .and_then(|l| l["addr_info"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter(|a| a["scope"] != "link")
            .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or(""), a["prefixlen"]))
            .collect()
    }

    fn ns_name(&self, netns: Option<&Path>) -> String {
        match netns {
            Some(p) => p.file_name().expect("ns").to_string_lossy().into_owned(),
            None => self.host.clone(),
        }
    }

    /// Run plugin binary `bin` in the host netns with the bed's sysfs and state dir.
    pub fn run(
        &self,
        bin: &str,
        cmd: &str,
        conf: &Value,
        att: &Att,
        extra_env: &[(&str, &str)],
    ) -> CniOut {
        let Att {
            container_id,
            netns,
            ifname,
        } = *att;
        // Spawned from a thread inside the host netns: the child inherits that thread's
        // namespace (no `ip netns exec` and its mount-namespace set-up on every run).
        let mut c = Command::new(bin);
        c.env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", container_id)
            .env(
                "CNI_NETNS",
                netns
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            )
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", CNI_PATH)
            .env("SRIOV_SYSFS_ROOT", self.sys.root())
            .env("SRIOV_CNI_STATE_DIR", self.state_dir())
            .env("SRIOV_CNI_LOG_DIR", self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            c.env(k, v);
        }
        let host = PathBuf::from("/run/netns").join(&self.host);
        let out = sriov_host::netns::run_in(&host, || {
            let mut child = c.spawn().expect("spawn plugin");
            {
                use std::io::Write;
                let mut stdin = child.stdin.take().expect("stdin");
                stdin
                    .write_all(conf.to_string().as_bytes())
                    .expect("write stdin");
            }
            child.wait_with_output().expect("wait plugin")
        })
        .expect("enter the host netns");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        CniOut {
            ok: out.status.success(),
            json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `program` prepared to run inside the host netns with the bed's sysfs root and state dir
    /// in its environment (what a runtime on the node would run).
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.host])
            .arg(program)
            .env("SRIOV_SYSFS_ROOT", self.sys.root())
            .env("SRIOV_CNI_STATE_DIR", self.state_dir())
            .env("SRIOV_CNI_LOG_DIR", self.dir.path());
        c
    }

    /// A host-local IPAM section with its data in the bed.
    pub fn host_local(&self, subnet: &str, gateway: &str) -> Value {
        serde_json::json!({
            "type": "host-local",
            "subnet": subnet,
            "gateway": gateway,
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": self.ipam_dir(),
        })
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        let pods = std::mem::take(&mut *self.pods.lock().unwrap_or_else(|e| e.into_inner()));
        for p in pods.iter().chain(std::iter::once(&self.host)) {
            let _ = Command::new("ip")
                .args(["netns", "del", p])
                .stderr(Stdio::null())
                .status();
        }
    }
}
