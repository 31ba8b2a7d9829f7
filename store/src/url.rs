//! Small URL helpers shared by the UI, the agent, the CLI and the tests.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but RFC 3986's unreserved characters.
const RESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The same, with `/` kept.
const RESERVED_BUT_SLASH: &AsciiSet = &RESERVED.remove(b'/');

/// Percent-encodes a path segment or query component: only RFC 3986's unreserved
/// characters stay as they are (pool and queue names may hold anything).
pub fn percent_encode(raw: &str) -> String {
    utf8_percent_encode(raw, RESERVED).to_string()
}

/// Percent-encodes a path (and its query) to travel as one query component, its slashes
/// kept readable: `/flow-runs?a=b` becomes `/flow-runs%3Fa%3Db`.
pub fn percent_encode_path(raw: &str) -> String {
    utf8_percent_encode(raw, RESERVED_BUT_SLASH).to_string()
}

/// The same Postgres URL naming another database, its query string kept. A URL that
/// does not parse is returned as it is (connecting with it then says what is wrong).
pub fn with_database(url: &str, db: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            parsed.set_path(&format!("/{}", percent_encode(db)));
            parsed.to_string()
        }
        Err(_) => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_and_databases_swapped() {
        assert_eq!(percent_encode("my pool/1"), "my%20pool%2F1");
        assert_eq!(percent_encode("a-b_c.d~"), "a-b_c.d~");
        assert_eq!(percent_encode_path("/flow-runs?a=b c"), "/flow-runs%3Fa%3Db%20c");
        assert_eq!(
            with_database("postgres://u@h:5432/postgres?sslmode=disable", "x"),
            "postgres://u@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h:5432", "x"), "postgres://u@h:5432/x");
        assert_eq!(
            with_database("postgres:///postgres?host=/var/run/postgresql", "x"),
            "postgres:///x?host=/var/run/postgresql"
        );
    }
}
