//! Serving gRPC on a unix socket to clients that send the socket path as the HTTP/2
//! `:authority`.
//!
//! grpc-go clients dialing `unix:///path` (the kubelet's plugin watcher among them) send the
//! percent-encoded socket path (`%2Fvar%2Flib%2Fkubelet%2F...`) as `:authority`. The HTTP/2
//! server under tonic rejects such a request header block as malformed (`RST_STREAM`
//! `PROTOCOL_ERROR`), so the kubelet could never call `GetInfo`. [`AuthorityFix`] wraps the
//! server side of a connection and rewrites the client's header blocks on the way in: every
//! `HEADERS`/`CONTINUATION` sequence is HPACK-decoded with the client's dynamic table, an
//! `:authority` that is not a valid host is replaced by `localhost` (the authority has no meaning
//! on a unix socket), and the block is re-encoded as literals without indexing, so the server's
//! decoder table is never used. All other frames pass through untouched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE_LEN: usize = 24;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// The smallest SETTINGS_MAX_FRAME_SIZE a peer may have: always safe to emit.
const MAX_FRAME: usize = 16_384;

/// A header block being collected across `HEADERS` + `CONTINUATION` frames.
struct Pending {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
}

/// The server side of one connection, with client header blocks rewritten as described above.
pub struct AuthorityFix<S> {
    inner: S,
    raw: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    preface_done: bool,
    eof: bool,
    pending: Option<Pending>,
    decoder: loona_hpack::Decoder<'static>,
}

impl<S> AuthorityFix<S> {
    pub fn new(inner: S) -> Self {
        AuthorityFix {
            inner,
            raw: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            preface_done: false,
            eof: false,
            pending: None,
            decoder: loona_hpack::Decoder::new(),
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Move every complete unit of `raw` (the preface, whole frames) to `out`, rewriting header
    /// blocks. Returns an error for a header block that cannot be decoded: the connection is
    /// broken then anyway.
    fn process(&mut self) -> io::Result<()> {
        if !self.preface_done {
            if self.raw.len() < PREFACE_LEN {
                return Ok(());
            }
            self.out.extend(self.raw.drain(..PREFACE_LEN));
            self.preface_done = true;
        }
        loop {
            if self.raw.len() < 9 {
                return Ok(());
            }
            let len = (usize::from(self.raw[0]) << 16)
                | (usize::from(self.raw[1]) << 8)
                | usize::from(self.raw[2]);
            if self.raw.len() < 9 + len {
                return Ok(());
            }
            let kind = self.raw[3];
            let flags = self.raw[4];
            let stream = u32::from_be_bytes([self.raw[5], self.raw[6], self.raw[7], self.raw[8]])
                & 0x7fff_ffff;
            match kind {
                FRAME_HEADERS => {
                    let payload = &self.raw[9..9 + len];
                    let (mut p, mut end) = (0usize, payload.len());
                    if flags & FLAG_PADDED != 0 {
                        let pad = usize::from(
                            *payload.first().ok_or_else(|| bad("empty padded HEADERS"))?,
                        );
                        p = 1;
                        end = end
                            .checked_sub(pad)
                            .filter(|e| *e >= p)
                            .ok_or_else(|| bad("HEADERS padding too long"))?;
                    }
                    let priority = if flags & FLAG_PRIORITY != 0 {
                        let pr: [u8; 5] = payload
                            .get(p..p + 5)
                            .and_then(|s| s.try_into().ok())
                            .ok_or_else(|| bad("short HEADERS priority"))?;
                        p += 5;
                        Some(pr)
                    } else {
                        None
                    };
                    let block = payload
                        .get(p..end)
                        .ok_or_else(|| bad("bad HEADERS"))?
                        .to_vec();
                    self.pending = Some(Pending {
                        stream,
                        end_stream: flags & FLAG_END_STREAM != 0,
                        priority,
                        block,
                    });
                    self.raw.drain(..9 + len);
                    if flags & FLAG_END_HEADERS != 0 {
                        self.finish()?;
                    }
                }
                FRAME_CONTINUATION
                    if self.pending.as_ref().is_some_and(|pd| pd.stream == stream) =>
                {
                    if let Some(pd) = self.pending.as_mut() {
                        pd.block.extend_from_slice(&self.raw[9..9 + len]);
                    }
                    self.raw.drain(..9 + len);
                    if flags & FLAG_END_HEADERS != 0 {
                        self.finish()?;
                    }
                }
                _ => self.out.extend(self.raw.drain(..9 + len)),
            }
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        let Some(pd) = self.pending.take() else {
            return Ok(());
        };
        let headers = self
            .decoder
            .decode(&pd.block)
            .map_err(|e| bad(&format!("HPACK: {e}")))?;
        let mut block = Vec::with_capacity(pd.block.len() + 32);
        for (name, value) in &headers {
            let value: &[u8] = if name == b":authority" && !valid_authority(value) {
                b"localhost"
            } else {
                value
            };
            encode_literal(&mut block, name, value);
        }
        let mut first = true;
        let mut chunks = block.chunks(MAX_FRAME - 5).peekable();
        if block.is_empty() {
            // An empty block is legal (all size updates): keep it as one frame.
            self.frame(
                FRAME_HEADERS,
                header_flags(&pd, true),
                pd.stream,
                &pd.priority.map(|p| p.to_vec()).unwrap_or_default(),
            );
            return Ok(());
        }
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            if first {
                let mut payload = pd.priority.map(|p| p.to_vec()).unwrap_or_default();
                payload.extend_from_slice(chunk);
                self.frame(FRAME_HEADERS, header_flags(&pd, last), pd.stream, &payload);
                first = false;
            } else {
                self.frame(
                    FRAME_CONTINUATION,
                    if last { FLAG_END_HEADERS } else { 0 },
                    pd.stream,
                    chunk,
                );
            }
        }
        Ok(())
    }

    fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = payload.len();
        self.out
            .extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
        self.out.extend_from_slice(&stream.to_be_bytes());
        self.out.extend_from_slice(payload);
    }
}

fn header_flags(pd: &Pending, end_headers: bool) -> u8 {
    let mut f = 0;
    if pd.end_stream {
        f |= FLAG_END_STREAM;
    }
    if end_headers {
        f |= FLAG_END_HEADERS;
    }
    if pd.priority.is_some() {
        f |= FLAG_PRIORITY;
    }
    f
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("HTTP/2 from client: {msg}"),
    )
}

/// What the HTTP/2 server accepts as an authority (the same parser it uses).
fn valid_authority(v: &[u8]) -> bool {
    !v.is_empty() && http::uri::Authority::try_from(v).is_ok()
}

/// HPACK literal header field without indexing, new name, no Huffman coding (RFC 7541 6.2.2).
fn encode_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    encode_int(out, name.len(), 7, 0x00);
    out.extend_from_slice(name);
    encode_int(out, value.len(), 7, 0x00);
    out.extend_from_slice(value);
}

/// HPACK integer with an N-bit prefix (RFC 7541 5.1).
fn encode_int(out: &mut Vec<u8>, mut v: usize, prefix: u8, first: u8) {
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

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.out_pos < this.out.len() {
                let n = (this.out.len() - this.out_pos).min(buf.remaining());
                buf.put_slice(&this.out[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.out.len() {
                    this.out.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                // Whatever incomplete bytes are left go through as they are: the server reports
                // the truncated frame.
                if !this.raw.is_empty() {
                    this.out.append(&mut this.raw);
                    continue;
                }
                return Poll::Ready(Ok(()));
            }
            let mut tmp = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut tmp);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    if rb.filled().is_empty() {
                        this.eof = true;
                    } else {
                        this.raw.extend_from_slice(rb.filled());
                        this.process()?;
                    }
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected
    for AuthorityFix<S>
{
    type ConnectInfo = S::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_hpack_integers() {
        let mut v = Vec::new();
        encode_int(&mut v, 10, 5, 0);
        assert_eq!(v, [10]);
        v.clear();
        encode_int(&mut v, 1337, 5, 0);
        assert_eq!(v, [31, 154, 10]); // RFC 7541 C.1.2
    }

    #[test]
    fn tells_valid_authorities() {
        assert!(valid_authority(b"localhost"));
        assert!(valid_authority(b"[::1]:50051"));
        assert!(!valid_authority(b"%2Ftmp%2Fx.sock"));
        assert!(!valid_authority(b"/tmp/x.sock"));
        assert!(!valid_authority(b""));
    }
}
