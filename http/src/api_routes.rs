//! Route families register their routes here rather than on an axum `Router` directly, so
//! that what is served and what the API's OpenAPI document lists (`stratus::openapi`) come
//! from one list and cannot drift apart. The method functions mirror axum's
//! (`get(h).patch(u)`), and record each method with the handler that serves it.

use axum::handler::Handler;
use axum::routing::{self, MethodRouter};
use axum::Router;
use schemars::{JsonSchema, Schema, SchemaGenerator};

use crate::AppState;

/// What an extractor contributes to an operation's document: a JSON request body's schema.
pub trait RequestDoc {
    fn body_schema(_generator: &mut SchemaGenerator) -> Option<Schema> {
        None
    }
}

impl<T: JsonSchema> RequestDoc for crate::json::Body<T> {
    fn body_schema(generator: &mut SchemaGenerator) -> Option<Schema> {
        Some(generator.subschema_for::<T>())
    }
}

impl<T: JsonSchema> RequestDoc for axum::Json<T> {
    fn body_schema(generator: &mut SchemaGenerator) -> Option<Schema> {
        Some(generator.subschema_for::<T>())
    }
}

impl<T> RequestDoc for axum::extract::State<T> {}
impl<T> RequestDoc for axum::extract::Path<T> {}
impl<T> RequestDoc for axum::extract::Query<T> {}
impl<T, E> RequestDoc for Result<T, E> {}
impl RequestDoc for crate::app::ClientVersion {}
impl RequestDoc for crate::auth::Caller {}
impl RequestDoc for axum::http::HeaderMap {}

/// A handler's extractors, as axum's `Handler` impls list them: `(M, T1, ..., Tn)`.
pub trait HandlerInputs {
    fn body_schema(generator: &mut SchemaGenerator) -> Option<Schema>;
}

impl HandlerInputs for ((),) {
    fn body_schema(_generator: &mut SchemaGenerator) -> Option<Schema> {
        None
    }
}

macro_rules! handler_inputs {
    ($($t:ident),+) => {
        impl<M, $($t: RequestDoc),+> HandlerInputs for (M, $($t,)+) {
            fn body_schema(generator: &mut SchemaGenerator) -> Option<Schema> {
                None$(.or_else(|| $t::body_schema(generator)))+
            }
        }
    };
}

handler_inputs!(T1);
handler_inputs!(T1, T2);
handler_inputs!(T1, T2, T3);
handler_inputs!(T1, T2, T3, T4);
handler_inputs!(T1, T2, T3, T4, T5);
handler_inputs!(T1, T2, T3, T4, T5, T6);

/// Makes a request body's schema (None: the operation takes no JSON body).
pub type BodySchema = fn(&mut SchemaGenerator) -> Option<Schema>;

/// Makes the schema of the JSON body an operation answers with.
pub type ResponseSchema = fn(&mut SchemaGenerator) -> Schema;

/// How a method is documented: the bodies it takes and gives.
#[derive(Clone, Copy)]
struct MethodDoc {
    method: &'static str,
    body: BodySchema,
    returns: Option<ResponseSchema>,
    also: Option<(&'static str, &'static str)>,
}

/// One method of one path, as served.
#[derive(Debug, Clone)]
pub struct Operation {
    /// `GET`, `POST`, ...
    pub method: &'static str,
    /// Relative to `/api`, with axum's `{param}` segments (as OpenAPI writes them).
    pub path: String,
    /// The family's name in the document (its `tags` entry).
    pub tag: &'static str,
    /// The handler's function name, e.g. `read_by_name` (empty for a closure).
    pub handler: String,
    pub body: BodySchema,
    /// What a successful answer's body holds (None: not described).
    pub returns: Option<ResponseSchema>,
    /// A status the operation answers besides success and the common errors, with what it
    /// means (`423`, "Locked").
    pub also: Option<(&'static str, &'static str)>,
}

/// The methods of one path, with the handlers that serve them.
pub struct Methods {
    router: MethodRouter<AppState>,
    methods: Vec<(MethodDoc, String)>,
}

impl Methods {
    /// The JSON body the method added last answers with (as serialized: a response type's
    /// schema follows its `Serialize` impl).
    pub fn returns<T: JsonSchema>(mut self) -> Self {
        if let Some((doc, _)) = self.methods.last_mut() {
            doc.returns = Some(|generator| generator.subschema_for::<T>());
        }
        self
    }

    /// Another status the method added last answers with (`"423"`), and what it means.
    pub fn also_answers(mut self, code: &'static str, description: &'static str) -> Self {
        if let Some((doc, _)) = self.methods.last_mut() {
            doc.also = Some((code, description));
        }
        self
    }
}

impl MethodDoc {
    fn new(method: &'static str, body: BodySchema) -> Self {
        MethodDoc {
            method,
            body,
            returns: None,
            also: None,
        }
    }
}

/// The function name of a handler type (`stratus_flows::read_by_name` → `read_by_name`,
/// `run_routes::filter<FlowRun>` → `filter`); empty for a closure.
fn handler_name<H>() -> String {
    let full = std::any::type_name::<H>();
    if full.contains("{{closure}}") {
        return String::new();
    }
    let plain = full.split('<').next().unwrap_or(full);
    let name = plain.rsplit("::").find(|s| !s.starts_with('{')).unwrap_or(plain);
    name.to_string()
}

macro_rules! method_fns {
    ($($name:ident => $method:literal),*) => {
        $(
            pub fn $name<H, T>(handler: H) -> Methods
            where
                H: Handler<T, AppState>,
                T: HandlerInputs + 'static,
            {
                Methods {
                    router: routing::$name(handler),
                    methods: vec![(MethodDoc::new($method, T::body_schema), handler_name::<H>())],
                }
            }
        )*

        impl Methods {
            $(
                pub fn $name<H, T>(mut self, handler: H) -> Methods
                where
                    H: Handler<T, AppState>,
                    T: HandlerInputs + 'static,
                {
                    self.methods.push((MethodDoc::new($method, T::body_schema), handler_name::<H>()));
                    self.router = self.router.$name(handler);
                    self
                }
            )*
        }
    };
}

method_fns!(get => "GET", post => "POST", put => "PUT", patch => "PATCH", delete => "DELETE");

/// A family's routes: the router it serves and the operations it documents.
pub struct ApiRoutes {
    tag: &'static str,
    router: Router<AppState>,
    operations: Vec<Operation>,
}

impl ApiRoutes {
    pub fn new(tag: &'static str) -> Self {
        ApiRoutes {
            tag,
            router: Router::new(),
            operations: Vec::new(),
        }
    }

    pub fn route(mut self, path: impl Into<String>, methods: Methods) -> Self {
        let path = path.into();
        self.router = self.router.route(&path, methods.router);
        for (doc, handler) in methods.methods {
            self.operations.push(Operation {
                method: doc.method,
                path: path.clone(),
                tag: self.tag,
                handler,
                body: doc.body,
                returns: doc.returns,
                also: doc.also,
            });
        }
        self
    }

    /// A route served but left out of the document, as FastAPI leaves out its own
    /// documentation pages.
    pub fn undocumented(mut self, path: &str, methods: Methods) -> Self {
        self.router = self.router.route(path, methods.router);
        self
    }

    pub fn merge(mut self, other: ApiRoutes) -> Self {
        self.router = self.router.merge(other.router);
        self.operations.extend(other.operations);
        self
    }

    pub fn operations(&self) -> &[Operation] {
        &self.operations
    }

    pub fn into_router(self) -> Router<AppState> {
        self.router
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_by_name() -> &'static str {
        "x"
    }

    async fn remove() -> &'static str {
        "y"
    }

    #[test]
    fn every_method_is_recorded_with_its_handler() {
        let routes = ApiRoutes::new("Things")
            .route("/things/{name}", get(read_by_name).delete(remove))
            .merge(ApiRoutes::new("Other").route("/other", post(remove)));
        let ops: Vec<(&str, &str, &str, &str)> = routes
            .operations()
            .iter()
            .map(|o| (o.method, o.path.as_str(), o.tag, o.handler.as_str()))
            .collect();
        assert_eq!(
            ops,
            [
                ("GET", "/things/{name}", "Things", "read_by_name"),
                ("DELETE", "/things/{name}", "Things", "remove"),
                ("POST", "/other", "Other", "remove"),
            ]
        );
    }
}
