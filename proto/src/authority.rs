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
//!
//! Since this runs before the server sees a byte, it enforces the server's own limits
//! ([`limits`]) itself: no frame longer than SETTINGS_MAX_FRAME_SIZE, no header block larger than
//! SETTINGS_MAX_HEADER_LIST_SIZE either encoded or decoded, a bounded number of `CONTINUATION`
//! frames, a dynamic table no larger than SETTINGS_HEADER_TABLE_SIZE. A client that breaks one
//! gets a `GOAWAY` naming the limit and the connection is closed. What one connection holds is
//! thus a few frames' worth of bytes; and since a 13-byte frame may decode to a whole header
//! list, output is made in steps of bounded size, each counted against the task's
//! cooperative-scheduling budget like a socket read.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

mod frames;

use frames::{Frames, Violation};

/// The limits enforced on clients: the defaults of the HTTP/2 server under tonic, which the
/// daemon does not change (and which it advertises in its SETTINGS, or leaves at the protocol
/// default).
pub mod limits {
    /// SETTINGS_MAX_FRAME_SIZE: the largest frame payload a client may send.
    pub const MAX_FRAME_SIZE: usize = 16_384;
    /// SETTINGS_MAX_HEADER_LIST_SIZE: the largest header list, counted as RFC 9113 section
    /// 6.5.2 does (name + value + 32 bytes per field). Also the largest encoded header block.
    pub const MAX_HEADER_LIST_SIZE: usize = 16_384;
    /// SETTINGS_HEADER_TABLE_SIZE: the largest HPACK dynamic table a client may ask for.
    pub const HEADER_TABLE_SIZE: usize = 4_096;
    /// `CONTINUATION` frames without END_HEADERS in one header block: what the HTTP/2 server
    /// allows for the two limits above (a full list in full frames, plus a quarter, at least 5).
    pub const MAX_CONTINUATION_FRAMES: usize = 5;
}

/// How much is read from the socket at a time (only when no complete frame is left).
const READ_CHUNK: usize = 16 * 1024;

/// Decoded header bytes that cost one unit of the task's cooperative-scheduling budget (a
/// socket read costs one unit): a connection whose few bytes decode to many yields as often
/// as one that sends that many.
const DECODED_PER_UNIT: usize = 1024;

/// The server side of one connection, with client header blocks rewritten as described above.
pub struct AuthorityFix<S> {
    inner: S,
    /// Client bytes not processed yet: less than a frame, or a backlog of frames.
    raw: Vec<u8>,
    /// Rewritten bytes for the server, from `out_pos` on.
    out: Vec<u8>,
    out_pos: usize,
    eof: bool,
    frames: Frames,
    /// `raw` holds complete frames not processed yet.
    backlog: bool,
    /// Cooperative-scheduling budget units owed for work done (see `poll_read`).
    owed: usize,
    sent: SentFrames,
    closing: Option<Closing>,
}

/// A connection being closed for a [`Violation`]: the GOAWAY still to write, then the error.
struct Closing {
    goaway: Vec<u8>,
    written: usize,
    error: String,
    done: bool,
}

/// Where the server is in the frames it writes, so that a GOAWAY of ours goes between two of
/// them and never into the middle of one.
#[derive(Default)]
struct SentFrames {
    header: [u8; 9],
    header_len: usize,
    payload_left: usize,
}

impl SentFrames {
    fn advance(&mut self, mut b: &[u8]) {
        while !b.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(b.len());
                self.payload_left -= n;
                b = &b[n..];
                continue;
            }
            let n = (9 - self.header_len).min(b.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&b[..n]);
            self.header_len += n;
            b = &b[n..];
            if self.header_len == 9 {
                let h = &self.header;
                self.payload_left =
                    (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
                self.header_len = 0;
            }
        }
    }

    fn at_boundary(&self) -> bool {
        self.header_len == 0 && self.payload_left == 0
    }
}

impl<S> AuthorityFix<S> {
    /// Wrap the server side of a freshly accepted connection (nothing read from it yet).
    pub fn new(inner: S) -> Self {
        AuthorityFix {
            inner,
            raw: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            eof: false,
            frames: Frames::new(),
            backlog: false,
            owed: 0,
            sent: SentFrames::default(),
            closing: None,
        }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Process the next part of `raw` into `out` (which is empty: the server has had all
    /// output so far, so a GOAWAY names the last request it got).
    fn step(&mut self) {
        let delivered = self.frames.last_stream;
        let decoded = self.frames.decoded;
        match self.frames.process(&mut self.raw, &mut self.out) {
            Ok(more) => self.backlog = more,
            Err(v) => self.close_for(v, delivered),
        }
        self.owed += (self.frames.decoded - decoded).div_ceil(DECODED_PER_UNIT);
    }

    /// Stop forwarding and prepare the GOAWAY naming `last_stream`.
    fn close_for(&mut self, v: Violation, last_stream: u32) {
        tracing::warn!(
            reason = ?v.reason,
            detail = %v.detail,
            "HTTP/2 client broke a limit or the protocol: connection closed with GOAWAY"
        );
        self.closing = Some(Closing {
            goaway: frames::goaway(last_stream, &v),
            written: 0,
            error: format!("HTTP/2 from client: {}", v.detail),
            done: false,
        });
        self.raw = Vec::new();
        self.out = Vec::new();
        self.out_pos = 0;
    }
}

impl<S: AsyncWrite + Unpin> AuthorityFix<S> {
    /// Write the GOAWAY (only between two frames of the server's, and only as far as the socket
    /// takes it now: a client that does not read gets none), shut our side down, and fail.
    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(c) = self.closing.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        if !c.done {
            c.done = true;
            if self.sent.at_boundary() {
                while c.written < c.goaway.len() {
                    match Pin::new(&mut self.inner).poll_write(cx, &c.goaway[c.written..]) {
                        Poll::Ready(Ok(n)) if n > 0 => c.written += n,
                        _ => break,
                    }
                }
                let _ = Pin::new(&mut self.inner).poll_shutdown(cx);
            }
        }
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::InvalidData,
            c.error.clone(),
        )))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.closing.is_some() {
                return this.poll_close(cx);
            }
            // Pay for the work done before handing its result on: yield to other tasks when
            // the budget is spent, as socket reads do.
            while this.owed > 0 {
                let coop = ready!(tokio::task::coop::poll_proceed(cx));
                coop.made_progress();
                this.owed -= 1;
            }
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
            if this.backlog {
                // Frames already read: process the next part, for one more unit.
                this.owed += 1;
                this.step();
                continue;
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
            let mut tmp = [0u8; READ_CHUNK];
            let mut rb = ReadBuf::new(&mut tmp);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    if rb.filled().is_empty() {
                        this.eof = true;
                    } else {
                        this.raw.extend_from_slice(rb.filled());
                        this.step();
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
        let this = &mut *self;
        if this.closing.is_some() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            this.sent.advance(&buf[..n]);
        }
        r
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
        let this = &mut *self;
        if this.closing.is_some() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(mut n)) = r {
            for b in bufs {
                let k = n.min(b.len());
                this.sent.advance(&b[..k]);
                n -= k;
                if n == 0 {
                    break;
                }
            }
        }
        r
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
