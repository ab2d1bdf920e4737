//! The publisher against an in-memory API server behind a `tower-test` mock service: it keeps
//! ResourceSlices by name with resource versions, answers 409 to a stale replace or a create of
//! an existing name, honours the field selector, and can hold writes or fail on demand.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::*;
use crate::slice::tests::vf;
use crate::slice::DRIVER_NAME;

const BASE: &str = "/apis/resource.k8s.io/v1/resourceslices";
/// Permits of the write gate: holding them all holds every write.
const GATE: u32 = 1 << 20;

#[derive(Default)]
struct State {
    slices: BTreeMap<String, Value>,
    rv: u64,
    /// "METHOD name devices" per request, in arrival order (devices: count in a write).
    log: Vec<String>,
    /// Before answering the next replace: another writer bumps the object (generation 10).
    conflict_next_replace: bool,
    /// Answer the next request with a 500.
    fail_next: bool,
}

#[derive(Clone)]
struct Fake {
    state: Arc<Mutex<State>>,
    /// Writes wait for a permit: a test takes them all to hold writes in flight.
    gate: Arc<Semaphore>,
}

fn status(code: StatusCode, reason: &str) -> Response<Body> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("fake: {reason}"), "reason": reason, "code": code.as_u16()});
    respond(code, &body)
}

fn respond(code: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("response")
}

fn devices_in(v: &Value) -> usize {
    v["spec"]["devices"].as_array().map_or(0, Vec::len)
}

impl Fake {
    fn new() -> Fake {
        Fake {
            state: Arc::default(),
            gate: Arc::new(Semaphore::new(GATE as usize)),
        }
    }

    fn client(&self) -> Api<ResourceSlice> {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let fake = self.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let fake = fake.clone();
                tokio::spawn(async move { send.send_response(fake.serve(req).await) });
            }
        });
        Api::all(kube::Client::new(svc, "default"))
    }

    fn log(&self) -> Vec<String> {
        self.state.lock().expect("lock").log.clone()
    }

    fn slices(&self) -> BTreeMap<String, Value> {
        self.state.lock().expect("lock").slices.clone()
    }

    fn insert(&self, v: Value) {
        let mut st = self.state.lock().expect("lock");
        st.rv += 1;
        let mut v = v;
        v["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        let name = v["metadata"]["name"].as_str().expect("name").to_string();
        st.slices.insert(name, v);
    }

    async fn serve(&self, req: Request<Body>) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = req
            .uri()
            .query()
            .unwrap_or("")
            .replace("%3D", "=")
            .replace("%2C", ",");
        let name = path
            .strip_prefix(BASE)
            .unwrap_or("")
            .trim_start_matches('/')
            .to_string();
        let body = req.into_body().collect_bytes().await.expect("body");
        let obj: Option<Value> = serde_json::from_slice(&body).ok();
        let write = method == Method::POST || method == Method::PUT;
        {
            let mut st = self.state.lock().expect("lock");
            let entry = match &obj {
                Some(o) if write => format!("{method} {name} {}", devices_in(o)),
                _ => format!("{method} {name}").trim_end().to_string(),
            };
            st.log.push(entry);
            if std::mem::take(&mut st.fail_next) {
                return status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError");
            }
        }
        if write {
            let _permit = self.gate.acquire().await.expect("gate");
        }
        let mut st = self.state.lock().expect("lock");
        match method {
            Method::GET => {
                let items: Vec<Value> = st
                    .slices
                    .values()
                    .filter(|s| {
                        let d = s["spec"]["driver"].as_str().unwrap_or("");
                        let n = s["spec"]["nodeName"].as_str().unwrap_or("");
                        query.contains(&format!("fieldSelector=spec.driver={d},spec.nodeName={n}"))
                    })
                    .cloned()
                    .collect();
                let list = json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSliceList",
                    "metadata": {"resourceVersion": st.rv.to_string()}, "items": items});
                respond(StatusCode::OK, &list)
            }
            Method::POST => {
                let mut v = obj.expect("object");
                let name = v["metadata"]["name"].as_str().expect("name").to_string();
                if st.slices.contains_key(&name) {
                    return status(StatusCode::CONFLICT, "AlreadyExists");
                }
                st.rv += 1;
                v["metadata"]["resourceVersion"] = json!(st.rv.to_string());
                st.slices.insert(name, v.clone());
                respond(StatusCode::CREATED, &v)
            }
            Method::PUT => {
                let mut v = obj.expect("object");
                if std::mem::take(&mut st.conflict_next_replace) {
                    st.rv += 1;
                    let rv = st.rv.to_string();
                    let other = st.slices.get_mut(&name).expect("exists");
                    other["metadata"]["resourceVersion"] = json!(rv);
                    other["spec"]["pool"]["generation"] = json!(10);
                }
                let Some(old) = st.slices.get(&name) else {
                    return status(StatusCode::NOT_FOUND, "NotFound");
                };
                if old["metadata"]["resourceVersion"] != v["metadata"]["resourceVersion"] {
                    return status(StatusCode::CONFLICT, "Conflict");
                }
                st.rv += 1;
                v["metadata"]["resourceVersion"] = json!(st.rv.to_string());
                st.slices.insert(name, v.clone());
                respond(StatusCode::OK, &v)
            }
            Method::DELETE => match st.slices.remove(&name) {
                Some(v) => respond(StatusCode::OK, &v),
                None => status(StatusCode::NOT_FOUND, "NotFound"),
            },
            _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
        }
    }
}

fn target() -> SliceTarget {
    SliceTarget::new(DRIVER_NAME, "node-a").expect("target")
}

fn vfs(n: u8) -> Vec<VfDevice> {
    (0..n).map(vf).collect()
}

async fn wait_published(p: &Publisher, generation: i64) {
    let mut rx = p.published();
    tokio::time::timeout(
        Duration::from_secs(10),
        rx.wait_for(|g| *g == Some(generation)),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "generation {generation} not published; now {:?}",
            *p.published().borrow()
        )
    })
    .expect("writer alive");
}

async fn wait_log(fake: &Fake, what: &str) {
    for _ in 0..1000 {
        if fake.log().iter().any(|l| l == what) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("no request {what:?} in {:?}", fake.log());
}

fn writes(fake: &Fake) -> Vec<String> {
    fake.log()
        .into_iter()
        .filter(|l| !l.starts_with("GET"))
        .collect()
}

#[tokio::test]
async fn first_update_creates_the_pool_at_generation_1() {
    let fake = Fake::new();
    let p = Publisher::spawn(fake.client(), target());
    p.update(vfs(3));
    wait_published(&p, 1).await;
    assert_eq!(writes(&fake), ["POST  3"]);
    let s = &fake.slices()["node-a-sriov.arm.com-0"];
    assert_eq!(
        s["spec"]["pool"],
        json!({"name": "node-a", "generation": 1, "resourceSliceCount": 1})
    );
    assert_eq!(devices_in(s), 3);
}

#[tokio::test]
async fn a_change_replaces_with_the_next_generation_and_no_change_writes_nothing() {
    let fake = Fake::new();
    let p = Publisher::spawn(fake.client(), target());
    p.update(vfs(3));
    wait_published(&p, 1).await;
    let mut sick = vfs(3);
    sick[1].healthy = false;
    p.update(sick.clone());
    wait_published(&p, 2).await;
    let s = &fake.slices()["node-a-sriov.arm.com-0"];
    assert_eq!(s["spec"]["pool"]["generation"], 2);
    assert_eq!(
        s["spec"]["devices"][1]["taints"][0]["key"],
        "sriov.arm.com/unhealthy"
    );
    // The same list again (and a server-set taint time) is not a change.
    fake.state
        .lock()
        .expect("lock")
        .slices
        .get_mut("node-a-sriov.arm.com-0")
        .expect("slice")["spec"]["devices"][1]["taints"][0]["timeAdded"] =
        json!("2026-01-01T00:00:00Z");
    p.update(sick);
    let before = writes(&fake).len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(writes(&fake).len(), before, "{:?}", fake.log());
    assert_eq!(*p.published().borrow(), Some(2));
    assert_eq!(writes(&fake), ["POST  3", "PUT node-a-sriov.arm.com-0 3"]);
}

#[tokio::test]
async fn changes_racing_a_write_in_flight_coalesce_into_the_newest() {
    let fake = Fake::new();
    let held = fake
        .gate
        .clone()
        .acquire_many_owned(GATE)
        .await
        .expect("hold");
    let p = Publisher::spawn(fake.client(), target());
    p.update(vfs(1));
    wait_log(&fake, "POST  1").await;
    // Two changes while the first write is held: only the newest may be written next.
    p.update(vfs(2));
    p.update(vfs(3));
    drop(held);
    wait_published(&p, 2).await;
    assert_eq!(writes(&fake), ["POST  1", "PUT node-a-sriov.arm.com-0 3"]);
    assert_eq!(devices_in(&fake.slices()["node-a-sriov.arm.com-0"]), 3);
}

#[tokio::test]
async fn a_conflict_is_retried_from_a_fresh_read_above_the_other_writers_generation() {
    let fake = Fake::new();
    let p = Publisher::spawn(fake.client(), target());
    p.update(vfs(2));
    wait_published(&p, 1).await;
    fake.state.lock().expect("lock").conflict_next_replace = true;
    p.update(vfs(4));
    wait_published(&p, 11).await;
    assert_eq!(
        p.failed_syncs(),
        0,
        "retried at once from a fresh read, not after a back-off"
    );
    let log = fake.log();
    assert_eq!(
        log[2..],
        [
            "GET",
            "PUT node-a-sriov.arm.com-0 4",
            "GET",
            "PUT node-a-sriov.arm.com-0 4"
        ],
        "{log:?}"
    );
    let s = &fake.slices()["node-a-sriov.arm.com-0"];
    assert_eq!(
        (s["spec"]["pool"]["generation"].clone(), devices_in(s)),
        (json!(11), 4)
    );
}

#[tokio::test]
async fn a_create_racing_another_writer_reads_again_and_replaces() {
    let fake = Fake::new();
    let held = fake
        .gate
        .clone()
        .acquire_many_owned(GATE)
        .await
        .expect("hold");
    let p = Publisher::spawn(fake.client(), target());
    p.update(vfs(2));
    wait_log(&fake, "POST  2").await;
    // Someone else creates the slice while our create is in flight.
    let other = build_slices(&target(), &vfs(1), 5).remove(0);
    fake.insert(serde_json::to_value(&other).expect("json"));
    drop(held);
    wait_published(&p, 6).await;
    assert_eq!(p.failed_syncs(), 0);
    assert_eq!(devices_in(&fake.slices()["node-a-sriov.arm.com-0"]), 2);
}

#[tokio::test]
async fn a_server_error_is_retried_after_a_back_off() {
    let fake = Fake::new();
    fake.state.lock().expect("lock").fail_next = true;
    let p = Publisher::spawn(fake.client(), target());
    p.update(vfs(1));
    wait_published(&p, 1).await;
    assert_eq!(fake.log(), ["GET", "GET", "POST  1"]);
    assert_eq!(p.failed_syncs(), 1);
}

#[tokio::test]
async fn the_pool_grows_and_shrinks_across_slices() {
    let fake = Fake::new();
    let p = Publisher::spawn(fake.client(), target());
    p.update((0..130).map(vf).collect());
    wait_published(&p, 1).await;
    assert_eq!(fake.slices().len(), 3);
    p.update(vfs(10));
    wait_published(&p, 2).await;
    let slices = fake.slices();
    assert_eq!(
        slices.keys().collect::<Vec<_>>(),
        ["node-a-sriov.arm.com-0"]
    );
    assert_eq!(
        slices["node-a-sriov.arm.com-0"]["spec"]["pool"]["resourceSliceCount"],
        1
    );
}

#[tokio::test]
async fn shutdown_deletes_our_slices_and_only_ours() {
    let fake = Fake::new();
    let foreign = build_slices(
        &SliceTarget::new("gpu.example.com", "node-a").expect("t"),
        &[],
        1,
    )
    .remove(0);
    fake.insert(serde_json::to_value(&foreign).expect("json"));
    let p = Publisher::spawn(fake.client(), target());
    p.update((0..70).map(vf).collect());
    wait_published(&p, 1).await;
    assert_eq!(fake.slices().len(), 3);
    p.shutdown().await.expect("shutdown");
    assert_eq!(
        fake.slices().keys().collect::<Vec<_>>(),
        ["node-a-gpu.example.com-0"]
    );
}

#[tokio::test]
async fn resync_recreates_slices_someone_else_deleted() {
    let fake = Fake::new();
    let p = Publisher::spawn(fake.client(), target());
    p.update(vfs(2));
    wait_published(&p, 1).await;
    // The kubelet wipes the node's slices at its start.
    fake.state.lock().expect("lock").slices.clear();
    p.resync();
    for _ in 0..1000 {
        if !fake.slices().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(devices_in(&fake.slices()["node-a-sriov.arm.com-0"]), 2);
    assert_eq!(writes(&fake), ["POST  2", "POST  2"]);
}
