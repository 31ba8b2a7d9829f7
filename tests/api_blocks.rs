mod common;

use common::TestApp;
use serde_json::{json, Value};

async fn block_type(app: &TestApp, slug: &str) -> Value {
    let res = app
        .post("/api/block_types/", json!({"name": format!("My {slug}"), "slug": slug, "logo_url": null, "documentation_url": null, "description": "d", "code_example": null}))
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    res.body
}

fn secret_fields() -> Value {
    json!({"title": "Creds", "type": "object",
           "properties": {"user": {"type": "string"}, "password": {"type": "string", "format": "password", "writeOnly": true}},
           "block_type_slug": "creds", "secret_fields": ["password"], "block_schema_references": {}})
}

async fn schema(app: &TestApp, type_id: &Value, fields: Value) -> Value {
    let res = app
        .post(
            "/api/block_schemas/",
            json!({"fields": fields, "block_type_id": type_id, "capabilities": ["read"], "version": "1.0"}),
        )
        .await;
    assert!(res.status == 201 || res.status == 200, "{}", res.text);
    res.body
}

#[tokio::test]
async fn block_types_are_created_read_updated_and_protected() {
    let app = TestApp::spawn().await;
    let t = block_type(&app, "creds").await;
    let id = t["id"].as_str().unwrap();
    assert_eq!(t["is_protected"], false);
    assert_eq!(app.get("/api/block_types/slug/creds").await.body["id"], t["id"]);
    assert_eq!(
        app.get(&format!("/api/block_types/{id}")).await.body["slug"],
        "creds"
    );
    assert_eq!(
        app.get("/api/block_types/slug/nope").await.body,
        json!({"detail": "Block type not found"})
    );

    let dup = app
        .post("/api/block_types/", json!({"name": "My creds", "slug": "creds"}))
        .await;
    assert_eq!(dup.status, 409);
    assert_eq!(
        app.post("/api/block_types/", json!({"name": "Prefect thing", "slug": "p"}))
            .await
            .status,
        403
    );
    assert_eq!(
        app.post("/api/block_types/", json!({"name": "x", "slug": "Bad Slug"}))
            .await
            .status,
        422
    );

    assert_eq!(
        app.patch(&format!("/api/block_types/{id}"), json!({"description": "new"}))
            .await
            .status,
        204
    );
    assert_eq!(
        app.get(&format!("/api/block_types/{id}")).await.body["description"],
        "new"
    );
    let filtered = app
        .post(
            "/api/block_types/filter",
            json!({"block_types": {"name": {"like_": "cred"}}}),
        )
        .await;
    assert_eq!(filtered.body.as_array().unwrap().len(), 1);

    // System types are installed, protected, and cannot be deleted.
    assert_eq!(
        app.post("/api/block_types/install_system_block_types", json!({}))
            .await
            .status,
        200
    );
    let lfs = app.get("/api/block_types/slug/local-file-system").await.body;
    assert_eq!(lfs["is_protected"], true);
    assert_eq!(
        app.delete(&format!("/api/block_types/{}", lfs["id"].as_str().unwrap()))
            .await
            .status,
        403
    );
    assert_eq!(app.delete(&format!("/api/block_types/{id}")).await.status, 204);
    assert_eq!(app.delete(&format!("/api/block_types/{id}")).await.status, 404);
}

#[tokio::test]
async fn block_schemas_are_found_by_the_clients_checksum() {
    let app = TestApp::spawn().await;
    app.post("/api/block_types/install_system_block_types", json!({}))
        .await;
    // The checksum the stock 2.20 client computes for LocalFileSystem.
    let checksum = "sha256:6db1ab242e7b2b88a52dc137a7da3a373af63e0a103b9a91e060ed54a26f395a";
    let res = app
        .get(&format!("/api/block_schemas/checksum/{checksum}?version=2.20.27"))
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.body["block_type"]["slug"], "local-file-system");

    let t = block_type(&app, "creds").await;
    let first = app
        .post("/api/block_schemas/", json!({"fields": secret_fields(), "block_type_id": t["id"], "capabilities": [], "version": "1.0"}))
        .await;
    assert_eq!(first.status, 201);
    assert!(first.body["checksum"].as_str().unwrap().starts_with("sha256:"));
    let again = app
        .post("/api/block_schemas/", json!({"fields": secret_fields(), "block_type_id": t["id"], "capabilities": [], "version": "1.0"}))
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["id"], first.body["id"]);
    let by_checksum = app
        .get(&format!(
            "/api/block_schemas/checksum/{}",
            first.body["checksum"].as_str().unwrap()
        ))
        .await;
    assert_eq!(by_checksum.body["id"], first.body["id"]);
    let missing_type = app
        .post(
            "/api/block_schemas/",
            json!({"fields": {}, "block_type_id": uuid::Uuid::new_v4()}),
        )
        .await;
    assert_eq!(missing_type.status, 404);
    assert_eq!(
        app.get(&format!("/api/block_schemas/{}", uuid::Uuid::new_v4()))
            .await
            .status,
        404
    );
    let caps = app.get("/api/block_capabilities/").await;
    assert!(caps.body.as_array().unwrap().contains(&json!("write-path")));
    let by_type = app
        .post(
            "/api/block_schemas/filter",
            json!({"block_schemas": {"block_type_id": {"any_": [t["id"]]}}}),
        )
        .await;
    assert_eq!(by_type.body.as_array().unwrap().len(), 1);
    assert_eq!(
        app.delete(&format!(
            "/api/block_schemas/{}",
            first.body["id"].as_str().unwrap()
        ))
        .await
        .status,
        204
    );
}

#[tokio::test]
async fn block_documents_hide_secrets_unless_asked_and_nest_references() {
    let app = TestApp::spawn().await;
    let t = block_type(&app, "creds").await;
    let s = schema(&app, &t["id"], secret_fields()).await;
    let res = app
        .post("/api/block_documents/", json!({"name": "prod", "data": {"user": "me", "password": "hunter2"},
                                              "block_schema_id": s["id"], "block_type_id": t["id"], "is_anonymous": false}))
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    assert_eq!(res.body["data"]["password"], "**********");
    assert_eq!(res.body["block_type"]["slug"], "creds");
    assert_eq!(res.body["block_schema"]["id"], s["id"]);
    let id = res.body["id"].as_str().unwrap().to_string();

    let hidden = app.get(&format!("/api/block_documents/{id}")).await.body;
    assert_eq!(hidden["data"], json!({"user": "me", "password": "**********"}));
    let shown = app
        .get(&format!("/api/block_documents/{id}?include_secrets=true"))
        .await
        .body;
    assert_eq!(shown["data"]["password"], "hunter2");
    let by_name = app
        .get("/api/block_types/slug/creds/block_documents/name/prod?include_secrets=true")
        .await;
    assert_eq!(by_name.body["id"], json!(id));

    let dup = app
        .post(
            "/api/block_documents/",
            json!({"name": "prod", "data": {}, "block_schema_id": s["id"], "block_type_id": t["id"]}),
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

    // An anonymous document gets a generated name and is left out of unfiltered lists.
    let anon = app
        .post("/api/block_documents/", json!({"name": null, "data": {"user": "x"}, "block_schema_id": s["id"], "block_type_id": t["id"], "is_anonymous": true}))
        .await;
    assert!(anon.body["name"].as_str().unwrap().starts_with("anonymous-"));
    // `prefect block ls` sends a key the server never reads; it is ignored, as FastAPI does.
    let listed = app
        .post(
            "/api/block_documents/filter",
            json!({"block_schema_type": null, "include_secrets": true, "limit": null, "offset": null}),
        )
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let listed = listed.body;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let with_anon = app
        .post(
            "/api/block_documents/filter",
            json!({"block_documents": {"is_anonymous": {"eq_": true}}}),
        )
        .await
        .body;
    assert_eq!(with_anon.as_array().unwrap().len(), 1);
    assert_eq!(
        app.post("/api/block_documents/count", json!({})).await.body,
        json!(1)
    );

    // A document referencing another gets the nested data and a reference entry.
    let parent_type = block_type(&app, "wrapper").await;
    let parent_schema = schema(&app, &parent_type["id"], json!({"title": "Wrapper", "type": "object", "properties": {}, "block_type_slug": "wrapper", "secret_fields": [], "block_schema_references": {}})).await;
    let wrapper = app
        .post("/api/block_documents/", json!({"name": "w", "data": {"inner": {"$ref": {"block_document_id": id}}, "x": 1},
                                              "block_schema_id": parent_schema["id"], "block_type_id": parent_type["id"]}))
        .await;
    assert_eq!(wrapper.status, 201, "{}", wrapper.text);
    let read = app
        .get(&format!(
            "/api/block_documents/{}",
            wrapper.body["id"].as_str().unwrap()
        ))
        .await
        .body;
    assert_eq!(read["data"]["inner"]["user"], "me");
    assert_eq!(
        read["block_document_references"]["inner"]["block_document"]["id"],
        json!(id)
    );

    // Merge updates keep other keys; replace drops them.
    assert_eq!(
        app.patch(
            &format!("/api/block_documents/{id}"),
            json!({"data": {"user": "you"}})
        )
        .await
        .status,
        204
    );
    let merged = app
        .get(&format!("/api/block_documents/{id}?include_secrets=true"))
        .await
        .body;
    assert_eq!(merged["data"], json!({"user": "you", "password": "hunter2"}));
    app.patch(
        &format!("/api/block_documents/{id}"),
        json!({"data": {"user": "only"}, "merge_existing_data": false}),
    )
    .await;
    let replaced = app
        .get(&format!("/api/block_documents/{id}?include_secrets=true"))
        .await
        .body;
    assert_eq!(replaced["data"], json!({"user": "only"}));

    assert_eq!(
        app.get(&format!("/api/block_documents/{id}?include_secrets=maybe"))
            .await
            .status,
        422
    );
    assert_eq!(
        app.delete(&format!("/api/block_documents/{}", uuid::Uuid::new_v4()))
            .await
            .status,
        404
    );
    assert_eq!(app.get("/api/block_documents/not-a-uuid").await.status, 422);
}
