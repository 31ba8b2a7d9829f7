//! Route selection as an API Gateway HTTP API does it: a full match of path and method
//! first, then the longest greedy `{proxy+}` route, and a route's own method before `ANY`.
//! A request with a trailing slash (`POST /api/flows/`, as the Prefect client sends)
//! matches no static route (HTTP API routes cannot end in `/`); the greedy route of the
//! same prefix takes it, with an empty `proxy`.

use std::collections::BTreeMap;

use super::template::Route;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    /// Index of the function in the table.
    pub function: usize,
    /// `ANY /api/flows/{proxy+}`, as the event's `routeKey`.
    pub route_key: String,
    pub path_parameters: BTreeMap<String, String>,
}

pub struct RouteTable {
    routes: Vec<(usize, Route)>,
}

/// How well a route fits: full matches before greedy ones, longer greedy prefixes first,
/// a route's own method before `ANY`.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Fit {
    full: bool,
    literal_segments: usize,
    own_method: bool,
}

impl RouteTable {
    pub fn new(routes: impl IntoIterator<Item = (usize, Route)>) -> Self {
        RouteTable {
            routes: routes.into_iter().collect(),
        }
    }

    pub fn select(&self, method: &str, path: &str) -> Option<Matched> {
        let mut best: Option<(Fit, Matched)> = None;
        for (function, route) in &self.routes {
            let own_method = route.method.eq_ignore_ascii_case(method);
            if !own_method && route.method != "ANY" {
                continue;
            }
            let Some((full, literal_segments, path_parameters)) = fit(&route.path, path) else {
                continue;
            };
            let fit = Fit {
                full,
                literal_segments,
                own_method,
            };
            if best.as_ref().is_none_or(|(b, _)| fit > *b) {
                let matched = Matched {
                    function: *function,
                    route_key: format!("{} {}", route.method, route.path),
                    path_parameters,
                };
                best = Some((fit, matched));
            }
        }
        best.map(|(_, m)| m)
    }
}

type Fitted = (bool, usize, BTreeMap<String, String>);

/// Whether `template` takes `path`: (full match, literal segments, path parameters).
fn fit(template: &str, path: &str) -> Option<Fitted> {
    let mut params = BTreeMap::new();
    let mut literal = 0;
    let mut rest = path.strip_prefix('/')?;
    let segments: Vec<&str> = template.trim_start_matches('/').split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix("+}")) {
            if i + 1 != segments.len() {
                return None;
            }
            // `/{proxy+}` takes any path but the root, which has its own route.
            if i == 0 && rest.is_empty() {
                return None;
            }
            params.insert(name.to_string(), rest.to_string());
            return Some((false, literal, params));
        }
        let (head, tail) = match rest.split_once('/') {
            Some((h, t)) => (h, Some(t)),
            None => (rest, None),
        };
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            if head.is_empty() {
                return None;
            }
            params.insert(name.to_string(), head.to_string());
        } else if *segment == head {
            literal += 1;
        } else {
            return None;
        }
        match tail {
            Some(t) if i + 1 < segments.len() => rest = t,
            // Segments left over in the path, or a trailing slash: not a full match.
            Some(_) => return None,
            None if i + 1 == segments.len() => return Some((true, literal, params)),
            None => {
                // The path ended; only a greedy variable may follow, and it needs a `/`.
                return None;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let r = |f: usize, m: &str, p: &str| {
            (
                f,
                Route {
                    method: m.into(),
                    path: p.into(),
                },
            )
        };
        RouteTable::new([
            r(0, "GET", "/"),
            r(0, "ANY", "/{proxy+}"),
            r(1, "ANY", "/api/flows"),
            r(1, "ANY", "/api/flows/{proxy+}"),
            r(2, "ANY", "/api/admin/{proxy+}"),
            r(3, "GET", "/api/docs"),
            r(3, "GET", "/api/docs/{proxy+}"),
            r(4, "ANY", "/api/docs/special"),
            r(5, "ANY", "/api/items/{id}"),
        ])
    }

    fn at(method: &str, path: &str) -> Option<(usize, String, Option<String>)> {
        table().select(method, path).map(|m| {
            let param = m.path_parameters.values().next().cloned();
            (m.function, m.route_key, param)
        })
    }

    #[test]
    fn full_matches_come_before_greedy_ones() {
        assert_eq!(at("POST", "/api/flows"), Some((1, "ANY /api/flows".into(), None)));
        assert_eq!(
            at("POST", "/api/flows/filter"),
            Some((1, "ANY /api/flows/{proxy+}".into(), Some("filter".into())))
        );
        assert_eq!(at("GET", "/"), Some((0, "GET /".into(), None)));
        assert_eq!(
            at("GET", "/api/docs/special"),
            Some((4, "ANY /api/docs/special".into(), None))
        );
        assert_eq!(
            at("GET", "/api/items/7"),
            Some((5, "ANY /api/items/{id}".into(), Some("7".into())))
        );
    }

    #[test]
    fn a_trailing_slash_goes_to_the_greedy_route_of_its_prefix() {
        assert_eq!(
            at("POST", "/api/flows/"),
            Some((1, "ANY /api/flows/{proxy+}".into(), Some(String::new())))
        );
        // No `/api/admin` route: the catch-all takes it.
        assert_eq!(at("GET", "/api/admin").map(|m| m.0), Some(0));
        assert_eq!(at("GET", "/api/admin/settings").map(|m| m.0), Some(2));
        assert_eq!(at("GET", "/api/items/7/").map(|m| m.0), Some(0));
    }

    #[test]
    fn methods_are_matched_and_any_takes_the_rest() {
        assert_eq!(at("POST", "/api/docs").map(|m| m.0), Some(0));
        assert_eq!(
            at("GET", "/api/docs/x/y"),
            Some((3, "GET /api/docs/{proxy+}".into(), Some("x/y".into())))
        );
        assert_eq!(at("POST", "/").map(|m| m.0), None);
    }
}
