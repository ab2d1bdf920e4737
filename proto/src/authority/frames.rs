//! The synchronous core of [`super::AuthorityFix`]: split the client's bytes into frames, collect
//! and rewrite header blocks, and enforce the limits the HTTP/2 server advertises, so that no
//! input makes us buffer or decode more than a bounded amount.

use std::borrow::Cow;

use super::limits::{
    HEADER_TABLE_SIZE, MAX_CONTINUATION_FRAMES, MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE,
};

pub(super) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADER_LEN: usize = 9;
/// How much output one [`Frames::process`] call makes, give or take a frame or a header block.
pub(super) const OUT_BUDGET: usize = 16 * 1024;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_PUSH_PROMISE: u8 = 0x5;
const FRAME_GOAWAY: u8 = 0x7;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

/// HTTP/2 error codes (RFC 9113 section 7) we close connections with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Reason {
    ProtocolError = 0x1,
    FrameSizeError = 0x6,
    CompressionError = 0x9,
    EnhanceYourCalm = 0xb,
}

/// Why a client's connection is closed: the GOAWAY error code and its debug text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub reason: Reason,
    pub detail: String,
}

fn violation(reason: Reason, detail: impl Into<String>) -> Violation {
    Violation {
        reason,
        detail: detail.into(),
    }
}

/// A header block being collected across `HEADERS` + `CONTINUATION` frames.
struct Pending {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
    /// `CONTINUATION` frames without END_HEADERS so far.
    continuations: usize,
}

/// Client-to-server frame state of one connection.
pub(super) struct Frames {
    preface_done: bool,
    pending: Option<Pending>,
    decoder: loona_hpack::Decoder<'static>,
    /// The highest stream whose request headers went to the server (for GOAWAY).
    pub last_stream: u32,
    /// Header bytes decoded so far (name and value lengths): the work rewriting does.
    pub decoded: usize,
}

impl Frames {
    pub fn new() -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        // A dynamic table size update above what the server advertises is a decoding error
        // (RFC 7541 section 4.2), not a license to keep megabytes of the client's headers.
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        Frames {
            preface_done: false,
            pending: None,
            decoder,
            last_stream: 0,
            decoded: 0,
        }
    }

    /// Move complete units from the front of `raw` (the preface, whole frames) to `out`,
    /// rewriting header blocks, and drop them from `raw`, until `out` holds [`OUT_BUDGET`]
    /// bytes or more. Returns whether complete frames are left in `raw` (else what is left is
    /// less than one frame of at most [`MAX_FRAME_SIZE`] bytes). Since one small frame can
    /// decode to a whole header list, the budget, not the input, bounds `out` and the work.
    pub fn process(&mut self, raw: &mut Vec<u8>, out: &mut Vec<u8>) -> Result<bool, Violation> {
        let mut pos = 0;
        let r = self.process_from(raw, &mut pos, out);
        raw.drain(..pos);
        r
    }

    fn process_from(
        &mut self,
        raw: &[u8],
        pos: &mut usize,
        out: &mut Vec<u8>,
    ) -> Result<bool, Violation> {
        if !self.preface_done {
            let n = raw.len().min(PREFACE.len());
            if raw[..n] != PREFACE[..n] {
                return Err(violation(
                    Reason::ProtocolError,
                    "not an HTTP/2 connection preface",
                ));
            }
            if n < PREFACE.len() {
                return Ok(false);
            }
            out.extend_from_slice(PREFACE);
            *pos = PREFACE.len();
            self.preface_done = true;
        }
        loop {
            let rest = &raw[*pos..];
            if rest.len() < HEADER_LEN {
                return Ok(false);
            }
            let len =
                (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
            // Checked on the frame header, before any of the payload is buffered.
            if len > MAX_FRAME_SIZE {
                return Err(violation(
                    Reason::FrameSizeError,
                    format!("frame of {len} bytes over SETTINGS_MAX_FRAME_SIZE {MAX_FRAME_SIZE}"),
                ));
            }
            let (kind, flags) = (rest[3], rest[4]);
            let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & 0x7fff_ffff;
            self.check_order(kind, stream)?;
            if rest.len() < HEADER_LEN + len {
                return Ok(false);
            }
            if out.len() >= OUT_BUDGET {
                return Ok(true);
            }
            let frame = &rest[..HEADER_LEN + len];
            let payload = &frame[HEADER_LEN..];
            *pos += frame.len();
            match kind {
                FRAME_HEADERS => self.headers(flags, stream, payload, out)?,
                FRAME_CONTINUATION => self.continuation(flags, payload, out)?,
                _ => out.extend_from_slice(frame),
            }
        }
    }

    /// While a header block is open only its `CONTINUATION` frames may come (RFC 9113 section
    /// 6.10); a client never sends `PUSH_PROMISE` (section 8.4).
    fn check_order(&self, kind: u8, stream: u32) -> Result<(), Violation> {
        match (&self.pending, kind) {
            (Some(pd), FRAME_CONTINUATION) if pd.stream == stream => Ok(()),
            (Some(pd), _) => Err(violation(
                Reason::ProtocolError,
                format!(
                    "frame type {kind} on stream {stream} inside the header block of stream {}",
                    pd.stream
                ),
            )),
            (None, FRAME_CONTINUATION) => Err(violation(
                Reason::ProtocolError,
                format!("CONTINUATION on stream {stream} without HEADERS"),
            )),
            (None, FRAME_PUSH_PROMISE) => Err(violation(
                Reason::ProtocolError,
                "PUSH_PROMISE from a client",
            )),
            (None, _) => Ok(()),
        }
    }

    fn headers(
        &mut self,
        flags: u8,
        stream: u32,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Violation> {
        let malformed = |what: &str| violation(Reason::ProtocolError, format!("HEADERS: {what}"));
        let (mut p, mut end) = (0usize, payload.len());
        if flags & FLAG_PADDED != 0 {
            let pad = usize::from(
                *payload
                    .first()
                    .ok_or_else(|| malformed("empty padded frame"))?,
            );
            p = 1;
            end = end
                .checked_sub(pad)
                .filter(|e| *e >= p)
                .ok_or_else(|| malformed("padding longer than the frame"))?;
        }
        let priority = if flags & FLAG_PRIORITY != 0 {
            let pr: [u8; 5] = payload
                .get(p..p + 5)
                .and_then(|s| s.try_into().ok())
                .filter(|_| p + 5 <= end)
                .ok_or_else(|| malformed("short priority"))?;
            p += 5;
            Some(pr)
        } else {
            None
        };
        let fragment = &payload[p..end];
        check_block_size(fragment.len())?;
        self.pending = Some(Pending {
            stream,
            end_stream: flags & FLAG_END_STREAM != 0,
            priority,
            block: fragment.to_vec(),
            continuations: 0,
        });
        if flags & FLAG_END_HEADERS != 0 {
            self.finish(out)?;
        }
        Ok(())
    }

    fn continuation(
        &mut self,
        flags: u8,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Violation> {
        let Some(pd) = self.pending.as_mut() else {
            return Ok(()); // check_order refused it already
        };
        let end_headers = flags & FLAG_END_HEADERS != 0;
        if !end_headers {
            pd.continuations += 1;
            if pd.continuations > MAX_CONTINUATION_FRAMES {
                return Err(violation(
                    Reason::EnhanceYourCalm,
                    format!(
                        "header block of stream {} in more than {MAX_CONTINUATION_FRAMES} CONTINUATION frames",
                        pd.stream
                    ),
                ));
            }
        }
        check_block_size(pd.block.len() + payload.len())?;
        pd.block.extend_from_slice(payload);
        if end_headers {
            self.finish(out)?;
        }
        Ok(())
    }

    /// Decode the complete block with the client's table, and emit it as literals.
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), Violation> {
        let Some(pd) = self.pending.take() else {
            return Ok(());
        };
        // The decoded list is sized as SETTINGS_MAX_HEADER_LIST_SIZE defines it (RFC 9113
        // section 6.5.2: name + value + 32 per field). Past the limit nothing is kept, so a
        // block of references to one big table entry costs its encoded size, not its decoded.
        let mut size = 0usize;
        let mut block = Vec::new();
        let decoded = self.decoder.decode_with_cb(&pd.block, |name, value| {
            size = size.saturating_add(name.len() + value.len() + 32);
            if size > MAX_HEADER_LIST_SIZE {
                return;
            }
            let value: Cow<[u8]> = if &*name == b":authority" && !valid_authority(&value) {
                Cow::Borrowed(b"localhost")
            } else {
                value
            };
            encode_literal(&mut block, &name, &value);
        });
        if let Err(e) = decoded {
            return Err(violation(
                Reason::CompressionError,
                format!(
                    "header block of stream {} is not valid HPACK: {e:?}",
                    pd.stream
                ),
            ));
        }
        if size > MAX_HEADER_LIST_SIZE {
            return Err(violation(
                Reason::EnhanceYourCalm,
                format!(
                    "header list of stream {} over SETTINGS_MAX_HEADER_LIST_SIZE {MAX_HEADER_LIST_SIZE}",
                    pd.stream
                ),
            ));
        }
        self.last_stream = self.last_stream.max(pd.stream);
        self.decoded += size;
        emit_block(out, &pd, &block);
        Ok(())
    }
}

/// An encoded block (before decoding) may not be larger than the decoded list may be: a block
/// within the limit decodes to at least its own size, less only for size updates.
fn check_block_size(len: usize) -> Result<(), Violation> {
    if len > MAX_HEADER_LIST_SIZE {
        return Err(violation(
            Reason::CompressionError,
            format!("header block over {MAX_HEADER_LIST_SIZE} bytes"),
        ));
    }
    Ok(())
}

/// The rewritten block as `HEADERS` + `CONTINUATION` frames of at most [`MAX_FRAME_SIZE`].
fn emit_block(out: &mut Vec<u8>, pd: &Pending, block: &[u8]) {
    let priority: &[u8] = match &pd.priority {
        Some(p) => p,
        None => &[],
    };
    let mut flags = 0;
    if pd.end_stream {
        flags |= FLAG_END_STREAM;
    }
    if pd.priority.is_some() {
        flags |= FLAG_PRIORITY;
    }
    let first = block.len().min(MAX_FRAME_SIZE - priority.len());
    let (head, mut rest) = block.split_at(first);
    let end = if rest.is_empty() { FLAG_END_HEADERS } else { 0 };
    frame(
        out,
        FRAME_HEADERS,
        flags | end,
        pd.stream,
        &[priority, head],
    );
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(MAX_FRAME_SIZE));
        rest = tail;
        let end = if rest.is_empty() { FLAG_END_HEADERS } else { 0 };
        frame(out, FRAME_CONTINUATION, end, pd.stream, &[chunk]);
    }
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
}

/// A GOAWAY frame (RFC 9113 section 6.8).
pub(super) fn goaway(last_stream: u32, v: &Violation) -> Vec<u8> {
    let mut out = Vec::new();
    let debug = v.detail.as_bytes();
    let debug = &debug[..debug.len().min(256)];
    frame(
        &mut out,
        FRAME_GOAWAY,
        0,
        0,
        &[
            &(last_stream & 0x7fff_ffff).to_be_bytes(),
            &(v.reason as u32).to_be_bytes(),
            debug,
        ],
    );
    out
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

    #[test]
    fn splits_large_blocks_into_continuations() {
        let pd = Pending {
            stream: 3,
            end_stream: true,
            priority: Some([0, 0, 0, 1, 7]),
            block: Vec::new(),
            continuations: 0,
        };
        let block = vec![0xaa; MAX_FRAME_SIZE * 2];
        let mut out = Vec::new();
        emit_block(&mut out, &pd, &block);
        let mut lens = Vec::new();
        let mut rest = &out[..];
        while !rest.is_empty() {
            let len =
                (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
            lens.push((len, rest[3], rest[4]));
            rest = &rest[HEADER_LEN + len..];
        }
        assert_eq!(
            lens,
            [
                (
                    MAX_FRAME_SIZE,
                    FRAME_HEADERS,
                    FLAG_END_STREAM | FLAG_PRIORITY
                ),
                (MAX_FRAME_SIZE, FRAME_CONTINUATION, 0),
                (5, FRAME_CONTINUATION, FLAG_END_HEADERS),
            ]
        );
    }
}
