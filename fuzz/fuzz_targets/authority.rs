//! The HTTP/2 `:authority` rewriter (`AuthorityFix`) on arbitrary client bytes, read in
//! arbitrary chunks. Checked:
//!
//! - what reaches the server is the preface then whole frames within SETTINGS_MAX_FRAME_SIZE
//!   (only a truncated last frame may follow, as the client sent it);
//! - every header block it gets is one `HEADERS` and its `CONTINUATION` frames in a row,
//!   decodes without any HPACK table, stays within the header-list limit, and has no
//!   `:authority` the server would refuse;
//! - when the rewriter accepts everything, each block carries exactly the client's headers
//!   (decoded independently here), the authority aside;
//! - when it refuses, the server's side sees an error, and the client gets one GOAWAY with an
//!   HTTP/2 error code, written after the server's frames and never inside one.
//!
//! Input: one byte of options (bit 0: the target prepends the preface; bits 1-3: read size;
//! bit 4: the server has written a frame before, bit 5: only part of one), then client bytes.
#![no_main]

use std::borrow::Cow;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use kubelet_proto::authority::limits::{HEADER_TABLE_SIZE, MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE};
use kubelet_proto::AuthorityFix;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// The client's bytes in fixed-size reads, and what the server side writes.
struct Socket {
    input: Vec<u8>,
    pos: usize,
    chunk: usize,
    written: Vec<u8>,
}

impl AsyncRead for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self
            .chunk
            .min(buf.remaining())
            .min(self.input.len() - self.pos);
        let p = self.pos;
        buf.put_slice(&self.input[p..p + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.written.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

struct Frame<'a> {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: &'a [u8],
}

/// Whole frames at the front of `b`, and the bytes after them.
fn frames(mut b: &[u8]) -> (Vec<Frame<'_>>, &[u8]) {
    let mut v = Vec::new();
    while b.len() >= 9 {
        let len = (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]);
        if b.len() < 9 + len {
            break;
        }
        v.push(Frame {
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
            payload: &b[9..9 + len],
        });
        b = &b[9 + len..];
    }
    (v, b)
}

type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// The client's header blocks decoded independently, while the input is well-formed as far as
/// these simple rules go (`None` past the first thing they do not cover).
fn client_blocks(input: &[u8]) -> Option<Vec<Fields>> {
    let body = input.strip_prefix(PREFACE)?;
    let (fs, _) = frames(body);
    let mut dec = loona_hpack::Decoder::new();
    dec.set_max_allowed_table_size(HEADER_TABLE_SIZE);
    let mut out = Vec::new();
    let mut block: Option<Vec<u8>> = None;
    for f in fs {
        match (f.kind, &mut block) {
            (HEADERS, None) => {
                let mut p = f.payload;
                if f.flags & PADDED != 0 {
                    let pad = usize::from(*p.first()?);
                    p = p.get(1..p.len().checked_sub(pad)?)?;
                }
                if f.flags & PRIORITY != 0 {
                    p = p.get(5..)?;
                }
                block = Some(p.to_vec());
            }
            (CONTINUATION, Some(b)) => b.extend_from_slice(f.payload),
            (HEADERS | CONTINUATION, _) => return None,
            (_, Some(_)) => return None,
            _ => continue,
        }
        if f.flags & END_HEADERS != 0 {
            let b = block.take()?;
            let mut fields = Vec::new();
            dec.decode_with_cb(&b, |n, v| fields.push((n.into_owned(), v.into_owned())))
                .ok()?;
            out.push(fields);
        }
    }
    Some(out)
}

/// The header blocks the server got, checked for framing, and decoded with no table.
fn server_blocks(out: &[u8]) -> Vec<Fields> {
    let body = out
        .strip_prefix(PREFACE)
        .unwrap_or_else(|| panic!("the server's bytes do not start with the preface"));
    let (fs, tail) = frames(body);
    assert!(
        tail.len() < 9 + MAX_FRAME_SIZE,
        "a truncated frame too long"
    );
    let mut blocks = Vec::new();
    let mut block: Option<Vec<u8>> = None;
    for f in &fs {
        assert!(
            f.payload.len() <= MAX_FRAME_SIZE,
            "frame of {}",
            f.payload.len()
        );
        match (f.kind, &mut block) {
            (HEADERS, None) => {
                assert_eq!(f.flags & PADDED, 0, "rewritten blocks carry no padding");
                let skip = if f.flags & PRIORITY != 0 { 5 } else { 0 };
                block = Some(f.payload[skip..].to_vec());
            }
            (CONTINUATION, Some(b)) => b.extend_from_slice(f.payload),
            (k, b) => {
                assert!(b.is_none(), "frame type {k} inside a header block");
                assert_ne!(k, CONTINUATION, "CONTINUATION without HEADERS");
                continue;
            }
        }
        if f.flags & END_HEADERS != 0 {
            let b = block.take().unwrap_or_default();
            // Only literals without indexing: a decoder with no table at all decodes them.
            let mut dec = loona_hpack::Decoder::new();
            dec.set_max_allowed_table_size(0);
            let mut fields = Vec::new();
            dec.decode_with_cb(&b, |n, v| fields.push((n.into_owned(), v.into_owned())))
                .unwrap_or_else(|e| panic!("the server got a block it cannot decode: {e:?}"));
            let mut size = 0;
            for (n, v) in &fields {
                size += n.len() + v.len() + 32;
                if n == b":authority" {
                    assert!(
                        !v.is_empty() && http::uri::Authority::try_from(&v[..]).is_ok(),
                        "authority {v:?} passed"
                    );
                    size -= v.len(); // the replacement may be longer than the original
                }
            }
            assert!(
                size <= MAX_HEADER_LIST_SIZE,
                "a {size}-byte header list passed"
            );
            blocks.push(fields);
        }
    }
    blocks
}

fn rewritten(fields: Fields) -> Fields {
    fields
        .into_iter()
        .map(|(n, v)| {
            let ok = !v.is_empty() && http::uri::Authority::try_from(&v[..]).is_ok();
            let v: Cow<[u8]> = if n == b":authority" && !ok {
                Cow::Borrowed(b"localhost")
            } else {
                Cow::Owned(v)
            };
            (n, v.into_owned())
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&opts, rest)) = data.split_first() else {
        return;
    };
    let mut input = Vec::new();
    if opts & 1 != 0 {
        input.extend_from_slice(PREFACE);
        input.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    }
    input.extend_from_slice(rest);
    let chunk = [1, 7, 9, 100, 4096, 16_384, 16_393, 1 << 20][usize::from((opts >> 1) & 7)];

    let mut fix = AuthorityFix::new(Socket {
        input: input.clone(),
        pos: 0,
        chunk,
        written: Vec::new(),
    });
    let mut cx = Context::from_waker(Waker::noop());
    // The server's SETTINGS, whole or cut short.
    let server_frame: &[u8] = &[0, 0, 6, 0x4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 200];
    let mut server_wrote = 0;
    if opts & 0x10 != 0 {
        let n = if opts & 0x20 != 0 {
            10
        } else {
            server_frame.len()
        };
        match Pin::new(&mut fix).poll_write(&mut cx, &server_frame[..n]) {
            Poll::Ready(Ok(k)) => server_wrote = k,
            r => panic!("{r:?}"),
        }
    }

    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 + usize::from(opts) * 131];
    let mut refused = false;
    for _ in 0..10_000_000 {
        let mut rb = ReadBuf::new(&mut buf);
        match Pin::new(&mut fix).poll_read(&mut cx, &mut rb) {
            Poll::Ready(Ok(())) if rb.filled().is_empty() => break,
            Poll::Ready(Ok(())) => out.extend_from_slice(rb.filled()),
            Poll::Ready(Err(_)) => {
                refused = true;
                break;
            }
            Poll::Pending => panic!("pending on a socket that is always ready"),
        }
    }

    let written = fix.get_ref().written.clone();
    assert_eq!(&written[..server_wrote], &server_frame[..server_wrote]);
    let ours = &written[server_wrote..];
    if refused {
        // Closed for good: reads and writes fail from now on.
        let mut rb = ReadBuf::new(&mut buf);
        assert!(matches!(
            Pin::new(&mut fix).poll_read(&mut cx, &mut rb),
            Poll::Ready(Err(_))
        ));
        assert!(matches!(
            Pin::new(&mut fix).poll_write(&mut cx, b"x"),
            Poll::Ready(Err(_))
        ));
        if server_wrote % server_frame.len() != 0 {
            assert!(
                ours.is_empty(),
                "a GOAWAY inside one of the server's frames"
            );
        } else {
            let (fs, tail) = frames(ours);
            assert!(
                tail.is_empty() && fs.len() == 1,
                "not one whole GOAWAY: {ours:?}"
            );
            let g = &fs[0];
            assert!(g.kind == GOAWAY && g.stream == 0 && g.payload.len() >= 8);
            let code = u32::from_be_bytes([g.payload[4], g.payload[5], g.payload[6], g.payload[7]]);
            assert!([0x1, 0x6, 0x9, 0xb].contains(&code), "error code {code}");
        }
    } else {
        assert!(ours.is_empty(), "wrote {ours:?} without refusing");
    }

    if out.len() < PREFACE.len() {
        assert!(PREFACE.starts_with(&out));
        return;
    }
    let got = server_blocks(&out);
    if !refused {
        if let Some(want) = client_blocks(&input) {
            let want: Vec<Fields> = want.into_iter().map(rewritten).collect();
            assert_eq!(
                got, want,
                "the server got other headers than the client sent"
            );
        }
    }
});
