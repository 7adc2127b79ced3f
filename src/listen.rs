//! The listening socket of flow's HTTP servers (`serve`, `ui`, `server`): bound
//! synchronously, so the caller can announce the address (port 0 picks one) before its
//! async runtime starts, and non-blocking, as tokio needs it.

use std::net::{SocketAddr, TcpListener};

use anyhow::Context;

/// Binds `host:port` and returns the listener with the address it got.
pub fn bind(host: &str, port: u16) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind((host, port))
        .with_context(|| format!("cannot listen on {host}:{port}"))?;
    listener
        .set_nonblocking(true)
        .context("cannot make the listening socket non-blocking")?;
    let address = listener
        .local_addr()
        .context("cannot read the listening address")?;
    Ok((listener, address))
}
