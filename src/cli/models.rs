//! `flow models`: register run bundles as numbered model versions, move them between
//! stages, alias them, and resolve model URIs to bundle directories.

use anyhow::Result;
use clap::Subcommand;

use crate::registry::{self, ModelVersion, Stage};
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Register a finished run's bundle as the next version of a model (created if new).
    Register {
        /// Model name (letters, digits, `-`, `_`, `.`).
        name: String,
        /// Run id or unique prefix.
        run: String,
        /// Bundle directory inside the run's outputs.
        #[arg(long, default_value = registry::DEFAULT_ARTIFACT_PATH)]
        path: String,
    },
    /// List model versions with their stage, aliases and run.
    List {
        /// Only this model.
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Move a version to a stage (None, Staging, Production, Archived).
    Stage {
        /// Model name.
        name: String,
        /// Version number.
        version: u32,
        /// None, Staging, Production or Archived (any case).
        stage: String,
        /// Keep other Production versions where they are instead of archiving them.
        #[arg(long)]
        keep: bool,
    },
    /// Point an alias (`models:/NAME@ALIAS`) at a version, moving it if it exists.
    Alias {
        /// Model name.
        name: String,
        /// Alias (letters, digits, `-`, `_`, `.`), as in `models:/NAME@ALIAS`.
        alias: String,
        /// Version to point at; omit with --delete.
        #[arg(required_unless_present = "delete")]
        version: Option<u32>,
        /// Remove the alias instead.
        #[arg(long, conflicts_with = "version")]
        delete: bool,
    },
    /// Delete one version, or the whole model with all its versions (runs are kept).
    Delete {
        /// Model name.
        name: String,
        /// Only this version.
        version: Option<u32>,
    },
    /// Print the bundle directory a model URI stands for (for scripts).
    Resolve {
        /// `models:/NAME/VERSION`, `models:/NAME/STAGE`, `models:/NAME@ALIAS`, `runs:/RUN[/PATH]` or a directory.
        uri: String,
        #[arg(long)]
        json: bool,
    },
}

impl ModelsCommand {
    /// Whether the command only prints (see `Command::only_reports`).
    pub fn only_reports(&self) -> bool {
        matches!(
            self,
            ModelsCommand::List { .. } | ModelsCommand::Resolve { .. }
        )
    }
}

pub fn models(store: &Store, command: ModelsCommand) -> Result<i32> {
    match command {
        ModelsCommand::Register { name, run, path } => {
            let version = registry::register(store, &name, &run, &path)?;
            eprintln!(
                "registered version {} of `{name}` from run {} (`{}`)",
                version.version,
                short(&version.run_id),
                version.artifact_path
            );
            println!("{}", version.uri());
        }
        ModelsCommand::List { name, json } => {
            let versions = registry::list(store, name.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&versions)?);
            } else if versions.is_empty() {
                match name {
                    Some(name) => eprintln!("model `{name}` has no versions"),
                    None => {
                        eprintln!("no registered models; `flow models register NAME RUN` adds one")
                    }
                }
            } else {
                print!("{}", table(&versions));
            }
        }
        ModelsCommand::Stage {
            name,
            version,
            stage,
            keep,
        } => {
            let stage: Stage = stage.parse()?;
            let changed = registry::set_stage(store, &name, version, stage, keep)?;
            for entry in changed {
                eprintln!("{} is now {}", entry.uri(), entry.stage);
            }
        }
        ModelsCommand::Alias {
            name,
            alias,
            version,
            delete,
        } => match version {
            Some(version) if !delete => {
                registry::set_alias(store, &name, &alias, version)?;
                eprintln!("models:/{name}@{alias} now points at version {version}");
            }
            _ => {
                let version = registry::remove_alias(store, &name, &alias)?;
                eprintln!("removed alias `{alias}` of `{name}` (it pointed at version {version})");
            }
        },
        ModelsCommand::Delete { name, version } => {
            registry::delete(store, &name, version)?;
            match version {
                Some(version) => {
                    eprintln!("deleted version {version} of `{name}`; its run is kept")
                }
                None => {
                    eprintln!("deleted model `{name}` with all its versions; their runs are kept")
                }
            }
        }
        ModelsCommand::Resolve { uri, json } => {
            let resolved = registry::resolve_uri(store, &uri)?;
            if json {
                let value = serde_json::json!({
                    "uri": resolved.uri,
                    "dir": resolved.dir,
                    "run_id": resolved.run_id,
                    "name": resolved.name,
                    "version": resolved.version,
                });
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                println!("{}", resolved.dir.display());
            }
        }
    }
    Ok(0)
}

/// Versions as an aligned table with a header line.
fn table(versions: &[ModelVersion]) -> String {
    let header = ["NAME", "VERSION", "STAGE", "ALIASES", "RUN", "CREATED"].map(str::to_string);
    let rows: Vec<[String; 6]> = versions
        .iter()
        .map(|version| {
            [
                version.name.clone(),
                version.version.to_string(),
                version.stage.to_string(),
                if version.aliases.is_empty() {
                    "-".to_string()
                } else {
                    version.aliases.join(",")
                },
                short(&version.run_id).to_string(),
                version.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|cell| cell.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn short(run: &str) -> &str {
    &run[..run.len().min(12)]
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    #[test]
    fn table_aligns_columns() {
        let version = |name: &str, number: u32, aliases: &[&str]| ModelVersion {
            name: name.to_string(),
            version: number,
            run_id: "0123456789abcdef0123456789abcdef".to_string(),
            artifact_path: "model".to_string(),
            stage: if number == 1 {
                Stage::Production
            } else {
                Stage::None
            },
            aliases: aliases.iter().map(|alias| alias.to_string()).collect(),
            created_at: Utc.with_ymd_and_hms(2026, 11, 22, 9, 30, 0).unwrap(),
        };
        let text = table(&[
            version("smd-detector", 1, &["champion", "prod"]),
            version("d", 12, &[]),
        ]);
        assert_eq!(
            text,
            "NAME          VERSION  STAGE       ALIASES        RUN           CREATED\n\
             smd-detector  1        Production  champion,prod  0123456789ab  2026-11-22 09:30:00\n\
             d             12       None        -              0123456789ab  2026-11-22 09:30:00\n"
        );
    }
}
