//! Rules of the code's shape that the compiler cannot check.

use std::path::{Path, PathBuf};

/// The one module allowed to write a run's state (the runs service calls it).
const STATE_WRITER: &str = "store/src/db/transitions.rs";

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The SQL in `source` that writes a run's state: a state row inserted, or a run's
/// `state_id` (or its mirrored state columns) set.
fn state_writes(source: &str) -> Vec<String> {
    let lower = source.to_lowercase();
    let squashed: String = lower.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut found = Vec::new();
    for table in ["flow_run", "task_run"] {
        if squashed.contains(&format!("insert into {table}_state "))
            || squashed.contains(&format!("insert into {table}_state("))
        {
            found.push(format!("INSERT INTO {table}_state"));
        }
        let update = format!("update {table} set ");
        let mut rest = squashed.as_str();
        while let Some(at) = rest.find(&update) {
            let statement = &rest[at..];
            // The statement ends with its string literal.
            let end = statement.find('"').unwrap_or(statement.len());
            let set = &statement[..end];
            let set = set.split(" where ").next().unwrap_or(set);
            if ["state_id", "state_type", "state_name", "state_timestamp"]
                .iter()
                .any(|col| set.contains(&format!("{col} =")) || set.contains(&format!("{col}=")))
            {
                found.push(format!("UPDATE {table} SET state..."));
            }
            rest = &statement[update.len()..];
        }
    }
    found
}

#[test]
fn only_the_runs_service_writes_run_states() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let writer = std::fs::read_to_string(root.join(STATE_WRITER)).unwrap();
    assert!(
        !state_writes(&writer).is_empty(),
        "the check must recognise the writer's own SQL"
    );
    let mut files = Vec::new();
    // The product's code; the benchmark's and tests' fixtures fill tables directly.
    for dir in ["domain", "store", "http", "functions", "aws", "src"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 50, "found only {} files", files.len());
    let mut offenders = Vec::new();
    for path in files {
        let relative = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if relative == STATE_WRITER {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        for write in state_writes(&source) {
            offenders.push(format!("{relative}: {write}"));
        }
    }
    assert!(
        offenders.is_empty(),
        "run states are changed only through stratus_store::runs_service (which calls {STATE_WRITER}); \
         these write them directly:\n{}",
        offenders.join("\n")
    );
}

/// SQL statements in string literals: what only the store crate may hold.
fn sql_statements(source: &str) -> Vec<String> {
    let starts = [
        "\"SELECT ",
        "\"INSERT INTO ",
        "\"UPDATE ",
        "\"DELETE FROM ",
        "\"WITH ",
        "\"CREATE ",
        "\"DROP ",
        "\"ALTER ",
    ];
    source
        .lines()
        .filter(|line| starts.iter().any(|s| line.contains(s)))
        .map(|line| line.trim().to_string())
        .collect()
}

#[test]
fn sql_lives_only_in_the_store() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["domain", "http", "functions", "aws", "src"] {
        rust_files(&root.join(dir), &mut files);
    }
    let mut offenders = Vec::new();
    for path in files {
        let source = std::fs::read_to_string(&path).unwrap();
        for statement in sql_statements(&source) {
            offenders.push(format!(
                "{}: {statement}",
                path.strip_prefix(root).unwrap().display()
            ));
        }
    }
    assert!(
        offenders.is_empty(),
        "SQL belongs in the store crate (store/src/db); found elsewhere:\n{}",
        offenders.join("\n")
    );
    let store = std::fs::read_to_string(root.join("store/src/db/flows.rs")).unwrap();
    assert!(
        !sql_statements(&store).is_empty(),
        "the check must recognise the store's SQL"
    );
}

#[test]
fn the_state_write_check_sees_every_form() {
    assert_eq!(
        state_writes("\"INSERT INTO flow_run_state (id) VALUES ($1)\"").len(),
        1
    );
    assert_eq!(
        state_writes("\"UPDATE task_run SET name = $2, \\\n  state_id = $3 WHERE id = $1\"").len(),
        1
    );
    assert_eq!(
        state_writes("\"UPDATE flow_run SET state_type='FAILED'\"").len(),
        1
    );
    assert!(state_writes("\"UPDATE flow_run SET name = $2 WHERE state_id = $1\"").is_empty());
    assert!(state_writes("\"UPDATE flow_run SET tags = $2 WHERE id = $1\"").is_empty());
    assert!(state_writes("\"INSERT INTO task_run_state_cache (cache_key) VALUES ($1)\"").is_empty());
}

/// Positional reads past a row's first column (`row.get(3)`) in `source`: rows are read by
/// column name, so a reordered SELECT cannot shift a value into the wrong field. A
/// one-column query (`SELECT count(*)`, `RETURNING id`) may still read column 0.
fn positional_reads(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (n, line) in source.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find(".get") {
            let mut after = &rest[at + 4..];
            // Skip a turbofish: `.get::<_, i64>(3)`.
            if let Some(typed) = after.strip_prefix("::<") {
                after = typed.split_once(">(").map_or("", |(_, args)| args);
            } else {
                after = after.strip_prefix('(').unwrap_or("");
            }
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            if !digits.is_empty() && digits != "0" && after[digits.len()..].starts_with(')') {
                found.push(format!("line {}: {}", n + 1, line.trim()));
            }
            rest = &rest[at + 4..];
        }
    }
    found
}

#[test]
fn rows_are_read_by_column_name() {
    assert_eq!(positional_reads("let x: i64 = row.get(2);").len(), 1);
    assert_eq!(positional_reads("if row.get::<_, bool>(6) {").len(), 1);
    assert!(positional_reads("let n: i64 = row.get(0); map.get(\"k\"); v.get(12 + i)").is_empty());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("store/src"), &mut files);
    let offenders: Vec<String> = files
        .iter()
        .flat_map(|path| {
            let source = std::fs::read_to_string(path).unwrap();
            positional_reads(&source)
                .into_iter()
                .map(move |hit| format!("{}: {hit}", path.display()))
        })
        .collect();
    assert!(offenders.is_empty(), "positional row reads: {offenders:#?}");
}

/// Where axum's own method routers may be built: the route registry, the web UI's pages
/// (HTML at `/`, not the API), and the emulator's endpoint for CloudFormation's custom
/// resource answers (not Stratus's API either).
const ROUTE_REGISTRY: [&str; 3] = [
    "http/src/api_routes.rs",
    "functions/ui/src/pages/",
    "src/cli/emulate/custom_resources.rs",
];

#[test]
fn api_routes_are_registered_where_the_document_sees_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["http", "functions", "src"] {
        rust_files(&root.join(dir), &mut files);
    }
    let mut offenders = Vec::new();
    let mut seen_registry = false;
    for path in files {
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        let source = std::fs::read_to_string(&path).unwrap();
        let builds_routes = source.contains("axum::routing") || source.contains("routing::{");
        if ROUTE_REGISTRY.iter().any(|allowed| rel.starts_with(allowed)) {
            seen_registry |= builds_routes;
        } else if builds_routes {
            offenders.push(rel);
        }
    }
    assert!(
        seen_registry,
        "the check must recognise the registry's use of axum::routing"
    );
    assert!(
        offenders.is_empty(),
        "API routes are registered through stratus_http::api_routes (so that /api/openapi.json lists them); \
         these files build axum routes themselves:\n{}",
        offenders.join("\n")
    );
}
