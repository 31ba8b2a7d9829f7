//! `POST /templates/validate`, as Prefect 2.20 serves it for automation templates: the body
//! is the template (a JSON string); 204 when it parses and keeps within the sandbox's loop
//! limits, else 422 `{"error": {line, message, source}}`. Prefect parses with Jinja2;
//! Stratus with minijinja, whose syntax is Jinja2's (its messages are its own).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use minijinja::machinery::ast::Stmt;
use serde_json::json;
use stratus_http::Body;

/// Longest template checked. A template nests as deep as it is long (`x.a.a.a...`), and
/// the parser and its tree recurse that deep: the length bounds the recursion, and the
/// check runs on a thread whose stack holds it.
const MAX_TEMPLATE_CHARS: usize = 100_000;
const CHECK_STACK_BYTES: usize = 256 << 20;

/// Prefect's `MAX_LOOP_COUNT` and `MAX_NESTED_LOOP_DEPTH`.
const MAX_LOOP_COUNT: usize = 10;
const MAX_NESTED_LOOP_DEPTH: usize = 2;

/// The statements directly inside one.
fn children<'s, 'a>(stmt: &'s Stmt<'a>) -> Vec<&'s Stmt<'a>> {
    match stmt {
        Stmt::Template(t) => t.children.iter().collect(),
        Stmt::ForLoop(f) => f.body.iter().chain(&f.else_body).collect(),
        Stmt::IfCond(i) => i.true_body.iter().chain(&i.false_body).collect(),
        Stmt::WithBlock(w) => w.body.iter().collect(),
        Stmt::SetBlock(s) => s.body.iter().collect(),
        Stmt::AutoEscape(a) => a.body.iter().collect(),
        Stmt::FilterBlock(f) => f.body.iter().collect(),
        Stmt::Block(b) => b.body.iter().collect(),
        Stmt::Macro(m) => m.body.iter().collect(),
        Stmt::CallBlock(c) => c.macro_decl.body.iter().collect(),
        _ => Vec::new(),
    }
}

/// (for loops in all, deepest nesting of for loops).
fn loops(stmt: &Stmt<'_>) -> (usize, usize) {
    let own = usize::from(matches!(stmt, Stmt::ForLoop(_)));
    let (mut count, mut depth) = (own, 0);
    for child in children(stmt) {
        let (c, d) = loops(child);
        count += c;
        depth = depth.max(d);
    }
    (count, depth + own)
}

/// Why the template is refused: (line, message).
fn check(template: &str) -> Result<(), (usize, String)> {
    let root = minijinja::machinery::parse(template, "<template>", Default::default()).map_err(|e| {
        (
            e.line().unwrap_or(0),
            e.detail().map_or_else(|| e.to_string(), str::to_string),
        )
    })?;
    let (count, depth) = loops(&root);
    if count > MAX_LOOP_COUNT {
        return Err((
            0,
            format!(
                "Contains {count} for loops. Templates can contain no more than {MAX_LOOP_COUNT} for loops."
            ),
        ));
    }
    if depth > MAX_NESTED_LOOP_DEPTH {
        return Err((
            0,
            format!(
                "Contains nested for loops at a depth of {depth}. Templates can nest for loops no more than \
                 {MAX_NESTED_LOOP_DEPTH} loops deep."
            ),
        ));
    }
    Ok(())
}

/// `check` on a thread with room for the deepest template allowed.
async fn check_apart(template: String) -> Result<(), (usize, String)> {
    let checked = tokio::task::spawn_blocking(move || {
        std::thread::Builder::new()
            .stack_size(CHECK_STACK_BYTES)
            .spawn(move || check(&template))
            .map_err(|e| e.to_string())?
            .join()
            .map_err(|_| "the template check failed".to_string())
    })
    .await;
    match checked {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err((0, e)),
        Err(e) => Err((0, e.to_string())),
    }
}

pub async fn validate(Body(template): Body<String>) -> Response {
    let result = if template.chars().count() > MAX_TEMPLATE_CHARS {
        Err((
            0,
            format!("Template too long: at most {MAX_TEMPLATE_CHARS} characters."),
        ))
    } else {
        check_apart(template.clone()).await
    };
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err((line, message)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": {"line": line, "message": message, "source": template}})),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn templates_parse_within_the_loop_limits() {
        assert!(check("Flow {{ flow.name }} is {{ flow_run.state.name }}").is_ok());
        assert!(check("{% for a in x %}{% for b in a %}{{ b }}{% endfor %}{% endfor %}").is_ok());
        let (line, _) = check("line one\n{% if x %}\nno end").unwrap_err();
        assert!(line >= 2, "{line}");
        assert!(check("{{ unclosed").is_err());
        let deep = "{% for a in x %}{% for b in a %}{% for c in b %}{% endfor %}{% endfor %}{% endfor %}";
        assert!(check(deep).unwrap_err().1.contains("depth of 3"));
        let many = "{% for a in x %}{% endfor %}".repeat(11);
        assert!(check(&many).unwrap_err().1.contains("Contains 11 for loops"));
    }
}
