//! Artifacts: the list, a page per key with its versions, and a page per version, each
//! shown as Prefect shows it: markdown rendered safely, tables as tables, progress as a
//! bar, links as links, anything else as JSON.

use askama::Template;
use axum::extract::State;
use serde_json::{json, Value};
use stratus_http::AppState;
use stratus_store::db::artifacts::{self, Artifact, ArtifactFilter, ArtifactSort};

use super::markdown::to_safe_html;
use super::resources::{code, link, text, Table};
use super::{filters, id_param, render, view, PageError, PagePath, PageResult};

/// Versions listed on a key's page.
const VERSIONS: i64 = 200;

/// How one artifact is shown.
pub struct Shown {
    kind: String,
    /// Rendered markdown, already made safe.
    html: String,
    table: Option<(Vec<String>, Vec<Vec<String>>)>,
    progress: Option<f64>,
    json: String,
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A table artifact's rows: Prefect takes a list of records, a dict of columns, or a list
/// of rows (`create_table_artifact`), and stores it as JSON text.
fn table(data: &Value) -> Option<(Vec<String>, Vec<Vec<String>>)> {
    let parsed;
    let data = match data {
        Value::String(s) => {
            parsed = serde_json::from_str::<Value>(s).ok()?;
            &parsed
        }
        other => other,
    };
    match data {
        Value::Array(rows) if rows.iter().all(Value::is_object) => {
            let mut head: Vec<String> = Vec::new();
            for r in rows.iter().filter_map(Value::as_object) {
                for k in r.keys() {
                    if !head.contains(k) {
                        head.push(k.clone());
                    }
                }
            }
            let body = rows
                .iter()
                .map(|r| {
                    head.iter()
                        .map(|k| r.get(k).map(cell).unwrap_or_default())
                        .collect()
                })
                .collect();
            Some((head, body))
        }
        Value::Array(rows) => {
            let body: Vec<Vec<String>> = rows
                .iter()
                .map(|r| match r {
                    Value::Array(cells) => cells.iter().map(cell).collect(),
                    other => vec![cell(other)],
                })
                .collect();
            let width = body.iter().map(Vec::len).max().unwrap_or(0);
            Some(((0..width).map(|i| i.to_string()).collect(), body))
        }
        Value::Object(columns) => {
            let head: Vec<String> = columns.keys().cloned().collect();
            let height = columns
                .values()
                .filter_map(Value::as_array)
                .map(Vec::len)
                .max()
                .unwrap_or(0);
            let body = (0..height)
                .map(|i| {
                    columns
                        .values()
                        .map(|c| c.as_array().and_then(|c| c.get(i)).map(cell).unwrap_or_default())
                        .collect()
                })
                .collect();
            Some((head, body))
        }
        _ => None,
    }
}

pub fn shown(a: &Artifact) -> Shown {
    let kind = a.kind.clone().unwrap_or_default();
    let data = a.data.clone().unwrap_or(Value::Null);
    let mut out = Shown {
        kind: kind.clone(),
        html: String::new(),
        table: None,
        progress: None,
        json: String::new(),
    };
    match (kind.as_str(), &data) {
        ("markdown" | "link", Value::String(s)) => out.html = to_safe_html(s),
        ("table", d) => match table(d) {
            Some(t) => out.table = Some(t),
            None => out.json = view::pretty(d),
        },
        ("progress", d) => match d.as_f64() {
            Some(p) => out.progress = Some(p.clamp(0.0, 100.0)),
            None => out.json = view::pretty(d),
        },
        (_, d) => out.json = view::pretty(d),
    }
    out
}

fn page_of(a: &Artifact) -> String {
    match &a.key {
        Some(k) => format!("/artifacts/key/{}", stratus_store::url::percent_encode(k)),
        None => format!("/artifacts/{}", a.id),
    }
}

#[derive(Template)]
#[template(path = "artifacts.html")]
struct ListPage {
    nav: &'static str,
    t: Table,
}

pub async fn list(State(app): State<AppState>) -> PageResult {
    let c = app.client().await?;
    // The latest version of each key, and artifacts without a key.
    let rows = artifacts::filter(
        &c,
        true,
        &ArtifactFilter::default(),
        &filters(json!({}))?,
        ArtifactSort::UpdatedDesc,
        200,
        0,
    )
    .await?;
    let unkeyed: ArtifactFilter = serde_json::from_value(json!({"key": {"exists_": false}}))
        .map_err(|e| PageError::Internal(e.to_string()))?;
    let loose = artifacts::filter(
        &c,
        false,
        &unkeyed,
        &filters(json!({}))?,
        ArtifactSort::CreatedDesc,
        200,
        0,
    )
    .await?;
    let t = Table {
        head: vec!["Artifact", "Type", "Description", "Flow run", "Updated"],
        rows: rows
            .iter()
            .chain(loose.iter())
            .map(|a| {
                let name = a.key.clone().unwrap_or_else(|| a.id.to_string());
                vec![
                    link(name, page_of(a)),
                    text(a.kind.clone().unwrap_or_default()),
                    text(a.description.clone().unwrap_or_default()),
                    match a.flow_run_id {
                        Some(r) => link(r.to_string(), format!("/flow-runs/{r}")),
                        None => code("—"),
                    },
                    text(view::when(Some(a.updated))),
                ]
            })
            .collect(),
        empty: "No artifacts yet.",
    };
    Ok(render(&ListPage { nav: "artifacts", t }))
}

pub struct Version {
    id: String,
    created: String,
    flow_run: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "artifact.html")]
struct ArtifactPage {
    nav: &'static str,
    title: String,
    key_page: String,
    description: String,
    flow_run: String,
    task_run: String,
    created: String,
    a: Shown,
    versions: Vec<Version>,
}

fn artifact_page(a: &Artifact, versions: Vec<Version>) -> PageResult {
    Ok(render(&ArtifactPage {
        nav: "artifacts",
        title: a.key.clone().unwrap_or_else(|| a.id.to_string()),
        key_page: a.key.as_ref().map(|_| page_of(a)).unwrap_or_default(),
        description: a.description.as_deref().map(to_safe_html).unwrap_or_default(),
        flow_run: a.flow_run_id.map(|r| r.to_string()).unwrap_or_default(),
        task_run: a.task_run_id.map(|r| r.to_string()).unwrap_or_default(),
        created: view::when(Some(a.created)),
        a: shown(a),
        versions,
    }))
}

async fn versions_of(
    c: &stratus_store::db::Client,
    key: &str,
    current: uuid::Uuid,
) -> Result<Vec<Version>, PageError> {
    let of_key: ArtifactFilter = serde_json::from_value(json!({"key": {"any_": [key]}}))
        .map_err(|e| PageError::Internal(e.to_string()))?;
    let all = artifacts::filter(
        c,
        false,
        &of_key,
        &filters(json!({}))?,
        ArtifactSort::CreatedDesc,
        VERSIONS,
        0,
    )
    .await?;
    Ok(all
        .iter()
        .map(|v| Version {
            id: v.id.to_string(),
            created: view::when(Some(v.created)),
            flow_run: v.flow_run_id.map(|r| r.to_string()).unwrap_or_default(),
            current: v.id == current,
        })
        .collect())
}

/// `/artifacts/key/{key}`: the latest version, and every version.
pub async fn by_key(State(app): State<AppState>, PagePath(key): PagePath) -> PageResult {
    let c = app.client().await?;
    let latest = artifacts::read_latest(&c, &key)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("There is no artifact with the key “{key}”.")))?;
    let versions = versions_of(&c, &key, latest.id).await?;
    artifact_page(&latest, versions)
}

/// `/artifacts/{id}`: one version.
pub async fn page(State(app): State<AppState>, PagePath(raw): PagePath) -> PageResult {
    let id = id_param(&raw, "artifact")?;
    let c = app.client().await?;
    let a = artifacts::read(&c, id)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("There is no artifact {id}.")))?;
    let versions = match &a.key {
        Some(k) => versions_of(&c, k, a.id).await?,
        None => Vec::new(),
    };
    artifact_page(&a, versions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_come_in_three_shapes() {
        let records = json!("[{\"a\": 1, \"b\": \"x\"}, {\"a\": 2, \"c\": null}]");
        assert_eq!(
            table(&records),
            Some((
                vec!["a".into(), "b".into(), "c".into()],
                vec![
                    vec!["1".into(), "x".into(), "".into()],
                    vec!["2".into(), "".into(), "".into()]
                ]
            ))
        );
        let columns = json!({"a": [1, 2], "b": ["x"]});
        assert_eq!(
            table(&columns),
            Some((
                vec!["a".into(), "b".into()],
                vec![vec!["1".into(), "x".into()], vec!["2".into(), "".into()]]
            ))
        );
        let rows = json!([[1, 2], [3]]);
        assert_eq!(
            table(&rows).map(|t| t.1),
            Some(vec![vec!["1".into(), "2".into()], vec!["3".into()]])
        );
        assert_eq!(table(&json!("not json")), None);
    }
}
