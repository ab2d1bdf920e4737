//! A client that sends the socket path as `:authority` (as grpc-go's `unix://` dialer and the
//! kubelet's plugin watcher do) is served when the server wraps its connections in
//! `AuthorityFix`, and refused without it.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use kubelet_proto::pluginregistration::registration_server::{Registration, RegistrationServer};
use kubelet_proto::pluginregistration::{
    InfoRequest, PluginInfo, RegistrationStatus, RegistrationStatusResponse,
};
use kubelet_proto::AuthorityFix;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tonic::{Request, Response, Status};

struct Reg;

#[tonic::async_trait]
impl Registration for Reg {
    async fn get_info(&self, _: Request<InfoRequest>) -> Result<Response<PluginInfo>, Status> {
        Ok(Response::new(PluginInfo {
            r#type: "DevicePlugin".into(),
            name: "x/y".into(),
            endpoint: "/e".into(),
            supported_versions: vec!["v1beta1".into()],
        }))
    }
    async fn notify_registration_status(
        &self,
        _: Request<RegistrationStatus>,
    ) -> Result<Response<RegistrationStatusResponse>, Status> {
        Ok(Response::new(RegistrationStatusResponse {}))
    }
}

/// Accepted connections as a stream, each passed through `wrap`.
fn incoming<T: Send + 'static>(
    l: UnixListener,
    wrap: impl Fn(UnixStream) -> T + Send + 'static,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<T>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let r = l.accept().await.map(|(s, _)| wrap(s));
            if tx.send(r).await.is_err() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

fn literal(out: &mut Vec<u8>, n: &str, v: &str) {
    out.push(0);
    out.push(n.len() as u8);
    out.extend_from_slice(n.as_bytes());
    out.push(v.len() as u8);
    out.extend_from_slice(v.as_bytes());
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let l = payload.len();
    out.extend_from_slice(&[(l >> 16) as u8, (l >> 8) as u8, l as u8, kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// One raw HTTP/2 GetInfo call with the given authority; true when the server answered with
/// response HEADERS (and no RST_STREAM) on stream 1.
async fn raw_get_info(sock: &Path, authority: &str, split_with_continuation: bool) -> bool {
    let mut s = UnixStream::connect(sock).await.unwrap();
    let mut req = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(&mut req, 0x4, 0, 0, &[]); // SETTINGS
    let mut block = Vec::new();
    literal(&mut block, ":method", "POST");
    literal(&mut block, ":scheme", "http");
    literal(
        &mut block,
        ":path",
        "/pluginregistration.Registration/GetInfo",
    );
    literal(&mut block, ":authority", authority);
    literal(&mut block, "content-type", "application/grpc");
    literal(&mut block, "te", "trailers");
    if split_with_continuation {
        let (a, b) = block.split_at(20);
        frame(&mut req, 0x1, 0, 1, a);
        frame(&mut req, 0x9, 0x4, 1, b);
    } else {
        frame(&mut req, 0x1, 0x4, 1, &block);
    }
    frame(&mut req, 0x0, 0x1, 1, &[0, 0, 0, 0, 0]); // empty gRPC message, END_STREAM
    s.write_all(&req).await.unwrap();
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let mut tmp = [0u8; 4096];
        let n = match tokio::time::timeout_at(deadline, s.read(&mut tmp)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return false,
        };
        buf.extend_from_slice(&tmp[..n]);
        let mut off = 0;
        while buf.len() >= off + 9 {
            let len = (usize::from(buf[off]) << 16)
                | (usize::from(buf[off + 1]) << 8)
                | usize::from(buf[off + 2]);
            if buf.len() < off + 9 + len {
                break;
            }
            let kind = buf[off + 3];
            let stream =
                u32::from_be_bytes([buf[off + 5], buf[off + 6], buf[off + 7], buf[off + 8]]);
            if stream == 1 && kind == 0x3 {
                return false; // RST_STREAM
            }
            if stream == 1 && kind == 0x1 {
                return true; // response HEADERS
            }
            off += 9 + len;
        }
    }
}

fn serve(dir: &Path, fix: bool) -> std::path::PathBuf {
    let p = dir.join(if fix { "fixed.sock" } else { "plain.sock" });
    let l = UnixListener::bind(&p).unwrap();
    let router = tonic::transport::Server::builder().add_service(RegistrationServer::new(Reg));
    if fix {
        tokio::spawn(router.serve_with_incoming(incoming(l, AuthorityFix::new)));
    } else {
        tokio::spawn(router.serve_with_incoming(incoming(l, |s| s)));
    }
    p
}

#[tokio::test]
async fn socket_path_authority_is_served_through_the_fix() {
    let d = tempfile::tempdir().unwrap();
    let plain = serve(d.path(), false);
    let fixed = serve(d.path(), true);
    let encoded = "%2Fvar%2Flib%2Fkubelet%2Fplugins_registry%2Fx.sock";
    assert!(
        !raw_get_info(&plain, encoded, false).await,
        "the bare HTTP/2 server refuses it (the reason for the fix)"
    );
    assert!(raw_get_info(&fixed, encoded, false).await);
    assert!(
        raw_get_info(&fixed, "/var/lib/kubelet/x.sock", true).await,
        "also across CONTINUATION frames"
    );
    assert!(raw_get_info(&fixed, "localhost", false).await);
    // A normal tonic client (HPACK with a dynamic table, Huffman) still works through the fix.
    let ch = kubelet_proto::connect_uds(&fixed).await.unwrap();
    let mut c = kubelet_proto::pluginregistration::registration_client::RegistrationClient::new(ch);
    for _ in 0..3 {
        let info = c.get_info(InfoRequest {}).await.unwrap().into_inner();
        assert_eq!(info.name, "x/y");
    }
}
