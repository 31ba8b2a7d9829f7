#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    stratus_http::serve::lambda(stratus_flows::router()).await
}
