//! A client that sends the socket path as `:authority` (as grpc-go's `unix://` dialer and the
//! kubelet's plugin watcher do) is served when the server wraps its connections in
//! `AuthorityFix`, and refused without it.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use kubelet_proto::pluginregistration::InfoRequest;

/// One raw HTTP/2 GetInfo call with the given authority; true when the server answered with
/// response HEADERS (and no RST_STREAM) on stream 1.
async fn raw_get_info(sock: &Path, authority: &str, split_with_continuation: bool) -> bool {
    let mut req = preface();
    let block = get_info_block(authority);
    if split_with_continuation {
        let (a, b) = block.split_at(20);
        frame(&mut req, HEADERS, 0, 1, a);
        frame(&mut req, CONTINUATION, END_HEADERS, 1, b);
    } else {
        frame(&mut req, HEADERS, END_HEADERS, 1, &block);
    }
    empty_message(&mut req, 1);
    let o = exchange_until(sock, &req, Duration::from_secs(5), |f| {
        f.iter()
            .any(|f| f.stream == 1 && (f.kind == HEADERS || f.kind == RST_STREAM))
    })
    .await;
    o.answered(1) && !o.reset(1)
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
