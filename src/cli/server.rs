//! `flow server`: MLflow's tracking REST API and the dashboard (`flow ui`) over one store,
//! one port, as `mlflow server` serves both; until Ctrl-C or SIGTERM.

use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;

use crate::store::Store;
use crate::tracking::{self, TrackingState};
use crate::ui;

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Interface to bind (loopback unless told otherwise; the API has no authentication).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port, printed on start).
    #[arg(long, default_value_t = 5000)]
    pub port: u16,
    /// Serve the API alone, without the dashboard.
    #[arg(long)]
    pub no_ui: bool,
    /// Refuse every change from the dashboard's pages (the API still logs).
    #[arg(long)]
    pub read_only_ui: bool,
}

pub fn server(
    store: Store,
    project_dir: &Path,
    store_arg: Option<&Path>,
    args: ServerArgs,
) -> Result<i32> {
    let location = crate::store::redacted(&store.location());
    // A second handle: the dashboard's reads never wait on the API's writes' mutex.
    let dashboard = if args.no_ui {
        None
    } else {
        Some(
            store
                .reopen()
                .with_context(|| format!("cannot open the store at `{location}`"))?,
        )
    };
    let mut router = tracking::router(TrackingState::new(store));
    if let Some(dashboard) = dashboard {
        router = router.merge(ui::router(super::ui::state(
            dashboard,
            project_dir,
            store_arg,
            args.read_only_ui,
        )));
    }
    let (listener, address) = crate::listen::bind(&args.host, args.port)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("flow-server")
        .build()
        .context("cannot start the server's async runtime")?;
    eprintln!(
        "flow server: MLflow tracking API{} on http://{address} over the store `{}`",
        if args.no_ui { "" } else { " and the dashboard" },
        location
    );
    eprintln!("  export MLFLOW_TRACKING_URI=http://{address}");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)
            .context("cannot register the listening socket")?;
        axum::serve(listener, router)
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
