//! `stratus encryption rotate`: seals every block document again under the first key of
//! the keyring (`STRATUS_ENCRYPTION_KEYS`, or the local key file), so that the keys after
//! it can then be dropped. Documents written before sealing began are sealed too.

use stratus_store::config::Settings;

pub async fn rotate(settings: &Settings) -> Result<(), String> {
    let keyring = settings.keyring().map_err(|e| e.to_string())?;
    let (url, local) = super::database(settings).await?;
    let result = async {
        let pool = stratus_store::db::pool(&url, 1)?;
        stratus_store::db::migrate(&pool).await?;
        let total = stratus_store::db::blocks::reseal_all(&pool, &keyring)
            .await
            .map_err(|e| format!("could not seal block documents: {e}"));
        pool.close();
        total
    }
    .await;
    super::leave(local).await;
    let total = result?;
    println!(
        "{total} block document(s) sealed again under key {}; every document now is.",
        keyring.current()
    );
    Ok(())
}
