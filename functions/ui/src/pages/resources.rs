//! Concurrency limits, variables, artifacts and notification policies: lists with the
//! forms that create, edit and delete them.

use askama::Template;
use axum::extract::State;
use serde_json::json;
use stratus_http::AppState;
use stratus_store::db::blocks::BlockDocumentFilter;
use stratus_store::db::blocks::{self as docs, DocumentQuery, DocumentSort};
use stratus_store::db::concurrency_limits as limits;
use stratus_store::db::notifications::{self, PolicyFilter};
use stratus_store::db::variables::{self, VariableFilter, VariableSort};

use super::view;
use super::{render, PageError, PageResult};

pub struct Cell {
    pub(super) text: String,
    pub(super) href: Option<String>,
    pub(super) code: bool,
    pub(super) buttons: Vec<Button>,
}

/// A button that calls the API (`app.js` reads its `data-api` and `data-body`).
pub struct Button {
    pub(super) label: &'static str,
    pub(super) api: String,
    pub(super) body: String,
    pub(super) confirm: &'static str,
}

pub(super) fn text(t: impl Into<String>) -> Cell {
    Cell {
        text: t.into(),
        href: None,
        code: false,
        buttons: Vec::new(),
    }
}

pub(super) fn link(t: impl Into<String>, href: String) -> Cell {
    Cell {
        href: Some(href),
        ..text(t)
    }
}

pub(super) fn code(t: impl Into<String>) -> Cell {
    Cell {
        code: true,
        ..text(t)
    }
}

fn buttons(buttons: Vec<Button>) -> Cell {
    Cell { buttons, ..text("") }
}

pub struct Table {
    pub(super) head: Vec<&'static str>,
    pub(super) rows: Vec<Vec<Cell>>,
    pub(super) empty: &'static str,
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

struct TagLimitRow {
    name: String,
    path: String,
    limit: i32,
    active: usize,
    /// The body an edit sends besides the limit: creating a tag's limit again updates it.
    extra: String,
}

struct GlobalLimitRow {
    id: String,
    name: String,
    limit: i32,
    active: i32,
    decay: f64,
    on: bool,
}

#[derive(Template)]
#[template(path = "concurrency.html")]
struct ConcurrencyPage {
    nav: &'static str,
    tags: Vec<TagLimitRow>,
    global: Vec<GlobalLimitRow>,
}

pub async fn concurrency(State(app): State<AppState>) -> PageResult {
    let c = app.client().await?;
    let tags = limits::filter_v1(&c, 500, 0).await?;
    let global = limits::filter_v2(&c, 500, 0).await?;
    Ok(render(&ConcurrencyPage {
        nav: "limits",
        tags: tags
            .iter()
            .map(|l| TagLimitRow {
                name: l.tag.clone(),
                path: stratus_store::url::percent_encode(&l.tag),
                limit: l.concurrency_limit,
                active: l.active_slots.as_array().map(Vec::len).unwrap_or(0),
                extra: json!({"tag": l.tag}).to_string(),
            })
            .collect(),
        global: global
            .iter()
            .map(|l| GlobalLimitRow {
                id: l.id.to_string(),
                name: l.name.clone(),
                limit: l.limit,
                active: l.active_slots,
                decay: l.slot_decay_per_second,
                on: l.active,
            })
            .collect(),
    }))
}

struct VariableRow {
    name: String,
    path: String,
    value: String,
    tags: Vec<String>,
    updated: String,
}

#[derive(Template)]
#[template(path = "variables.html")]
struct VariablesPage {
    nav: &'static str,
    rows: Vec<VariableRow>,
}

pub async fn variables(State(app): State<AppState>) -> PageResult {
    let c = app.client().await?;
    let rows = variables::filter(&c, &VariableFilter::default(), VariableSort::NameAsc, 500, 0).await?;
    Ok(render(&VariablesPage {
        nav: "variables",
        rows: rows
            .iter()
            .map(|v| VariableRow {
                name: v.name.clone(),
                path: stratus_store::url::percent_encode(&v.name),
                value: v.value.clone(),
                tags: view::tags(&v.tags),
                updated: view::when(Some(v.updated)),
            })
            .collect(),
    }))
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
    let may_write = super::session::current().may_write;
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
                    buttons(if may_write {
                        vec![
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
                        ]
                    } else {
                        Vec::new()
                    }),
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
