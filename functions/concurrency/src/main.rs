#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    stratus_http::serve::lambda(stratus_concurrency::router()).await
}
