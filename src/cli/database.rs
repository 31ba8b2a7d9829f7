//! `stratus database upgrade` and `stratus database reset`.

use stratus_store::config::Settings;

use super::DatabaseCommand;

pub async fn run(command: DatabaseCommand, settings: &Settings) -> Result<(), String> {
    let (url, local) = super::database(settings).await?;
    let result = apply(command, &url).await;
    super::leave(local).await;
    result
}

async fn apply(command: DatabaseCommand, url: &str) -> Result<(), String> {
    let pool = stratus_store::db::pool(url, 1)?;
    let result = match command {
        DatabaseCommand::Upgrade => upgrade(&pool).await,
        DatabaseCommand::Reset { yes } => reset(&pool, url, yes).await,
    };
    pool.close();
    result
}

async fn upgrade(pool: &deadpool_postgres::Pool) -> Result<(), String> {
    let applied = stratus_store::db::migrate(pool).await?;
    super::server::register_system_blocks(pool).await?;
    println!("Database upgraded: {applied} migration(s) applied.");
    Ok(())
}

async fn reset(pool: &deadpool_postgres::Pool, url: &str, yes: bool) -> Result<(), String> {
    if !yes {
        let question = format!(
            "Are you sure you want to reset the Stratus database {}? All data will be lost. [y/N] ",
            redact(url)
        );
        let answer = tokio::task::spawn_blocking(move || confirm(&question))
            .await
            .unwrap_or(false);
        if !answer {
            println!("Reset aborted.");
            return Err("reset aborted: nothing was changed (pass --yes to reset without asking)".into());
        }
    }
    let applied = stratus_store::db::reset(pool).await?;
    super::server::register_system_blocks(pool).await?;
    println!("Database reset: {applied} migration(s) applied.");
    Ok(())
}

/// Asks on stdin; anything but y/yes (including end of input) is no.
fn confirm(question: &str) -> bool {
    use std::io::Write;
    print!("{question}");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    match std::io::stdin().read_line(&mut answer) {
        Ok(0) | Err(_) => {
            println!();
            false
        }
        Ok(_) => matches!(answer.trim().to_lowercase().as_str(), "y" | "yes"),
    }
}

/// The URL without its password, to show to the user.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // key=value form
        return url
            .split_whitespace()
            .map(|kv| match kv.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => kv.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" ");
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn hides_passwords() {
        assert_eq!(
            redact("postgres://me:secret@db:5432/stratus"),
            "postgres://me:***@db:5432/stratus"
        );
        assert_eq!(
            redact("postgres://me@127.0.0.1:5432/stratus"),
            "postgres://me@127.0.0.1:5432/stratus"
        );
        assert_eq!(redact("host=/tmp dbname=x"), "host=/tmp dbname=x");
        assert_eq!(redact("host=db password=secret"), "host=db password=***");
    }
}
