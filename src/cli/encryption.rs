//! `stratus encryption rotate`: seals every block document again under the first key of
//! the keyring (`STRATUS_ENCRYPTION_KEYS`, or the local key file), so that the keys after
//! it can then be dropped. Documents written before sealing began are sealed too.

use stratus_store::config::Settings;
use stratus_store::keyring::Keyring;

/// Documents per transaction: short row locks, whatever the table's size.
const BATCH: i64 = 200;

pub async fn rotate(settings: &Settings) -> Result<(), String> {
    let keyring = settings.keyring().map_err(|e| e.to_string())?;
    let (url, local) = super::database(settings).await?;
    let result = async {
        let pool = stratus_store::db::pool(&url, 1)?;
        stratus_store::db::migrate(&pool).await?;
        let total = reseal_all(&pool, &keyring).await;
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

/// Seals, in batches, what the current key has not sealed; returns how many.
pub async fn reseal_all(pool: &deadpool_postgres::Pool, keyring: &Keyring) -> Result<u64, String> {
    let mut total = 0;
    loop {
        let mut client = pool
            .get()
            .await
            .map_err(|e| format!("could not connect to Postgres: {e}"))?;
        let tx = client.transaction().await.map_err(|e| e.to_string())?;
        let n = stratus_store::db::blocks::reseal_documents(&tx, keyring, BATCH)
            .await
            .map_err(|e| format!("could not seal block documents: {e}"))?;
        tx.commit().await.map_err(|e| e.to_string())?;
        total += n;
        if n == 0 {
            return Ok(total);
        }
    }
}
