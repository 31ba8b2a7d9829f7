use stratus_http::serve;

/// Prefect registers its block types when the server starts; on AWS the blocks function
/// does, when an instance starts (it is idempotent), before it serves.
#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let state = stratus_aws::lambda_state().await?;
    let mut client = state.db.get().await?;
    let tx = client.transaction().await?;
    stratus_store::system_blocks::install(&tx).await?;
    tx.commit().await?;
    drop(client);
    lambda_http::run(serve::normalize(serve::api(stratus_blocks::router(), state))).await
}
