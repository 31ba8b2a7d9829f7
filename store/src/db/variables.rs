//! SQL for the `variable` table.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::db::rows::{self, FromRow};
use crate::filters::{IdFilter, Query, TagsFilter, TextFilter};
use stratus_domain::time::ts;

#[derive(Debug, Clone, Serialize, FromRow, schemars::JsonSchema)]
pub struct Variable {
    pub id: Uuid,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub created: DateTime<Utc>,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub updated: DateTime<Utc>,
    pub name: String,
    pub value: String,
    pub tags: Value,
}

const COLUMNS: &str = "v.id, v.created, v.updated, v.name, v.value, v.tags";

/// Inserts a variable; a taken name is a unique violation (Prefect's generic 409).
pub async fn create(
    c: &impl GenericClient,
    name: &str,
    value: &str,
    tags: &Value,
) -> Result<Variable, tokio_postgres::Error> {
    let sql =
        format!("INSERT INTO variable AS v (name, value, tags) VALUES ($1, $2, $3) RETURNING {COLUMNS}");
    rows::one(&c.query_one(sql.as_str(), &[&name, &value, tags]).await?)
}

/// Reads by id, or by name.
pub async fn read(
    c: &impl GenericClient,
    key: VariableKey<'_>,
) -> Result<Option<Variable>, tokio_postgres::Error> {
    let row = match key {
        VariableKey::Id(id) => {
            c.query_opt(
                format!("SELECT {COLUMNS} FROM variable v WHERE v.id = $1").as_str(),
                &[&id],
            )
            .await?
        }
        VariableKey::Name(name) => {
            c.query_opt(
                format!("SELECT {COLUMNS} FROM variable v WHERE v.name = $1").as_str(),
                &[&name],
            )
            .await?
        }
    };
    rows::maybe(row)
}

#[derive(Debug, Clone, Copy)]
pub enum VariableKey<'a> {
    Id(Uuid),
    Name(&'a str),
}

pub async fn update(
    c: &impl GenericClient,
    id: Uuid,
    name: Option<&str>,
    value: Option<&str>,
    tags: Option<&Value>,
) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute(
            "UPDATE variable SET name = coalesce($2, name), value = coalesce($3, value), tags = coalesce($4, tags), \
             updated = now() WHERE id = $1",
            &[&id, &name, &value, &tags],
        )
        .await?;
    Ok(n > 0)
}

pub async fn delete(c: &impl GenericClient, id: Uuid) -> Result<bool, tokio_postgres::Error> {
    Ok(c.execute("DELETE FROM variable WHERE id = $1", &[&id]).await? > 0)
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VariableFilter {
    #[serde(default)]
    pub operator: Option<crate::filters::Operator>,
    #[serde(default)]
    pub id: Option<IdFilter>,
    #[serde(default)]
    pub name: Option<TextFilter>,
    #[serde(default)]
    pub value: Option<TextFilter>,
    #[serde(default)]
    pub tags: Option<TagsFilter>,
}

#[derive(Debug, Clone, Copy)]
pub enum VariableSort {
    CreatedDesc,
    UpdatedDesc,
    NameDesc,
    NameAsc,
}

impl VariableSort {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "CREATED_DESC" => VariableSort::CreatedDesc,
            "UPDATED_DESC" => VariableSort::UpdatedDesc,
            "NAME_DESC" => VariableSort::NameDesc,
            "NAME_ASC" => VariableSort::NameAsc,
            _ => return None,
        })
    }
    fn sql(self) -> &'static str {
        match self {
            VariableSort::CreatedDesc => "v.created DESC, v.id",
            VariableSort::UpdatedDesc => "v.updated DESC, v.id",
            VariableSort::NameDesc => "v.name DESC",
            VariableSort::NameAsc => "v.name ASC",
        }
    }
}

impl VariableFilter {
    pub fn sql(&self, q: &mut Query, a: &str) -> String {
        crate::filters::combine(
            self.operator,
            vec![
                crate::filters::id_sql(q, &format!("{a}.id"), &self.id),
                crate::filters::text_sql(q, &format!("{a}.name"), &self.name),
                crate::filters::text_sql(q, &format!("{a}.value"), &self.value),
                crate::filters::tags_sql(q, &format!("{a}.tags"), &self.tags),
            ],
        )
    }
}

pub async fn filter(
    c: &impl GenericClient,
    f: &VariableFilter,
    sort: VariableSort,
    limit: i64,
    offset: i64,
) -> Result<Vec<Variable>, tokio_postgres::Error> {
    let mut q = Query::default();
    let cond = f.sql(&mut q, "v");
    let sql = format!(
        "SELECT {COLUMNS} FROM variable v WHERE {cond} ORDER BY {} LIMIT {} OFFSET {}",
        sort.sql(),
        q.bind(limit),
        q.bind(offset)
    );
    rows::all(c.query(sql.as_str(), &q.params()).await?)
}

pub async fn count(c: &impl GenericClient, f: &VariableFilter) -> Result<i64, tokio_postgres::Error> {
    let mut q = Query::default();
    let cond = f.sql(&mut q, "v");
    Ok(c.query_one(
        format!("SELECT count(*) FROM variable v WHERE {cond}").as_str(),
        &q.params(),
    )
    .await?
    .get(0))
}

/// The values of the variables named in `names` (those that exist), for hydrating
/// `workspace_variable` placeholders.
pub async fn values_named(
    c: &impl GenericClient,
    names: &[String],
) -> Result<Vec<(String, String)>, tokio_postgres::Error> {
    let found = c
        .query("SELECT name, value FROM variable WHERE name = ANY($1)", &[&names])
        .await?;
    found
        .iter()
        .map(|r| Ok((r.try_get("name")?, r.try_get("value")?)))
        .collect()
}
