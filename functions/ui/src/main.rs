use stratus_http::serve;

/// The UI function serves its API routes under `/api` and the pages at the root.
#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let state = stratus_aws::lambda_state().await?;
    let app = serve::api(stratus_ui::router(), state.clone()).merge(stratus_ui::pages::app(state.clone()));
    stratus_aws::serve_function(app, &state).await
}
