#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    stratus_http::serve::lambda(stratus_task_runs::router()).await
}
