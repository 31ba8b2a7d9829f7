//! `stratus deploy`: packages a flow's directory, stores it (S3 when configured, else the
//! local storage folder) and registers a deployment whose `path` is the package's URL, for
//! the Stratus agent to fetch and unpack before it runs the flow.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use stratus_store::config::Settings;

use crate::agent::api::{segment, Api};
use crate::agent::code;

#[derive(clap::Args, Debug)]
pub struct DeployArgs {
    /// The directory that holds the flow's code (packaged whole, minus .git, venvs and caches).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// The flow function, relative to DIR: `path/to/file.py:function`.
    #[arg(long, short = 'e')]
    pub entrypoint: String,
    /// The deployment's name.
    #[arg(long, short = 'n')]
    pub name: String,
    /// The work pool whose agents run it.
    #[arg(long, short = 'p')]
    pub pool: String,
    /// The pool's queue (default: the pool's default queue).
    #[arg(long, short = 'q')]
    pub queue: Option<String>,
    /// A cron schedule, e.g. "*/5 * * * *".
    #[arg(long, conflicts_with_all = ["interval", "rrule"])]
    pub cron: Option<String>,
    /// An interval schedule, in seconds.
    #[arg(long, conflicts_with_all = ["cron", "rrule"])]
    pub interval: Option<f64>,
    /// An RRule schedule, e.g. "FREQ=HOURLY;INTERVAL=2".
    #[arg(long, conflicts_with_all = ["cron", "interval"])]
    pub rrule: Option<String>,
    /// The schedule's time zone (IANA name), default UTC.
    #[arg(long)]
    pub timezone: Option<String>,
    /// A default parameter, KEY=VALUE with VALUE as JSON (plain text if it is not JSON).
    #[arg(long = "param")]
    pub params: Vec<String>,
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// The flow's name, when the flow cannot be imported here to read it.
    #[arg(long)]
    pub flow_name: Option<String>,
    /// The Python with prefect installed, used to read the flow's name and parameters
    /// [env: STRATUS_PYTHON, default python3].
    #[arg(long)]
    pub python: Option<String>,
    /// The Stratus API [env: PREFECT_API_URL, default http://127.0.0.1:4200/api].
    #[arg(long)]
    pub api_url: Option<String>,
}

/// What the flow itself says: its name, parameter schema, description.
const INTROSPECT: &str = r#"
import json, sys
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema
flow = load_flow_from_entrypoint(sys.argv[1])
print(json.dumps({"name": flow.name, "description": flow.description,
                  "schema": parameter_schema(flow).dict()}))
"#;

pub fn api_url(explicit: Option<String>) -> String {
    explicit
        .or_else(|| std::env::var("PREFECT_API_URL").ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "http://127.0.0.1:4200/api".to_string())
}

pub fn python(explicit: Option<String>) -> String {
    explicit
        .or_else(|| std::env::var("STRATUS_PYTHON").ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "python3".to_string())
}

fn parse_param(raw: &str) -> Result<(String, Value), String> {
    let (k, v) = raw
        .split_once('=')
        .ok_or_else(|| format!("--param {raw:?}: expected KEY=VALUE"))?;
    let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
    Ok((k.to_string(), value))
}

async fn introspect(python: &str, dir: &Path, entrypoint: &str) -> Result<Value, String> {
    let out = tokio::process::Command::new(python)
        .args(["-c", INTROSPECT, entrypoint])
        .current_dir(dir)
        .output()
        .await
        .map_err(|e| format!("could not run {python}: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default();
        return Err(format!("could not load {entrypoint} with {python}: {last}"));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_default();
    serde_json::from_str(line).map_err(|e| format!("could not read what {python} said of the flow: {e}"))
}

fn schedules(args: &DeployArgs) -> Value {
    let tz = args.timezone.clone().unwrap_or_else(|| "UTC".into());
    let schedule = if let Some(cron) = &args.cron {
        Some(json!({"cron": cron, "timezone": tz, "day_or": true}))
    } else if let Some(interval) = args.interval {
        Some(json!({"interval": interval, "timezone": tz}))
    } else {
        args.rrule.as_ref().map(|r| json!({"rrule": r, "timezone": tz}))
    };
    match schedule {
        Some(s) => json!([{"schedule": s, "active": true}]),
        None => json!([]),
    }
}

pub async fn run(args: DeployArgs, settings: &Settings) -> Result<(), String> {
    let dir = std::path::absolute(&args.dir).map_err(|e| format!("{}: {e}", args.dir.display()))?;
    let (file, _) = args.entrypoint.rsplit_once(':').ok_or_else(|| {
        format!(
            "--entrypoint {:?}: expected path/to/file.py:function",
            args.entrypoint
        )
    })?;
    if !dir.join(file).is_file() {
        return Err(format!("{} does not exist", dir.join(file).display()));
    }
    let mut parameters = Map::new();
    for p in &args.params {
        let (k, v) = parse_param(p)?;
        parameters.insert(k, v);
    }
    let python = python(args.python.clone());
    let flow = match introspect(&python, &dir, &args.entrypoint).await {
        Ok(flow) => flow,
        Err(e) => match &args.flow_name {
            Some(name) => {
                eprintln!("warning: {e}; deploying without a parameter schema");
                json!({"name": name, "description": null, "schema": {}})
            }
            None => {
                return Err(format!(
                    "{e}\n(pass --flow-name to deploy without importing the flow)"
                ))
            }
        },
    };
    let flow_name = args
        .flow_name
        .clone()
        .or_else(|| flow.get("name").and_then(Value::as_str).map(str::to_string))
        .ok_or("the flow has no name")?;

    let pack_dir = dir.clone();
    let package = tokio::task::spawn_blocking(move || code::pack(&pack_dir))
        .await
        .map_err(|e| e.to_string())??;
    let api_url = api_url(args.api_url.clone());
    let key = code::workspace_key(&api_url, &code::key(&package));
    let size = package.len();
    let storage = stratus_aws::storage(settings).await;
    let url = store_patiently(storage.as_ref(), &key, package).await?;
    println!("Stored {} ({size} bytes) at {url}.", dir.display());

    let api = Api::new(&api_url)?;
    if let Err(e) = api.get(&format!("/work_pools/{}", segment(&args.pool))).await {
        if e.is_not_found() {
            return Err(format!(
                "work pool {:?} does not exist: create it with `prefect work-pool create {} --type process`, or start `stratus agent start --pool {}`",
                args.pool, args.pool, args.pool
            ));
        }
        return Err(format!("could not reach Stratus at {}: {e}", api.base));
    }
    let flow_row = api
        .post("/flows/", &json!({"name": flow_name}))
        .await
        .map_err(|e| format!("could not register flow {flow_name:?}: {e}"))?;
    let flow_id = flow_row
        .get("id")
        .cloned()
        .ok_or("the API returned a flow without an id")?;
    let body = json!({
        "name": args.name,
        "flow_id": flow_id,
        "work_pool_name": args.pool,
        "work_queue_name": args.queue,
        "entrypoint": args.entrypoint,
        "path": url,
        // The agent unpacks the code and starts the engine inside it.
        "pull_steps": [{"prefect.deployments.steps.set_working_directory": {"directory": "."}}],
        "parameters": parameters,
        "parameter_openapi_schema": flow.get("schema").cloned().unwrap_or_else(|| json!({})),
        "schedules": schedules(&args),
        "tags": args.tags,
        "description": args.description.clone().or_else(|| flow.get("description").and_then(Value::as_str).map(str::to_string)),
        "version": &code::digest(key.as_bytes())[..12],
        "enforce_parameter_schema": false,
    });
    let deployment = api
        .post("/deployments/", &body)
        .await
        .map_err(|e| format!("could not register the deployment: {e}"))?;
    println!(
        "Deployment '{flow_name}/{}' ({}) is ready on work pool {:?}.",
        args.name,
        deployment.get("id").and_then(Value::as_str).unwrap_or("?"),
        args.pool
    );
    println!("Run it with: prefect deployment run '{flow_name}/{}'", args.name);
    Ok(())
}

/// How long `stratus deploy` keeps trying while the store is unreachable.
const STORE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// Stores the package, trying again (and saying so) while the store is unreachable.
async fn store_patiently(
    storage: &dyn stratus_store::storage::Storage,
    key: &str,
    package: Vec<u8>,
) -> Result<String, String> {
    let waiting = |e: &stratus_store::storage::StorageError, wait: std::time::Duration| {
        eprintln!("The flow code store is unreachable ({e}); trying again in {wait:?}.");
    };
    stratus_store::storage::retry_transient(
        STORE_PATIENCE,
        std::time::Duration::from_secs(10),
        || storage.put(key, package.clone()),
        waiting,
    )
    .await
    .map_err(|e| format!("could not store the flow code: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_json_or_text() {
        assert_eq!(parse_param("a=3").unwrap(), ("a".into(), json!(3)));
        assert_eq!(parse_param("b=hello").unwrap(), ("b".into(), json!("hello")));
        assert_eq!(parse_param("c={\"x\":1}").unwrap(), ("c".into(), json!({"x": 1})));
        assert!(parse_param("nothing").is_err());
    }
}
