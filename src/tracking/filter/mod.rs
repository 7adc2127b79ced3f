//! MLflow's search syntax: `filter` strings (`metrics.loss < 0.5 and params.lr = '0.01'`)
//! and `order_by` clauses (`metrics.loss DESC`), parsed into the store's search values.
//!
//! The grammar is MLflow's: comparisons joined by AND (OR is refused); an identifier is
//! `<entity>.<key>` with the key optionally in backticks or double quotes, the entity one of
//! `metrics`, `params`, `tags`, `attributes` (and MLflow's aliases), a bare name being an
//! attribute; metrics compare with numbers, params and tags with quoted strings
//! (`=`, `!=`, `LIKE`, `ILIKE`, `IS [NOT] NULL`), `run_id` also with `[NOT] IN (...)`.

mod grammar;
mod lexer;

use crate::store::{
    ExperimentField, ExperimentFilter, ExperimentSubject, Op, Operand, RunField, RunSearchFilter,
    RunSubject,
};
use grammar::{parse_clauses, parse_order, Clause, Entity};

/// Why a filter or order_by clause was refused; the message quotes the offending part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError(pub String);

/// The filters of a `runs/search` request.
pub fn run_filters(text: &str) -> Result<Vec<RunSearchFilter>, SyntaxError> {
    parse_clauses(text)?
        .into_iter()
        .map(|clause| {
            let subject = run_subject(&clause.entity, &clause.key)?;
            check_comparison(&subject, &clause)?;
            Ok(RunSearchFilter {
                subject,
                comparison: clause.comparison,
            })
        })
        .collect()
}

/// One `order_by` entry of a `runs/search` request: the subject and whether ascending.
pub fn run_order(text: &str) -> Result<(RunSubject, bool), SyntaxError> {
    let (entity, key, ascending) = parse_order(text)?;
    Ok((run_subject(&entity, &key)?, ascending))
}

/// The filters of an `experiments/search` request.
pub fn experiment_filters(text: &str) -> Result<Vec<ExperimentFilter>, SyntaxError> {
    parse_clauses(text)?
        .into_iter()
        .map(|clause| {
            let subject = experiment_subject(&clause.entity, &clause.key)?;
            let op = clause.comparison.op;
            let allowed = match subject {
                ExperimentSubject::Tag(_) => string_ops(op, false),
                ExperimentSubject::Field(ExperimentField::CreationTime)
                | ExperimentSubject::Field(ExperimentField::LastUpdateTime) => numeric_ops(op),
                ExperimentSubject::Field(ExperimentField::Id) => {
                    matches!(op, Op::Eq | Op::Ne | Op::In | Op::NotIn)
                }
                ExperimentSubject::Field(ExperimentField::Name) => {
                    matches!(op, Op::Eq | Op::Ne | Op::Like | Op::ILike)
                }
            };
            if !allowed {
                return Err(bad_comparator(&clause));
            }
            let numeric = matches!(
                subject,
                ExperimentSubject::Field(ExperimentField::CreationTime)
                    | ExperimentSubject::Field(ExperimentField::LastUpdateTime)
            );
            check_operand(&clause, numeric)?;
            Ok(ExperimentFilter {
                subject,
                comparison: clause.comparison,
            })
        })
        .collect()
}

/// One `order_by` entry of an `experiments/search` request.
pub fn experiment_order(text: &str) -> Result<(ExperimentField, bool), SyntaxError> {
    let (entity, key, ascending) = parse_order(text)?;
    match experiment_subject(&entity, &key)? {
        ExperimentSubject::Field(field) => Ok((field, ascending)),
        ExperimentSubject::Tag(_) => Err(SyntaxError(format!(
            "invalid order_by clause `{text}`: experiments order by name, experiment_id, \
             creation_time or last_update_time"
        ))),
    }
}

fn run_subject(entity: &Entity, key: &str) -> Result<RunSubject, SyntaxError> {
    Ok(match entity {
        Entity::Metric => RunSubject::Metric(key.to_string()),
        Entity::Param => RunSubject::Param(key.to_string()),
        Entity::Tag => RunSubject::Tag(key.to_string()),
        Entity::Attribute => RunSubject::Field(match key {
            "run_id" => RunField::RunId,
            "run_name" | "run name" | "Run name" | "Run Name" => RunField::RunName,
            "user_id" => RunField::UserId,
            "status" => RunField::Status,
            "start_time" | "created" | "Created" => RunField::StartTime,
            "end_time" => RunField::EndTime,
            "experiment_id" => RunField::ExperimentId,
            "artifact_uri" => {
                return Err(SyntaxError(
                    "searching on `artifact_uri` is not supported by flow server: every run's \
                     artifact URI is derived from its experiment and run id"
                        .to_string(),
                ))
            }
            other => {
                return Err(SyntaxError(format!(
                    "invalid attribute key `{other}`: expected one of run_id, run_name, user_id, \
                     status, start_time, end_time"
                )))
            }
        }),
        Entity::Dataset => {
            return Err(SyntaxError(
                "searching on datasets is not supported by flow server".to_string(),
            ))
        }
    })
}

fn experiment_subject(entity: &Entity, key: &str) -> Result<ExperimentSubject, SyntaxError> {
    match entity {
        Entity::Tag => Ok(ExperimentSubject::Tag(key.to_string())),
        Entity::Attribute => Ok(ExperimentSubject::Field(match key {
            "name" => ExperimentField::Name,
            "experiment_id" => ExperimentField::Id,
            "creation_time" => ExperimentField::CreationTime,
            "last_update_time" => ExperimentField::LastUpdateTime,
            other => {
                return Err(SyntaxError(format!(
                    "invalid attribute key `{other}`: expected one of name, experiment_id, \
                     creation_time, last_update_time"
                )))
            }
        })),
        _ => Err(SyntaxError(format!(
            "experiments are searched by attributes and tags, not by `{key}` of that kind"
        ))),
    }
}

/// MLflow's comparator and value rules for each kind of run subject.
fn check_comparison(subject: &RunSubject, clause: &Clause) -> Result<(), SyntaxError> {
    let op = clause.comparison.op;
    let (allowed, numeric) = match subject {
        RunSubject::Metric(_) => (numeric_ops(op), true),
        RunSubject::Param(_) | RunSubject::Tag(_) => (string_ops(op, false), false),
        RunSubject::Field(RunField::StartTime | RunField::EndTime) => (numeric_ops(op), true),
        RunSubject::Field(RunField::RunId) => (string_ops(op, true), false),
        RunSubject::Field(_) => (matches!(op, Op::Eq | Op::Ne | Op::Like | Op::ILike), false),
    };
    if !allowed {
        return Err(bad_comparator(clause));
    }
    check_operand(clause, numeric)
}

fn numeric_ops(op: Op) -> bool {
    matches!(op, Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge)
}

fn string_ops(op: Op, lists: bool) -> bool {
    match op {
        Op::Eq | Op::Ne | Op::Like | Op::ILike => true,
        Op::IsNull | Op::IsNotNull => !lists,
        Op::In | Op::NotIn => lists,
        _ => false,
    }
}

fn check_operand(clause: &Clause, numeric: bool) -> Result<(), SyntaxError> {
    match (&clause.comparison.operand, numeric) {
        (Operand::Number(_), false) => Err(SyntaxError(format!(
            "`{}` expects a quoted string value (e.g. 'my-value')",
            clause.text
        ))),
        (Operand::Text(_), true) => Err(SyntaxError(format!(
            "`{}` expects a numeric value",
            clause.text
        ))),
        _ => Ok(()),
    }
}

fn bad_comparator(clause: &Clause) -> SyntaxError {
    SyntaxError(format!(
        "invalid comparator in `{}` for a {} key",
        clause.text,
        match clause.entity {
            Entity::Metric => "metric",
            Entity::Param => "param",
            Entity::Tag => "tag",
            Entity::Attribute => "attribute",
            Entity::Dataset => "dataset",
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Comparison;

    fn filter(subject: RunSubject, op: Op, operand: Operand) -> RunSearchFilter {
        RunSearchFilter {
            subject,
            comparison: Comparison { op, operand },
        }
    }

    #[test]
    fn clauses_of_every_kind() {
        let parsed = run_filters(
            "metrics.loss < 0.5 and params.lr = '0.01' AND tags.`mlflow.user` != 'ana' \
             and attributes.status = 'FINISHED' and run_name LIKE 'brave-%' \
             and params.\"batch size\" IS NOT NULL and tags.note is null \
             and run_id IN ('a', 'b') and start_time >= 1700000000000 and metrics.f1 >= -1e-3",
        )
        .unwrap();
        assert_eq!(
            parsed,
            vec![
                filter(
                    RunSubject::Metric("loss".into()),
                    Op::Lt,
                    Operand::Number(0.5)
                ),
                filter(
                    RunSubject::Param("lr".into()),
                    Op::Eq,
                    Operand::Text("0.01".into())
                ),
                filter(
                    RunSubject::Tag("mlflow.user".into()),
                    Op::Ne,
                    Operand::Text("ana".into())
                ),
                filter(
                    RunSubject::Field(RunField::Status),
                    Op::Eq,
                    Operand::Text("FINISHED".into())
                ),
                filter(
                    RunSubject::Field(RunField::RunName),
                    Op::Like,
                    Operand::Text("brave-%".into())
                ),
                filter(
                    RunSubject::Param("batch size".into()),
                    Op::IsNotNull,
                    Operand::None
                ),
                filter(RunSubject::Tag("note".into()), Op::IsNull, Operand::None),
                filter(
                    RunSubject::Field(RunField::RunId),
                    Op::In,
                    Operand::List(vec!["a".into(), "b".into()])
                ),
                filter(
                    RunSubject::Field(RunField::StartTime),
                    Op::Ge,
                    Operand::Number(1.7e12)
                ),
                filter(
                    RunSubject::Metric("f1".into()),
                    Op::Ge,
                    Operand::Number(-1e-3)
                ),
            ]
        );
    }

    #[test]
    fn quotes_inside_values_and_keys_with_dots() {
        assert_eq!(
            run_filters("params.note = 'it''s' and metrics.\"val.loss\" = 1").unwrap(),
            vec![
                filter(
                    RunSubject::Param("note".into()),
                    Op::Eq,
                    Operand::Text("it's".into())
                ),
                filter(
                    RunSubject::Metric("val.loss".into()),
                    Op::Eq,
                    Operand::Number(1.0)
                ),
            ]
        );
        assert_eq!(
            run_filters("params.optimizer = \"adam\"").unwrap(),
            vec![filter(
                RunSubject::Param("optimizer".into()),
                Op::Eq,
                Operand::Text("adam".into())
            )]
        );
        assert_eq!(run_filters("").unwrap(), vec![]);
        assert_eq!(run_filters("   ").unwrap(), vec![]);
    }

    #[test]
    fn refusals_name_the_problem() {
        for (text, needle) in [
            (
                "metrics.loss < 0.5 or params.lr = '1'",
                "OR is not supported",
            ),
            ("metrics.loss < 'x'", "expects a numeric value"),
            ("params.lr > '1'", "invalid comparator"),
            ("params.lr = 1", "expects a quoted string"),
            ("foo.bar = 1", "invalid entity type `foo`"),
            ("attributes.colour = 'x'", "invalid attribute key `colour`"),
            ("params.lr = 'x", "not closed"),
            ("metrics.loss <", "incomplete"),
            ("metrics.loss < 1 metrics.f1 > 2", "expected AND"),
            ("tags.x IN ('a')", "invalid comparator"),
            ("datasets.name = 'x'", "datasets"),
            (
                "params.a = 'x' ; drop table runs",
                "unexpected character `;`",
            ),
        ] {
            let error = run_filters(text).expect_err(text);
            assert!(error.0.contains(needle), "{text}: {}", error.0);
        }
    }

    #[test]
    fn order_by_clauses() {
        assert_eq!(
            run_order("metrics.loss DESC").unwrap(),
            (RunSubject::Metric("loss".into()), false)
        );
        assert_eq!(
            run_order("start_time").unwrap(),
            (RunSubject::Field(RunField::StartTime), true)
        );
        assert_eq!(
            run_order("params.`batch size` asc").unwrap(),
            (RunSubject::Param("batch size".into()), true)
        );
        assert!(run_order("metrics.loss sideways").is_err());
        assert_eq!(
            experiment_order("last_update_time DESC").unwrap(),
            (ExperimentField::LastUpdateTime, false)
        );
        assert!(experiment_order("tags.x").is_err());
    }

    #[test]
    fn experiment_filters_on_names_and_tags() {
        let parsed = experiment_filters("name LIKE 'smd-%' and tags.team = 'ops'").unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(
            parsed[0].subject,
            ExperimentSubject::Field(ExperimentField::Name)
        );
        assert_eq!(parsed[1].subject, ExperimentSubject::Tag("team".into()));
        assert!(experiment_filters("metrics.loss < 1").is_err());
    }
}
