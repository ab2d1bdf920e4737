//! gRPC client channels over unix sockets.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

#[derive(Debug, thiserror::Error)]
#[error("cannot connect to {path}: {source}")]
pub struct ConnectError {
    pub path: PathBuf,
    #[source]
    pub source: tonic::transport::Error,
}

/// Connect to a gRPC server listening on the unix socket `path`. The connection is made now, so
/// an absent or dead socket is reported here.
pub async fn connect_uds(path: &Path) -> Result<Channel, ConnectError> {
    let p = path.to_path_buf();
    // The URI is required by the API but unused: the connector below decides where to go.
    let endpoint = Endpoint::from_static("http://localhost");
    endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let p = p.clone();
            async move {
                let s = tokio::net::UnixStream::connect(p).await?;
                Ok::<_, std::io::Error>(TokioIo::new(s))
            }
        }))
        .await
        .map_err(|source| ConnectError {
            path: path.to_path_buf(),
            source,
        })
}
