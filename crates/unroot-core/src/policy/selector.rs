//! Kubernetes label selectors, with the standard semantics: every
//! `matchLabels` pair and every `matchExpressions` requirement must hold
//! (`In`, `NotIn`, `Exists`, `DoesNotExist`), and the empty selector matches
//! everything.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::FieldError;
use super::names::{is_label_key, is_label_value};

/// A label selector, as in `metav1.LabelSelector`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels that must be present with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Requirements that must all hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<Requirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// How the label relates to `values`.
    pub operator: Operator,
    /// Non-empty for `In` and `NotIn`, empty for `Exists` and `DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// A `matchExpressions` operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Operator {
    /// The label is present and its value is one of `values`.
    In,
    /// The label is absent, or its value is none of `values`.
    NotIn,
    /// The label is present, whatever its value.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

impl LabelSelector {
    /// A selector of one `matchLabels` pair.
    #[must_use]
    pub fn match_label(key: &str, value: &str) -> Self {
        Self {
            match_labels: BTreeMap::from([(key.to_owned(), value.to_owned())]),
            match_expressions: Vec::new(),
        }
    }

    /// Every rule this selector breaks, with paths below `path`.
    pub fn validate(&self, path: &str, errors: &mut Vec<FieldError>) {
        for (key, value) in &self.match_labels {
            if !is_label_key(key) {
                errors.push(FieldError::new(
                    format!("{path}.matchLabels"),
                    format!("{key:?} is not a valid label key"),
                ));
            }
            if !is_label_value(value) {
                errors.push(FieldError::new(
                    format!("{path}.matchLabels.{key}"),
                    format!("{value:?} is not a valid label value (at most 63 characters of A-Z, a-z, 0-9, '-', '_', '.', starting and ending alphanumeric)"),
                ));
            }
        }
        for (i, req) in self.match_expressions.iter().enumerate() {
            let at = format!("{path}.matchExpressions[{i}]");
            if !is_label_key(&req.key) {
                errors.push(FieldError::new(
                    format!("{at}.key"),
                    format!("{:?} is not a valid label key", req.key),
                ));
            }
            match req.operator {
                Operator::In | Operator::NotIn if req.values.is_empty() => {
                    errors.push(FieldError::new(
                        format!("{at}.values"),
                        format!("must not be empty for operator {:?}", req.operator),
                    ));
                }
                Operator::Exists | Operator::DoesNotExist if !req.values.is_empty() => {
                    errors.push(FieldError::new(
                        format!("{at}.values"),
                        format!("must be empty for operator {:?}", req.operator),
                    ));
                }
                _ => {}
            }
            for (j, value) in req.values.iter().enumerate() {
                if !is_label_value(value) {
                    errors.push(FieldError::new(
                        format!("{at}.values[{j}]"),
                        format!("{value:?} is not a valid label value"),
                    ));
                }
            }
        }
    }
}

/// Whether `labels` satisfy `selector`. The empty selector matches every
/// set of labels, as in Kubernetes.
#[must_use]
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    selector
        .match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
        && selector.match_expressions.iter().all(|req| {
            let value = labels.get(&req.key);
            match req.operator {
                Operator::In => value.is_some_and(|v| req.values.contains(v)),
                Operator::NotIn => value.is_none_or(|v| !req.values.contains(v)),
                Operator::Exists => value.is_some(),
                Operator::DoesNotExist => value.is_none(),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn req(key: &str, operator: Operator, values: &[&str]) -> Requirement {
        Requirement {
            key: key.to_owned(),
            operator,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    #[test]
    #[allow(clippy::too_many_lines)] // one table, one row per selector
    fn selectors_match_as_in_kubernetes() {
        let team_a = labels(&[("team", "a"), ("tier", "gold")]);
        let bare = labels(&[]);
        let cases: Vec<(&str, LabelSelector, &BTreeMap<String, String>, bool)> = vec![
            (
                "empty selector matches all",
                LabelSelector::default(),
                &bare,
                true,
            ),
            (
                "matchLabels equal",
                LabelSelector::match_label("team", "a"),
                &team_a,
                true,
            ),
            (
                "matchLabels other value",
                LabelSelector::match_label("team", "b"),
                &team_a,
                false,
            ),
            (
                "matchLabels absent",
                LabelSelector::match_label("team", "a"),
                &bare,
                false,
            ),
            (
                "In hit",
                LabelSelector {
                    match_expressions: vec![req("tier", Operator::In, &["gold", "silver"])],
                    ..Default::default()
                },
                &team_a,
                true,
            ),
            (
                "In absent key",
                LabelSelector {
                    match_expressions: vec![req("tier", Operator::In, &["gold"])],
                    ..Default::default()
                },
                &bare,
                false,
            ),
            (
                "NotIn absent key matches",
                LabelSelector {
                    match_expressions: vec![req("tier", Operator::NotIn, &["gold"])],
                    ..Default::default()
                },
                &bare,
                true,
            ),
            (
                "NotIn listed value",
                LabelSelector {
                    match_expressions: vec![req("tier", Operator::NotIn, &["gold"])],
                    ..Default::default()
                },
                &team_a,
                false,
            ),
            (
                "Exists",
                LabelSelector {
                    match_expressions: vec![req("team", Operator::Exists, &[])],
                    ..Default::default()
                },
                &team_a,
                true,
            ),
            (
                "DoesNotExist",
                LabelSelector {
                    match_expressions: vec![req("team", Operator::DoesNotExist, &[])],
                    ..Default::default()
                },
                &team_a,
                false,
            ),
            (
                "labels and expressions must all hold",
                LabelSelector {
                    match_labels: labels(&[("team", "a")]),
                    match_expressions: vec![req("tier", Operator::In, &["bronze"])],
                },
                &team_a,
                false,
            ),
        ];
        for (name, selector, labels, want) in cases {
            assert_eq!(selector_matches(&selector, labels), want, "{name}");
        }
    }

    #[test]
    fn invalid_selectors_are_reported_with_paths() {
        let selector = LabelSelector {
            match_labels: labels(&[("bad key!", "ok"), ("k", "-bad")]),
            match_expressions: vec![
                req("k", Operator::In, &[]),
                req("k", Operator::Exists, &["x"]),
            ],
        };
        let mut errors = Vec::new();
        selector.validate("s", &mut errors);
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "s.matchLabels: \"bad key!\" is not a valid label key",
                "s.matchLabels.k: \"-bad\" is not a valid label value (at most 63 characters of A-Z, a-z, 0-9, '-', '_', '.', starting and ending alphanumeric)",
                "s.matchExpressions[0].values: must not be empty for operator In",
                "s.matchExpressions[1].values: must be empty for operator Exists",
            ]
        );
    }
}
