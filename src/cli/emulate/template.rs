//! What `stratus emulate` reads from `infra/template.yaml`: the functions, the HTTP API's
//! routes, the schedules and queue event sources, and the queues. The emulator routes and
//! delivers as the deployed stack would because it reads the file that deploys it, not a
//! second list.

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml_ng::Value;

/// The account and region the emulated stack pretends to run in (LocalStack's defaults).
pub const ACCOUNT: &str = "000000000000";
pub const REGION: &str = "us-east-1";

#[derive(Debug)]
pub struct Stack {
    pub functions: Vec<Function>,
    pub queues: BTreeMap<String, Queue>,
    pub custom_resources: Vec<CustomResource>,
}

/// A custom resource backed by a function of the stack (`ServiceToken: !GetAtt F.Arn`).
#[derive(Debug, Clone, PartialEq)]
pub struct CustomResource {
    pub id: String,
    pub resource_type: String,
    pub function: String,
    /// Its properties, as CloudFormation sends them (values as strings).
    pub properties: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug)]
pub struct Function {
    /// The logical id, e.g. `FlowsFunction`.
    pub id: String,
    /// The member directory, relative to the template's folder.
    pub code_uri: String,
    /// `Metadata.BuildProperties.Binary`, when the member has several binaries.
    pub binary: Option<String>,
    pub timeout_seconds: u64,
    pub memory_mb: u64,
    /// The environment whose values the template gives without deploy-time lookups.
    pub env: BTreeMap<String, String>,
    pub routes: Vec<Route>,
    pub schedules: Vec<Schedule>,
    pub queue_sources: Vec<QueueSource>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `ANY` or an upper-case method.
    pub method: String,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub name: String,
    pub expression: String,
    pub every_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSource {
    /// The logical id of the queue.
    pub queue: String,
    pub batch_size: u32,
    pub report_batch_item_failures: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    pub id: String,
    pub name: String,
    /// SQS attributes by their API names (`VisibilityTimeout`, ...), as strings.
    pub attributes: BTreeMap<String, String>,
    pub redrive: Option<Redrive>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redrive {
    /// The logical id of the dead-letter queue.
    pub dead_letter_queue: String,
    pub max_receive_count: u32,
}

impl Stack {
    pub fn read(path: &Path, overrides: &BTreeMap<String, String>) -> Result<Stack, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("could not read {}: {e}", path.display()))?;
        Stack::parse(&text, overrides).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str, overrides: &BTreeMap<String, String>) -> Result<Stack, String> {
        let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
        let mut params = BTreeMap::new();
        if let Some(Value::Mapping(ps)) = doc.get("Parameters") {
            for (name, p) in ps {
                let (Some(name), Some(default)) = (name.as_str(), p.get("Default")) else {
                    continue;
                };
                if let Some(default) = scalar(default) {
                    params.insert(name.to_string(), default);
                }
            }
        }
        params.extend(overrides.clone());
        let ctx = Context {
            params,
            mappings: doc.get("Mappings").cloned().unwrap_or(Value::Null),
        };
        let globals = doc.get("Globals").and_then(|g| g.get("Function"));
        let resources = match doc.get("Resources") {
            Some(Value::Mapping(r)) => r,
            _ => return Err("no Resources".into()),
        };
        let mut stack = Stack {
            functions: Vec::new(),
            queues: BTreeMap::new(),
            custom_resources: Vec::new(),
        };
        for (id, resource) in resources {
            let id = id.as_str().ok_or("a resource id that is not a string")?;
            match resource.get("Type").and_then(Value::as_str) {
                Some("AWS::Serverless::Function") => {
                    stack.functions.push(function(id, resource, globals, &ctx)?);
                }
                Some("AWS::SQS::Queue") => {
                    stack.queues.insert(id.to_string(), queue(id, resource, &ctx)?);
                }
                Some(t) if t.starts_with("Custom::") || t == "AWS::CloudFormation::CustomResource" => {
                    stack
                        .custom_resources
                        .push(custom_resource(id, t, resource, &ctx)?);
                }
                _ => {}
            }
        }
        for f in &stack.functions {
            for source in &f.queue_sources {
                if !stack.queues.contains_key(&source.queue) {
                    return Err(format!(
                        "{}'s queue {} is not a queue of the template",
                        f.id, source.queue
                    ));
                }
            }
        }
        for r in &stack.custom_resources {
            if !stack.functions.iter().any(|f| f.id == r.function) {
                return Err(format!(
                    "{}'s ServiceToken {} is not a function of the template",
                    r.id, r.function
                ));
            }
        }
        for q in stack.queues.values() {
            if let Some(r) = &q.redrive {
                if !stack.queues.contains_key(&r.dead_letter_queue) {
                    return Err(format!(
                        "{}'s dead-letter queue {} is not a queue of the template",
                        q.id, r.dead_letter_queue
                    ));
                }
            }
        }
        Ok(stack)
    }
}

struct Context {
    params: BTreeMap<String, String>,
    mappings: Value,
}

impl Context {
    /// A value the template fixes before deployment: literals, parameters, pseudo
    /// parameters, and `!Sub` of those. Anything that names a deployed resource is `None`.
    fn resolve(&self, v: &Value) -> Option<String> {
        if let Some(s) = scalar(v) {
            return Some(s);
        }
        let (name, arg) = intrinsic(v)?;
        match name.as_str() {
            "Ref" => self.reference(arg.as_str()?),
            "Sub" => self.substitute(arg.as_str()?),
            "FindInMap" => {
                let [map, top, second] = arg.as_sequence()?.as_slice() else {
                    return None;
                };
                let (top, second) = (self.resolve(top)?, self.resolve(second)?);
                scalar(
                    self.mappings
                        .get(map.as_str()?)?
                        .get(top.as_str())?
                        .get(second.as_str())?,
                )
            }
            _ => None,
        }
    }

    fn reference(&self, name: &str) -> Option<String> {
        if let Some(v) = self.params.get(name) {
            return Some(v.clone());
        }
        Some(
            match name {
                "AWS::Region" => REGION,
                "AWS::AccountId" => ACCOUNT,
                "AWS::Partition" => "aws",
                "AWS::URLSuffix" => "amazonaws.com",
                "AWS::StackName" => "stratus",
                _ => return None,
            }
            .to_string(),
        )
    }

    fn substitute(&self, text: &str) -> Option<String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}')? + start;
            out.push_str(&self.reference(&rest[start + 2..end])?);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Some(out)
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `!Ref x` or `{Ref: x}`, `!Sub s` or `{Fn::Sub: s}`, ...: the function's short name and
/// its argument.
fn intrinsic(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => Some((t.tag.to_string().trim_start_matches('!').to_string(), &t.value)),
        Value::Mapping(m) if m.len() == 1 => {
            let (k, arg) = m.iter().next()?;
            let k = k.as_str()?;
            Some((k.strip_prefix("Fn::").unwrap_or(k).to_string(), arg))
        }
        _ => None,
    }
}

/// `!GetAtt Queue.Arn` (or its list form): the logical id it names.
fn get_att_arn(v: &Value) -> Option<String> {
    let (name, arg) = intrinsic(v)?;
    if name != "GetAtt" {
        return None;
    }
    let (id, attr) = match arg {
        Value::String(s) => s.split_once('.')?,
        Value::Sequence(parts) => (parts.first()?.as_str()?, parts.get(1)?.as_str()?),
        _ => return None,
    };
    (attr == "Arn").then(|| id.to_string())
}

fn number(v: Option<&Value>, ctx: &Context) -> Result<Option<u64>, String> {
    let Some(v) = v else { return Ok(None) };
    let s = ctx
        .resolve(v)
        .ok_or_else(|| format!("{v:?} is not a value known before deployment"))?;
    s.parse()
        .map(Some)
        .map_err(|_| format!("{s:?} is not a whole number"))
}

fn function(id: &str, resource: &Value, globals: Option<&Value>, ctx: &Context) -> Result<Function, String> {
    let props = resource
        .get("Properties")
        .ok_or_else(|| format!("{id} has no Properties"))?;
    let from_either = |key: &str| props.get(key).or_else(|| globals.and_then(|g| g.get(key)));
    let code_uri = props
        .get("CodeUri")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{id} has no CodeUri"))?
        .to_string();
    let binary = resource
        .get("Metadata")
        .and_then(|m| m.get("BuildProperties"))
        .and_then(|b| b.get("Binary"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut env = BTreeMap::new();
    for source in [globals, Some(props)].into_iter().flatten() {
        if let Some(Value::Mapping(vars)) = source.get("Environment").and_then(|e| e.get("Variables")) {
            for (k, v) in vars {
                let Some(k) = k.as_str() else { continue };
                match ctx.resolve(v) {
                    Some(v) => env.insert(k.to_string(), v),
                    None => env.remove(k),
                };
            }
        }
    }
    let mut f = Function {
        id: id.to_string(),
        code_uri,
        binary,
        timeout_seconds: number(from_either("Timeout"), ctx)?.unwrap_or(3),
        memory_mb: number(from_either("MemorySize"), ctx)?.unwrap_or(128),
        env,
        routes: Vec::new(),
        schedules: Vec::new(),
        queue_sources: Vec::new(),
    };
    if let Some(Value::Mapping(events)) = props.get("Events") {
        for (name, event) in events {
            let name = name.as_str().unwrap_or_default();
            let p = event.get("Properties");
            let field = |k: &str| p.and_then(|p| p.get(k));
            match event.get("Type").and_then(Value::as_str) {
                Some("HttpApi") => {
                    let path = field("Path").and_then(|v| ctx.resolve(v));
                    let method = field("Method").and_then(|v| ctx.resolve(v));
                    let (Some(path), Some(method)) = (path, method) else {
                        return Err(format!("{id}'s event {name} needs a Path and a Method"));
                    };
                    f.routes.push(Route {
                        method: method.to_ascii_uppercase(),
                        path,
                    });
                }
                Some("Schedule") => {
                    let expression = field("Schedule")
                        .and_then(|v| ctx.resolve(v))
                        .ok_or_else(|| format!("{id}'s event {name} has no Schedule"))?;
                    let every_seconds = rate_seconds(&expression).ok_or_else(|| {
                        format!("{id}'s schedule {expression:?}: only rate(...) expressions are emulated")
                    })?;
                    f.schedules.push(Schedule {
                        name: name.to_string(),
                        expression,
                        every_seconds,
                    });
                }
                Some("SQS") => {
                    let queue = field("Queue")
                        .and_then(get_att_arn)
                        .ok_or_else(|| format!("{id}'s event {name}: Queue must be !GetAtt <queue>.Arn"))?;
                    let batch_size = number(field("BatchSize"), ctx)?.unwrap_or(10);
                    if !(1..=10).contains(&batch_size) {
                        return Err(format!(
                            "{id}'s event {name}: BatchSize {batch_size} is not 1 to 10"
                        ));
                    }
                    let report_batch_item_failures = matches!(field("FunctionResponseTypes"),
                        Some(Value::Sequence(types)) if types.iter().any(|t| t.as_str() == Some("ReportBatchItemFailures")));
                    f.queue_sources.push(QueueSource {
                        queue,
                        batch_size: batch_size as u32,
                        report_batch_item_failures,
                    });
                }
                other => return Err(format!("{id}'s event {name}: type {other:?} is not emulated")),
            }
        }
    }
    Ok(f)
}

/// EventBridge's `rate(value unit)`.
fn rate_seconds(expression: &str) -> Option<u64> {
    let inner = expression.strip_prefix("rate(")?.strip_suffix(')')?;
    let (value, unit) = inner.trim().split_once(' ')?;
    let value: u64 = value.parse().ok().filter(|v| *v > 0)?;
    let unit_seconds = match (unit, value) {
        ("minute", 1) | ("minutes", 2..) => 60,
        ("hour", 1) | ("hours", 2..) => 3600,
        ("day", 1) | ("days", 2..) => 86_400,
        _ => return None,
    };
    Some(value * unit_seconds)
}

fn custom_resource(
    id: &str,
    resource_type: &str,
    resource: &Value,
    ctx: &Context,
) -> Result<CustomResource, String> {
    let props = resource
        .get("Properties")
        .ok_or_else(|| format!("{id} has no Properties"))?;
    let function = props
        .get("ServiceToken")
        .and_then(get_att_arn)
        .ok_or_else(|| format!("{id}: only a ServiceToken of !GetAtt <function>.Arn is emulated"))?;
    let mut properties = serde_json::Map::new();
    if let Value::Mapping(m) = props {
        for (k, v) in m {
            if let (Some(k), Some(v)) = (k.as_str(), ctx.resolve(v)) {
                properties.insert(k.to_string(), serde_json::Value::String(v));
            }
        }
    }
    Ok(CustomResource {
        id: id.to_string(),
        resource_type: resource_type.to_string(),
        function,
        properties,
    })
}

fn queue(id: &str, resource: &Value, ctx: &Context) -> Result<Queue, String> {
    let props = resource.get("Properties");
    let field = |k: &str| props.and_then(|p| p.get(k));
    let name = match field("QueueName") {
        Some(v) => ctx
            .resolve(v)
            .ok_or_else(|| format!("{id}'s QueueName is not known before deployment"))?,
        None => format!("stratus-{id}"),
    };
    let mut attributes = BTreeMap::new();
    for key in [
        "VisibilityTimeout",
        "ReceiveMessageWaitTimeSeconds",
        "MessageRetentionPeriod",
        "DelaySeconds",
        "MaximumMessageSize",
    ] {
        if let Some(v) = number(field(key), ctx)? {
            attributes.insert(key.to_string(), v.to_string());
        }
    }
    let redrive = match field("RedrivePolicy") {
        None => None,
        Some(policy) => Some(Redrive {
            dead_letter_queue: policy
                .get("deadLetterTargetArn")
                .and_then(get_att_arn)
                .ok_or_else(|| {
                    format!("{id}'s RedrivePolicy needs deadLetterTargetArn: !GetAtt <queue>.Arn")
                })?,
            max_receive_count: number(policy.get("maxReceiveCount"), ctx)?
                .ok_or_else(|| format!("{id}'s RedrivePolicy has no maxReceiveCount"))?
                as u32,
        }),
    };
    Ok(Queue {
        id: id.to_string(),
        name,
        attributes,
        redrive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack() -> Stack {
        let overrides = BTreeMap::from([("QueuePrefix".to_string(), "t-".to_string())]);
        Stack::parse(include_str!("../../../infra/template.yaml"), &overrides).expect("the template parses")
    }

    #[test]
    fn every_function_of_the_template_is_read_with_its_events() {
        let s = stack();
        let flows = s
            .functions
            .iter()
            .find(|f| f.id == "FlowsFunction")
            .expect("flows");
        assert_eq!(flows.code_uri, "../functions/flows");
        assert!(flows.routes.contains(&Route {
            method: "ANY".into(),
            path: "/api/flows/{proxy+}".into()
        }));
        let scheduler = s
            .functions
            .iter()
            .find(|f| f.id == "SchedulerFunction")
            .expect("scheduler");
        assert_eq!(scheduler.schedules[0].every_seconds, 60);
        assert_eq!(scheduler.timeout_seconds, 60);
        let notifier = s
            .functions
            .iter()
            .find(|f| f.id == "NotifierFunction")
            .expect("notifier");
        assert_eq!(notifier.binary.as_deref(), Some("stratus-notifier-events"));
        let source = &notifier.queue_sources[0];
        assert!(source.report_batch_item_failures);
        assert_eq!(s.queues[&source.queue].name, "t-notifications");
        let [schema] = &s.custom_resources[..] else {
            panic!("one custom resource: {:?}", s.custom_resources)
        };
        assert_eq!(
            (schema.function.as_str(), schema.resource_type.as_str()),
            ("MigrateFunction", "Custom::SchemaMigrations")
        );
        assert!(schema.properties.contains_key("SchemaVersion"));
        // Globals apply, and parameters resolve.
        assert_eq!(
            flows.env.get("STRATUS_QUEUE_PREFIX").map(String::as_str),
            Some("t-")
        );
    }

    #[test]
    fn intrinsics_resolve_to_what_is_known_before_deployment() {
        let ctx = Context {
            params: BTreeMap::from([("P".to_string(), "x".to_string())]),
            mappings: serde_yaml_ng::from_str("M: {x: {k: 7}}").expect("yaml"),
        };
        let v: Value = serde_yaml_ng::from_str("!FindInMap [M, !Ref P, k]").expect("yaml");
        assert_eq!(ctx.resolve(&v).as_deref(), Some("7"));
        let v: Value = serde_yaml_ng::from_str("!Sub '${P}-${AWS::Region}'").expect("yaml");
        assert_eq!(ctx.resolve(&v).as_deref(), Some("x-us-east-1"));
        let v: Value = serde_yaml_ng::from_str("{'Fn::Sub': '${Bucket.Arn}'}").expect("yaml");
        assert_eq!(ctx.resolve(&v), None);
        let v: Value = serde_yaml_ng::from_str("!GetAtt [Q, Arn]").expect("yaml");
        assert_eq!(get_att_arn(&v).as_deref(), Some("Q"));
    }

    #[test]
    fn rates_are_eventbridge_rates() {
        assert_eq!(rate_seconds("rate(1 minute)"), Some(60));
        assert_eq!(rate_seconds("rate(5 minutes)"), Some(300));
        assert_eq!(rate_seconds("rate(1 minutes)"), None);
        assert_eq!(rate_seconds("rate(0 minutes)"), None);
        assert_eq!(rate_seconds("cron(0 * * * ? *)"), None);
    }
}
