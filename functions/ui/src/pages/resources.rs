//! Blocks, concurrency limits, variables, artifacts and notification policies: lists to
//! read, and a block to inspect (secret values hidden).

use askama::Template;
use axum::extract::State;
use serde_json::json;
use stratus_http::AppState;
use stratus_store::db::artifacts::{self, ArtifactFilter, ArtifactSort};
use stratus_store::db::blocks::BlockDocumentFilter;
use stratus_store::db::blocks::{self as docs, DocumentQuery, DocumentSort};
use stratus_store::db::concurrency_limits as limits;
use stratus_store::db::notifications::{self, PolicyFilter};
use stratus_store::db::variables::{self, VariableFilter, VariableSort};

use super::view;
use super::{filters, id_param, render, PageError, PagePath, PageResult};

pub struct Cell {
    text: String,
    href: Option<String>,
    code: bool,
    buttons: Vec<Button>,
}

/// A button that calls the API (`app.js` reads its `data-api` and `data-body`).
pub struct Button {
    label: &'static str,
    api: String,
    body: String,
    confirm: &'static str,
}

fn text(t: impl Into<String>) -> Cell {
    Cell {
        text: t.into(),
        href: None,
        code: false,
        buttons: Vec::new(),
    }
}

fn link(t: impl Into<String>, href: String) -> Cell {
    Cell {
        href: Some(href),
        ..text(t)
    }
}

fn code(t: impl Into<String>) -> Cell {
    Cell {
        code: true,
        ..text(t)
    }
}

fn buttons(buttons: Vec<Button>) -> Cell {
    Cell { buttons, ..text("") }
}

pub struct Table {
    caption: String,
    head: Vec<&'static str>,
    rows: Vec<Vec<Cell>>,
    empty: &'static str,
}

#[derive(Template)]
#[template(path = "table.html")]
struct TablePage {
    nav: &'static str,
    title: String,
    tables: Vec<Table>,
    detail: String,
}

fn page(nav: &'static str, title: &str, tables: Vec<Table>, detail: String) -> PageResult {
    Ok(render(&TablePage {
        nav,
        title: title.to_string(),
        tables,
        detail,
    }))
}

/// The documents a page lists (at most 500, by type and name), secrets hidden.
async fn listed_blocks(
    app: &AppState,
    c: &stratus_store::db::Client,
    query: &DocumentQuery<'_>,
) -> Result<Vec<docs::BlockDocument>, PageError> {
    Ok(docs::filter_documents(
        c,
        &app.keyring,
        query,
        DocumentSort::BlockTypeAndNameAsc,
        false,
        500,
        0,
    )
    .await?)
}

pub async fn blocks(State(app): State<AppState>) -> PageResult {
    let c = app.client().await?;
    let named: BlockDocumentFilter = serde_json::from_value(json!({"is_anonymous": {"eq_": false}}))
        .map_err(|e| PageError::Internal(e.to_string()))?;
    let query = DocumentQuery {
        documents: Some(&named),
        types: None,
        schemas: None,
    };
    let rows = listed_blocks(&app, &c, &query).await?;
    let table = Table {
        caption: String::new(),
        head: vec!["Block", "Type", "Updated"],
        rows: rows
            .iter()
            .map(|d| {
                vec![
                    link(d.name.clone(), format!("/blocks/{}", d.id)),
                    text(d.block_type_name.clone().unwrap_or_default()),
                    text(view::when(Some(d.updated))),
                ]
            })
            .collect(),
        empty: "No blocks yet.",
    };
    page("blocks", "Blocks", vec![table], String::new())
}

pub async fn block(State(app): State<AppState>, PagePath(raw): PagePath) -> PageResult {
    let id = id_param(&raw, "block")?;
    let c = app.client().await?;
    // Never with secrets: the page shows them obfuscated.
    let d = docs::read_document(&c, &app.keyring, id, false)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("There is no block {id}.")))?;
    let title = format!("{} ({})", d.name, d.block_type_name.clone().unwrap_or_default());
    page("blocks", &title, Vec::new(), view::pretty(&d.data))
}

pub async fn concurrency(State(app): State<AppState>) -> PageResult {
    let c = app.client().await?;
    let tags = limits::filter_v1(&c, 500, 0).await?;
    let global = limits::filter_v2(&c, 500, 0).await?;
    let tables = vec![
        Table {
            caption: "Tag limits".into(),
            head: vec!["Tag", "Limit", "Active slots"],
            rows: tags
                .iter()
                .map(|l| {
                    let active = l.active_slots.as_array().map(Vec::len).unwrap_or(0);
                    vec![
                        code(l.tag.clone()),
                        text(l.concurrency_limit.to_string()),
                        text(active.to_string()),
                    ]
                })
                .collect(),
            empty: "No tag concurrency limits.",
        },
        Table {
            caption: "Global limits".into(),
            head: vec!["Name", "Limit", "Active slots", "Active"],
            rows: global
                .iter()
                .map(|l| {
                    vec![
                        code(l.name.clone()),
                        text(l.limit.to_string()),
                        text(l.active_slots.to_string()),
                        text(if l.active { "yes" } else { "no" }),
                    ]
                })
                .collect(),
            empty: "No global concurrency limits.",
        },
    ];
    page("limits", "Concurrency limits", tables, String::new())
}

pub async fn variables(State(app): State<AppState>) -> PageResult {
    let c = app.client().await?;
    let rows = variables::filter(&c, &VariableFilter::default(), VariableSort::NameAsc, 500, 0).await?;
    let table = Table {
        caption: String::new(),
        head: vec!["Name", "Value", "Tags", "Updated"],
        rows: rows
            .iter()
            .map(|v| {
                vec![
                    code(v.name.clone()),
                    code(v.value.clone()),
                    text(view::tags(&v.tags).join(", ")),
                    text(view::when(Some(v.updated))),
                ]
            })
            .collect(),
        empty: "No variables yet.",
    };
    page("variables", "Variables", vec![table], String::new())
}

pub async fn artifacts(State(app): State<AppState>) -> PageResult {
    let c = app.client().await?;
    let rows = artifacts::filter(
        &c,
        false,
        &ArtifactFilter::default(),
        &filters(json!({}))?,
        ArtifactSort::CreatedDesc,
        200,
        0,
    )
    .await?;
    let table = Table {
        caption: String::new(),
        head: vec!["Key", "Type", "Description", "Flow run", "Created"],
        rows: rows
            .iter()
            .map(|a| {
                vec![
                    code(a.key.clone().unwrap_or_else(|| "—".into())),
                    text(a.kind.clone().unwrap_or_default()),
                    text(a.description.clone().unwrap_or_default()),
                    match a.flow_run_id {
                        Some(r) => link(r.to_string(), format!("/flow-runs/{r}")),
                        None => text("—"),
                    },
                    text(view::when(Some(a.created))),
                ]
            })
            .collect(),
        empty: "No artifacts yet.",
    };
    page("artifacts", "Artifacts", vec![table], String::new())
}

/// "Failed, Crashed", or what an empty list means.
fn names_or(list: &serde_json::Value, empty: &str) -> String {
    let names = view::tags(list);
    if names.is_empty() {
        empty.to_string()
    } else {
        names.join(", ")
    }
}

pub async fn notifications(State(app): State<AppState>) -> PageResult {
    let c = app.client().await?;
    let policies = notifications::filter(&c, &PolicyFilter::default(), 500, 0).await?;
    let mut ids: Vec<_> = policies.iter().map(|p| p.block_document_id).collect();
    ids.sort();
    ids.dedup();
    let by_id: BlockDocumentFilter = serde_json::from_value(json!({"id": {"any_": ids}}))
        .map_err(|e| PageError::Internal(e.to_string()))?;
    let query = DocumentQuery {
        documents: Some(&by_id),
        types: None,
        schemas: None,
    };
    let blocks = listed_blocks(&app, &c, &query).await?;
    let table = Table {
        caption: String::new(),
        head: vec![
            "Send through",
            "When runs enter",
            "Tagged",
            "Message",
            "Active",
            "",
        ],
        rows: policies
            .iter()
            .map(|p| {
                let block = blocks.iter().find(|b| b.id == p.block_document_id);
                let name = block.map_or_else(
                    || p.block_document_id.to_string(),
                    |b| format!("{} ({})", b.name, b.block_type_name.clone().unwrap_or_default()),
                );
                let api = format!("/api/flow_run_notification_policies/{}", p.id);
                vec![
                    link(name, format!("/blocks/{}", p.block_document_id)),
                    text(names_or(&p.state_names, "any state")),
                    text(names_or(&p.tags, "any tags")),
                    match &p.message_template {
                        Some(t) => code(t.clone()),
                        None => text("Prefect's default"),
                    },
                    text(if p.is_active { "yes" } else { "paused" }),
                    buttons(vec![
                        Button {
                            label: if p.is_active { "Pause" } else { "Resume" },
                            api: format!("PATCH {api}"),
                            body: json!({"is_active": !p.is_active}).to_string(),
                            confirm: "",
                        },
                        Button {
                            label: "Delete",
                            api: format!("DELETE {api}"),
                            body: String::new(),
                            confirm: "Delete this notification?",
                        },
                    ]),
                ]
            })
            .collect(),
        empty: "No notifications yet.",
    };
    // The blocks a policy can send through: the kinds the notifier knows.
    let sendable: BlockDocumentFilter = serde_json::from_value(json!({"is_anonymous": {"eq_": false}}))
        .map_err(|e| PageError::Internal(e.to_string()))?;
    let kinds: docs::BlockTypeFilter =
        serde_json::from_value(json!({"slug": {"any_": stratus_store::notifications::SENDING_BLOCK_TYPES}}))
            .map_err(|e| PageError::Internal(e.to_string()))?;
    let query = DocumentQuery {
        documents: Some(&sendable),
        types: Some(&kinds),
        schemas: None,
    };
    let blocks = listed_blocks(&app, &c, &query)
        .await?
        .into_iter()
        .map(|b| {
            let label = format!("{} ({})", b.name, b.block_type_name.unwrap_or_default());
            (b.id.to_string(), label)
        })
        .collect();
    Ok(render(&NotificationsPage {
        nav: "notifications",
        policies: vec![table],
        blocks,
        states: NOTIFY_STATES,
    }))
}

/// The state names people pick from (policies match runs' state names).
const NOTIFY_STATES: [&str; 12] = [
    "Scheduled",
    "Late",
    "Pending",
    "Running",
    "Retrying",
    "AwaitingRetry",
    "Completed",
    "Failed",
    "Crashed",
    "Cancelling",
    "Cancelled",
    "Paused",
];

#[derive(Template)]
#[template(path = "notifications.html")]
struct NotificationsPage {
    nav: &'static str,
    /// One table: the page includes the shared table markup, which reads `t`.
    policies: Vec<Table>,
    blocks: Vec<(String, String)>,
    states: [&'static str; 12],
}
