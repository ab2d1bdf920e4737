//! A registration server behind `AuthorityFix` on a unix socket, and a raw HTTP/2 client that
//! writes frames byte by byte as a test wants them and reads the server's frames back.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use kubelet_proto::pluginregistration::registration_server::{Registration, RegistrationServer};
use kubelet_proto::pluginregistration::{
    InfoRequest, PluginInfo, RegistrationStatus, RegistrationStatusResponse,
};
use kubelet_proto::AuthorityFix;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tonic::{Request, Response, Status};

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const CONTINUATION: u8 = 0x9;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

pub const PROTOCOL_ERROR: u32 = 0x1;
pub const FRAME_SIZE_ERROR: u32 = 0x6;
pub const COMPRESSION_ERROR: u32 = 0x9;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

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

/// Serve the registration service on `<dir>/fixed.sock` (through `AuthorityFix`) or
/// `<dir>/plain.sock` (without), with the server's default settings as the daemon uses them.
pub fn serve(dir: &Path, fix: bool) -> PathBuf {
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

/// HPACK integer with an N-bit prefix (RFC 7541 5.1).
pub fn hpack_int(out: &mut Vec<u8>, mut v: usize, prefix: u8, first: u8) {
    let max = (1usize << prefix) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128 + 128) as u8);
        v /= 128;
    }
    out.push(v as u8);
}

/// Literal header field without indexing, new name.
pub fn literal(out: &mut Vec<u8>, n: &str, v: &str) {
    out.push(0);
    hpack_int(out, n.len(), 7, 0);
    out.extend_from_slice(n.as_bytes());
    hpack_int(out, v.len(), 7, 0);
    out.extend_from_slice(v.as_bytes());
}

/// Literal header field with incremental indexing, new name: it lands in the dynamic table
/// at index 62.
pub fn literal_indexed(out: &mut Vec<u8>, n: &str, v: &str) {
    out.push(0x40);
    hpack_int(out, n.len(), 7, 0);
    out.extend_from_slice(n.as_bytes());
    hpack_int(out, v.len(), 7, 0);
    out.extend_from_slice(v.as_bytes());
}

/// Indexed header field.
pub fn indexed(out: &mut Vec<u8>, index: usize) {
    hpack_int(out, index, 7, 0x80);
}

pub fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let l = payload.len();
    out.extend_from_slice(&[(l >> 16) as u8, (l >> 8) as u8, l as u8, kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// The request header block of a GetInfo call with the given authority.
pub fn get_info_block(authority: &str) -> Vec<u8> {
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
    block
}

/// The connection preface and an empty SETTINGS frame.
pub fn preface() -> Vec<u8> {
    let mut v = PREFACE.to_vec();
    frame(&mut v, SETTINGS, 0, 0, &[]);
    v
}

/// An empty gRPC message ending stream `stream`.
pub fn empty_message(out: &mut Vec<u8>, stream: u32) {
    frame(out, 0x0, END_STREAM, stream, &[0, 0, 0, 0, 0]);
}

/// One frame the server sent.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// (last stream, error code, debug text) of a GOAWAY.
    pub fn goaway(&self) -> (u32, u32, String) {
        let p = &self.payload;
        (
            u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff,
            u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
            String::from_utf8_lossy(&p[8..]).into_owned(),
        )
    }
}

/// What the server did with a connection: its frames, and whether it closed the connection
/// (EOF or reset) before `timeout`.
#[derive(Debug)]
pub struct Outcome {
    pub frames: Vec<Frame>,
    pub closed: bool,
}

impl Outcome {
    pub fn goaway(&self) -> Option<(u32, u32, String)> {
        self.frames
            .iter()
            .find(|f| f.kind == GOAWAY)
            .map(Frame::goaway)
    }

    /// Whether the server answered `stream` with response HEADERS.
    pub fn answered(&self, stream: u32) -> bool {
        self.frames
            .iter()
            .any(|f| f.kind == HEADERS && f.stream == stream)
    }

    pub fn reset(&self, stream: u32) -> bool {
        self.frames
            .iter()
            .any(|f| f.kind == RST_STREAM && f.stream == stream)
    }
}

/// Send `bytes` (ignoring a write the server refuses by closing), then collect the server's
/// frames until it closes the connection or `timeout` passes.
pub async fn exchange(sock: &Path, bytes: &[u8], timeout: Duration) -> Outcome {
    exchange_until(sock, bytes, timeout, |_| false).await
}

/// [`exchange`], returning early (`closed` false) once the frames so far satisfy `done`.
pub async fn exchange_until(
    sock: &Path,
    bytes: &[u8],
    timeout: Duration,
    done: impl Fn(&[Frame]) -> bool,
) -> Outcome {
    let mut s = UnixStream::connect(sock).await.unwrap();
    let (mut rd, mut wr) = s.split();
    let deadline = tokio::time::Instant::now() + timeout;
    let write = async {
        let _ = wr.write_all(bytes).await;
        std::future::pending::<()>().await
    };
    let read = async {
        let mut buf = Vec::new();
        let mut tmp = vec![0u8; 64 * 1024];
        loop {
            match tokio::time::timeout_at(deadline, rd.read(&mut tmp)).await {
                Ok(Ok(n)) if n > 0 => {
                    buf.extend_from_slice(&tmp[..n]);
                    if done(&parse_frames(&buf)) {
                        return (buf, false);
                    }
                }
                Ok(_) => return (buf, true),
                Err(_) => return (buf, false),
            }
        }
    };
    let (buf, closed) = tokio::select! {
        r = read => r,
        _ = write => unreachable!(),
    };
    Outcome {
        frames: parse_frames(&buf),
        closed,
    }
}

pub fn parse_frames(mut buf: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    while buf.len() >= 9 {
        let len = (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
        if buf.len() < 9 + len {
            break;
        }
        frames.push(Frame {
            kind: buf[3],
            flags: buf[4],
            stream: u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff,
            payload: buf[9..9 + len].to_vec(),
        });
        buf = &buf[9 + len..];
    }
    frames
}

/// A raw client connection for exchanges in several steps.
pub struct Conn {
    s: UnixStream,
    buf: Vec<u8>,
    /// The server closed the connection.
    pub closed: bool,
}

impl Conn {
    pub async fn open(sock: &Path) -> Conn {
        Conn {
            s: UnixStream::connect(sock).await.unwrap(),
            buf: Vec::new(),
            closed: false,
        }
    }

    /// Write `bytes`; a server that closed the connection meanwhile is not an error here.
    pub async fn send(&mut self, bytes: &[u8]) {
        let _ = self.s.write_all(bytes).await;
    }

    /// Read until the frames so far satisfy `done`, the server closes, or `timeout` passes;
    /// returns every frame received on this connection so far.
    pub async fn read_until(
        &mut self,
        timeout: Duration,
        done: impl Fn(&[Frame]) -> bool,
    ) -> Vec<Frame> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tmp = vec![0u8; 64 * 1024];
        while !self.closed && !done(&parse_frames(&self.buf)) {
            match tokio::time::timeout_at(deadline, self.s.read(&mut tmp)).await {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&tmp[..n]),
                Ok(_) => self.closed = true,
                Err(_) => break,
            }
        }
        parse_frames(&self.buf)
    }
}
