//! An in-memory Kubernetes API server over plain HTTP on a loopback port, for the DRA mode's
//! process tests: just what the driver uses. ResourceSlices (list by the
//! `spec.driver,spec.nodeName` field selector, create, replace with a resourceVersion check,
//! delete), ResourceClaims and Nodes (get). It runs on a thread of its own, so a test that
//! blocks (waiting for the daemon to exit) never stalls the daemon's API calls, and it can
//! listen inside a network namespace (the daemon's, for link tests).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

const SLICES: &str = "/apis/resource.k8s.io/v1/resourceslices";
const CLAIMS: &str = "/apis/resource.k8s.io/v1/namespaces/";
const NODES: &str = "/api/v1/nodes/";

#[derive(Default)]
struct State {
    slices: BTreeMap<String, Value>,
    claims: BTreeMap<(String, String), Value>,
    nodes: BTreeMap<String, Value>,
    rv: u64,
    /// "METHOD path" per request.
    log: Vec<String>,
}

/// The running server; it stops with the test process.
#[derive(Clone)]
pub struct FakeApi {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

fn respond(code: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(body).unwrap_or_default(),
    )));
    *r.status_mut() = code;
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn status(code: StatusCode, reason: &str) -> Response<Full<Bytes>> {
    respond(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("fake api: {reason}"), "reason": reason, "code": code.as_u16()}),
    )
}

/// `%XX` decoding of a query value.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl FakeApi {
    /// Start on 127.0.0.1 of this process's network namespace, or of the one at `netns`.
    pub fn start(netns: Option<&Path>) -> FakeApi {
        let bind = || std::net::TcpListener::bind("127.0.0.1:0");
        let listener = match netns {
            Some(ns) => sriov_host::netns::run_in(ns, bind).unwrap().unwrap(),
            None => bind().unwrap(),
        };
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let api = FakeApi {
            addr,
            state: Arc::default(),
        };
        let server = api.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((conn, _)) = listener.accept().await else {
                        continue;
                    };
                    let api = server.clone();
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            let api = api.clone();
                            async move { Ok::<_, Infallible>(api.serve(req).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(conn), svc)
                            .await;
                    });
                }
            });
        });
        api
    }

    /// A kubeconfig naming this server, written into `dir`.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let p = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\nusers:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\n",
            self.addr
        );
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Add a Node object `name` with `uid`.
    pub fn add_node(&self, name: &str, uid: &str) {
        self.state.lock().unwrap().nodes.insert(
            name.into(),
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "uid": uid}}),
        );
    }

    /// Add (or replace) a ResourceClaim object.
    pub fn put_claim(&self, claim: Value) {
        let ns = claim["metadata"]["namespace"].as_str().unwrap().to_string();
        let name = claim["metadata"]["name"].as_str().unwrap().to_string();
        self.state.lock().unwrap().claims.insert((ns, name), claim);
    }

    /// The ResourceSlices stored, by name.
    pub fn slices(&self) -> BTreeMap<String, Value> {
        self.state.lock().unwrap().slices.clone()
    }

    /// Delete every slice (what the kubelet does at its start).
    pub fn wipe_slices(&self) {
        self.state.lock().unwrap().slices.clear();
    }

    /// Every device of every slice, by device name.
    pub fn devices(&self) -> BTreeMap<String, Value> {
        self.slices()
            .values()
            .flat_map(|s| s["spec"]["devices"].as_array().cloned().unwrap_or_default())
            .filter_map(|d| Some((d["name"].as_str()?.to_string(), d)))
            .collect()
    }

    /// The requests so far, "METHOD path".
    pub fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }

    /// Wait until the devices satisfy `pred`; they are returned.
    pub async fn wait_devices(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&BTreeMap<String, Value>) -> bool,
    ) -> BTreeMap<String, Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let d = self.devices();
            if pred(&d) {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "slices never got there within {timeout:?}; now: {:#}",
                json!(self.slices())
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn serve(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = req.uri().query().map(decode).unwrap_or_default();
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return status(StatusCode::BAD_REQUEST, "BadRequest"),
        };
        let obj: Option<Value> = serde_json::from_slice(&body).ok();
        let mut st = self.state.lock().unwrap();
        st.log.push(format!("{method} {path}"));
        if let Some(name) = path.strip_prefix(NODES) {
            return match st.nodes.get(name) {
                Some(n) if method == Method::GET => respond(StatusCode::OK, n),
                _ => status(StatusCode::NOT_FOUND, "NotFound"),
            };
        }
        if let Some(rest) = path.strip_prefix(CLAIMS) {
            let parts: Vec<&str> = rest.split('/').collect();
            if let [ns, "resourceclaims", name] = parts[..] {
                if method == Method::GET {
                    if let Some(c) = st.claims.get(&(ns.to_string(), name.to_string())) {
                        return respond(StatusCode::OK, c);
                    }
                }
            }
            return status(StatusCode::NOT_FOUND, "NotFound");
        }
        let Some(rest) = path.strip_prefix(SLICES) else {
            return status(StatusCode::NOT_FOUND, "NotFound");
        };
        let name = rest.trim_start_matches('/').to_string();
        match (method, name.is_empty()) {
            (Method::GET, true) => {
                let sel = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("fieldSelector="))
                    .unwrap_or("")
                    .to_string();
                let items: Vec<Value> = st
                    .slices
                    .values()
                    .filter(|s| {
                        let d = s["spec"]["driver"].as_str().unwrap_or("");
                        let n = s["spec"]["nodeName"].as_str().unwrap_or("");
                        sel.is_empty() || sel == format!("spec.driver={d},spec.nodeName={n}")
                    })
                    .cloned()
                    .collect();
                respond(
                    StatusCode::OK,
                    &json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSliceList",
                        "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
                )
            }
            (Method::POST, true) => {
                let Some(mut v) = obj else {
                    return status(StatusCode::BAD_REQUEST, "BadRequest");
                };
                let name = v["metadata"]["name"].as_str().unwrap_or("").to_string();
                if st.slices.contains_key(&name) {
                    return status(StatusCode::CONFLICT, "AlreadyExists");
                }
                st.rv += 1;
                v["metadata"]["resourceVersion"] = json!(st.rv.to_string());
                st.slices.insert(name, v.clone());
                respond(StatusCode::CREATED, &v)
            }
            (Method::PUT, false) => {
                let Some(mut v) = obj else {
                    return status(StatusCode::BAD_REQUEST, "BadRequest");
                };
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
            (Method::DELETE, false) => match st.slices.remove(&name) {
                Some(v) => respond(StatusCode::OK, &v),
                None => status(StatusCode::NOT_FOUND, "NotFound"),
            },
            _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
        }
    }
}
