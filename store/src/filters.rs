//! Prefect's filter objects (`flows`, `flow_runs`, `task_runs`, ...) and their translation
//! into SQL conditions with bound parameters. Each object combines its own criteria with
//! its `operator`; different objects always combine with AND, as EXISTS over related rows.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use stratus_domain::invalid::Invalid;
use stratus_domain::time::ts_opt;

/// Bound parameters of a query being built.
#[derive(Default)]
pub struct Query {
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Query {
    /// Binds a value and returns its placeholder (`$n`).
    pub fn bind<T: ToSql + Sync + Send + 'static>(&mut self, value: T) -> String {
        self.params.push(Box::new(value));
        format!("${}", self.params.len())
    }

    pub fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }

    /// Runs `sql` with these parameters. The statement is kept prepared on the connection
    /// when its shape (its text) is one of the first [`PREPARED_SHAPES`] this process has
    /// run: planning a runs list took longer than running it. Callers choose the shape of
    /// a filter, so past that bound a shape is planned each time rather than kept in every
    /// connection.
    pub async fn rows(
        &self,
        c: &impl deadpool_postgres::GenericClient,
        sql: &str,
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        if preparable(sql) {
            let stmt = c.prepare_cached(sql).await?;
            c.query(&stmt, &self.params()).await
        } else {
            self.rows_planned_once(c, sql).await
        }
    }

    /// Runs `sql` with these parameters, planned for them and kept nowhere.
    pub async fn rows_planned_once(
        &self,
        c: &impl deadpool_postgres::GenericClient,
        sql: &str,
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        c.query(sql, &self.params()).await
    }
}

/// How many filter shapes a process keeps prepared: the client and the UI send a handful.
pub const PREPARED_SHAPES: usize = 64;

fn preparable(sql: &str) -> bool {
    static SHAPES: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<String>>> =
        std::sync::OnceLock::new();
    let mut shapes = SHAPES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if shapes.contains(sql) {
        return true;
    }
    if shapes.len() < PREPARED_SHAPES {
        shapes.insert(sql.to_owned());
        return true;
    }
    false
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
pub enum Operator {
    #[default]
    #[serde(rename = "and_")]
    And,
    #[serde(rename = "or_")]
    Or,
}

/// Conditions of one filter object, joined by its operator.
struct Conds {
    op: Operator,
    parts: Vec<String>,
}

impl Conds {
    fn new(op: Option<Operator>) -> Self {
        Conds {
            op: op.unwrap_or_default(),
            parts: Vec::new(),
        }
    }

    fn push(&mut self, cond: String) {
        self.parts.push(cond);
    }

    fn sql(self) -> String {
        if self.parts.is_empty() {
            return "TRUE".to_string();
        }
        let sep = match self.op {
            Operator::And => " AND ",
            Operator::Or => " OR ",
        };
        format!("({})", self.parts.join(sep))
    }
}

/// Most values one filter list (`any_`, `not_any_`, `all_`, `startswith_`) may hold: a
/// list is matched against every candidate row, so its length bounds a request's work.
/// Prefect has no bound; the stock client and UI send lists of a page of ids at most.
pub const MAX_FILTER_VALUES: usize = 1_000;

/// A filter list of at most [`MAX_FILTER_VALUES`] values (pydantic's wording past it).
pub fn bounded_list<'de, D, T>(d: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    let list = Option::<Vec<T>>::deserialize(d)?;
    match list {
        Some(l) if l.len() > MAX_FILTER_VALUES => Err(serde::de::Error::custom(format!(
            "ensure this value has at most {MAX_FILTER_VALUES} items"
        ))),
        other => Ok(other),
    }
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdFilter {
    #[serde(default, deserialize_with = "bounded_list")]
    pub any_: Option<Vec<Uuid>>,
    #[serde(default, deserialize_with = "bounded_list")]
    pub not_any_: Option<Vec<Uuid>>,
    #[serde(default)]
    pub is_null_: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TextFilter {
    #[serde(default, deserialize_with = "bounded_list")]
    pub any_: Option<Vec<String>>,
    #[serde(default, deserialize_with = "bounded_list")]
    pub not_any_: Option<Vec<String>>,
    #[serde(default)]
    pub like_: Option<String>,
    #[serde(default, deserialize_with = "bounded_list")]
    pub startswith_: Option<Vec<String>>,
    #[serde(default)]
    pub is_null_: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TagsFilter {
    #[serde(default)]
    pub operator: Option<Operator>,
    #[serde(default, deserialize_with = "bounded_list")]
    pub all_: Option<Vec<String>>,
    #[serde(default, deserialize_with = "bounded_list")]
    pub any_: Option<Vec<String>>,
    #[serde(default)]
    pub is_null_: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeFilter {
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    #[serde(default, with = "ts_opt")]
    pub before_: Option<DateTime<Utc>>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    #[serde(default, with = "ts_opt")]
    pub after_: Option<DateTime<Utc>>,
    #[serde(default)]
    pub is_null_: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BoolFilter {
    #[serde(default)]
    pub eq_: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExistsFilter {
    #[serde(default)]
    pub exists_: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateFilter {
    #[serde(default)]
    pub operator: Option<Operator>,
    #[serde(default, rename = "type")]
    pub kind: Option<TextFilter>,
    #[serde(default)]
    pub name: Option<TextFilter>,
}

/// The ids of a filter that says nothing but `any_`.
fn ids_only(f: &IdFilter) -> Option<&[Uuid]> {
    match f {
        IdFilter {
            any_: Some(ids),
            not_any_: None,
            is_null_: None,
        } => Some(ids),
        _ => None,
    }
}

/// `col` is one of `ids`. Plain equality for one lets Postgres (before 17) read a
/// composite index in order, as for the task runs of one flow run sorted by start.
fn column_in(col: &str, ids: &[Uuid], q: &mut Query) -> String {
    match ids {
        [one] => format!("{col} = {}::uuid", q.bind(*one)),
        _ => format!("{col} = ANY({}::uuid[])", q.bind(ids.to_vec())),
    }
}

fn uuid_conds(c: &mut Conds, q: &mut Query, col: &str, f: &Option<IdFilter>) {
    let Some(f) = f else { return };
    if let Some(any) = &f.any_ {
        c.push(column_in(col, any, q));
    }
    if let Some(not_any) = &f.not_any_ {
        c.push(format!("NOT ({col} = ANY({}::uuid[]))", q.bind(not_any.clone())));
    }
    null_cond(c, col, f.is_null_);
}

fn text_conds(c: &mut Conds, q: &mut Query, col: &str, f: &Option<TextFilter>) {
    let Some(f) = f else { return };
    if let Some(any) = &f.any_ {
        // As `column_in`: one value is plain equality, which reads a composite index in
        // order (the runs in one state, newest first).
        c.push(match any.as_slice() {
            [one] => format!("{col} = {}::text", q.bind(one.clone())),
            _ => format!("{col} = ANY({}::text[])", q.bind(any.clone())),
        });
    }
    if let Some(not_any) = &f.not_any_ {
        c.push(format!(
            "({col} IS NULL OR NOT ({col} = ANY({}::text[])))",
            q.bind(not_any.clone())
        ));
    }
    if let Some(like) = &f.like_ {
        c.push(format!(
            "{col} ILIKE {}",
            q.bind(format!("%{}%", escape_like(like)))
        ));
    }
    if let Some(prefixes) = &f.startswith_ {
        let patterns: Vec<String> = prefixes.iter().map(|p| format!("{}%", escape_like(p))).collect();
        c.push(format!("{col} ILIKE ANY({}::text[])", q.bind(patterns)));
    }
    null_cond(c, col, f.is_null_);
}

/// Conditions from several criteria (each `None` when absent), joined by `operator`.
pub fn combine(operator: Option<Operator>, parts: Vec<Option<String>>) -> String {
    let mut c = Conds::new(operator);
    for part in parts.into_iter().flatten() {
        c.push(part);
    }
    c.sql()
}

fn collect(build: impl FnOnce(&mut Conds)) -> Option<String> {
    let mut c = Conds::new(None);
    build(&mut c);
    (!c.parts.is_empty()).then(|| c.sql())
}

/// The conditions of an id criterion on `col`, or None.
pub fn id_sql(q: &mut Query, col: &str, f: &Option<IdFilter>) -> Option<String> {
    collect(|c| uuid_conds(c, q, col, f))
}

/// The conditions of a text criterion on `col`, or None.
pub fn text_sql(q: &mut Query, col: &str, f: &Option<TextFilter>) -> Option<String> {
    collect(|c| text_conds(c, q, col, f))
}

/// The conditions of a tags criterion on `col`, or None.
pub fn tags_sql(q: &mut Query, col: &str, f: &Option<TagsFilter>) -> Option<String> {
    collect(|c| tags_conds(c, q, col, f))
}

fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

fn null_cond(c: &mut Conds, col: &str, is_null: Option<bool>) {
    match is_null {
        Some(true) => c.push(format!("{col} IS NULL")),
        Some(false) => c.push(format!("{col} IS NOT NULL")),
        None => {}
    }
}

fn tags_conds(c: &mut Conds, q: &mut Query, col: &str, f: &Option<TagsFilter>) {
    let Some(f) = f else { return };
    let mut inner = Conds::new(f.operator);
    if let Some(all) = &f.all_ {
        inner.push(format!("{col} @> {}::jsonb", q.bind(Value::from(all.clone()))));
    }
    if let Some(any) = &f.any_ {
        inner.push(format!("{col} ?| {}::text[]", q.bind(any.clone())));
    }
    match f.is_null_ {
        Some(true) => inner.push(format!("({col} IS NULL OR {col} = '[]'::jsonb)")),
        Some(false) => inner.push(format!("({col} IS NOT NULL AND {col} <> '[]'::jsonb)")),
        None => {}
    }
    if !inner.parts.is_empty() {
        c.push(inner.sql());
    }
}

fn time_conds(c: &mut Conds, q: &mut Query, col: &str, f: &Option<TimeFilter>) {
    let Some(f) = f else { return };
    if let Some(before) = f.before_ {
        c.push(format!("{col} <= {}", q.bind(before)));
    }
    if let Some(after) = f.after_ {
        c.push(format!("{col} >= {}", q.bind(after)));
    }
    null_cond(c, col, f.is_null_);
}

fn state_conds(c: &mut Conds, q: &mut Query, alias: &str, f: &Option<StateFilter>) {
    let Some(f) = f else { return };
    let mut inner = Conds::new(f.operator);
    text_conds(&mut inner, q, &format!("{alias}.state_type"), &f.kind);
    text_conds(&mut inner, q, &format!("{alias}.state_name"), &f.name);
    if !inner.parts.is_empty() {
        c.push(inner.sql());
    }
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowFilter {
    #[serde(default)]
    pub operator: Option<Operator>,
    #[serde(default)]
    pub id: Option<IdFilter>,
    #[serde(default)]
    pub deployment: Option<DeploymentPresenceFilter>,
    #[serde(default)]
    pub name: Option<TextFilter>,
    #[serde(default)]
    pub tags: Option<TagsFilter>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentPresenceFilter {
    #[serde(default)]
    pub is_null_: Option<bool>,
}

impl FlowFilter {
    pub fn sql(&self, q: &mut Query, a: &str) -> String {
        let mut c = Conds::new(self.operator);
        uuid_conds(&mut c, q, &format!("{a}.id"), &self.id);
        text_conds(&mut c, q, &format!("{a}.name"), &self.name);
        tags_conds(&mut c, q, &format!("{a}.tags"), &self.tags);
        if let Some(is_null) = self.deployment.as_ref().and_then(|d| d.is_null_) {
            let exists = format!(
                "EXISTS (SELECT 1 FROM flow_run dfr WHERE dfr.flow_id = {a}.id AND dfr.deployment_id IS NOT NULL)"
            );
            c.push(if is_null { format!("NOT {exists}") } else { exists });
        }
        c.sql()
    }
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowRunFilter {
    #[serde(default)]
    pub operator: Option<Operator>,
    #[serde(default)]
    pub id: Option<IdFilter>,
    #[serde(default)]
    pub name: Option<TextFilter>,
    #[serde(default)]
    pub tags: Option<TagsFilter>,
    #[serde(default)]
    pub deployment_id: Option<IdFilter>,
    #[serde(default)]
    pub work_queue_name: Option<TextFilter>,
    #[serde(default)]
    pub state: Option<StateFilter>,
    #[serde(default)]
    pub flow_version: Option<TextFilter>,
    #[serde(default)]
    pub start_time: Option<TimeFilter>,
    #[serde(default)]
    pub end_time: Option<TimeFilter>,
    #[serde(default)]
    pub expected_start_time: Option<TimeFilter>,
    #[serde(default)]
    pub next_scheduled_start_time: Option<TimeFilter>,
    #[serde(default)]
    pub parent_flow_run_id: Option<IdFilter>,
    #[serde(default)]
    pub parent_task_run_id: Option<IdFilter>,
    #[serde(default)]
    pub idempotency_key: Option<TextFilter>,
}

impl FlowRunFilter {
    pub fn sql(&self, q: &mut Query, a: &str) -> String {
        let mut c = Conds::new(self.operator);
        uuid_conds(&mut c, q, &format!("{a}.id"), &self.id);
        text_conds(&mut c, q, &format!("{a}.name"), &self.name);
        tags_conds(&mut c, q, &format!("{a}.tags"), &self.tags);
        uuid_conds(&mut c, q, &format!("{a}.deployment_id"), &self.deployment_id);
        text_conds(&mut c, q, &format!("{a}.work_queue_name"), &self.work_queue_name);
        state_conds(&mut c, q, a, &self.state);
        text_conds(&mut c, q, &format!("{a}.flow_version"), &self.flow_version);
        time_conds(&mut c, q, &format!("{a}.start_time"), &self.start_time);
        time_conds(&mut c, q, &format!("{a}.end_time"), &self.end_time);
        time_conds(
            &mut c,
            q,
            &format!("{a}.expected_start_time"),
            &self.expected_start_time,
        );
        time_conds(
            &mut c,
            q,
            &format!("{a}.next_scheduled_start_time"),
            &self.next_scheduled_start_time,
        );
        if let Some(any) = self.parent_flow_run_id.as_ref().and_then(|f| f.any_.clone()) {
            c.push(format!(
                "EXISTS (SELECT 1 FROM task_run ptr WHERE ptr.id = {a}.parent_task_run_id AND ptr.flow_run_id = ANY({}::uuid[]))",
                q.bind(any)
            ));
        }
        uuid_conds(
            &mut c,
            q,
            &format!("{a}.parent_task_run_id"),
            &self.parent_task_run_id,
        );
        text_conds(&mut c, q, &format!("{a}.idempotency_key"), &self.idempotency_key);
        c.sql()
    }
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskRunFilter {
    #[serde(default)]
    pub operator: Option<Operator>,
    #[serde(default)]
    pub id: Option<IdFilter>,
    #[serde(default)]
    pub name: Option<TextFilter>,
    #[serde(default)]
    pub tags: Option<TagsFilter>,
    #[serde(default)]
    pub state: Option<StateFilter>,
    #[serde(default)]
    pub start_time: Option<TimeFilter>,
    #[serde(default)]
    pub expected_start_time: Option<TimeFilter>,
    #[serde(default)]
    pub subflow_runs: Option<ExistsFilter>,
    #[serde(default)]
    pub flow_run_id: Option<IdFilter>,
}

impl TaskRunFilter {
    pub fn sql(&self, q: &mut Query, a: &str) -> String {
        let mut c = Conds::new(self.operator);
        uuid_conds(&mut c, q, &format!("{a}.id"), &self.id);
        text_conds(&mut c, q, &format!("{a}.name"), &self.name);
        tags_conds(&mut c, q, &format!("{a}.tags"), &self.tags);
        state_conds(&mut c, q, a, &self.state);
        time_conds(&mut c, q, &format!("{a}.start_time"), &self.start_time);
        time_conds(
            &mut c,
            q,
            &format!("{a}.expected_start_time"),
            &self.expected_start_time,
        );
        if let Some(exists) = self.subflow_runs.as_ref().and_then(|f| f.exists_) {
            let sub = format!("EXISTS (SELECT 1 FROM flow_run sfr WHERE sfr.parent_task_run_id = {a}.id)");
            c.push(if exists { sub } else { format!("NOT {sub}") });
        }
        if let Some(f) = &self.flow_run_id {
            // Prefect: `is_null_` defaults to false and then does not filter.
            if f.is_null_ == Some(true) {
                c.push(format!("{a}.flow_run_id IS NULL"));
            } else if let Some(any) = &f.any_ {
                c.push(format!("{a}.flow_run_id = ANY({}::uuid[])", q.bind(any.clone())));
            }
        }
        c.sql()
    }
}

/// `deployments`: criteria on the `deployment` table.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentFilter {
    #[serde(default)]
    pub operator: Option<Operator>,
    #[serde(default)]
    pub id: Option<IdFilter>,
    #[serde(default)]
    pub name: Option<TextFilter>,
    #[serde(default)]
    pub paused: Option<BoolFilter>,
    #[serde(default)]
    pub is_schedule_active: Option<BoolFilter>,
    #[serde(default)]
    pub tags: Option<TagsFilter>,
    #[serde(default)]
    pub work_queue_name: Option<TextFilter>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkPoolFilter {
    #[serde(default)]
    pub operator: Option<Operator>,
    #[serde(default)]
    pub id: Option<IdFilter>,
    #[serde(default)]
    pub name: Option<TextFilter>,
    #[serde(default, rename = "type")]
    pub kind: Option<TextFilter>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkQueueFilter {
    #[serde(default)]
    pub operator: Option<Operator>,
    #[serde(default)]
    pub id: Option<IdFilter>,
    #[serde(default)]
    pub name: Option<TextFilter>,
}

impl DeploymentFilter {
    /// Conditions on deployments aliased `a`.
    pub fn sql(&self, q: &mut Query, a: &str) -> String {
        let mut c = Conds::new(self.operator);
        uuid_conds(&mut c, q, &format!("{a}.id"), &self.id);
        text_conds(&mut c, q, &format!("{a}.name"), &self.name);
        if let Some(eq) = self.paused.as_ref().and_then(|f| f.eq_) {
            c.push(format!("{a}.paused = {}", q.bind(eq)));
        }
        if let Some(eq) = self.is_schedule_active.as_ref().and_then(|f| f.eq_) {
            c.push(format!("{a}.paused = {}", q.bind(!eq)));
        }
        tags_conds(&mut c, q, &format!("{a}.tags"), &self.tags);
        text_conds(&mut c, q, &format!("{a}.work_queue_name"), &self.work_queue_name);
        c.sql()
    }
}

impl WorkPoolFilter {
    /// Conditions on work pools aliased `a`.
    pub fn sql(&self, q: &mut Query, a: &str) -> String {
        let mut c = Conds::new(self.operator);
        uuid_conds(&mut c, q, &format!("{a}.id"), &self.id);
        text_conds(&mut c, q, &format!("{a}.name"), &self.name);
        text_conds(&mut c, q, &format!("{a}.type"), &self.kind);
        c.sql()
    }
}

impl WorkQueueFilter {
    /// Conditions on work queues aliased `a`.
    pub fn sql(&self, q: &mut Query, a: &str) -> String {
        let mut c = Conds::new(self.operator);
        uuid_conds(&mut c, q, &format!("{a}.id"), &self.id);
        text_conds(&mut c, q, &format!("{a}.name"), &self.name);
        c.sql()
    }
}

/// The body of the flow, flow-run and task-run list routes (`/filter`, `/count`, history).
/// Explicit nulls mean "default", as the client sends `"limit": null`. Like FastAPI's
/// separate `Body` parameters, unknown top-level keys are ignored; the filter objects
/// inside reject theirs.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
pub struct RunFilterBody {
    #[serde(default)]
    pub limit: Option<i64>,
    #[serde(default)]
    pub offset: Option<i64>,
    #[serde(default)]
    pub sort: Option<String>,
    #[serde(default)]
    pub flows: Option<FlowFilter>,
    #[serde(default)]
    pub flow_runs: Option<FlowRunFilter>,
    #[serde(default)]
    pub task_runs: Option<TaskRunFilter>,
    #[serde(default)]
    pub deployments: Option<DeploymentFilter>,
    #[serde(default)]
    pub work_pools: Option<WorkPoolFilter>,
    #[serde(default, alias = "work_queues")]
    pub work_pool_queues: Option<WorkQueueFilter>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    #[serde(default, with = "ts_opt")]
    pub history_start: Option<DateTime<Utc>>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    #[serde(default, with = "ts_opt")]
    pub history_end: Option<DateTime<Utc>>,
    #[serde(default)]
    pub history_interval_seconds: Option<f64>,
}

/// Most intervals one history request may ask for.
pub const MAX_HISTORY_INTERVALS: f64 = 10_000.0;

impl RunFilterBody {
    /// `(history_start, history_end, interval in microseconds)`, validated as Prefect does
    /// (all three required, interval at least one second), with a bound on the bucket count.
    pub fn history_window(&self) -> Result<(DateTime<Utc>, DateTime<Utc>, i64), Invalid> {
        let missing = |field: &str| {
            Invalid::new(
                &["body", field],
                "field required",
                "value_error.missing",
                Value::Null,
            )
        };
        let start = self.history_start.ok_or_else(|| missing("history_start"))?;
        let end = self.history_end.ok_or_else(|| missing("history_end"))?;
        let seconds = self
            .history_interval_seconds
            .ok_or_else(|| missing("history_interval_seconds"))?;
        if !seconds.is_finite() || seconds < 1.0 {
            return Err(Invalid::new(
                &["body", "history_interval_seconds"],
                "History interval must not be less than 1 second.",
                "value_error",
                Value::Null,
            ));
        }
        if end < start {
            return Err(Invalid::new(
                &["body", "history_end"],
                "history_end must not be before history_start",
                "value_error",
                Value::Null,
            ));
        }
        let span = (end - start).num_milliseconds() as f64 / 1000.0;
        if span / seconds > MAX_HISTORY_INTERVALS {
            return Err(Invalid::new(
                &["body", "history_interval_seconds"],
                format!(
                    "History would have more than {MAX_HISTORY_INTERVALS} intervals; use a larger interval."
                ),
                "value_error",
                Value::Null,
            ));
        }
        Ok((start, end, (seconds * 1_000_000.0) as i64))
    }

    pub fn filters(&self) -> RunFilters {
        RunFilters {
            flows: self.flows.clone(),
            flow_runs: self.flow_runs.clone(),
            task_runs: self.task_runs.clone(),
            deployments: self.deployments.clone(),
            work_pools: self.work_pools.clone(),
            work_pool_queues: self.work_pool_queues.clone(),
        }
    }
}

/// The filter objects every run/flow list route takes as top-level body keys.
#[derive(Debug, Clone, Default)]
pub struct RunFilters {
    pub flows: Option<FlowFilter>,
    pub flow_runs: Option<FlowRunFilter>,
    pub task_runs: Option<TaskRunFilter>,
    pub deployments: Option<DeploymentFilter>,
    pub work_pools: Option<WorkPoolFilter>,
    pub work_pool_queues: Option<WorkQueueFilter>,
}

impl RunFilters {
    /// Conditions on flow runs aliased `fr`.
    pub fn flow_run_sql(&self, q: &mut Query) -> String {
        let mut parts = Vec::new();
        if let Some(f) = &self.flow_runs {
            parts.push(f.sql(q, "fr"));
        }
        // Flows or deployments named by id only are the run's own columns: the runs list of
        // one flow or deployment then comes off its (id, expected start) index in order,
        // which the planner cannot see through the EXISTS when its statistics are stale.
        let flow_ids = self.flows.as_ref().and_then(|f| match f {
            FlowFilter {
                id: Some(id),
                deployment: None,
                name: None,
                tags: None,
                ..
            } => ids_only(id),
            _ => None,
        });
        let deployment_ids = self.deployments.as_ref().and_then(|d| match d {
            DeploymentFilter {
                id: Some(id),
                name: None,
                paused: None,
                is_schedule_active: None,
                tags: None,
                work_queue_name: None,
                ..
            } => ids_only(id),
            _ => None,
        });
        if let Some(ids) = flow_ids {
            parts.push(column_in("fr.flow_id", ids, q));
        } else if let Some(f) = &self.flows {
            parts.push(format!(
                "EXISTS (SELECT 1 FROM flow f WHERE f.id = fr.flow_id AND {})",
                f.sql(q, "f")
            ));
        }
        if let Some(f) = &self.task_runs {
            parts.push(format!(
                "EXISTS (SELECT 1 FROM task_run tr WHERE tr.flow_run_id = fr.id AND {})",
                f.sql(q, "tr")
            ));
        }
        if let Some(ids) = deployment_ids {
            // Runs outlive their deployment (the key is not enforced): a deleted one's id
            // names no runs, as in Prefect.
            parts.push(format!(
                "{} AND EXISTS (SELECT 1 FROM deployment d WHERE d.id = fr.deployment_id)",
                column_in("fr.deployment_id", ids, q)
            ));
        } else if let Some(f) = &self.deployments {
            parts.push(format!(
                "EXISTS (SELECT 1 FROM deployment d WHERE d.id = fr.deployment_id AND {})",
                f.sql(q, "d")
            ));
        }
        if let Some(f) = &self.work_pool_queues {
            parts.push(format!(
                "EXISTS (SELECT 1 FROM work_queue fwq WHERE fwq.id = fr.work_queue_id AND {})",
                f.sql(q, "fwq")
            ));
        }
        if let Some(f) = &self.work_pools {
            parts.push(format!(
                "EXISTS (SELECT 1 FROM work_queue pwq JOIN work_pool pwp ON pwp.id = pwq.work_pool_id \
                 WHERE pwq.id = fr.work_queue_id AND {})",
                f.sql(q, "pwp")
            ));
        }
        join_and(parts)
    }

    /// Conditions on flows aliased `f`.
    pub fn flow_sql(&self, q: &mut Query) -> String {
        let mut parts = Vec::new();
        if let Some(f) = &self.flows {
            parts.push(f.sql(q, "f"));
        }
        let run_filters = RunFilters {
            flows: None,
            ..self.clone()
        };
        if run_filters.has_run_criteria() {
            parts.push(format!(
                "EXISTS (SELECT 1 FROM flow_run fr WHERE fr.flow_id = f.id AND {})",
                run_filters.flow_run_sql(q)
            ));
        }
        join_and(parts)
    }

    /// Conditions on task runs aliased `tr`.
    pub fn task_run_sql(&self, q: &mut Query) -> String {
        let mut parts = Vec::new();
        if let Some(f) = &self.task_runs {
            parts.push(f.sql(q, "tr"));
        }
        let run_filters = RunFilters {
            task_runs: None,
            ..self.clone()
        };
        if run_filters.has_run_criteria() || run_filters.flows.is_some() {
            parts.push(format!(
                "EXISTS (SELECT 1 FROM flow_run fr WHERE fr.id = tr.flow_run_id AND {})",
                run_filters.flow_run_sql(q)
            ));
        }
        join_and(parts)
    }

    fn has_run_criteria(&self) -> bool {
        self.flow_runs.is_some()
            || self.task_runs.is_some()
            || self.deployments.is_some()
            || self.work_pools.is_some()
            || self.work_pool_queues.is_some()
    }
}

fn join_and(parts: Vec<String>) -> String {
    if parts.is_empty() {
        "TRUE".to_string()
    } else {
        parts.join(" AND ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_shapes_are_kept_prepared() {
        for i in 0..PREPARED_SHAPES {
            assert!(preparable(&format!("SELECT {i}")));
        }
        assert!(!preparable("SELECT 'one shape too many'"));
        assert!(!preparable("SELECT 'one shape too many'"));
        assert!(preparable("SELECT 0"), "a kept shape stays kept");
    }

    #[test]
    fn empty_filters_match_everything() {
        let mut q = Query::default();
        assert_eq!(RunFilters::default().flow_run_sql(&mut q), "TRUE");
        assert_eq!(FlowRunFilter::default().sql(&mut q, "fr"), "TRUE");
    }

    #[test]
    fn operators_combine_criteria() {
        let f: FlowRunFilter = serde_json::from_value(serde_json::json!({
            "operator": "or_",
            "name": {"like_": "a_b"},
            "state": {"type": {"any_": ["RUNNING"]}}
        }))
        .unwrap();
        let mut q = Query::default();
        let sql = f.sql(&mut q, "fr");
        assert_eq!(sql, "(fr.name ILIKE $1 OR (fr.state_type = $2::text))");
        assert_eq!(q.params().len(), 2);
    }

    #[test]
    fn unknown_filter_keys_are_rejected() {
        let bad = serde_json::from_value::<FlowRunFilter>(serde_json::json!({"nme": {}}));
        assert!(bad.is_err());
    }
}
