//! Which workspace the work in progress is for. The API's gate runs each request
//! `within` its workspace; every connection taken from the pool then speaks for that
//! workspace alone (the tenant role, and `stratus.workspace`: row security in migration
//! V11 does the rest). Work that spans workspaces (migrations, key checks, the
//! scheduler's list of workspaces) says so with `system`. Work that says nothing gets a
//! connection that sees no rows and can write none: forgetting fails closed.

use std::future::Future;

use uuid::Uuid;

/// The role requests run as; row security binds it.
pub const TENANT_ROLE: &str = "stratus_tenant";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Workspace(Uuid),
    System,
}

tokio::task_local! {
    static SCOPE: Scope;
}

/// Runs `work` for `workspace`: its connections see that workspace's rows only.
pub async fn within<F: Future>(workspace: Uuid, work: F) -> F::Output {
    SCOPE.scope(Scope::Workspace(workspace), work).await
}

/// Runs `work` across workspaces, as the schema's owner.
pub async fn system<F: Future>(work: F) -> F::Output {
    SCOPE.scope(Scope::System, work).await
}

pub fn current() -> Option<Scope> {
    SCOPE.try_with(|s| *s).ok()
}

/// The workspace the work in progress is for, if it is for one.
pub fn workspace() -> Option<Uuid> {
    match current() {
        Some(Scope::Workspace(w)) => Some(w),
        _ => None,
    }
}

/// Every workspace's id, oldest first: what the scheduler and the upkeep passes go over,
/// one workspace at a time.
pub async fn workspaces(pool: &deadpool_postgres::Pool) -> crate::StoreResult<Vec<Uuid>> {
    system(async {
        let client = pool.get().await?;
        let rows = client
            .query("SELECT id FROM workspace ORDER BY created, id", &[])
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    })
    .await
}

/// Runs `work` once in each workspace, in its scope, and gives back what each returned.
pub async fn in_each_workspace<T, F: Future<Output = crate::StoreResult<T>>>(
    pool: &deadpool_postgres::Pool,
    mut work: impl FnMut(Uuid) -> F,
) -> crate::StoreResult<Vec<T>> {
    let mut done = Vec::new();
    for workspace in workspaces(pool).await? {
        done.push(within(workspace, work(workspace)).await?);
    }
    Ok(done)
}

/// The role and workspace a connection takes on for the current scope.
fn settings(scope: Option<Scope>) -> (&'static str, String) {
    match scope {
        Some(Scope::Workspace(w)) => (TENANT_ROLE, w.to_string()),
        Some(Scope::System) => ("none", String::new()),
        None => (TENANT_ROLE, String::new()),
    }
}

/// Makes a connection leaving the pool speak for the current scope. The statement is
/// prepared once per connection.
pub(crate) async fn apply(client: &deadpool_postgres::ClientWrapper) -> Result<(), tokio_postgres::Error> {
    let (role, workspace) = settings(current());
    let statement = client
        .prepare_cached("SELECT set_config('role', $1, false), set_config('stratus.workspace', $2, false)")
        .await?;
    client.query_one(&statement, &[&role, &workspace]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn scopes_nest_and_default_to_nothing() {
        assert_eq!(current(), None);
        let w = Uuid::new_v4();
        within(w, async {
            assert_eq!(workspace(), Some(w));
            system(async { assert_eq!(current(), Some(Scope::System)) }).await;
            assert_eq!(workspace(), Some(w));
        })
        .await;
        assert_eq!(settings(None), (TENANT_ROLE, String::new()));
        assert_eq!(settings(Some(Scope::System)).0, "none");
    }
}
