use std::collections::HashMap;
use std::sync::Mutex as StdMutex;

use k8s_openapi::api::resource::v1::{
    AllocationResult, DeviceAllocationResult, DeviceRequestAllocationResult, ResourceClaimStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::slice::DRIVER_NAME;

/// Claims by "namespace/name".
#[derive(Default, Clone)]
struct FakeClaims(Arc<StdMutex<HashMap<String, ResourceClaim>>>);

impl ClaimSource for FakeClaims {
    async fn get(&self, namespace: &str, name: &str) -> Result<ResourceClaim, String> {
        self.0
            .lock()
            .expect("lock")
            .get(&format!("{namespace}/{name}"))
            .cloned()
            .ok_or_else(|| format!("resourceclaims {name:?} not found"))
    }
}

/// Records calls ("prepare <uid> <pci>"); fails or panics on a chosen PCI address.
#[derive(Default)]
struct FakePreparer {
    calls: StdMutex<Vec<String>>,
    fail_on: StdMutex<Option<String>>,
    panic_on: StdMutex<Option<String>>,
}

impl FakePreparer {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("lock").clone()
    }
}

impl DevicePreparer for FakePreparer {
    fn prepare(&self, claim: &ClaimRef, pci: PciAddress) -> Result<ContainerEdits, String> {
        if self.panic_on.lock().expect("lock").as_deref() == Some(&pci.to_string()) {
            panic!("simulated crash while preparing {pci}");
        }
        self.calls
            .lock()
            .expect("lock")
            .push(format!("prepare {} {pci}", claim.uid));
        if self.fail_on.lock().expect("lock").as_deref() == Some(&pci.to_string()) {
            return Err("vfio-pci is not bound".into());
        }
        Ok(ContainerEdits {
            device_nodes: vec![format!("/dev/vfio/{}", pci.to_string().len())],
            env: vec![],
        })
    }

    fn unprepare(&self, claim: &ClaimRef, pci: PciAddress) -> Result<(), String> {
        self.calls
            .lock()
            .expect("lock")
            .push(format!("unprepare {} {pci}", claim.uid));
        Ok(())
    }
}

fn result(request: &str, driver: &str, pool: &str, device: &str) -> DeviceRequestAllocationResult {
    DeviceRequestAllocationResult {
        request: request.into(),
        driver: driver.into(),
        pool: pool.into(),
        device: device.into(),
        ..Default::default()
    }
}

fn claim_object(
    name: &str,
    uid: &str,
    results: Vec<DeviceRequestAllocationResult>,
) -> ResourceClaim {
    ResourceClaim {
        metadata: ObjectMeta {
            namespace: Some("default".into()),
            name: Some(name.into()),
            uid: Some(uid.into()),
            ..Default::default()
        },
        status: Some(ResourceClaimStatus {
            allocation: Some(AllocationResult {
                devices: Some(DeviceAllocationResult {
                    results: Some(results),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn claim(name: &str, uid: &str) -> Claim {
    Claim {
        namespace: "default".into(),
        uid: uid.into(),
        name: name.into(),
    }
}

struct Bed {
    dir: tempfile::TempDir,
    claims: FakeClaims,
    preparer: Arc<FakePreparer>,
}

impl Bed {
    fn new() -> Bed {
        let b = Bed {
            dir: tempfile::tempdir().expect("tmp"),
            claims: FakeClaims::default(),
            preparer: Arc::default(),
        };
        // Two VFs of ours, one device of another driver, one of ours on another node.
        b.add(claim_object(
            "net1",
            "uid-1",
            vec![
                result("vf", DRIVER_NAME, "node-a", "0000-03-01-0"),
                result("vf", "gpu.example.com", "node-a", "gpu-0"),
                result("vf2", DRIVER_NAME, "node-a", "0000-03-01-1"),
                result("vf", DRIVER_NAME, "node-b", "0000-03-01-2"),
            ],
        ));
        b
    }

    fn add(&self, rc: ResourceClaim) {
        let key = format!("default/{}", rc.metadata.name.as_deref().expect("name"));
        self.claims.0.lock().expect("lock").insert(key, rc);
    }

    /// A service as after a (re)start: the checkpoint is read from disk.
    fn service(&self) -> DraService<FakeClaims, FakePreparer> {
        DraService::new(
            SliceTarget::new(DRIVER_NAME, "node-a").expect("target"),
            self.claims.clone(),
            self.preparer.clone(),
            CheckpointFile::in_dir(self.dir.path()),
            self.dir.path().join("cdi"),
        )
        .expect("service")
    }

    fn cdi_spec(&self, uid: &str) -> Option<serde_json::Value> {
        let p = self
            .dir
            .path()
            .join("cdi")
            .join(format!("sriov-dra-{uid}.json"));
        std::fs::read(p)
            .ok()
            .map(|b| serde_json::from_slice(&b).expect("json"))
    }

    fn on_disk(&self) -> Checkpoint {
        CheckpointFile::in_dir(self.dir.path())
            .load()
            .expect("checkpoint")
    }
}

#[tokio::test]
async fn prepare_answers_our_devices_with_cdi_ids_and_records_the_claim() {
    let bed = Bed::new();
    let devices = bed
        .service()
        .prepare_claim(&claim("net1", "uid-1"))
        .await
        .expect("prepared");
    let got: Vec<(&str, &str, Vec<String>, Vec<String>)> = devices
        .iter()
        .map(|d| {
            (
                d.pool_name.as_str(),
                d.device_name.as_str(),
                d.request_names.clone(),
                d.cdi_device_ids.clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "node-a",
                "0000-03-01-0",
                vec!["vf".to_string()],
                vec!["sriov.arm.com/vf=0000:03:01.0".to_string()]
            ),
            (
                "node-a",
                "0000-03-01-1",
                vec!["vf2".to_string()],
                vec!["sriov.arm.com/vf=0000:03:01.1".to_string()]
            ),
        ]
    );
    assert_eq!(bed.on_disk().claims["uid-1"].state, ClaimState::Prepared);
    let spec = bed.cdi_spec("uid-1").expect("CDI spec written");
    assert_eq!(spec["kind"], "sriov.arm.com/vf");
    let names: Vec<&str> = spec["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert_eq!(names, ["0000:03:01.0", "0000:03:01.1"]);
}

#[tokio::test]
async fn prepare_twice_and_after_a_restart_does_the_work_once() {
    let bed = Bed::new();
    let first = bed
        .service()
        .prepare_claim(&claim("net1", "uid-1"))
        .await
        .expect("first");
    let svc = bed.service();
    // The claim is gone from the API now: the answer must come from the checkpoint alone.
    bed.claims.0.lock().expect("lock").clear();
    let again = svc
        .prepare_claim(&claim("net1", "uid-1"))
        .await
        .expect("again");
    assert_eq!(first, again);
    assert_eq!(
        bed.preparer.calls(),
        ["prepare uid-1 0000:03:01.0", "prepare uid-1 0000:03:01.1"]
    );
}

#[tokio::test]
async fn unprepare_after_a_restart_undoes_every_device_once() {
    let bed = Bed::new();
    bed.service()
        .prepare_claim(&claim("net1", "uid-1"))
        .await
        .expect("prepared");
    let svc = bed.service();
    svc.unprepare_claim(&claim("net1", "uid-1"))
        .await
        .expect("unprepared");
    svc.unprepare_claim(&claim("net1", "uid-1"))
        .await
        .expect("again: nothing to do");
    bed.service()
        .unprepare_claim(&claim("net1", "uid-1"))
        .await
        .expect("after restart too");
    assert_eq!(
        bed.preparer.calls()[2..],
        [
            "unprepare uid-1 0000:03:01.0",
            "unprepare uid-1 0000:03:01.1"
        ]
    );
    assert!(bed.on_disk().claims.is_empty());
}

#[tokio::test]
async fn a_crash_between_devices_leaves_a_record_that_a_retry_completes() {
    let bed = Bed::new();
    *bed.preparer.panic_on.lock().expect("lock") = Some("0000:03:01.1".into());
    let svc = Arc::new(bed.service());
    let crashed = tokio::spawn({
        let svc = svc.clone();
        async move { svc.prepare_claim(&claim("net1", "uid-1")).await }
    })
    .await;
    assert!(crashed.is_err(), "the preparer panicked");
    drop(svc);
    let rec = &bed.on_disk().claims["uid-1"];
    assert_eq!(rec.state, ClaimState::Preparing);
    assert_eq!(
        rec.devices.len(),
        2,
        "every device is recorded before the first is touched"
    );
    // Restart; the kubelet retries.
    *bed.preparer.panic_on.lock().expect("lock") = None;
    let devices = bed
        .service()
        .prepare_claim(&claim("net1", "uid-1"))
        .await
        .expect("retried");
    assert_eq!(devices.len(), 2);
    assert_eq!(bed.on_disk().claims["uid-1"].state, ClaimState::Prepared);
}

#[tokio::test]
async fn a_crash_between_devices_leaves_a_record_that_unprepare_undoes() {
    let bed = Bed::new();
    *bed.preparer.panic_on.lock().expect("lock") = Some("0000:03:01.1".into());
    let svc = Arc::new(bed.service());
    let crashed = tokio::spawn({
        let svc = svc.clone();
        async move { svc.prepare_claim(&claim("net1", "uid-1")).await }
    })
    .await;
    assert!(crashed.is_err());
    drop(svc);
    bed.service()
        .unprepare_claim(&claim("net1", "uid-1"))
        .await
        .expect("undone");
    assert_eq!(
        bed.preparer.calls(),
        [
            "prepare uid-1 0000:03:01.0",
            "unprepare uid-1 0000:03:01.0",
            "unprepare uid-1 0000:03:01.1"
        ]
    );
    assert!(bed.on_disk().claims.is_empty());
}

#[tokio::test]
async fn a_failed_device_undoes_the_others_and_forgets_the_claim() {
    let bed = Bed::new();
    *bed.preparer.fail_on.lock().expect("lock") = Some("0000:03:01.1".into());
    let err = bed
        .service()
        .prepare_claim(&claim("net1", "uid-1"))
        .await
        .expect_err("fails");
    assert!(
        err.contains("0000:03:01.1") && err.contains("vfio-pci is not bound"),
        "{err}"
    );
    assert_eq!(
        bed.preparer.calls(),
        [
            "prepare uid-1 0000:03:01.0",
            "prepare uid-1 0000:03:01.1",
            "unprepare uid-1 0000:03:01.0"
        ]
    );
    assert!(bed.on_disk().claims.is_empty());
}

#[tokio::test]
async fn a_replaced_unallocated_or_foreign_claim_is_refused_with_its_name() {
    let bed = Bed::new();
    let svc = bed.service();
    let err = svc
        .prepare_claim(&claim("net1", "uid-old"))
        .await
        .expect_err("uid");
    assert!(
        err.contains("default/net1") && err.contains("uid-old"),
        "{err}"
    );
    let mut unallocated = claim_object("net2", "uid-2", vec![]);
    unallocated.status = None;
    bed.add(unallocated);
    let err = svc
        .prepare_claim(&claim("net2", "uid-2"))
        .await
        .expect_err("unallocated");
    assert!(err.contains("default/net2 is not allocated"), "{err}");
    bed.add(claim_object(
        "net3",
        "uid-3",
        vec![result("vf", "gpu.example.com", "node-a", "gpu-0")],
    ));
    let err = svc
        .prepare_claim(&claim("net3", "uid-3"))
        .await
        .expect_err("foreign");
    assert!(
        err.contains("no device of driver sriov.arm.com in pool node-a"),
        "{err}"
    );
    bed.add(claim_object(
        "net4",
        "uid-4",
        vec![result("vf", DRIVER_NAME, "node-a", "../etc")],
    ));
    let err = svc
        .prepare_claim(&claim("net4", "uid-4"))
        .await
        .expect_err("bad name");
    assert!(err.contains("\"../etc\""), "{err}");
    assert!(bed.preparer.calls().is_empty());
    assert!(bed.on_disk().claims.is_empty());
}

#[tokio::test]
async fn a_vf_still_prepared_for_another_claim_is_refused() {
    let bed = Bed::new();
    let svc = bed.service();
    svc.prepare_claim(&claim("net1", "uid-1"))
        .await
        .expect("first");
    bed.add(claim_object(
        "net5",
        "uid-5",
        vec![result("vf", DRIVER_NAME, "node-a", "0000-03-01-1")],
    ));
    let err = svc
        .prepare_claim(&claim("net5", "uid-5"))
        .await
        .expect_err("taken");
    assert!(
        err.contains("0000-03-01-1") && err.contains("default/net1"),
        "{err}"
    );
    svc.unprepare_claim(&claim("net1", "uid-1"))
        .await
        .expect("released");
    svc.prepare_claim(&claim("net5", "uid-5"))
        .await
        .expect("now free");
}

#[tokio::test]
async fn a_half_prepared_claim_allocated_anew_undoes_the_devices_it_lost() {
    let bed = Bed::new();
    *bed.preparer.panic_on.lock().expect("lock") = Some("0000:03:01.1".into());
    let svc = Arc::new(bed.service());
    let crashed = tokio::spawn({
        let svc = svc.clone();
        async move { svc.prepare_claim(&claim("net1", "uid-1")).await }
    })
    .await;
    assert!(crashed.is_err());
    drop(svc);
    *bed.preparer.panic_on.lock().expect("lock") = None;
    // Same claim (same UID), now allocated one other VF.
    bed.add(claim_object(
        "net1",
        "uid-1",
        vec![result("vf", DRIVER_NAME, "node-a", "0000-03-01-3")],
    ));
    let devices = bed
        .service()
        .prepare_claim(&claim("net1", "uid-1"))
        .await
        .expect("prepared");
    assert_eq!(devices.len(), 1);
    assert_eq!(
        bed.preparer.calls(),
        [
            "prepare uid-1 0000:03:01.0",
            "unprepare uid-1 0000:03:01.0",
            "unprepare uid-1 0000:03:01.1",
            "prepare uid-1 0000:03:01.3",
        ]
    );
    let rec = &bed.on_disk().claims["uid-1"];
    assert_eq!(
        rec.devices
            .iter()
            .map(|d| d.device.as_str())
            .collect::<Vec<_>>(),
        ["0000-03-01-3"]
    );
}

#[tokio::test]
async fn unprepare_removes_the_claims_cdi_spec() {
    let bed = Bed::new();
    let svc = bed.service();
    svc.prepare_claim(&claim("net1", "uid-1"))
        .await
        .expect("prepared");
    assert!(bed.cdi_spec("uid-1").is_some());
    svc.unprepare_claim(&claim("net1", "uid-1"))
        .await
        .expect("unprepared");
    assert!(bed.cdi_spec("uid-1").is_none());
}

#[tokio::test]
async fn a_claim_uid_that_is_not_a_uid_is_refused_before_anything_happens() {
    let bed = Bed::new();
    bed.add(claim_object(
        "evil",
        "../../etc/x",
        vec![result("vf", DRIVER_NAME, "node-a", "0000-03-01-0")],
    ));
    let svc = bed.service();
    let err = svc
        .prepare_claim(&claim("evil", "../../etc/x"))
        .await
        .expect_err("refused");
    assert!(
        err.contains("\"../../etc/x\" is not a Kubernetes UID"),
        "{err}"
    );
    let err = svc
        .unprepare_claim(&claim("evil", "../../etc/x"))
        .await
        .expect_err("refused");
    assert!(err.contains("not a Kubernetes UID"), "{err}");
    assert!(bed.preparer.calls().is_empty());
    assert!(!bed.dir.path().join("cdi").exists(), "nothing written");
}

#[tokio::test]
async fn a_cdi_spec_that_cannot_be_written_undoes_the_devices() {
    let bed = Bed::new();
    // A file where the CDI directory should be.
    std::fs::write(bed.dir.path().join("cdi"), b"").expect("block");
    let err = bed
        .service()
        .prepare_claim(&claim("net1", "uid-1"))
        .await
        .expect_err("fails");
    assert!(err.contains("writing CDI spec"), "{err}");
    assert_eq!(
        bed.preparer.calls(),
        [
            "prepare uid-1 0000:03:01.0",
            "prepare uid-1 0000:03:01.1",
            "unprepare uid-1 0000:03:01.1",
            "unprepare uid-1 0000:03:01.0",
        ]
    );
    assert!(bed.on_disk().claims.is_empty());
}
