//! Small URL helpers shared by the UI, the agent, the CLI and the tests.

/// Percent-encodes a path segment or query component: only RFC 3986's unreserved
/// characters stay as they are (pool and queue names may hold anything).
pub fn percent_encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The same Postgres URL naming another database, its query string kept.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let base = match base.rfind('/') {
        Some(i) if i > "postgres://".len() => &base[..i],
        _ => base,
    };
    format!("{base}/{db}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_and_databases_swapped() {
        assert_eq!(percent_encode("my pool/1"), "my%20pool%2F1");
        assert_eq!(percent_encode("a-b_c.d~"), "a-b_c.d~");
        assert_eq!(
            with_database("postgres://u@h:5432/postgres?sslmode=disable", "x"),
            "postgres://u@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h:5432", "x"), "postgres://u@h:5432/x");
    }
}
