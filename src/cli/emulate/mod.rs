//! `stratus emulate`: the serverless deployment of `infra/template.yaml`, run on this
//! machine. Every function of the template runs as its own process from its real binary
//! under a Lambda Runtime API emulator (cargo-lambda's), behind a gateway that routes as
//! the template's HTTP API does; the scheduler is invoked by its EventBridge rule and the
//! notifier by its SQS event source mapping, over LocalStack's SQS. Before anything serves,
//! the template's custom resources are created as CloudFormation creates them: the schema
//! step (migrations, core block types) runs in the migration function, once.

pub mod custom_resources;
pub mod event_sources;
pub mod gateway;
pub mod routes;
pub mod runtime;
pub mod template;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use stratus_store::config::Settings;

use super::signals::Shutdown;
use routes::RouteTable;
use template::Stack;

#[derive(clap::Args)]
pub struct EmulateArgs {
    /// Address the HTTP API listens on [env: STRATUS_HOST, default 127.0.0.1].
    #[arg(long)]
    pub host: Option<String>,
    /// Port the HTTP API listens on [env: STRATUS_PORT, default 4200].
    #[arg(long)]
    pub port: Option<u16>,
    /// The SAM template that says what runs and how it is routed.
    #[arg(long, default_value = "infra/template.yaml")]
    pub template: PathBuf,
    /// Where the function binaries are [default: beside this executable].
    #[arg(long)]
    pub functions_dir: Option<PathBuf>,
    /// The cargo-lambda executable [env: STRATUS_CARGO_LAMBDA, default cargo-lambda].
    #[arg(long)]
    pub cargo_lambda: Option<PathBuf>,
    /// A template parameter, as NAME=VALUE (repeatable).
    #[arg(long = "parameter", value_parser = parse_parameter)]
    pub parameters: Vec<(String, String)>,
}

fn parse_parameter(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))
}

pub async fn start(mut settings: Settings, args: EmulateArgs) -> Result<(), String> {
    init_tracing();
    let shutdown = Shutdown::listen()?;
    if let Some(host) = &args.host {
        settings.host = host.clone();
    }
    if let Some(port) = args.port {
        settings.port = port;
    }
    let (Some(sqs), Some(s3)) = (
        settings
            .sqs_endpoint
            .as_ref()
            .and_then(|e| e.url())
            .map(str::to_string),
        settings
            .s3_endpoint
            .as_ref()
            .and_then(|e| e.url())
            .map(str::to_string),
    ) else {
        return Err("stratus emulate runs the stack against LocalStack: set STRATUS_SQS_ENDPOINT and STRATUS_S3_ENDPOINT \
                    to its URL (localstack/emulate starts it and sets them)"
            .into());
    };
    let listener = tokio::net::TcpListener::bind((settings.host.as_str(), settings.port))
        .await
        .map_err(|e| format!("could not listen on {}:{}: {e}", settings.host, settings.port))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (url, local) = tokio::select! {
        db = super::database(&settings) => db?,
        _ = shutdown.signalled(2) => return Err("interrupted while starting Postgres".into()),
    };
    let result = run(&settings, &args, &url, &sqs, &s3, listener, addr, &shutdown).await;
    super::leave(local).await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn run(
    settings: &Settings,
    args: &EmulateArgs,
    database_url: &str,
    sqs_endpoint: &str,
    s3_endpoint: &str,
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    shutdown: &Shutdown,
) -> Result<(), String> {
    stratus_aws::check(settings).await?;

    let mut overrides = BTreeMap::from([("QueuePrefix".to_string(), settings.queue_prefix.clone())]);
    overrides.extend(args.parameters.iter().cloned());
    let stack = Stack::read(&args.template, &overrides)?;
    let sdk = stratus_aws::sdk_config(settings.sqs_endpoint.as_ref().ok_or("no SQS endpoint")?).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queues = event_sources::create_queues(&sqs, &stack.queues).await?;

    // As an operator stores it before deploying: the functions read the URL from the
    // secret at cold start, as on AWS.
    let endpoint = settings.sqs_endpoint.as_ref().ok_or("no SQS endpoint")?;
    let secret_arn = stratus_aws::secrets::put_secret(
        endpoint,
        &format!("{}database", settings.queue_prefix),
        database_url,
    )
    .await?;
    // The block data key too, as the template's generated secret holds it: this machine's
    // key file, so that data sealed by an earlier run still opens.
    let keys = stratus_store::keyring::key_file(&settings.key_file()).map_err(|e| e.to_string())?;
    let keys_arn = stratus_aws::secrets::put_secret(
        endpoint,
        &format!("{}encryption-keys", settings.queue_prefix),
        &keys,
    )
    .await?;
    let base_url = format!("http://{addr}");
    let env = BTreeMap::from([
        (stratus_aws::secrets::SECRET_ARN_VAR.to_string(), secret_arn),
        (stratus_aws::secrets::KEYS_SECRET_ARN_VAR.to_string(), keys_arn),
        ("STRATUS_SQS_ENDPOINT".to_string(), sqs_endpoint.to_string()),
        ("STRATUS_S3_ENDPOINT".to_string(), s3_endpoint.to_string()),
        ("STRATUS_S3_BUCKET".to_string(), settings.s3_bucket.clone()),
        ("STRATUS_QUEUE_PREFIX".to_string(), settings.queue_prefix.clone()),
        ("STRATUS_UI_URL".to_string(), base_url.clone()),
    ]);
    let functions_dir = match &args.functions_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(PathBuf::from))
            .ok_or("cannot tell where this executable is; pass --functions-dir")?,
    };
    let cargo_lambda = args
        .cargo_lambda
        .clone()
        .or_else(|| std::env::var_os("STRATUS_CARGO_LAMBDA").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("cargo-lambda"));
    let template_dir = args
        .template
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let manifest_dir = runtime::manifest_dir()?;
    let launch = runtime::Launch {
        cargo_lambda: &cargo_lambda,
        binaries: &functions_dir,
        template_dir: &template_dir,
        manifest_dir: &manifest_dir,
        env: &env,
    };
    for f in &stack.functions {
        launch.binary(f)?;
    }
    let mut instances = Vec::new();
    for f in &stack.functions {
        instances.push(Arc::new(launch.start(f).await?));
    }

    // The deploy: custom resources (the schema step) before anything serves.
    for resource in &stack.custom_resources {
        let Some(i) = stack.functions.iter().position(|f| f.id == resource.function) else {
            return Err(format!("{}: no function {}", resource.id, resource.function));
        };
        let data = custom_resources::create(&instances[i], resource).await?;
        println!("{} ({}) created: {data}", resource.id, resource.resource_type);
    }

    let routes = RouteTable::new(
        stack
            .functions
            .iter()
            .enumerate()
            .flat_map(|(i, f)| f.routes.iter().map(move |r| (i, r.clone()))),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for (f, instance) in stack.functions.iter().zip(&instances) {
        for s in &f.schedules {
            tasks.spawn(event_sources::schedule(instance.clone(), s.clone()));
        }
        for source in &f.queue_sources {
            let (queue_url, queue_arn) = queues
                .get(&source.queue)
                .cloned()
                .ok_or_else(|| format!("queue {} was not created", source.queue))?;
            tasks.spawn(event_sources::poll(
                sqs.clone(),
                event_sources::Mapping {
                    function: instance.clone(),
                    source: source.clone(),
                    queue_url,
                    queue_arn,
                },
            ));
        }
    }
    let gateway = Arc::new(gateway::Gateway {
        routes,
        functions: instances,
    });
    println!(
        "Stratus, emulated: {} functions of {} behind its HTTP API on {base_url}.",
        stack.functions.len(),
        args.template.display()
    );
    println!("    prefect config set PREFECT_API_URL={base_url}/api\n");
    let app = axum::Router::new().fallback(gateway::handle).with_state(gateway);
    let graceful = shutdown.clone();
    let served = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move { graceful.signalled(1).await })
        .await
        .map_err(|e| format!("gateway error: {e}"));
    tasks.abort_all();
    let _ = std::fs::remove_dir_all(&manifest_dir);
    served
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATUS_EMULATOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}
