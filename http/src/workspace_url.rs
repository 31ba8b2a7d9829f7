//! Workspace URLs: the API is served under Prefect Cloud's prefix,
//! `/api/accounts/{account_id}/workspaces/{workspace_id}/...`, so the stock client works
//! with `PREFECT_API_URL` set to a workspace's URL. Before routing, such a path is
//! rewritten to plain `/api/...` and the workspace it named is kept in the request's
//! extensions; plain `/api/...` serves the default workspace.

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use crate::error::ApiError;
use stratus_store::db::access::{DEFAULT_ACCOUNT_ID, DEFAULT_WORKSPACE_ID};

/// The workspace a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkspaceRef {
    pub account_id: Uuid,
    pub workspace_id: Uuid,
}

impl WorkspaceRef {
    pub const DEFAULT: WorkspaceRef = WorkspaceRef {
        account_id: DEFAULT_ACCOUNT_ID,
        workspace_id: DEFAULT_WORKSPACE_ID,
    };

    /// What the request's URL named (the default workspace for a plain `/api` path).
    pub fn of(req: &Request) -> WorkspaceRef {
        req.extensions()
            .get::<WorkspaceRef>()
            .copied()
            .unwrap_or(WorkspaceRef::DEFAULT)
    }
}

const PREFIX: &str = "/api/accounts/";

#[derive(Debug, PartialEq, Eq)]
enum Split {
    /// Not a workspace URL: served as it is.
    Plain,
    /// Starts like one but is not (an id that is not a UUID, say).
    Malformed,
    Workspace(WorkspaceRef, String),
}

fn split(path: &str) -> Split {
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return Split::Plain;
    };
    let mut parts = rest.splitn(4, '/');
    let (Some(account), Some("workspaces"), Some(workspace)) = (parts.next(), parts.next(), parts.next())
    else {
        return Split::Malformed;
    };
    let (Ok(account_id), Ok(workspace_id)) = (Uuid::parse_str(account), Uuid::parse_str(workspace)) else {
        return Split::Malformed;
    };
    let tail = parts.next().map(|t| format!("/{t}")).unwrap_or_default();
    Split::Workspace(
        WorkspaceRef {
            account_id,
            workspace_id,
        },
        format!("/api{tail}"),
    )
}

/// Rewrites a workspace URL to the plain path the routers know, noting its workspace.
pub async fn rewrite(mut req: Request) -> Result<Request, Response> {
    match split(req.uri().path()) {
        Split::Plain => Ok(req),
        Split::Malformed => Err(ApiError::not_found("Not Found").into_response()),
        Split::Workspace(workspace, path) => {
            let path_and_query = match req.uri().query() {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            let mut parts = req.uri().clone().into_parts();
            parts.path_and_query = path_and_query.parse().ok();
            let uri = axum::http::Uri::from_parts(parts)
                .map_err(|_| ApiError::not_found("Not Found").into_response())?;
            *req.uri_mut() = uri;
            req.extensions_mut().insert(workspace);
            Ok(req)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_urls_become_plain_paths() {
        let a = Uuid::new_v4();
        let w = Uuid::new_v4();
        let named = WorkspaceRef {
            account_id: a,
            workspace_id: w,
        };
        assert_eq!(
            split(&format!("/api/accounts/{a}/workspaces/{w}/flows/filter")),
            Split::Workspace(named, "/api/flows/filter".into())
        );
        assert_eq!(
            split(&format!("/api/accounts/{a}/workspaces/{w}")),
            Split::Workspace(named, "/api".into())
        );
        assert_eq!(split("/api/flows"), Split::Plain);
        assert_eq!(split("/flow-runs"), Split::Plain);
        assert_eq!(
            split(&format!("/api/accounts/{a}/workspaces/nope/flows")),
            Split::Malformed
        );
        assert_eq!(split(&format!("/api/accounts/{a}/flows")), Split::Malformed);
        assert_eq!(split("/api/accounts/"), Split::Malformed);
    }
}
