#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    stratus_aws::lambda(stratus_logs::router()).await
}
