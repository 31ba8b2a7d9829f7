use crate::common;

use common::TestApp;
use serde_json::{json, Value};
use uuid::Uuid;

/// Checksums computed by the stock prefect 2.20.27 client
/// (`Block._calculate_schema_checksum`) for the fields used below.
const LOCAL_FILE_SYSTEM_CHECKSUM: &str =
    "sha256:6db1ab242e7b2b88a52dc137a7da3a373af63e0a103b9a91e060ed54a26f395a";
const SECRET_CHECKSUM: &str = "sha256:e6b26e0a0240eb112e604608338f863e5ca2f137936e310014bfa2139d0a9b6c";
const CREDS_CHECKSUM: &str = "sha256:1c4fec87998781a6f971bb24e857b2c528324813d17eb71ab66dd11ea6df1ebf";
const INNER_CHECKSUM: &str = "sha256:e2e2e4172b0e187748c5dea2365323357ad6ee3486f944f3c4a98af0ff17cc87";
const OUTER_CHECKSUM: &str = "sha256:d25c57e0e6498e5d409c3e06bcc64a1849e119d0d35deb4c7ef783ab55853faf";

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_string()
}

fn is_prefect_ts(v: &Value) -> bool {
    let s = v.as_str().unwrap_or_default();
    s.len() == 32 && s.ends_with("+00:00") && s.as_bytes()[19] == b'.'
}

/// A block schema with a secret, non-ASCII text and floats (all of which the checksum
/// must render as Python's `json.dumps` does).
fn creds_fields() -> Value {
    json!({"title": "Creds", "type": "object",
           "properties": {"user": {"type": "string", "title": "Üser ☃"},
                          "password": {"type": "string", "format": "password", "writeOnly": true},
                          "ratio": {"type": "number", "default": 0.1},
                          "big": {"type": "number", "default": 1e-7}},
           "block_type_slug": "creds", "secret_fields": ["password"], "block_schema_references": {}})
}

/// `InnerCreds.schema()` of a client-side block with a `SecretStr` field.
fn inner_fields() -> Value {
    json!({"title": "InnerCreds", "type": "object",
           "properties": {"token": {"title": "Token", "type": "string", "writeOnly": true, "format": "password"},
                          "region": {"title": "Region", "type": "string"}},
           "required": ["token"], "block_type_slug": "inner-creds", "secret_fields": ["token"],
           "block_schema_references": {}})
}

/// `Outer.schema()` of a client-side block with an `InnerCreds` field.
fn outer_fields() -> Value {
    json!({"title": "Outer", "type": "object",
           "properties": {"creds": {"$ref": "#/definitions/InnerCreds"},
                          "label": {"title": "Label", "default": "x", "type": "string"}},
           "required": ["creds"], "block_type_slug": "outer-thing", "secret_fields": ["creds.token"],
           "block_schema_references": {"creds": {"block_type_slug": "inner-creds", "block_schema_checksum": INNER_CHECKSUM}},
           "definitions": {"InnerCreds": inner_fields()}})
}

async fn block_type(app: &TestApp, name: &str, slug: &str) -> Value {
    let res = app
        .post(
            "/api/block_types/",
            json!({"name": name, "slug": slug, "logo_url": null, "documentation_url": null, "description": "d", "code_example": null}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    res.body
}

async fn schema(app: &TestApp, type_id: &Value, fields: Value, version: &str) -> Value {
    let res = app
        .post(
            "/api/block_schemas/",
            json!({"fields": fields, "block_type_id": type_id, "capabilities": ["read"], "version": version}),
        )
        .await;
    assert!(res.status == 201 || res.status == 200, "{}", res.text);
    res.body
}

async fn document(app: &TestApp, name: Option<&str>, data: Value, schema: &Value, anonymous: bool) -> Value {
    let res = app
        .post(
            "/api/block_documents/",
            json!({"name": name, "data": data, "block_schema_id": schema["id"],
                   "block_type_id": schema["block_type_id"], "is_anonymous": anonymous}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    res.body
}

#[tokio::test]
async fn block_types_are_created_read_updated_filtered_and_deleted() {
    let app = TestApp::spawn().await;
    let res = app
        .post(
            "/api/block_types/",
            json!({"name": "My Creds", "slug": "creds", "logo_url": "https://example.com/logo.png",
                   "description": "a <b> & c", "code_example": null}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    let t = res.body;
    let tid = id(&t);
    assert!(is_prefect_ts(&t["created"]) && is_prefect_ts(&t["updated"]));
    assert_eq!(t["is_protected"], false);
    assert_eq!(t["logo_url"], "https://example.com/logo.png");
    // Prefect stores new descriptions HTML-escaped.
    assert_eq!(t["description"], "a &lt;b&gt; &amp; c");
    assert_eq!(app.get("/api/block_types/slug/creds").await.body, t);
    assert_eq!(app.get(&format!("/api/block_types/{tid}")).await.body, t);

    let missing = app.get("/api/block_types/slug/nope").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body, json!({"detail": "Block type not found"}));
    assert_eq!(
        app.get(&format!("/api/block_types/{}", Uuid::new_v4()))
            .await
            .status,
        404
    );
    let bad_id = app.get("/api/block_types/not-a-uuid").await;
    assert_eq!(bad_id.status, 422);
    assert_eq!(bad_id.body["exception_detail"][0]["loc"], json!(["path", "id"]));

    // Conflicts on name and on slug.
    let dup = app
        .post(
            "/api/block_types/",
            json!({"name": "My Creds", "slug": "creds-2"}),
        )
        .await;
    assert_eq!(dup.status, 409);
    assert_eq!(
        dup.body,
        json!({"detail": "Block type with name \"My Creds\" already exists"})
    );
    assert_eq!(
        app.post("/api/block_types/", json!({"name": "Other", "slug": "creds"}))
            .await
            .status,
        409
    );
    // Reserved names, and bad bodies.
    let reserved = app
        .post("/api/block_types/", json!({"name": "Prefect Thing", "slug": "p"}))
        .await;
    assert_eq!(reserved.status, 403);
    assert_eq!(
        reserved.body,
        json!({"detail": "Block type names beginning with 'Prefect' are reserved."})
    );
    let bad_slug = app
        .post("/api/block_types/", json!({"name": "x", "slug": "Bad Slug"}))
        .await;
    assert_eq!(bad_slug.status, 422);
    assert_eq!(
        bad_slug.body["exception_detail"][0]["loc"],
        json!(["body", "slug"])
    );
    assert_eq!(
        bad_slug.body["request_body"],
        json!({"name": "x", "slug": "Bad Slug"})
    );
    let bad_name = app
        .post("/api/block_types/", json!({"name": "a/b", "slug": "ab"}))
        .await;
    assert_eq!(bad_name.status, 422);
    assert_eq!(
        bad_name.body["exception_detail"][0]["type"],
        "value_error.invalidname"
    );
    let bad_url = app
        .post(
            "/api/block_types/",
            json!({"name": "ab", "slug": "ab", "logo_url": "not a url"}),
        )
        .await;
    assert_eq!(bad_url.status, 422);
    assert_eq!(
        bad_url.body["exception_detail"][0]["loc"],
        json!(["body", "logo_url"])
    );
    let extra = app
        .post(
            "/api/block_types/",
            json!({"name": "ab", "slug": "ab", "nope": 1}),
        )
        .await;
    assert_eq!(extra.status, 422);
    assert_eq!(extra.body["exception_detail"][0]["type"], "value_error.extra");
    assert_eq!(
        app.post("/api/block_types/", json!({"name": "ab"})).await.status,
        422
    );
    // Serde would read a struct from an array by position; Prefect wants an object.
    let array = app.post("/api/block_types/", json!(["ab", "ab"])).await;
    assert_eq!(array.status, 422);
    assert_eq!(array.body["exception_detail"][0]["type"], "type_error.dict");

    // PATCH writes the given fields; an explicit null clears one.
    let res = app
        .patch(
            &format!("/api/block_types/{tid}"),
            json!({"description": "new", "logo_url": null}),
        )
        .await;
    assert_eq!(res.status, 204, "{}", res.text);
    let patched = app.get(&format!("/api/block_types/{tid}")).await.body;
    assert_eq!(patched["description"], "new");
    assert_eq!(patched["logo_url"], Value::Null);
    assert_eq!(patched["name"], "My Creds");
    // A patch that gives every field unchanged writes nothing.
    let same =
        json!({"description": "new", "logo_url": null, "documentation_url": null, "code_example": null});
    assert_eq!(
        app.patch(&format!("/api/block_types/{tid}"), same).await.status,
        204
    );
    assert_eq!(
        app.get(&format!("/api/block_types/{tid}")).await.body["updated"],
        patched["updated"]
    );
    assert_eq!(
        app.patch(&format!("/api/block_types/{}", Uuid::new_v4()), json!({}))
            .await
            .status,
        404
    );
    assert_eq!(
        app.patch(&format!("/api/block_types/{tid}"), json!({"name": "renamed"}))
            .await
            .status,
        422
    );

    // Filters: name is a case-insensitive substring, slug a list; sorted by name.
    block_type(&app, "Another Creds", "another").await;
    block_type(&app, "Zeta", "zeta").await;
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    };
    let by_name = app
        .post(
            "/api/block_types/filter",
            json!({"block_types": {"name": {"like_": "CREDS"}}}),
        )
        .await;
    assert_eq!(names(&by_name.body), ["Another Creds", "My Creds"]);
    let by_slug = app
        .post(
            "/api/block_types/filter",
            json!({"block_types": {"slug": {"any_": ["zeta", "creds"]}}, "limit": null, "offset": null}),
        )
        .await;
    assert_eq!(names(&by_slug.body), ["My Creds", "Zeta"]);
    let page = app
        .post("/api/block_types/filter", json!({"limit": 1, "offset": 1}))
        .await;
    assert_eq!(names(&page.body), ["My Creds"]);
    assert_eq!(
        app.post("/api/block_types/filter", json!({"limit": 201}))
            .await
            .status,
        422
    );
    assert_eq!(
        app.post(
            "/api/block_types/filter",
            json!({"block_types": {"slug": {"like_": "x"}}})
        )
        .await
        .status,
        422
    );
    schema(&app, &t["id"], creds_fields(), "1.0").await;
    let with_schema = app
        .post(
            "/api/block_types/filter",
            json!({"block_schemas": {"block_capabilities": {"all_": ["read"]}}}),
        )
        .await;
    assert_eq!(names(&with_schema.body), ["My Creds"]);

    assert_eq!(app.delete(&format!("/api/block_types/{tid}")).await.status, 204);
    assert_eq!(app.delete(&format!("/api/block_types/{tid}")).await.status, 404);
    assert_eq!(app.delete("/api/block_types/zzz").await.status, 422);
}

/// Rows of block types, schemas and schema references.
async fn block_counts(app: &TestApp) -> (i64, i64, i64) {
    let row = app
        .db()
        .await
        .query_one(
            "SELECT (SELECT count(*) FROM block_type), (SELECT count(*) FROM block_schema), \
             (SELECT count(*) FROM block_schema_reference)",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test]
async fn system_block_types_are_installed_with_the_clients_checksums() {
    let app = TestApp::spawn().await;
    // Before installation the stock client's lookup 404s and it creates the type itself.
    assert_eq!(
        app.get("/api/block_types/slug/local-file-system").await.status,
        404
    );
    let res = app
        .post("/api/block_types/install_system_block_types", json!({}))
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.body, Value::Null);

    let types = app.post("/api/block_types/filter", json!({})).await.body;
    let types = types.as_array().unwrap();
    assert_eq!(types.len(), 69, "Prefect 2.20 registers 69 block types");
    let protected: Vec<&str> = types
        .iter()
        .filter(|t| t["is_protected"] == true)
        .map(|t| t["slug"].as_str().unwrap())
        .collect();
    assert_eq!(
        protected,
        [
            "date-time",
            "json",
            "local-file-system",
            "process",
            "secret",
            "webhook"
        ]
    );

    // The client finds the schemas by the checksum it computes itself.
    let lfs = app
        .get(&format!(
            "/api/block_schemas/checksum/{LOCAL_FILE_SYSTEM_CHECKSUM}?version=2.20.27"
        ))
        .await;
    assert_eq!(lfs.status, 200, "{}", lfs.text);
    assert_eq!(lfs.body["block_type"]["slug"], "local-file-system");
    assert_eq!(lfs.body["version"], "2.20.27");
    let secret = app
        .get(&format!("/api/block_schemas/checksum/{SECRET_CHECKSUM}"))
        .await;
    assert_eq!(secret.body["fields"]["secret_fields"], json!(["value"]));
    assert_eq!(
        app.get(&format!(
            "/api/block_schemas/checksum/{SECRET_CHECKSUM}?version=9.9"
        ))
        .await
        .status,
        404
    );

    // Collection schemas keep their nested block schemas as references, rebuilt on read.
    let s3 = app.get("/api/block_types/slug/s3-bucket").await.body;
    let schemas = app
        .post(
            "/api/block_schemas/filter",
            json!({"block_schemas": {"block_type_id": {"any_": [s3["id"]]}}}),
        )
        .await
        .body;
    let fields = &schemas[0]["fields"];
    let credentials = fields["block_schema_references"]["credentials"]
        .as_array()
        .unwrap();
    let slugs: Vec<&str> = credentials
        .iter()
        .map(|r| r["block_type_slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["aws-credentials", "minio-credentials"]);
    assert_eq!(
        fields["definitions"]["AwsCredentials"]["block_type_slug"],
        "aws-credentials"
    );
    assert!(fields["definitions"]["AwsClientParameters"].is_object());

    // Protected types and their schemas cannot be deleted; installing again changes nothing.
    let lfs_type = app.get("/api/block_types/slug/local-file-system").await.body;
    let denied = app.delete(&format!("/api/block_types/{}", id(&lfs_type))).await;
    assert_eq!(denied.status, 403);
    assert_eq!(
        denied.body,
        json!({"detail": "protected block types cannot be deleted."})
    );
    let denied = app.delete(&format!("/api/block_schemas/{}", id(&lfs.body))).await;
    assert_eq!(denied.status, 403);
    assert_eq!(
        denied.body,
        json!({"detail": "Block schemas for protected block types cannot be deleted."})
    );
    let string = app.get("/api/block_types/slug/string").await.body;
    assert_eq!(string["is_protected"], false);
    let before = block_counts(&app).await;
    assert_eq!(
        before,
        (69, 80, 33),
        "the same rows a Prefect 2.20 server registers"
    );
    app.post("/api/block_types/install_system_block_types", json!({}))
        .await;
    assert_eq!(block_counts(&app).await, before);
    assert_eq!(
        app.get("/api/block_types/slug/local-file-system").await.body["id"],
        lfs_type["id"]
    );

    let caps = app.get("/api/block_capabilities/").await.body;
    for cap in ["read-path", "write-path", "put-directory", "get-directory"] {
        assert!(caps.as_array().unwrap().contains(&json!(cap)), "{cap}");
    }
}

#[tokio::test]
async fn block_schemas_are_created_once_per_checksum_and_version() {
    let app = TestApp::spawn().await;
    let t = block_type(&app, "My Creds", "creds").await;
    let first = app
        .post(
            "/api/block_schemas/",
            json!({"fields": creds_fields(), "block_type_id": t["id"], "capabilities": ["read"], "version": "1.0"}),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.text);
    // The same checksum the stock client computes for these fields.
    assert_eq!(first.body["checksum"], CREDS_CHECKSUM);
    assert_eq!(first.body["block_type"]["slug"], "creds");
    assert_eq!(first.body["capabilities"], json!(["read"]));
    assert_eq!(first.body["fields"], creds_fields());
    assert!(is_prefect_ts(&first.body["created"]));

    let again = app
        .post(
            "/api/block_schemas/",
            json!({"fields": creds_fields(), "block_type_id": t["id"], "capabilities": ["read"], "version": "1.0"}),
        )
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["id"], first.body["id"]);
    // Another version is another schema; without a version it is "non-versioned".
    let unversioned = app
        .post(
            "/api/block_schemas/",
            json!({"fields": creds_fields(), "block_type_id": t["id"]}),
        )
        .await;
    assert_eq!(unversioned.status, 201);
    assert_eq!(unversioned.body["version"], "non-versioned");
    assert_eq!(unversioned.body["capabilities"], json!([]));

    let by_checksum = app
        .get(&format!(
            "/api/block_schemas/checksum/{CREDS_CHECKSUM}?version=1.0"
        ))
        .await;
    assert_eq!(by_checksum.body["id"], first.body["id"]);
    let newest = app
        .get(&format!("/api/block_schemas/checksum/{CREDS_CHECKSUM}"))
        .await;
    assert_eq!(newest.body["id"], unversioned.body["id"]);
    let by_id = app.get(&format!("/api/block_schemas/{}", id(&first.body))).await;
    assert_eq!(by_id.body, first.body);

    let missing_type = Uuid::new_v4();
    let res = app
        .post(
            "/api/block_schemas/",
            json!({"fields": {}, "block_type_id": missing_type}),
        )
        .await;
    assert_eq!(res.status, 404);
    assert_eq!(
        res.body,
        json!({"detail": format!("Block type {missing_type} not found.")})
    );
    assert_eq!(
        app.post(
            "/api/block_schemas/",
            json!({"fields": {}, "block_type_id": "nope"})
        )
        .await
        .status,
        422
    );
    assert_eq!(
        app.post(
            "/api/block_schemas/",
            json!({"fields": {}, "block_type_id": t["id"], "checksum": "x"})
        )
        .await
        .status,
        422
    );
    let missing = app.get(&format!("/api/block_schemas/{}", Uuid::new_v4())).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body, json!({"detail": "Block schema not found"}));
    assert_eq!(
        app.get("/api/block_schemas/checksum/sha256:nope").await.status,
        404
    );

    // Filters: version, type, capabilities, ids, with `or_`; newest first.
    let filter = |body: Value| {
        let app = &app;
        async move {
            let res = app.post("/api/block_schemas/filter", body).await;
            assert_eq!(res.status, 200, "{}", res.text);
            res.body
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].clone())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        filter(json!({"block_schemas": {"version": {"any_": ["1.0"]}}})).await,
        [first.body["id"].clone()]
    );
    assert_eq!(
        filter(json!({"block_schemas": {"block_type_id": {"any_": [t["id"]]}}})).await,
        [unversioned.body["id"].clone(), first.body["id"].clone()]
    );
    assert_eq!(
        filter(json!({"block_schemas": {"block_capabilities": {"all_": ["read"]}}})).await,
        [first.body["id"].clone()]
    );
    assert_eq!(
        filter(
            json!({"block_schemas": {"operator": "or_", "id": {"any_": [unversioned.body["id"]]},
                                        "version": {"any_": ["1.0"]}}})
        )
        .await
        .len(),
        2
    );
    assert!(filter(json!({"block_schemas": {"version": {"any_": ["9"]}}}))
        .await
        .is_empty());
    let bad = app
        .post(
            "/api/block_schemas/filter",
            json!({"block_schemas": {"version": {"like_": "1"}}}),
        )
        .await;
    assert_eq!(bad.status, 422);

    assert_eq!(app.get("/api/block_capabilities").await.body, json!(["read"]));
    assert_eq!(
        app.delete(&format!("/api/block_schemas/{}", id(&first.body)))
            .await
            .status,
        204
    );
    assert_eq!(
        app.delete(&format!("/api/block_schemas/{}", id(&first.body)))
            .await
            .status,
        404
    );
    assert_eq!(app.get("/api/block_capabilities/").await.body, json!([]));
}

#[tokio::test]
async fn nested_block_schemas_are_registered_from_definitions() {
    let app = TestApp::spawn().await;
    let outer = block_type(&app, "Outer Thing", "outer-thing").await;
    // The nested block type must exist.
    let res = app
        .post(
            "/api/block_schemas/",
            json!({"fields": outer_fields(), "block_type_id": outer["id"], "version": "1.0"}),
        )
        .await;
    assert_eq!(res.status, 409);
    assert_eq!(
        res.body,
        json!({"detail": "Cannot create block schema because block type 'inner-creds' was not found.Did you forget to register the block type?"})
    );
    block_type(&app, "Inner Creds", "inner-creds").await;
    let res = app
        .post(
            "/api/block_schemas/",
            json!({"fields": outer_fields(), "block_type_id": outer["id"], "version": "1.0"}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    assert_eq!(res.body["checksum"], OUTER_CHECKSUM);
    // The fields come back as the client sent them, rebuilt from the nested schema.
    assert_eq!(res.body["fields"], outer_fields());
    let stored: Value = app
        .db()
        .await
        .query_one(
            "SELECT fields FROM block_schema WHERE checksum = $1",
            &[&OUTER_CHECKSUM],
        )
        .await
        .unwrap()
        .get(0);
    assert!(stored.get("block_schema_references").is_none() && stored.get("definitions").is_none());

    // The nested schema was registered (non-versioned) under the client's checksum.
    let inner = app
        .get(&format!("/api/block_schemas/checksum/{INNER_CHECKSUM}"))
        .await;
    assert_eq!(inner.status, 200, "{}", inner.text);
    assert_eq!(inner.body["version"], "non-versioned");
    assert_eq!(inner.body["block_type"]["slug"], "inner-creds");
    assert_eq!(inner.body["fields"], inner_fields());

    let missing_definition = json!({"title": "Lonely", "type": "object", "properties": {"creds": {"$ref": "#/definitions/Gone"}},
        "block_type_slug": "outer-thing", "secret_fields": [],
        "block_schema_references": {"creds": {"block_type_slug": "inner-creds", "block_schema_checksum": "sha256:unknown"}}});
    let res = app
        .post(
            "/api/block_schemas/",
            json!({"fields": missing_definition, "block_type_id": outer["id"]}),
        )
        .await;
    assert_eq!(res.status, 422, "{}", res.text);
}

#[tokio::test]
async fn block_documents_hide_secrets_unless_asked() {
    let app = TestApp::spawn().await;
    let t = block_type(&app, "My Creds", "creds").await;
    let s = schema(&app, &t["id"], creds_fields(), "1.0").await;
    let doc = document(
        &app,
        Some("prod"),
        json!({"user": "me", "password": "hunter2"}),
        &s,
        false,
    )
    .await;
    assert_eq!(doc["data"], json!({"user": "me", "password": "**********"}));
    assert_eq!(doc["name"], "prod");
    assert_eq!(doc["is_anonymous"], false);
    assert_eq!(doc["block_type_name"], "My Creds");
    assert_eq!(doc["block_type"]["slug"], "creds");
    assert_eq!(doc["block_schema"]["id"], s["id"]);
    assert_eq!(doc["block_schema"]["checksum"], CREDS_CHECKSUM);
    assert_eq!(doc["block_document_references"], json!({}));
    assert!(is_prefect_ts(&doc["created"]) && is_prefect_ts(&doc["updated"]));
    let did = id(&doc);

    let hidden = app.get(&format!("/api/block_documents/{did}")).await.body;
    assert_eq!(hidden["data"]["password"], "**********");
    for query in ["false", "0", "no"] {
        let res = app
            .get(&format!("/api/block_documents/{did}?include_secrets={query}"))
            .await;
        assert_eq!(res.body["data"]["password"], "**********");
    }
    let shown = app
        .get(&format!("/api/block_documents/{did}?include_secrets=true"))
        .await
        .body;
    assert_eq!(shown["data"], json!({"user": "me", "password": "hunter2"}));
    let bad = app
        .get(&format!("/api/block_documents/{did}?include_secrets=maybe"))
        .await;
    assert_eq!(bad.status, 422);
    assert_eq!(
        bad.body["exception_detail"][0]["loc"],
        json!(["query", "include_secrets"])
    );

    let by_name = app
        .get("/api/block_types/slug/creds/block_documents/name/prod")
        .await;
    assert_eq!(by_name.body["id"], json!(did));
    assert_eq!(by_name.body["data"]["password"], "**********");
    let by_name = app
        .get("/api/block_types/slug/creds/block_documents/name/prod?include_secrets=true")
        .await;
    assert_eq!(by_name.body["data"]["password"], "hunter2");
    let missing = app
        .get("/api/block_types/slug/creds/block_documents/name/nope")
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body, json!({"detail": "Block document not found"}));
    let listed = app.get("/api/block_types/slug/creds/block_documents").await;
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
    assert_eq!(listed.body[0]["data"]["password"], "**********");
    assert_eq!(
        app.get("/api/block_types/slug/nope/block_documents").await.status,
        404
    );

    let filtered = app
        .post("/api/block_documents/filter", json!({"include_secrets": true}))
        .await
        .body;
    assert_eq!(filtered[0]["data"]["password"], "hunter2");
    let filtered = app
        .post("/api/block_documents/filter", json!({"include_secrets": null}))
        .await
        .body;
    assert_eq!(filtered[0]["data"]["password"], "**********");

    // Nested secret paths and wildcards, as the schema's `secret_fields` name them.
    let nested_type = block_type(&app, "Nested", "nested").await;
    let nested_fields = json!({"title": "Nested", "type": "object", "properties": {},
        "block_type_slug": "nested", "secret_fields": ["auth.token", "headers.*"], "block_schema_references": {}});
    let ns = schema(&app, &nested_type["id"], nested_fields, "1.0").await;
    let data =
        json!({"auth": {"token": "t", "user": "u"}, "headers": {"a": "1", "b": {"c": "2"}}, "plain": "p"});
    let nd = document(&app, Some("n"), data.clone(), &ns, false).await;
    assert_eq!(
        nd["data"],
        json!({"auth": {"token": "**********", "user": "u"}, "headers": {"a": "**********", "b": {"c": "**********"}}, "plain": "p"})
    );
    let shown = app
        .get(&format!("/api/block_documents/{}?include_secrets=1", id(&nd)))
        .await;
    assert_eq!(shown.body["data"], data);
}

#[tokio::test]
async fn block_documents_are_named_and_anonymous_ones_are_left_out_of_lists() {
    let app = TestApp::spawn().await;
    let t = block_type(&app, "My Creds", "creds").await;
    let s = schema(&app, &t["id"], creds_fields(), "1.0").await;
    document(&app, Some("b-doc"), json!({"user": "b"}), &s, false).await;
    document(&app, Some("a-doc"), json!({"user": "a"}), &s, false).await;

    let dup = app
        .post(
            "/api/block_documents/",
            json!({"name": "a-doc", "data": {}, "block_schema_id": s["id"], "block_type_id": t["id"]}),
        )
        .await;
    assert_eq!(dup.status, 409);
    assert_eq!(dup.body, json!({"detail": "Block already exists"}));
    let bad_name = app
        .post(
            "/api/block_documents/",
            json!({"name": "Bad Name", "data": {}, "block_schema_id": s["id"], "block_type_id": t["id"]}),
        )
        .await;
    assert_eq!(bad_name.status, 422);
    assert_eq!(
        bad_name.body["exception_detail"][0]["loc"],
        json!(["body", "name"])
    );
    let unnamed = app
        .post(
            "/api/block_documents/",
            json!({"name": null, "data": {}, "block_schema_id": s["id"], "block_type_id": t["id"], "is_anonymous": false}),
        )
        .await;
    assert_eq!(unnamed.status, 422);
    assert_eq!(
        unnamed.body["exception_detail"][0]["msg"],
        "Names must be provided for block documents."
    );
    let unknown_schema = app
        .post(
            "/api/block_documents/",
            json!({"name": "x", "data": {}, "block_schema_id": Uuid::new_v4(), "block_type_id": t["id"]}),
        )
        .await;
    assert_eq!(unknown_schema.status, 409);
    let unknown_type = app
        .post(
            "/api/block_documents/",
            json!({"name": "x", "data": {}, "block_schema_id": s["id"], "block_type_id": Uuid::new_v4()}),
        )
        .await;
    assert_eq!(unknown_type.status, 409);
    assert_eq!(
        app.post("/api/block_documents/", json!({"name": "x", "data": {}}))
            .await
            .status,
        422
    );

    // The stock client's result storage: an anonymous document without a name.
    let anon = document(&app, None, json!({"user": "anon"}), &s, true).await;
    let name = anon["name"].as_str().unwrap();
    let suffix = name.strip_prefix("anonymous-").expect("anonymous-<uuid>");
    assert!(Uuid::parse_str(suffix).is_ok(), "{name}");
    assert_eq!(anon["is_anonymous"], true);
    let named_anon = document(&app, Some("kept-name"), json!({}), &s, true).await;
    assert_eq!(named_anon["name"], "kept-name");

    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_string())
            .collect()
    };
    // `prefect block ls` sends keys the server does not read; they are ignored.
    let listed = app
        .post(
            "/api/block_documents/filter",
            json!({"block_schema_type": null, "include_secrets": false, "limit": null, "offset": null, "sort": null}),
        )
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(names(&listed.body), ["a-doc", "b-doc"]);
    // A document filter without `is_anonymous` still leaves anonymous documents out...
    let by_type = app
        .post(
            "/api/block_documents/filter",
            json!({"block_documents": {"block_type_id": {"any_": [t["id"]]}}}),
        )
        .await;
    assert_eq!(names(&by_type.body), ["a-doc", "b-doc"]);
    // ...an explicit null lets them in, and `eq_: true` selects only them.
    let all = app
        .post(
            "/api/block_documents/filter",
            json!({"block_documents": {"is_anonymous": null}, "sort": "NAME_DESC"}),
        )
        .await;
    let mut all = names(&all.body);
    assert_eq!(all[..2], ["kept-name", "b-doc"]);
    all.sort();
    assert_eq!(all, ["a-doc", name, "b-doc", "kept-name"]);
    let only_anon = app
        .post(
            "/api/block_documents/filter",
            json!({"block_documents": {"is_anonymous": {"eq_": true}}}),
        )
        .await;
    assert_eq!(names(&only_anon.body), [name, "kept-name"]);
    assert_eq!(
        app.post("/api/block_documents/count", json!({})).await.body,
        json!(2)
    );
    assert_eq!(
        app.post(
            "/api/block_documents/count",
            json!({"block_documents": {"is_anonymous": null}})
        )
        .await
        .body,
        json!(4)
    );
    assert_eq!(
        names(&app.get("/api/block_types/slug/creds/block_documents").await.body),
        ["a-doc", "b-doc"]
    );
    let read_anon = app
        .get(&format!(
            "/api/block_types/slug/creds/block_documents/name/{name}"
        ))
        .await;
    assert_eq!(read_anon.status, 200);

    // Names: list and substring; types and schemas; sorts; paging.
    let other_type = block_type(&app, "Another", "another").await;
    let other_schema = schema(
        &app,
        &other_type["id"],
        json!({"title": "Another", "secret_fields": []}),
        "1.0",
    )
    .await;
    document(&app, Some("c-doc"), json!({}), &other_schema, false).await;
    let filter = |body: Value| {
        let app = &app;
        async move {
            let res = app.post("/api/block_documents/filter", body).await;
            assert_eq!(res.status, 200, "{}", res.text);
            names(&res.body)
        }
    };
    assert_eq!(
        filter(json!({"block_documents": {"name": {"any_": ["b-doc", "c-doc"]}}})).await,
        ["b-doc", "c-doc"]
    );
    assert_eq!(
        filter(json!({"block_documents": {"name": {"like_": "C-D"}}})).await,
        ["c-doc"]
    );
    assert_eq!(
        filter(
            json!({"block_documents": {"operator": "or_", "is_anonymous": null, "name": {"any_": ["a-doc"]},
                                          "id": {"any_": [Uuid::new_v4()]}}})
        )
        .await,
        ["a-doc"]
    );
    assert_eq!(
        filter(json!({"block_types": {"slug": {"any_": ["another"]}}})).await,
        ["c-doc"]
    );
    assert_eq!(
        filter(json!({"block_schemas": {"block_capabilities": {"all_": ["read"]}}})).await,
        ["a-doc", "b-doc", "c-doc"]
    );
    assert_eq!(
        filter(json!({"sort": "BLOCK_TYPE_AND_NAME_ASC"})).await,
        ["c-doc", "a-doc", "b-doc"]
    );
    assert_eq!(filter(json!({"limit": 1, "offset": 1})).await, ["b-doc"]);
    assert_eq!(
        app.post(
            "/api/block_documents/count",
            json!({"block_types": {"name": {"like_": "another"}}})
        )
        .await
        .body,
        json!(1)
    );
    let bad_sort = app
        .post("/api/block_documents/filter", json!({"sort": "NOPE"}))
        .await;
    assert_eq!(bad_sort.status, 422);
    assert_eq!(
        bad_sort.body["exception_detail"][0]["loc"],
        json!(["body", "sort"])
    );
    assert_eq!(
        app.post("/api/block_documents/filter", json!({"offset": -1}))
            .await
            .status,
        422
    );
    assert_eq!(
        app.post(
            "/api/block_documents/filter",
            json!({"block_documents": {"nope": 1}})
        )
        .await
        .status,
        422
    );
    assert_eq!(
        app.post("/api/block_documents/filter", json!([1])).await.status,
        422
    );
}

#[tokio::test]
async fn block_documents_reference_other_documents() {
    let app = TestApp::spawn().await;
    let outer_type = block_type(&app, "Outer Thing", "outer-thing").await;
    let inner_type = block_type(&app, "Inner Creds", "inner-creds").await;
    let outer_schema = schema(&app, &outer_type["id"], outer_fields(), "1.0").await;
    let inner_schema = schema(&app, &inner_type["id"], inner_fields(), "1.0").await;
    let inner = document(
        &app,
        Some("inner-a"),
        json!({"token": "tok", "region": "eu"}),
        &inner_schema,
        false,
    )
    .await;
    let inner_id = id(&inner);

    let outer = document(
        &app,
        Some("outer-a"),
        json!({"creds": {"$ref": {"block_document_id": inner_id}}, "label": "L"}),
        &outer_schema,
        false,
    )
    .await;
    // The referenced document's data is hydrated, its secrets hidden by its own schema.
    assert_eq!(
        outer["data"],
        json!({"creds": {"token": "**********", "region": "eu"}, "label": "L"})
    );
    let reference = &outer["block_document_references"]["creds"]["block_document"];
    assert_eq!(reference["id"], json!(inner_id));
    assert_eq!(reference["name"], "inner-a");
    assert_eq!(reference["is_anonymous"], false);
    assert_eq!(reference["block_type"]["slug"], "inner-creds");
    assert_eq!(reference["block_document_references"], json!({}));
    let outer_id = id(&outer);
    let shown = app
        .get(&format!("/api/block_documents/{outer_id}?include_secrets=true"))
        .await
        .body;
    assert_eq!(shown["data"]["creds"]["token"], "tok");
    let stored: Value = app
        .db()
        .await
        .query_one("SELECT data FROM block_document WHERE name = 'outer-a'", &[])
        .await
        .unwrap()
        .get(0);
    let stored = app.state.keyring.open(stored, outer_id.parse().unwrap()).unwrap();
    assert_eq!(stored, json!({"label": "L"}), "references are rows, not data");

    // Two levels: the middle document's references are described too.
    let wrapper_type = block_type(&app, "Wrapper", "wrapper").await;
    let wrapper_schema = schema(
        &app,
        &wrapper_type["id"],
        json!({"title": "Wrapper", "secret_fields": []}),
        "1.0",
    )
    .await;
    let wrapper = document(
        &app,
        Some("w"),
        json!({"outer": {"$ref": {"block_document_id": outer_id}}}),
        &wrapper_schema,
        false,
    )
    .await;
    assert_eq!(wrapper["data"]["outer"]["creds"]["region"], "eu");
    assert_eq!(
        wrapper["block_document_references"]["outer"]["block_document"]["block_document_references"]["creds"]
            ["block_document"]["id"],
        json!(inner_id)
    );
    let listed = app
        .post("/api/block_documents/filter", json!({"sort": "NAME_ASC"}))
        .await
        .body;
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert_eq!(listed[2]["data"]["outer"]["label"], "L");

    // Malformed and dangling references.
    let res = app
        .post(
            "/api/block_documents/",
            json!({"name": "bad", "data": {"x": {"$ref": {}}}, "block_schema_id": outer_schema["id"], "block_type_id": outer_type["id"]}),
        )
        .await;
    assert_eq!(res.status, 422);
    assert_eq!(res.body["exception_detail"][0]["loc"], json!(["body", "data"]));
    let res = app
        .post(
            "/api/block_documents/",
            json!({"name": "dangling", "data": {"x": {"$ref": {"block_document_id": Uuid::new_v4()}}},
                   "block_schema_id": outer_schema["id"], "block_type_id": outer_type["id"]}),
        )
        .await;
    assert_eq!(res.status, 409);
    assert_eq!(
        app.get("/api/block_types/slug/outer-thing/block_documents/name/dangling")
            .await
            .status,
        404,
        "the failed create left nothing behind"
    );

    // A reference cycle made by an update does not hang reads.
    let res = app
        .patch(
            &format!("/api/block_documents/{inner_id}"),
            json!({"data": {"loop": {"$ref": {"block_document_id": id(&wrapper)}}}}),
        )
        .await;
    assert_eq!(res.status, 204, "{}", res.text);
    let read = app.get(&format!("/api/block_documents/{}", id(&wrapper))).await;
    assert_eq!(read.status, 200);
    let self_ref = app
        .patch(
            &format!("/api/block_documents/{inner_id}"),
            json!({"data": {"me": {"$ref": {"block_document_id": inner_id}}}}),
        )
        .await;
    assert_eq!(self_ref.status, 400);

    // Deleting a referenced document removes the reference, not the parent.
    assert_eq!(
        app.delete(&format!("/api/block_documents/{inner_id}"))
            .await
            .status,
        204
    );
    let outer_now = app.get(&format!("/api/block_documents/{outer_id}")).await.body;
    assert_eq!(outer_now["data"], json!({"label": "L"}));
    assert_eq!(outer_now["block_document_references"], json!({}));
}

async fn with_secrets(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/api/block_documents/{id}?include_secrets=true"))
        .await
        .body
}

#[tokio::test]
async fn block_documents_are_updated_by_merge_or_replacement() {
    let app = TestApp::spawn().await;
    let t = block_type(&app, "My Creds", "creds").await;
    let s = schema(&app, &t["id"], creds_fields(), "1.0").await;
    let doc = document(
        &app,
        Some("prod"),
        json!({"user": "me", "password": "hunter2"}),
        &s,
        false,
    )
    .await;
    let did = id(&doc);

    // Merge (the default) keeps other keys; a secret posted back obfuscated is kept.
    let res = app
        .patch(
            &format!("/api/block_documents/{did}"),
            json!({"data": {"user": "you", "password": "**********"}}),
        )
        .await;
    assert_eq!(res.status, 204, "{}", res.text);
    let merged = with_secrets(&app, &did).await;
    assert_eq!(merged["data"], json!({"user": "you", "password": "hunter2"}));
    assert_ne!(merged["updated"], doc["updated"]);
    // Without data, a merge changes nothing.
    assert_eq!(
        app.patch(&format!("/api/block_documents/{did}"), json!({}))
            .await
            .status,
        204
    );
    assert_eq!(with_secrets(&app, &did).await["data"], merged["data"]);
    // Replacement drops the rest.
    let res = app
        .patch(
            &format!("/api/block_documents/{did}"),
            json!({"data": {"user": "only"}, "merge_existing_data": false}),
        )
        .await;
    assert_eq!(res.status, 204);
    assert_eq!(with_secrets(&app, &did).await["data"], json!({"user": "only"}));

    // Moving to another schema of the same type, and refusing another type's.
    let newer = schema(&app, &t["id"], creds_fields(), "2.0").await;
    let res = app
        .patch(
            &format!("/api/block_documents/{did}"),
            json!({"data": {"user": "v2"}, "block_schema_id": newer["id"]}),
        )
        .await;
    assert_eq!(res.status, 204, "{}", res.text);
    let moved = with_secrets(&app, &did).await;
    assert_eq!(moved["block_schema_id"], newer["id"]);
    assert_eq!(moved["block_schema"]["version"], "2.0");
    let other_type = block_type(&app, "Another", "another").await;
    let other_schema = schema(&app, &other_type["id"], json!({"title": "Another"}), "1.0").await;
    let res = app
        .patch(
            &format!("/api/block_documents/{did}"),
            json!({"data": {"user": "x"}, "block_schema_id": other_schema["id"]}),
        )
        .await;
    assert_eq!(res.status, 400);
    assert_eq!(
        res.body,
        json!({"detail": "Must migrate block document to a block schema of the same block type."})
    );
    assert_eq!(
        with_secrets(&app, &did).await["data"],
        json!({"user": "v2"}),
        "a refused update writes nothing"
    );
    let res = app
        .patch(
            &format!("/api/block_documents/{did}"),
            json!({"data": {}, "block_schema_id": Uuid::new_v4()}),
        )
        .await;
    assert_eq!(res.status, 404);

    assert_eq!(
        app.patch(&format!("/api/block_documents/{did}"), json!({"name": "renamed"}))
            .await
            .status,
        422
    );
    assert_eq!(
        app.patch(
            &format!("/api/block_documents/{}", Uuid::new_v4()),
            json!({"data": {}})
        )
        .await
        .status,
        404
    );
    assert_eq!(
        app.patch("/api/block_documents/not-a-uuid", json!({}))
            .await
            .status,
        422
    );

    assert_eq!(
        app.delete(&format!("/api/block_documents/{did}")).await.status,
        204
    );
    let gone = app.delete(&format!("/api/block_documents/{did}")).await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.body, json!({"detail": "Block document not found"}));
    assert_eq!(app.get(&format!("/api/block_documents/{did}")).await.status, 404);
    assert_eq!(app.get("/api/block_documents/not-a-uuid").await.status, 422);
    assert_eq!(app.delete("/api/block_documents/not-a-uuid").await.status, 422);
}

#[tokio::test]
async fn the_stock_clients_result_storage_sequence_works() {
    let app = TestApp::spawn().await;
    // Prefect 2.20's `Block.load` (`src/prefect/blocks/core.py`): the client looks up LocalFileSystem, creating the type and schema on 404s.
    let lookup = app.get("/api/block_types/slug/local-file-system").await;
    assert_eq!(lookup.status, 404);
    let created = app
        .post(
            "/api/block_types/",
            json!({"name": "Local File System", "slug": "local-file-system",
                   "logo_url": "https://cdn.sanity.io/images/3ugk85nk/production/ad39089fa66d273b943394a68f003f7a19aeb53f-32x32.png",
                   "documentation_url": "https://docs.prefect.io/concepts/filesystems/#local-filesystem",
                   "description": "Store data as a file on a local file system.",
                   "code_example": "```python\nfrom prefect.filesystems import LocalFileSystem\n```"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let lfs_fields = json!({"title": "LocalFileSystem", "description": "Store data as a file on a local file system.",
        "type": "object", "properties": {"basepath": {"title": "Basepath", "description": "Default local path for this block to write to.", "type": "string"}},
        "block_type_slug": "local-file-system", "secret_fields": [], "block_schema_references": {}});
    let checksum_path = format!("/api/block_schemas/checksum/{LOCAL_FILE_SYSTEM_CHECKSUM}?version=2.20.27");
    assert_eq!(app.get(&checksum_path).await.status, 404);
    let schema = app
        .post(
            "/api/block_schemas/",
            json!({"fields": lfs_fields, "block_type_id": created.body["id"],
                   "capabilities": ["get-directory", "put-directory", "read-path", "write-path"], "version": "2.20.27"}),
        )
        .await;
    assert_eq!(schema.status, 201, "{}", schema.text);
    assert_eq!(schema.body["checksum"], LOCAL_FILE_SYSTEM_CHECKSUM);
    assert_eq!(app.get(&checksum_path).await.body["id"], schema.body["id"]);
    let doc = app
        .post(
            "/api/block_documents/",
            json!({"name": null, "data": {"basepath": "/tmp/storage"}, "block_schema_id": schema.body["id"],
                   "block_type_id": created.body["id"], "is_anonymous": true}),
        )
        .await;
    assert_eq!(doc.status, 201, "{}", doc.text);
    let read = app
        .get(&format!(
            "/api/block_documents/{}?include_secrets=true",
            id(&doc.body)
        ))
        .await;
    assert_eq!(read.body["data"], json!({"basepath": "/tmp/storage"}));
    // Installing the system types later adopts (and protects) the client-made type.
    app.post("/api/block_types/install_system_block_types", json!({}))
        .await;
    let adopted = app.get("/api/block_types/slug/local-file-system").await.body;
    assert_eq!(adopted["id"], created.body["id"]);
    assert_eq!(adopted["is_protected"], true);
    assert_eq!(app.get(&checksum_path).await.body["id"], schema.body["id"]);
}
