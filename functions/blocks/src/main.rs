/// The core block types are registered by the deploy, with the migrations, not here: a
/// cold start does nothing slow before its first request.
#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    stratus_aws::lambda(stratus_blocks::router()).await
}
