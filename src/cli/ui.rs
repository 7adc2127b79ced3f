//! `flow ui`: the web dashboard over the store (see `crate::ui`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use clap::Args;

use crate::resolve::{Plan, Reuse, ReusePolicy};
use crate::spec::Project;
use crate::store::Store;
use crate::ui::{self, Planner, UiConfig, UiState};

#[derive(Debug, Args)]
pub struct UiArgs {
    /// Interface to bind (loopback unless told otherwise).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = 5050)]
    pub port: u16,
    /// Refuse every change from the pages (model stages and aliases).
    #[arg(long)]
    pub read_only: bool,
}

/// Plans with the project and store the CLI was pointed at, as `flow plan` does.
struct ProjectPlanner {
    project_dir: PathBuf,
    store_dir: Option<PathBuf>,
}

impl Planner for ProjectPlanner {
    fn project(&self) -> Result<Project> {
        Ok(super::load_project(&self.project_dir)?.0)
    }

    fn plan(&self, entry: &str, params: &[String]) -> Result<Plan> {
        let (project, dag) = super::load_project(&self.project_dir)?;
        let store = super::open_store(&self.project_dir, self.store_dir.as_deref())?;
        Plan::resolve(
            &project,
            &dag,
            &store,
            entry,
            params,
            Reuse {
                policy: ReusePolicy::Commit,
                force: &[],
            },
            &super::RegistryUris(&store),
        )
    }
}

/// The dashboard's state over `store`, planning in `project_dir` (shared with `flow server`).
pub fn state(
    store: Store,
    project_dir: &Path,
    store_dir: Option<&Path>,
    read_only: bool,
) -> Arc<UiState> {
    let planner: Option<Arc<dyn Planner>> = Some(Arc::new(ProjectPlanner {
        project_dir: project_dir.to_path_buf(),
        store_dir: store_dir.map(Path::to_path_buf),
    }));
    UiState::new(store, UiConfig { read_only, planner })
}

pub fn ui(store: Store, project_dir: &Path, store_dir: Option<&Path>, args: UiArgs) -> Result<i32> {
    let state = state(store, project_dir, store_dir, args.read_only);
    ui::serve_blocking(state, &args.host, args.port, |address| {
        eprintln!(
            "flow ui: serving the dashboard on http://{address}/{} (Ctrl-C stops)",
            if args.read_only { " read-only" } else { "" }
        );
    })?;
    Ok(0)
}
