//! `flow server`: MLflow's tracking REST API over the store, until Ctrl-C or SIGTERM.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use clap::Args;

use crate::store::Store;
use crate::tracking::{self, TrackingState};

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Interface to bind (loopback unless told otherwise; the API has no authentication).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port, printed on start).
    #[arg(long, default_value_t = 5000)]
    pub port: u16,
}

pub fn server(store: Store, args: ServerArgs) -> Result<i32> {
    let store_dir = store.dir().to_path_buf();
    let listener = std::net::TcpListener::bind((args.host.as_str(), args.port))
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    listener
        .set_nonblocking(true)
        .context("cannot make the listening socket non-blocking")?;
    let address: SocketAddr = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("flow-server")
        .build()
        .context("cannot start the server's async runtime")?;
    eprintln!(
        "flow server: MLflow tracking API on http://{address} over the store `{}`",
        store_dir.display()
    );
    eprintln!("  export MLFLOW_TRACKING_URI=http://{address}");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)
            .context("cannot register the listening socket")?;
        axum::serve(listener, tracking::router(TrackingState::new(store)))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .with_context(|| format!("the HTTP server on {address} failed"))
    })?;
    eprintln!("flow server: stopped");
    Ok(0)
}

/// Ctrl-C or SIGTERM; without signal handlers, never (the process is then killed).
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
