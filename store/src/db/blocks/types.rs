//! Block types.

use deadpool_postgres::GenericClient;
use serde::Deserialize;

use super::{BlockSchemaFilter, BlockType, BlockTypeFilter, TYPE_COLUMNS};
use crate::db::{given, rows};
use crate::filters::Query;
use uuid::Uuid;

/// The descriptive fields of a block type.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, schemars::JsonSchema)]
pub struct BlockTypeFields {
    #[serde(default)]
    pub logo_url: Option<String>,
    #[serde(default)]
    pub documentation_url: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub code_example: Option<String>,
}

/// A PATCH of a block type: `None` leaves a field alone, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct BlockTypePatch {
    pub logo_url: Option<Option<String>>,
    pub documentation_url: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub code_example: Option<Option<String>>,
}

impl BlockTypePatch {
    /// Whether writing the patch would change `current`. Prefect compares the given fields
    /// with all four of the stored ones (HTML entities decoded), so a patch that leaves any
    /// field out always writes.
    pub fn changes(&self, current: &BlockType) -> bool {
        let given = [
            (&self.logo_url, &current.logo_url),
            (&self.documentation_url, &current.documentation_url),
            (&self.description, &current.description),
            (&self.code_example, &current.code_example),
        ];
        given.iter().any(|(new, old)| match new {
            None => true,
            Some(new) => new.as_deref().map(html_unescape) != old.as_deref().map(html_unescape),
        })
    }
}

/// Python's `html.escape(text, quote=False)`, which Prefect applies to a new block type's
/// description and code example.
pub fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Decodes the HTML entities `html.escape` produces, plus quotes and numeric references.
pub fn html_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let decoded = rest.find(';').filter(|end| *end <= 10).and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                    .or_else(|| entity.strip_prefix('#').and_then(|dec| dec.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn escaped(f: &BlockTypeFields) -> BlockTypeFields {
    BlockTypeFields {
        logo_url: f.logo_url.clone(),
        documentation_url: f.documentation_url.clone(),
        description: f.description.as_deref().map(html_escape),
        code_example: f.code_example.as_deref().map(html_escape),
    }
}

/// Inserts a block type (description and code example HTML-escaped, as Prefect stores
/// them); None when its name or slug is taken.
pub async fn create_type(
    c: &impl GenericClient,
    name: &str,
    slug: &str,
    f: &BlockTypeFields,
    is_protected: bool,
) -> Result<Option<BlockType>, tokio_postgres::Error> {
    let f = escaped(f);
    let sql = format!(
        "INSERT INTO block_type AS bt (name, slug, logo_url, documentation_url, description, code_example, is_protected, created, updated) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, clock_timestamp(), clock_timestamp()) ON CONFLICT DO NOTHING RETURNING {TYPE_COLUMNS}"
    );
    let row = c
        .query_opt(
            sql.as_str(),
            &[
                &name,
                &slug,
                &f.logo_url,
                &f.documentation_url,
                &f.description,
                &f.code_example,
                &is_protected,
            ],
        )
        .await?;
    rows::maybe(row)
}

/// Registers a built-in block type by slug: inserts it, or refreshes its name and fields.
/// `protect` marks it protected; otherwise an existing type keeps its protection.
pub async fn register_type(
    c: &impl GenericClient,
    name: &str,
    slug: &str,
    f: &BlockTypeFields,
    protect: bool,
) -> Result<BlockType, tokio_postgres::Error> {
    let f = escaped(f);
    let sql = format!(
        "INSERT INTO block_type AS bt (name, slug, logo_url, documentation_url, description, code_example, is_protected, created, updated) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, clock_timestamp(), clock_timestamp()) \
         ON CONFLICT (workspace_id, slug) DO UPDATE SET name = EXCLUDED.name, logo_url = EXCLUDED.logo_url, \
           documentation_url = EXCLUDED.documentation_url, description = EXCLUDED.description, \
           code_example = EXCLUDED.code_example, is_protected = bt.is_protected OR EXCLUDED.is_protected, \
           updated = clock_timestamp() \
         RETURNING {TYPE_COLUMNS}"
    );
    let row = c
        .query_one(
            sql.as_str(),
            &[
                &name,
                &slug,
                &f.logo_url,
                &f.documentation_url,
                &f.description,
                &f.code_example,
                &protect,
            ],
        )
        .await?;
    rows::one(&row)
}

pub async fn read_type(c: &impl GenericClient, id: Uuid) -> Result<Option<BlockType>, tokio_postgres::Error> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {TYPE_COLUMNS} FROM block_type bt WHERE bt.id = $1"
        ))
        .await?;
    rows::maybe(c.query_opt(&stmt, &[&id]).await?)
}

pub async fn read_type_by_slug(
    c: &impl GenericClient,
    slug: &str,
) -> Result<Option<BlockType>, tokio_postgres::Error> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {TYPE_COLUMNS} FROM block_type bt WHERE bt.slug = $1"
        ))
        .await?;
    rows::maybe(c.query_opt(&stmt, &[&slug]).await?)
}

/// Writes the given fields (as given, not escaped, as Prefect does); false when the type
/// does not exist.
pub async fn update_type(
    c: &impl GenericClient,
    id: Uuid,
    p: &BlockTypePatch,
) -> Result<bool, tokio_postgres::Error> {
    let (set_logo, logo_url) = given(&p.logo_url);
    let (set_docs, documentation_url) = given(&p.documentation_url);
    let (set_description, description) = given(&p.description);
    let (set_example, code_example) = given(&p.code_example);
    let n = c
        .execute(
            "UPDATE block_type SET \
               logo_url = CASE WHEN $2 THEN $3 ELSE logo_url END, \
               documentation_url = CASE WHEN $4 THEN $5 ELSE documentation_url END, \
               description = CASE WHEN $6 THEN $7 ELSE description END, \
               code_example = CASE WHEN $8 THEN $9 ELSE code_example END, \
               updated = clock_timestamp() \
             WHERE id = $1",
            &[
                &id,
                &set_logo,
                &logo_url,
                &set_docs,
                &documentation_url,
                &set_description,
                &description,
                &set_example,
                &code_example,
            ],
        )
        .await?;
    Ok(n > 0)
}

pub async fn delete_type(c: &impl GenericClient, id: Uuid) -> Result<bool, tokio_postgres::Error> {
    Ok(c.execute("DELETE FROM block_type WHERE id = $1", &[&id]).await? > 0)
}

/// Block types by name, optionally only those with a schema matching `schemas`.
pub async fn filter_types(
    c: &impl GenericClient,
    types: &BlockTypeFilter,
    schemas: Option<&BlockSchemaFilter>,
    limit: i64,
    offset: i64,
) -> Result<Vec<BlockType>, tokio_postgres::Error> {
    let mut q = Query::default();
    let mut cond = types.sql(&mut q);
    if let Some(s) = schemas {
        cond = format!(
            "{cond} AND EXISTS (SELECT 1 FROM block_schema bs WHERE bs.block_type_id = bt.id AND {})",
            s.sql(&mut q, "bs")
        );
    }
    let sql = format!(
        "SELECT {TYPE_COLUMNS} FROM block_type bt WHERE {cond} ORDER BY bt.name, bt.id LIMIT {} OFFSET {}",
        q.bind(limit),
        q.bind(offset)
    );
    rows::all(c.query(sql.as_str(), &q.params()).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_follows_python_html() {
        assert_eq!(
            html_escape("a < b && \"c\" > 'd'"),
            "a &lt; b &amp;&amp; \"c\" &gt; 'd'"
        );
        assert_eq!(html_unescape(&html_escape("x <y> & z")), "x <y> & z");
        assert_eq!(
            html_unescape("&#39;q&#x27; &unknown; & end&"),
            "'q' &unknown; & end&"
        );
    }

    #[test]
    fn a_patch_writes_unless_it_gives_every_field_unchanged() {
        let current = BlockType {
            id: Uuid::nil(),
            created: chrono::Utc::now(),
            updated: chrono::Utc::now(),
            name: "n".into(),
            slug: "n".into(),
            logo_url: None,
            documentation_url: Some("https://x.io".into()),
            description: Some("a &lt; b".into()),
            code_example: None,
            is_protected: false,
        };
        let same = BlockTypePatch {
            logo_url: Some(None),
            documentation_url: Some(Some("https://x.io".into())),
            description: Some(Some("a < b".into())),
            code_example: Some(None),
        };
        assert!(!same.changes(&current));
        let partial = BlockTypePatch {
            description: Some(Some("a < b".into())),
            ..Default::default()
        };
        assert!(partial.changes(&current));
        let different = BlockTypePatch {
            code_example: Some(Some("x".into())),
            ..same
        };
        assert!(different.changes(&current));
    }
}
