//! Markdown from artifacts (written by flow code, so by anyone with a runner key) made
//! into HTML that cannot run anything: raw HTML in the source is shown as text, and links
//! and pictures keep only addresses that cannot carry script.

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag};

/// Whether a link or picture address may stay: http(s), mailto, or one without a scheme
/// (relative, or a fragment). `javascript:`, `data:`, `vbscript:` and any other scheme go,
/// however they are spelt (case, leading blanks, control characters).
fn safe_url(url: &str) -> bool {
    let cleaned: String = url
        .chars()
        .filter(|c| !c.is_ascii_control() && !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    match cleaned.find(':') {
        None => true,
        Some(colon) => {
            // A colon after a path, query or fragment starts is not a scheme.
            if cleaned[..colon].contains(['/', '?', '#']) {
                return true;
            }
            matches!(&cleaned[..colon], "http" | "https" | "mailto")
        }
    }
}

fn checked(url: CowStr<'_>) -> CowStr<'_> {
    if safe_url(&url) {
        url
    } else {
        CowStr::Borrowed("#")
    }
}

/// The HTML of `source`, safe to place in a page.
pub fn to_safe_html(source: &str) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let events = Parser::new_ext(source, options).map(|event| match event {
        Event::Html(html) | Event::InlineHtml(html) => Event::Text(html),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: checked(dest_url),
            title,
            id,
        }),
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Image {
            link_type,
            dest_url: checked(dest_url),
            title,
            id,
        }),
        other => other,
    });
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events);
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_renders() {
        let html = to_safe_html("# Report\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n[docs](https://prefect.io)");
        assert!(html.contains("<h1>Report</h1>"), "{html}");
        assert!(html.contains("<table>") && html.contains("<td>1</td>"), "{html}");
        assert!(
            html.contains(r#"<a href="https://prefect.io">docs</a>"#),
            "{html}"
        );
    }

    #[test]
    fn hostile_markdown_is_inert() {
        let source = "<script>alert(1)</script>\n\n<img src=x onerror=alert(2)>\n\n\
                      [a](javascript:alert(3)) [b](JavaScript:alert(4)) [c]( \tjava\nscript:alert(5))\n\n\
                      ![d](data:text/html,<script>alert(6)</script>) [e](vbscript:x) \
                      <a href=\"javascript:alert(7)\">f</a> [g](/flow-runs/1#x:y)";
        let html = to_safe_html(source);
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img src=x"), "{html}");
        // Escaped source text may mention `href="javascript:`; no element may carry it.
        assert!(
            !html.to_ascii_lowercase().contains("<a href=\"javascript"),
            "{html}"
        );
        assert!(html.contains("&lt;a href=\"javascript:alert(7)\"&gt;"), "{html}");
        assert!(!html.contains("src=\"data:"), "{html}");
        assert!(!html.contains("href=\"vbscript"), "{html}");
        assert!(
            html.contains("&lt;script&gt;"),
            "the script is shown as text: {html}"
        );
        assert!(html.contains(r#"href="/flow-runs/1#x:y""#), "{html}");
    }

    #[test]
    fn schemes_are_judged_however_spelt() {
        for bad in [
            "javascript:x",
            " JAVASCRIPT:x",
            "java\tscript:x",
            "data:x",
            "file:///etc",
            "\u{1}javascript:x",
        ] {
            assert!(!safe_url(bad), "{bad:?}");
        }
        for good in [
            "https://x",
            "http://x",
            "mailto:a@b",
            "/a/b",
            "#top",
            "a/b:c",
            "?q=a:b",
            "page",
        ] {
            assert!(safe_url(good), "{good:?}");
        }
    }
}
