//! Block documents' data is sealed in the database: a dump of the table shows no value,
//! the API reads it back, and `stratus encryption rotate` moves every document to a new
//! key so that the old one can be dropped.

use std::process::Command;
use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::{json, Value};
use stratus_store::config::Settings;
use stratus_store::keyring::Keyring;

use crate::common::TestApp;

const OLD: &str = "old:4d1f2a7c9b8e6d5c4b3a29180716f5e4";
const NEW: &str = "new:e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0";
const SECRET: &str = "hunter2-never-in-a-dump";
const PLAIN: &str = "alice-in-the-data-too";

fn keys(raw: &str) -> Option<Arc<Keyring>> {
    Some(Arc::new(Keyring::parse(raw).unwrap()))
}

/// A document with a secret field and a plain one; returns its id.
async fn document(app: &TestApp) -> String {
    let block_type = app
        .post("/api/block_types/", json!({"name": "Creds", "slug": "creds"}))
        .await;
    assert_eq!(block_type.status, 201, "{}", block_type.text);
    let fields = json!({"title": "Creds", "type": "object",
        "properties": {"user": {"type": "string"},
                       "password": {"type": "string", "format": "password", "writeOnly": true}},
        "block_type_slug": "creds", "secret_fields": ["password"], "block_schema_references": {}});
    let schema = app
        .post(
            "/api/block_schemas/",
            json!({"fields": fields, "block_type_id": block_type.body["id"]}),
        )
        .await;
    assert_eq!(schema.status, 201, "{}", schema.text);
    let doc = app
        .post(
            "/api/block_documents/",
            json!({"name": "prod", "block_type_id": block_type.body["id"], "block_schema_id": schema.body["id"],
                   "data": {"user": PLAIN, "password": SECRET}}),
        )
        .await;
    assert_eq!(doc.status, 201, "{}", doc.text);
    doc.body["id"].as_str().unwrap().to_string()
}

/// The table as `pg_dump` writes its data: `COPY ... TO STDOUT`.
async fn dump(app: &TestApp) -> String {
    let db = app.db().await;
    let stream = db.copy_out("COPY block_document TO STDOUT").await.unwrap();
    let chunks: Vec<_> = stream.collect().await;
    let bytes: Vec<u8> = chunks.into_iter().flat_map(|c| c.unwrap().to_vec()).collect();
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn a_dump_of_the_block_document_table_shows_no_secret_value() {
    let app = TestApp::spawn_with(|s| s.encryption_keys = keys(OLD)).await;
    let id = document(&app).await;
    let dumped = dump(&app).await;
    assert!(dumped.contains("$stratus_sealed"), "{dumped}");
    assert!(!dumped.contains(SECRET) && !dumped.contains(PLAIN), "{dumped}");

    let read = app
        .get(&format!("/api/block_documents/{id}?include_secrets=true"))
        .await;
    assert_eq!(read.body["data"], json!({"user": PLAIN, "password": SECRET}));
    let hidden = app.get(&format!("/api/block_documents/{id}")).await;
    assert_eq!(hidden.body["data"]["user"], PLAIN);
    assert_ne!(hidden.body["data"]["password"], SECRET);
    // A PATCH that merges (and sends the secret back obfuscated) keeps it, still sealed.
    let patched = app
        .patch(
            &format!("/api/block_documents/{id}"),
            json!({"data": {"user": "bob", "password": hidden.body["data"]["password"]}, "merge_existing_data": true}),
        )
        .await;
    assert_eq!(patched.status, 204, "{}", patched.text);
    let read = app
        .get(&format!("/api/block_documents/{id}?include_secrets=true"))
        .await;
    assert_eq!(read.body["data"], json!({"user": "bob", "password": SECRET}));
    assert!(!dump(&app).await.contains(SECRET));
}

#[tokio::test]
async fn rotating_moves_every_document_to_the_new_key() {
    let old = TestApp::spawn_with(|s| s.encryption_keys = keys(OLD)).await;
    let id = document(&old).await;
    // A document written before sealing began, as an upgraded database holds them.
    old.db()
        .await
        .execute(
            "UPDATE block_document SET data = $1 WHERE id = $2::text::uuid",
            &[&json!({"user": "legacy", "password": SECRET}), &id],
        )
        .await
        .unwrap();
    let legacy = old
        .get(&format!("/api/block_documents/{id}?include_secrets=true"))
        .await;
    assert_eq!(legacy.body["data"]["password"], SECRET, "plain data still reads");

    let status = Command::new(env!("CARGO_BIN_EXE_stratus"))
        .args(["encryption", "rotate"])
        .env("STRATUS_DATABASE_URL", &old.database_url)
        .env("STRATUS_ENCRYPTION_KEYS", format!("{NEW},{OLD}"))
        .env("STRATUS_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(String::from_utf8_lossy(&status.stdout).contains("under key new"));
    let dumped = dump(&old).await;
    assert!(
        dumped.contains("\"key\": \"new\"") && !dumped.contains("\"key\": \"old\""),
        "{dumped}"
    );
    assert!(!dumped.contains(SECRET));

    // With only the new key, it reads; with only the old one, it cannot, and says why
    // without showing anything of the data or the key.
    let mut settings = Settings::from_env().unwrap();
    settings.database_url = Some(old.database_url.clone());
    settings.encryption_keys = keys(NEW);
    let pool = stratus_store::db::pool(&old.database_url, 2).unwrap();
    let state = stratus_aws::state(settings, pool.clone()).await.unwrap();
    let keyring = state.keyring.clone();
    let client = stratus_store::tenancy::system(pool.get()).await.unwrap();
    let doc = stratus_store::db::blocks::read_document(&client, &keyring, id.parse().unwrap(), true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(doc.data, json!({"user": "legacy", "password": SECRET}));
    let stale = old
        .get(&format!("/api/block_documents/{id}?include_secrets=true"))
        .await;
    assert_eq!(stale.status, 500);
    assert!(
        !stale.text.contains(SECRET) && !stale.text.contains("4d1f"),
        "{}",
        stale.text
    );
    let _: Value = stale.body;
}
