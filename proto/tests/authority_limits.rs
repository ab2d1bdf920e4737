//! The HTTP/2 limits `AuthorityFix` enforces before the server sees a byte: each broken limit
//! closes the connection with a GOAWAY carrying the error code the protocol (or the HTTP/2
//! server under tonic) uses for it, and input just within each limit is still served.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use kubelet_proto::authority::limits::{
    HEADER_TABLE_SIZE, MAX_CONTINUATION_FRAMES, MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE,
};

const T: Duration = Duration::from_secs(5);

/// Send `bytes` on a new connection; the server must answer with a GOAWAY and close. Returns
/// the GOAWAY's (last stream, error code, debug text).
async fn refused(sock: &Path, bytes: &[u8]) -> (u32, u32, String) {
    let o = exchange(sock, bytes, T).await;
    let g = o.goaway();
    assert!(g.is_some(), "no GOAWAY; the server sent {:?}", o.frames);
    assert!(o.closed, "the connection stayed open after {g:?}");
    g.unwrap()
}

/// Send a GetInfo request whose header block is `block` in the given fragments (the first as
/// HEADERS, the rest as CONTINUATION); true when the server answers it.
async fn served(sock: &Path, fragments: &[&[u8]]) -> bool {
    let mut req = preface();
    for (i, f) in fragments.iter().enumerate() {
        let kind = if i == 0 { HEADERS } else { CONTINUATION };
        let end = if i + 1 == fragments.len() {
            END_HEADERS
        } else {
            0
        };
        frame(&mut req, kind, end, 1, f);
    }
    empty_message(&mut req, 1);
    let o = exchange_until(sock, &req, T, |f| {
        f.iter()
            .any(|f| f.stream == 1 && (f.kind == HEADERS || f.kind == RST_STREAM))
    })
    .await;
    o.answered(1) && !o.reset(1) && o.goaway().is_none()
}

/// A GetInfo block padded with `x-pad` so that its HTTP/2 size (name + value + 32 per field) is
/// exactly `size`.
fn block_of_list_size(size: usize) -> Vec<u8> {
    let fields: [(&str, &str); 6] = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/pluginregistration.Registration/GetInfo"),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ];
    let base: usize = fields.iter().map(|(n, v)| n.len() + v.len() + 32).sum();
    let pad = size - base - ("x-pad".len() + 32);
    let mut block = get_info_block("localhost");
    literal(&mut block, "x-pad", &"p".repeat(pad));
    block
}

#[tokio::test]
async fn a_frame_over_max_frame_size_is_refused_from_its_header() {
    let d = tempfile::tempdir().unwrap();
    let sock = serve(d.path(), true);
    // A DATA frame announcing 16 MiB, of which only a little ever comes: refused at once, not
    // buffered while waiting for the rest.
    let mut req = preface();
    req.extend_from_slice(&[0xff, 0xff, 0xff, 0x0, 0x0, 0, 0, 0, 1]);
    req.extend_from_slice(&[0u8; 1000]);
    let (_, code, debug) = refused(&sock, &req).await;
    assert_eq!(code, FRAME_SIZE_ERROR, "{debug}");
    assert!(debug.contains("16384"), "{debug}");

    // A frame of exactly the limit (of a type the server ignores) goes through.
    let mut req = preface();
    frame(&mut req, 0xfa, 0, 0, &vec![0u8; MAX_FRAME_SIZE]);
    frame(
        &mut req,
        HEADERS,
        END_HEADERS,
        1,
        &get_info_block("localhost"),
    );
    empty_message(&mut req, 1);
    let o = exchange_until(&sock, &req, T, |f| f.iter().any(|f| f.stream == 1)).await;
    assert!(o.answered(1), "{:?}", o.frames);
}

#[tokio::test]
async fn a_continuation_flood_is_refused_after_a_bounded_count() {
    let d = tempfile::tempdir().unwrap();
    let sock = serve(d.path(), true);
    let block = get_info_block("localhost");
    // Empty CONTINUATION frames never grow the block, so only a count stops them.
    let mut req = preface();
    frame(&mut req, HEADERS, 0, 1, &block);
    for _ in 0..10_000 {
        frame(&mut req, CONTINUATION, 0, 1, &[]);
    }
    let (last, code, debug) = refused(&sock, &req).await;
    assert_eq!(code, ENHANCE_YOUR_CALM, "{debug}");
    assert_eq!(last, 0, "no request reached the server");
    assert!(debug.contains("CONTINUATION"), "{debug}");

    // The most a block may use: HEADERS, MAX_CONTINUATION_FRAMES without END_HEADERS, and the
    // last one.
    let n = MAX_CONTINUATION_FRAMES + 2;
    let step = block.len().div_ceil(n);
    let fragments: Vec<&[u8]> = block.chunks(step).collect();
    assert_eq!(fragments.len(), n);
    assert!(served(&sock, &fragments).await);
    let mut more = fragments.clone();
    more.insert(1, &[]);
    assert!(!served(&sock, &more).await, "one more is refused");
}

#[tokio::test]
async fn an_encoded_block_over_the_list_limit_is_refused_while_it_arrives() {
    let d = tempfile::tempdir().unwrap();
    let sock = serve(d.path(), true);
    // A literal whose value keeps coming in CONTINUATION frames, never ending.
    let mut req = preface();
    let mut start = Vec::new();
    start.push(0);
    hpack_int(&mut start, 5, 7, 0);
    start.extend_from_slice(b"x-big");
    hpack_int(&mut start, 1 << 20, 7, 0);
    frame(&mut req, HEADERS, 0, 1, &start);
    for _ in 0..4 {
        frame(&mut req, CONTINUATION, 0, 1, &vec![b'a'; MAX_FRAME_SIZE]);
    }
    let (_, code, debug) = refused(&sock, &req).await;
    assert_eq!(code, COMPRESSION_ERROR, "{debug}");
    assert!(debug.contains("16384"), "{debug}");
}

#[tokio::test]
async fn a_decoded_list_over_the_limit_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let sock = serve(d.path(), true);

    // One 4,000-byte table entry referenced five times: a 4 KiB block that decodes to 20 KiB.
    let mut block = get_info_block("localhost");
    literal_indexed(&mut block, "x-big", &"a".repeat(4000));
    for _ in 0..5 {
        indexed(&mut block, 62);
    }
    assert!(block.len() < MAX_HEADER_LIST_SIZE / 3);
    let mut req = preface();
    frame(&mut req, HEADERS, END_HEADERS, 1, &block);
    let (_, code, debug) = refused(&sock, &req).await;
    assert_eq!(code, ENHANCE_YOUR_CALM, "{debug}");
    assert!(debug.contains("SETTINGS_MAX_HEADER_LIST_SIZE"), "{debug}");

    // The size counts 32 bytes per field as HTTP/2 defines it: 600 empty fields are 3 KB of
    // names but a 21 KB list.
    let mut block = get_info_block("localhost");
    for _ in 0..600 {
        literal(&mut block, "x-a", "");
    }
    let mut req = preface();
    frame(&mut req, HEADERS, END_HEADERS, 1, &block);
    let (_, code, _) = refused(&sock, &req).await;
    assert_eq!(code, ENHANCE_YOUR_CALM);

    // Just within the limit is served (the server's own check is "at least the limit").
    let block = block_of_list_size(MAX_HEADER_LIST_SIZE - 1);
    assert!(served(&sock, &[&block]).await);
    let block = block_of_list_size(MAX_HEADER_LIST_SIZE + 1);
    let mut req = preface();
    frame(&mut req, HEADERS, END_HEADERS, 1, &block);
    let (_, code, _) = refused(&sock, &req).await;
    assert_eq!(code, ENHANCE_YOUR_CALM);
}

#[tokio::test]
async fn a_table_larger_than_advertised_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let sock = serve(d.path(), true);
    let with_size_update = |size: usize| {
        let mut block = Vec::new();
        hpack_int(&mut block, size, 5, 0x20);
        block.extend_from_slice(&get_info_block("localhost"));
        block
    };
    assert!(served(&sock, &[&with_size_update(HEADER_TABLE_SIZE)]).await);
    let mut req = preface();
    frame(
        &mut req,
        HEADERS,
        END_HEADERS,
        1,
        &with_size_update(1 << 30),
    );
    let (_, code, _) = refused(&sock, &req).await;
    assert_eq!(code, COMPRESSION_ERROR);
}

#[tokio::test]
async fn broken_hpack_is_a_compression_error() {
    let d = tempfile::tempdir().unwrap();
    let sock = serve(d.path(), true);
    let mut req = preface();
    frame(&mut req, HEADERS, END_HEADERS, 1, &[0x80]); // index 0 does not exist
    let (_, code, debug) = refused(&sock, &req).await;
    assert_eq!(code, COMPRESSION_ERROR, "{debug}");
}

#[tokio::test]
async fn only_continuation_may_follow_an_open_header_block() {
    let d = tempfile::tempdir().unwrap();
    let sock = serve(d.path(), true);
    let block = get_info_block("localhost");
    let mut req = preface();
    frame(&mut req, HEADERS, 0, 1, &block[..10]);
    frame(&mut req, PING, 0, 0, &[0u8; 8]);
    let (_, code, _) = refused(&sock, &req).await;
    assert_eq!(code, PROTOCOL_ERROR);
    // CONTINUATION of another stream.
    let mut req = preface();
    frame(&mut req, HEADERS, 0, 1, &block[..10]);
    frame(&mut req, CONTINUATION, END_HEADERS, 3, &block[10..]);
    let (_, code, _) = refused(&sock, &req).await;
    assert_eq!(code, PROTOCOL_ERROR);
    // CONTINUATION without HEADERS.
    let mut req = preface();
    frame(&mut req, CONTINUATION, END_HEADERS, 1, &block);
    let (_, code, _) = refused(&sock, &req).await;
    assert_eq!(code, PROTOCOL_ERROR);
}

#[tokio::test]
async fn the_goaway_names_the_last_request_the_server_got_and_others_are_served() {
    let d = tempfile::tempdir().unwrap();
    let sock = serve(d.path(), true);
    let mut c = Conn::open(&sock).await;
    let mut req = preface();
    frame(
        &mut req,
        HEADERS,
        END_HEADERS,
        1,
        &get_info_block("localhost"),
    );
    empty_message(&mut req, 1);
    c.send(&req).await;
    let f = c
        .read_until(T, |f| f.iter().any(|f| f.stream == 1 && f.kind == HEADERS))
        .await;
    assert!(f.iter().any(|f| f.stream == 1 && f.kind == HEADERS));
    // Stream 3 breaks a limit (a 32-byte table entry referenced 1,000 times).
    let mut block = get_info_block("localhost");
    literal_indexed(&mut block, "x", "y");
    for _ in 0..1000 {
        indexed(&mut block, 62);
    }
    let mut req = Vec::new();
    frame(&mut req, HEADERS, END_HEADERS, 3, &block);
    c.send(&req).await;
    let f = c.read_until(T, |_| false).await;
    assert!(c.closed, "closed after the GOAWAY");
    let g = f.iter().find(|f| f.kind == GOAWAY).map(Frame::goaway);
    assert_eq!(g.map(|g| (g.0, g.1)), Some((1, ENHANCE_YOUR_CALM)), "{f:?}");
    // Another connection is served as usual.
    assert!(served(&sock, &[&get_info_block("localhost")]).await);
}

/// Small frames that decode to whole header lists (13 bytes to 16 KB) come out in paced steps:
/// one task poll gets a bounded share of the output, then has to yield, however much input is
/// waiting; and all of it does come out, rewritten.
#[tokio::test]
async fn output_of_small_frames_that_decode_large_is_paced() {
    use std::pin::Pin;
    use std::task::Poll;
    use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

    let mut input = preface();
    let mut block = Vec::new();
    literal_indexed(&mut block, "x-big", &"a".repeat(4000));
    frame(&mut input, HEADERS, END_HEADERS, 1, &block);
    let n = 1000u32;
    for i in 1..n {
        frame(&mut input, HEADERS, END_HEADERS, 1 + 2 * i, &[0x80 | 62; 4]);
    }
    let (mut client, server) = tokio::io::duplex(1 << 20);
    client.write_all(&input).await.unwrap();
    drop(client);
    let mut fix = kubelet_proto::AuthorityFix::new(server);
    let mut out = Vec::new();
    let mut polls = 0;
    let mut eof = false;
    while !eof {
        let before = out.len();
        // Everything one task poll gets, until the first Pending.
        std::future::poll_fn(|cx| loop {
            let mut tmp = vec![0u8; 64 * 1024];
            let mut rb = ReadBuf::new(&mut tmp);
            match Pin::new(&mut fix).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    eof = true;
                    return Poll::Ready(());
                }
                Poll::Ready(Ok(())) => out.extend_from_slice(rb.filled()),
                Poll::Ready(Err(e)) => panic!("{e}"),
                Poll::Pending => return Poll::Ready(()),
            }
        })
        .await;
        let got = out.len() - before;
        assert!(got <= 256 * 1024, "one task poll got {got} bytes");
        polls += 1;
        tokio::task::yield_now().await;
    }
    let frames = parse_frames(&out[PREFACE.len()..]);
    assert_eq!(
        frames.len(),
        n as usize + 1,
        "the SETTINGS frame and every block"
    );
    assert!(frames[1..].iter().all(|f| f.kind == HEADERS));
    let total: usize = frames.iter().map(|f| f.payload.len()).sum();
    eprintln!(
        "{} input bytes -> {total} output bytes in {polls} task polls",
        input.len()
    );
    assert!(total > 15_000_000);
    assert!(polls > 50);
}
