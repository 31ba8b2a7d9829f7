//! Who may do what on a hosted Stratus: the four roles an API key carries, and what each
//! route needs. Prefect 2.20's open-source server has no such thing; the roles follow
//! Prefect Cloud's workspace roles (viewer, runner, developer, owner/admin).

use serde::{Deserialize, Serialize};

/// A key's role in its workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, the admin routes (`/admin/*`) included.
    Admin,
    /// Reads and writes all work (flows, deployments, pools, blocks, variables, limits).
    Developer,
    /// What an agent or worker, and the flows it starts, need: read everything, poll and
    /// claim runs, create flow and task runs, set their states, write logs and artifacts.
    Runner,
    /// Reads only; block secrets are never revealed.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Developer, Role::Runner, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Developer => "developer",
            Role::Runner => "runner",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(raw: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == raw)
    }

    /// Whether this role may do what `need` names.
    pub fn may(self, need: Need) -> bool {
        match need {
            Need::Public | Need::Read => true,
            Need::Run => self != Role::Viewer,
            Need::Write => matches!(self, Role::Admin | Role::Developer),
            Need::Admin => self == Role::Admin,
        }
    }

    /// Whether block documents' secret values may be shown to this role.
    pub fn sees_secrets(self) -> bool {
        self != Role::Viewer
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key's name, as typed: 1 to 200 characters, none of them control characters
/// (Postgres refuses NUL in text; the rest would garble lists). The error says why.
pub fn key_name(raw: &str) -> Result<&str, String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err("A key needs a name.".into());
    }
    if name.chars().count() > 200 {
        return Err("A key's name is at most 200 characters.".into());
    }
    if name.chars().any(char::is_control) {
        return Err("A key's name cannot hold control characters.".into());
    }
    Ok(name)
}

/// How long a key lives, given in days: 1 to 3650 (ten years).
pub fn key_lifetime(days: i64) -> Result<chrono::Duration, String> {
    if (1..=3650).contains(&days) {
        Ok(chrono::Duration::days(days))
    } else {
        Err("Expiry is a number of days from 1 to 3650.".into())
    }
}

/// What an API route asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// Nothing: health and version, which load balancers and the client's checks call.
    Public,
    /// A valid key of any role.
    Read,
    /// Running work: a runner, developer or admin.
    Run,
    /// Changing what runs and how (deployments and their job variables, pools, blocks,
    /// variables, limits, notifications): a developer or admin.
    Write,
    Admin,
}

/// What `method` on the route `path` needs: the route's template relative to the API root
/// (`/flow_runs/{id}/set_state`), as the router matched it. Given a concrete path instead,
/// a name that happens to be `filter` or `count` could pass a write for a query.
pub fn need_for(method: &str, path: &str) -> Need {
    let path = path.trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = method.to_ascii_uppercase();
    if method == "OPTIONS" {
        return Need::Public;
    }
    let reads = method == "GET" || method == "HEAD";
    match segments.as_slice() {
        ["health"] | ["version"] if reads => return Need::Public,
        ["admin", "version"] if reads => return Need::Read,
        ["admin", ..] => return Need::Admin,
        _ => {}
    }
    if reads || (method == "POST" && posts_a_query(&segments)) {
        return Need::Read;
    }
    if runs_work(&method, &segments) {
        Need::Run
    } else {
        Need::Write
    }
}

/// POST routes that only read: filters, counts, histories and validations.
fn posts_a_query(segments: &[&str]) -> bool {
    matches!(
        segments,
        ["ui", ..] | [.., "filter" | "count" | "history" | "lateness" | "validate"] | [.., "count-by", _]
    )
}

/// The writes an agent, a worker or the flows they run make.
fn runs_work(method: &str, segments: &[&str]) -> bool {
    matches!(
        (method, segments),
        ("POST", ["flows"])
            | ("POST", ["flow_runs"])
            | ("PATCH", ["flow_runs", _])
            | ("POST", ["flow_runs", _, "set_state" | "resume" | "input"])
            | ("DELETE", ["flow_runs", _, "input", _])
            | ("POST", ["task_runs"])
            | ("PATCH", ["task_runs", _])
            | ("POST", ["task_runs", _, "set_state"])
            | ("POST", ["logs"])
            | ("POST", ["artifacts"])
            | ("PATCH", ["artifacts", _])
            | ("POST", ["events"])
            | ("POST", ["v2", "concurrency_limits", "increment" | "decrement"])
            | ("POST", ["deployments", _, "create_flow_run"])
            | ("POST", ["deployments", "get_scheduled_flow_runs"])
            | ("POST", ["work_queues", _, "get_runs"])
            | (
                "POST",
                ["work_pools", _, "get_scheduled_flow_runs"]
                    | ["work_pools", _, "workers", "heartbeat"]
                    | ["work_pools", _, "message_queue", _]
            )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_and_version_are_public_and_nothing_else_is() {
        assert_eq!(need_for("GET", "/health"), Need::Public);
        assert_eq!(need_for("GET", "/version"), Need::Public);
        assert_eq!(need_for("POST", "/health"), Need::Write);
        assert_eq!(need_for("GET", "/hello"), Need::Read);
        assert_eq!(need_for("GET", "/admin/version"), Need::Read);
        assert_eq!(need_for("GET", "/admin/settings"), Need::Admin);
        assert_eq!(need_for("POST", "/admin/database/clear"), Need::Admin);
    }

    #[test]
    fn queries_sent_as_posts_only_read() {
        for path in [
            "/flow_runs/filter",
            "/flow_runs/count",
            "/task_runs/history",
            "/flow_runs/5c9d/input/filter",
            "/ui/flow_runs/history",
            "/events/count-by/day",
            "/templates/validate",
            "/artifacts/latest/count/",
        ] {
            assert_eq!(need_for("POST", path), Need::Read, "{path}");
        }
    }

    #[test]
    fn running_a_flow_needs_a_runner_and_changing_what_runs_a_developer() {
        assert_eq!(need_for("POST", "/flow_runs/1/set_state"), Need::Run);
        assert_eq!(need_for("POST", "/logs/"), Need::Run);
        assert_eq!(
            need_for("POST", "/work_pools/p/get_scheduled_flow_runs"),
            Need::Run
        );
        assert_eq!(need_for("POST", "/work_pools/p/message_queue/claim"), Need::Run);
        assert_eq!(need_for("POST", "/deployments/"), Need::Write);
        assert_eq!(need_for("PATCH", "/deployments/1"), Need::Write);
        assert_eq!(need_for("POST", "/deployments/{id}/create_flow_run"), Need::Run);
        assert_eq!(need_for("POST", "/block_documents"), Need::Write);
        assert_eq!(need_for("DELETE", "/flow_runs/1"), Need::Write);
        assert_eq!(need_for("PUT", "/saved_searches"), Need::Write);
    }

    #[test]
    fn only_a_post_is_a_query() {
        assert_eq!(need_for("PATCH", "/work_pools/{name}"), Need::Write);
        assert_eq!(need_for("PATCH", "/work_pools/validate"), Need::Write);
        assert_eq!(need_for("DELETE", "/variables/name/count"), Need::Write);
        assert_eq!(
            need_for("POST", "/concurrency_limits/tag/{tag}/reset"),
            Need::Write
        );
    }

    #[test]
    fn key_names_are_plain_text_of_a_sensible_length() {
        assert_eq!(key_name("  ci-agent "), Ok("ci-agent"));
        assert!(key_name("   ").is_err());
        assert!(key_name("a\0b").is_err());
        assert!(key_name(&"x".repeat(201)).is_err());
        assert!(key_name(&"é".repeat(200)).is_ok());
        assert!(key_lifetime(0).is_err() && key_lifetime(i64::MAX).is_err());
        assert_eq!(key_lifetime(30), Ok(chrono::Duration::days(30)));
    }

    #[test]
    fn each_role_may_what_it_says() {
        assert!(Role::Viewer.may(Need::Read) && !Role::Viewer.may(Need::Run));
        assert!(Role::Runner.may(Need::Run) && !Role::Runner.may(Need::Write));
        assert!(Role::Developer.may(Need::Write) && !Role::Developer.may(Need::Admin));
        assert!(Role::Admin.may(Need::Admin));
        assert!(!Role::Viewer.sees_secrets() && Role::Runner.sees_secrets());
        assert_eq!(Role::parse("runner"), Some(Role::Runner));
        assert_eq!(Role::parse("owner"), None);
    }
}
