#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    stratus_shared::serve::lambda(stratus_ui::router()).await
}
