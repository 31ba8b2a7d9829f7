use crate::common;

use std::sync::Arc;

use common::TestApp;
use http::Method;
use serde_json::{json, Value};
use uuid::Uuid;

fn assert_invalid(res: &common::Response) {
    assert_eq!(res.status, 422, "{}", res.text);
    assert_eq!(
        res.body["exception_message"], "Invalid request received.",
        "{}",
        res.text
    );
}

// ---- v1: tag limits --------------------------------------------------------------------------

#[tokio::test]
async fn tag_limits_are_upserted_and_read_by_id_and_tag() {
    let app = TestApp::spawn().await;
    let res = app
        .post(
            "/api/concurrency_limits/",
            json!({"tag": "db", "concurrency_limit": 2}),
        )
        .await;
    // Always 200, even when the limit is new.
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.body["tag"], "db");
    assert_eq!(res.body["concurrency_limit"], 2);
    assert_eq!(res.body["active_slots"], json!([]));
    for key in ["id", "created", "updated"] {
        assert!(res.body[key].is_string(), "{key}");
    }
    let id = res.body["id"].as_str().unwrap().to_string();

    // Slots taken by running task runs (written by the task policy) survive an upsert,
    // which changes only the number.
    let slot = Uuid::new_v4().to_string();
    app.db()
        .await
        .execute(
            "UPDATE concurrency_limit SET active_slots = $1 WHERE tag = 'db'",
            &[&json!([slot])],
        )
        .await
        .unwrap();
    let again = app
        .post(
            "/api/concurrency_limits",
            json!({"tag": "db", "concurrency_limit": 5}),
        )
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["id"], json!(id));
    assert_eq!(again.body["concurrency_limit"], 5);
    assert_eq!(again.body["active_slots"], json!([slot]));

    let by_id = app.get(&format!("/api/concurrency_limits/{id}")).await;
    assert_eq!(
        (by_id.status.as_u16(), by_id.body["tag"].clone()),
        (200, json!("db"))
    );
    let by_tag = app.get("/api/concurrency_limits/tag/db").await;
    assert_eq!(by_tag.body["id"], json!(id));

    // Tags are path segments: spaces and slashes arrive percent-encoded.
    for tag in ["with space", "a/b", "ünï"] {
        app.post(
            "/api/concurrency_limits/",
            json!({"tag": tag, "concurrency_limit": 1}),
        )
        .await;
        let encoded: String = tag
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let res = app.get(&format!("/api/concurrency_limits/tag/{encoded}")).await;
        assert_eq!(
            (res.status.as_u16(), res.body["tag"].clone()),
            (200, json!(tag)),
            "{tag}"
        );
    }
}

#[tokio::test]
async fn tag_limits_answer_404_and_422_as_prefect_does() {
    let app = TestApp::spawn().await;
    let not_found = json!({"detail": "Concurrency limit not found"});
    let missing = Uuid::new_v4();
    for res in [
        app.get(&format!("/api/concurrency_limits/{missing}")).await,
        app.get("/api/concurrency_limits/tag/nope").await,
        app.delete(&format!("/api/concurrency_limits/{missing}")).await,
        app.delete("/api/concurrency_limits/tag/nope").await,
        app.post("/api/concurrency_limits/tag/nope/reset", json!({}))
            .await,
    ] {
        assert_eq!((res.status.as_u16(), res.body.clone()), (404, not_found.clone()));
    }
    // A malformed id is a validation error, never a 500.
    for res in [
        app.get("/api/concurrency_limits/not-a-uuid").await,
        app.delete("/api/concurrency_limits/12345").await,
    ] {
        assert_invalid(&res);
        assert_eq!(res.body["exception_detail"][0]["loc"], json!(["path", "id"]));
    }
    // Bodies: missing keys, unknown keys, wrong types, negative limits, bad JSON.
    for body in [
        json!({"tag": "x"}),
        json!({"concurrency_limit": 1}),
        json!({"tag": "x", "concurrency_limit": 1, "extra": true}),
        json!({"tag": "x", "concurrency_limit": "one"}),
        json!({"tag": "x", "concurrency_limit": -1}),
        json!([]),
    ] {
        assert_invalid(&app.post("/api/concurrency_limits/", body).await);
    }
    let malformed = app
        .raw(
            Method::POST,
            "/api/concurrency_limits/",
            Some("{\"tag\":".into()),
            &[],
        )
        .await;
    assert_invalid(&malformed);
    app.post(
        "/api/concurrency_limits/",
        json!({"tag": "x", "concurrency_limit": 0}),
    )
    .await;
    assert_invalid(
        &app.post(
            "/api/concurrency_limits/tag/x/reset",
            json!({"slot_override": ["nope"]}),
        )
        .await,
    );
    // Nothing invalid was written.
    let all = app.post("/api/concurrency_limits/filter", json!({})).await;
    assert_eq!(all.body.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn tag_limits_are_listed_reset_and_deleted() {
    let app = TestApp::spawn().await;
    for tag in ["c", "a", "b"] {
        app.post(
            "/api/concurrency_limits/",
            json!({"tag": tag, "concurrency_limit": 1}),
        )
        .await;
    }
    let tags = |res: &common::Response| -> Vec<String> {
        res.body
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["tag"].as_str().unwrap().to_string())
            .collect()
    };
    let all = app
        .post(
            "/api/concurrency_limits/filter",
            json!({"limit": null, "offset": null}),
        )
        .await;
    assert_eq!(tags(&all), ["a", "b", "c"]);
    let page = app
        .post("/api/concurrency_limits/filter", json!({"limit": 1, "offset": 1}))
        .await;
    assert_eq!(tags(&page), ["b"]);
    let too_many = app
        .post("/api/concurrency_limits/filter", json!({"limit": 201}))
        .await;
    assert_eq!(
        (too_many.status.as_u16(), too_many.body),
        (
            422,
            json!({"detail": "Invalid limit: must be less than or equal to 200."})
        )
    );
    assert_invalid(
        &app.post("/api/concurrency_limits/filter", json!({"offset": -1}))
            .await,
    );

    // Reset replaces the slots, or empties them.
    let slots = [Uuid::new_v4(), Uuid::new_v4()];
    let reset = app
        .post(
            "/api/concurrency_limits/tag/a/reset",
            json!({"slot_override": slots}),
        )
        .await;
    assert_eq!((reset.status.as_u16(), reset.text.as_str()), (200, "null"));
    let a = app.get("/api/concurrency_limits/tag/a").await;
    assert_eq!(a.body["active_slots"], json!(slots));
    let stored: Value = app
        .db()
        .await
        .query_one("SELECT active_slots FROM concurrency_limit WHERE tag = 'a'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, json!([slots[0].to_string(), slots[1].to_string()]));
    for body in [json!({}), json!({"slot_override": null})] {
        app.post(
            "/api/concurrency_limits/tag/a/reset",
            json!({"slot_override": slots}),
        )
        .await;
        assert_eq!(
            app.post("/api/concurrency_limits/tag/a/reset", body).await.status,
            200
        );
        assert_eq!(
            app.get("/api/concurrency_limits/tag/a").await.body["active_slots"],
            json!([])
        );
    }

    // Deletes answer 200 with null.
    let deleted = app.delete("/api/concurrency_limits/tag/c").await;
    assert_eq!((deleted.status.as_u16(), deleted.text.as_str()), (200, "null"));
    let id = a.body["id"].as_str().unwrap();
    let deleted = app.delete(&format!("/api/concurrency_limits/{id}/")).await;
    assert_eq!((deleted.status.as_u16(), deleted.text.as_str()), (200, "null"));
    assert_eq!(
        app.get(&format!("/api/concurrency_limits/{id}")).await.status,
        404
    );
    let left = app.post("/api/concurrency_limits/filter", json!({})).await;
    assert_eq!(tags(&left), ["b"]);
}

// ---- v2: global limits -----------------------------------------------------------------------

const V2: &str = "/api/v2/concurrency_limits";

async fn create_v2(app: &TestApp, body: Value) -> Value {
    let res = app.post(&format!("{V2}/"), body).await;
    assert_eq!(res.status, 201, "{}", res.text);
    res.body
}

async fn increment(app: &TestApp, body: Value) -> common::Response {
    app.post(&format!("{V2}/increment"), body).await
}

async fn stored(app: &TestApp, name: &str) -> (i32, i32, f64) {
    let row = app
        .db()
        .await
        .query_one(
            "SELECT active_slots, denied_slots, avg_slot_occupancy_seconds FROM concurrency_limit_v2 WHERE name = $1",
            &[&name],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test]
async fn global_limits_are_created_read_updated_and_deleted_by_id_or_name() {
    let app = TestApp::spawn().await;
    let created = create_v2(&app, json!({"name": "gpu", "limit": 2})).await;
    // Creation returns the whole ConcurrencyLimitV2.
    assert_eq!(created["active"], true);
    assert_eq!(created["active_slots"], 0);
    assert_eq!(created["denied_slots"], 0);
    assert_eq!(created["slot_decay_per_second"], 0.0);
    assert_eq!(created["avg_slot_occupancy_seconds"], 2.0);
    let id = created["id"].as_str().unwrap().to_string();

    // Reads and lists return GlobalConcurrencyLimitResponse.
    let by_name = app.get(&format!("{V2}/gpu")).await;
    assert_eq!(by_name.status, 200);
    assert_eq!(by_name.body["id"], json!(id));
    assert!(by_name.body.get("denied_slots").is_none());
    assert!(by_name.body.get("avg_slot_occupancy_seconds").is_none());
    for key in [
        "id",
        "created",
        "updated",
        "active",
        "name",
        "limit",
        "active_slots",
        "slot_decay_per_second",
    ] {
        assert!(by_name.body.get(key).is_some(), "{key}");
    }
    assert_eq!(app.get(&format!("{V2}/{id}")).await.body["name"], "gpu");

    // A duplicate name is Prefect's generic integrity conflict.
    let dup = app
        .post(&format!("{V2}/"), json!({"name": "gpu", "limit": 9}))
        .await;
    assert_eq!(dup.status, 409);
    assert_eq!(
        dup.body,
        json!({"detail": "Data integrity conflict. This usually means a unique or foreign key constraint was violated. See server logs for details."})
    );

    // PATCH by name and by id; 204 with no body.
    let patched = app
        .patch(&format!("{V2}/gpu"), json!({"limit": 10, "active": false}))
        .await;
    assert_eq!((patched.status.as_u16(), patched.text.as_str()), (204, ""));
    let read = app.get(&format!("{V2}/gpu")).await;
    assert_eq!(
        (read.body["limit"].clone(), read.body["active"].clone()),
        (json!(10), json!(false))
    );
    assert_eq!(
        app.patch(&format!("{V2}/{id}"), json!({"name": "tpu", "limit": null}))
            .await
            .status,
        204
    );
    assert_eq!(app.get(&format!("{V2}/tpu")).await.body["limit"], 10);
    assert_eq!(app.get(&format!("{V2}/gpu")).await.status, 404);

    create_v2(&app, json!({"name": "other", "limit": 1})).await;
    assert_eq!(
        app.patch(&format!("{V2}/other"), json!({"name": "tpu"}))
            .await
            .status,
        409
    );

    // Deletes by id and by name.
    assert_eq!(app.delete(&format!("{V2}/{id}")).await.status, 204);
    assert_eq!(app.delete(&format!("{V2}/other")).await.status, 204);
    let listed = app.post(&format!("{V2}/filter"), json!({})).await;
    assert_eq!(listed.body, json!([]));
}

#[tokio::test]
async fn global_limits_answer_404_and_422_as_prefect_does() {
    let app = TestApp::spawn().await;
    let not_found = json!({"detail": "Concurrency Limit not found"});
    let missing = Uuid::new_v4();
    for res in [
        app.get(&format!("{V2}/{missing}")).await,
        app.get(&format!("{V2}/nope")).await,
        app.patch(&format!("{V2}/nope"), json!({"limit": 1})).await,
        app.patch(&format!("{V2}/{missing}"), json!({})).await,
        app.delete(&format!("{V2}/nope")).await,
        app.delete(&format!("{V2}/{missing}")).await,
    ] {
        assert_eq!((res.status.as_u16(), res.body.clone()), (404, not_found.clone()));
    }
    for body in [
        json!({"limit": 1}),
        json!({"name": "x"}),
        json!({"name": "x", "limit": -1}),
        json!({"name": "x", "limit": 1, "active_slots": -1}),
        json!({"name": "x", "limit": 1, "denied_slots": -2}),
        json!({"name": "x", "limit": 1, "slot_decay_per_second": -0.5}),
        json!({"name": "x", "limit": 1, "colour": "red"}),
        json!({"name": "x", "limit": "many"}),
        json!({"name": "a/b", "limit": 1}),
    ] {
        let res = app.post(&format!("{V2}/"), body.clone()).await;
        assert_invalid(&res);
        assert_eq!(res.body["request_body"], body);
    }
    let banned = app
        .post(&format!("{V2}/"), json!({"name": "50%", "limit": 1}))
        .await;
    assert_eq!(
        banned.body["exception_detail"][0]["msg"],
        "Name '50%' contains an invalid character. Must not contain any of: ['/', '%', '&', '>', '<']."
    );
    let malformed = app
        .raw(Method::POST, &format!("{V2}/"), Some("{".into()), &[])
        .await;
    assert_invalid(&malformed);

    create_v2(&app, json!({"name": "x", "limit": 1})).await;
    for body in [
        json!({"limit": -1}),
        json!({"name": "x<y"}),
        json!({"bogus": 1}),
        json!({"slot_decay_per_second": -1.0}),
    ] {
        assert_invalid(&app.patch(&format!("{V2}/x"), body).await);
    }
    assert_eq!(app.get(&format!("{V2}/x")).await.body["limit"], 1);

    let too_many = app.post(&format!("{V2}/filter"), json!({"limit": 201})).await;
    assert_eq!(
        (too_many.status.as_u16(), too_many.body),
        (
            422,
            json!({"detail": "Invalid limit: must be less than or equal to 200."})
        )
    );
    assert_invalid(&app.post(&format!("{V2}/filter"), json!({"offset": -3})).await);

    for body in [
        json!({"names": [], "slots": 1}),
        json!({"names": ["x"], "slots": 0}),
        json!({"names": ["x"], "slots": -1}),
        json!({"names": ["x"]}),
        json!({"slots": 1}),
        json!({"names": "x", "slots": 1}),
    ] {
        let res = increment(&app, body.clone()).await;
        assert_invalid(&res);
        assert_eq!(res.body["request_body"], body);
        assert_invalid(&app.post(&format!("{V2}/decrement"), body).await);
    }
    let bad_mode = increment(&app, json!({"names": ["x"], "slots": 1, "mode": "bogus"})).await;
    assert_invalid(&bad_mode);
    assert_eq!(
        bad_mode.body["exception_detail"][0]["loc"],
        json!(["body", "mode"])
    );
    let zero = app
        .post(
            &format!("{V2}/decrement"),
            json!({"names": ["x"], "slots": 1, "occupancy_seconds": 0}),
        )
        .await;
    assert_invalid(&zero);
    assert_eq!(stored(&app, "x").await, (0, 0, 2.0));
}

#[tokio::test]
async fn global_limits_are_listed_by_name() {
    let app = TestApp::spawn().await;
    for name in ["c", "a", "b"] {
        create_v2(&app, json!({"name": name, "limit": 1})).await;
    }
    let names = |res: common::Response| -> Vec<String> {
        res.body
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(app.post(&format!("{V2}/filter"), json!({})).await),
        ["a", "b", "c"]
    );
    assert_eq!(
        names(
            app.post(&format!("{V2}/filter"), json!({"limit": 2, "offset": 1}))
                .await
        ),
        ["b", "c"]
    );
    let listed = app.post(&format!("{V2}/filter/"), json!({"limit": null})).await;
    assert!(listed.body[0].get("denied_slots").is_none());
}

#[tokio::test]
async fn slots_are_granted_until_full_then_locked_with_retry_after() {
    let app = TestApp::spawn().await;
    let gpu = create_v2(&app, json!({"name": "gpu", "limit": 2})).await;
    // A slow average occupancy keeps the denied slots from decaying during the test.
    app.db()
        .await
        .execute(
            "UPDATE concurrency_limit_v2 SET avg_slot_occupancy_seconds = 100",
            &[],
        )
        .await
        .unwrap();
    let take = |slots: i64| {
        increment(
            &app,
            json!({"names": ["gpu"], "slots": slots, "mode": "concurrency"}),
        )
    };

    let first = take(1).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body, json!([{"id": gpu["id"], "name": "gpu", "limit": 2}]));
    assert_eq!(take(1).await.status, 200);
    assert_eq!(stored(&app, "gpu").await, (2, 0, 100.0));

    let locked = take(1).await;
    assert_eq!(locked.status, 423);
    assert_eq!(locked.body, json!({"detail": "Locked"}));
    // (1 requested + 0 denied) / limit 2 blocking slots, 100 s each.
    assert_eq!(locked.headers["retry-after"], "50.0");
    assert_eq!(stored(&app, "gpu").await, (2, 1, 100.0));
    let again = take(1).await;
    assert_eq!(again.headers["retry-after"], "100.0");
    assert_eq!(stored(&app, "gpu").await, (2, 2, 100.0));

    let too_big = take(3).await;
    assert_eq!(
        (too_big.status.as_u16(), too_big.body),
        (
            422,
            json!({"detail": "Slots requested is greater than the limit"})
        )
    );
    let not_rate = increment(&app, json!({"names": ["gpu"], "slots": 1, "mode": "rate_limit"})).await;
    assert_eq!(
        (not_rate.status.as_u16(), not_rate.body),
        (
            422,
            json!({"detail": "Only concurrency limits with slot decay can be used for rate limiting. The following limits do not have a decay configured: 'gpu'"})
        )
    );

    // Releasing frees slots and folds the occupancy into the average over 2 * limit
    // samples: 100 + (30 - 100) / 4.
    let freed = app
        .post(
            &format!("{V2}/decrement"),
            json!({"names": ["gpu"], "slots": 1, "occupancy_seconds": 30.0}),
        )
        .await;
    assert_eq!(freed.status, 200);
    assert_eq!(freed.body, json!([{"id": gpu["id"], "name": "gpu", "limit": 2}]));
    assert_eq!(stored(&app, "gpu").await, (1, 2, 82.5));
    assert_eq!(app.get(&format!("{V2}/gpu")).await.body["active_slots"], 1);
    assert_eq!(take(1).await.status, 200);
    // Per slot, the occupancy counts at least 0.1 s; without it the average stays.
    app.post(&format!("{V2}/decrement"), json!({"names": ["gpu"], "slots": 2}))
        .await;
    assert_eq!(stored(&app, "gpu").await.0, 0);
    assert_eq!(stored(&app, "gpu").await.2, 82.5);
    // Never below zero.
    app.post(&format!("{V2}/decrement"), json!({"names": ["gpu"], "slots": 5}))
        .await;
    assert_eq!(stored(&app, "gpu").await.0, 0);
}

#[tokio::test]
async fn slots_are_taken_on_every_named_limit_or_on_none() {
    let app = TestApp::spawn().await;
    create_v2(&app, json!({"name": "wide", "limit": 5})).await;
    create_v2(&app, json!({"name": "narrow", "limit": 1})).await;
    create_v2(&app, json!({"name": "off", "limit": 1, "active": false})).await;
    let both = json!({"names": ["wide", "narrow", "off"], "slots": 1});
    let ok = increment(&app, both.clone()).await;
    assert_eq!(ok.status, 200);
    let mut names: Vec<&str> = ok
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["narrow", "wide"]);
    assert_eq!(increment(&app, both).await.status, 423);
    // The refused call took nothing from the limit that had room.
    assert_eq!(stored(&app, "wide").await.0, 1);
    assert_eq!(stored(&app, "narrow").await.0, 1);
    // Inactive limits never block and never count.
    assert_eq!(stored(&app, "off").await.0, 0);
    let off = increment(&app, json!({"names": ["off"], "slots": 9})).await;
    assert_eq!((off.status.as_u16(), off.body), (200, json!([])));
}

#[tokio::test]
async fn unknown_names_become_inactive_limits() {
    let app = TestApp::spawn().await;
    let unknown = increment(&app, json!({"names": ["new-one", "new-one"], "slots": 3})).await;
    assert_eq!((unknown.status.as_u16(), unknown.body), (200, json!([])));
    let created = app.get(&format!("{V2}/new-one")).await;
    assert_eq!(created.body["active"], false);
    assert_eq!(created.body["limit"], 1);
    assert_eq!(created.body["active_slots"], 0);
    let released = app
        .post(
            &format!("{V2}/decrement"),
            json!({"names": ["released-first"], "slots": 1}),
        )
        .await;
    assert_eq!((released.status.as_u16(), released.body), (200, json!([])));
    assert_eq!(
        app.get(&format!("{V2}/released-first")).await.body["active"],
        false
    );
    // Newer clients can ask not to create them.
    let ghost = increment(
        &app,
        json!({"names": ["ghost"], "slots": 1, "create_if_missing": false}),
    )
    .await;
    assert_eq!((ghost.status.as_u16(), ghost.body), (200, json!([])));
    assert_eq!(app.get(&format!("{V2}/ghost")).await.status, 404);
}

#[tokio::test]
async fn rate_limits_free_slots_as_they_decay() {
    let app = TestApp::spawn().await;
    create_v2(
        &app,
        json!({"name": "api", "limit": 5, "slot_decay_per_second": 0.5}),
    )
    .await;
    let take = |slots: i64| {
        increment(
            &app,
            json!({"names": ["api"], "slots": slots, "mode": "rate_limit"}),
        )
    };
    assert_eq!(take(5).await.status, 200);
    let locked = take(1).await;
    assert_eq!(locked.status, 423);
    // One slot in line, freed every 2 s.
    assert_eq!(locked.headers["retry-after"], "2.0");

    // 4.5 s later two whole slots have decayed.
    let db = app.db().await;
    db.execute(
        "UPDATE concurrency_limit_v2 SET updated = clock_timestamp() - interval '4.5 seconds'",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(app.get(&format!("{V2}/api")).await.body["active_slots"], 3);
    assert_eq!(take(2).await.status, 200);
    assert_eq!(stored(&app, "api").await.0, 5);
    // The half slot of decay not yet used is kept: the clock moved by 4 s, not to now.
    let behind: f64 = db
        .query_one(
            "SELECT extract(epoch FROM clock_timestamp() - updated)::float8 FROM concurrency_limit_v2",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!((0.5..2.0).contains(&behind), "{behind}");
    assert_eq!(take(1).await.status, 423);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_never_overfill_a_limit() {
    let app = Arc::new(TestApp::spawn().await);
    create_v2(&app, json!({"name": "pool", "limit": 3})).await;
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            increment(&app, json!({"names": ["pool", "shared-new"], "slots": 1}))
                .await
                .status
                .as_u16()
        }));
    }
    let mut granted = 0;
    for task in tasks {
        match task.await.unwrap() {
            200 => granted += 1,
            423 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(granted, 3);
    assert_eq!(stored(&app, "pool").await.0, 3);
}
