//! Block documents' data is sealed at rest: AES-256-GCM (an AEAD cipher, from `ring`),
//! under the first key of the keyring, with a random nonce per write. A database dump then
//! shows `{"$stratus_sealed": {"key": ..., "nonce": ..., "data": ...}}`, never a value.
//!
//! Keys come from `STRATUS_ENCRYPTION_KEYS` (`id:secret,id:secret`, the first one seals,
//! every one opens; a key is the SHA-256 of its secret, which must be at least 32
//! characters), or on AWS from the secret `STRATUS_ENCRYPTION_KEYS_SECRET_ARN` names, or,
//! for the zero-configuration local server, from a key file made once in its data folder.
//! Rotating: put the new key first, keep the old ones after it, run
//! `stratus encryption rotate` (it re-seals every document under the new key), then drop
//! the old keys.

use std::path::Path;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The JSON key that marks sealed data.
pub const SEALED: &str = "$stratus_sealed";
/// Sealed data is bound to its document: moved to another row, it does not open.
fn aad(document: Uuid) -> Vec<u8> {
    format!("stratus block_document.data v1 {document}").into_bytes()
}

/// The keys documents are sealed and opened with.
pub struct Keyring {
    keys: Vec<(String, LessSafeKey)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("Keyring").field("keys", &ids).finish()
    }
}

/// Why data could not be sealed or opened. Never holds a value or a key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SealError(pub String);

impl Keyring {
    /// Parses `id:secret,id:secret` (the first seals); newlines separate keys too, as in
    /// the key file.
    pub fn parse(raw: &str) -> Result<Keyring, SealError> {
        let mut keys = Vec::new();
        for entry in raw.split([',', '\n']).map(str::trim).filter(|e| !e.is_empty()) {
            // A bare secret (as AWS's generated secrets are) is key `k0`.
            let (id, secret) = entry.split_once(':').unwrap_or(("k0", entry));
            let id = id.trim();
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(SealError(format!(
                    "key id {id:?}: use letters, digits, '-' or '_'"
                )));
            }
            if secret.trim().len() < 32 {
                return Err(SealError(format!(
                    "key {id}: its secret must be at least 32 characters"
                )));
            }
            if keys.iter().any(|(k, _)| k == id) {
                return Err(SealError(format!("key id {id} is given twice")));
            }
            let material = Sha256::digest(secret.trim().as_bytes());
            let key = UnboundKey::new(&AES_256_GCM, &material).map_err(|_| SealError("bad key".into()))?;
            keys.push((id.to_string(), LessSafeKey::new(key)));
        }
        if keys.is_empty() {
            return Err(SealError("no key given".into()));
        }
        Ok(Keyring { keys })
    }

    /// The keyring in `path`, made there with one new random key if the file is missing
    /// (readable by its owner only). Concurrent first starts agree on one file.
    pub fn from_file(path: &Path) -> Result<Keyring, SealError> {
        Keyring::parse(&key_file(path)?)
    }

    /// The id of the key that seals.
    pub fn current(&self) -> &str {
        &self.keys[0].0
    }

    /// `data` of the document `document` sealed under the current key.
    pub fn seal(&self, data: &Value, document: Uuid) -> Result<Value, SealError> {
        let (id, key) = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SealError("no randomness".into()))?;
        let mut buf = serde_json::to_vec(data).map_err(|e| SealError(e.to_string()))?;
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(document)),
            &mut buf,
        )
        .map_err(|_| SealError("could not seal".into()))?;
        Ok(json!({SEALED: {"key": id, "nonce": hex::encode(nonce), "data": hex::encode(buf)}}))
    }

    /// Stored data opened: sealed data under any key of the ring, or data written before
    /// sealing began, as it is.
    pub fn open(&self, stored: Value, document: Uuid) -> Result<Value, SealError> {
        let Some(sealed) = stored.get(SEALED) else {
            return Ok(stored);
        };
        let field = |name: &str| sealed.get(name).and_then(Value::as_str).unwrap_or_default();
        let id = field("key");
        let key = self
            .keys
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, key)| key)
            .ok_or_else(|| {
                SealError(format!(
                    "block data is sealed under key {id:?}, which STRATUS_ENCRYPTION_KEYS does not hold"
                ))
            })?;
        let corrupt = || {
            SealError(format!(
                "block data sealed under key {id:?} does not open: it is corrupt or the key is wrong"
            ))
        };
        let nonce: [u8; NONCE_LEN] = hex::decode(field("nonce"))
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(corrupt)?;
        let mut buf = hex::decode(field("data")).map_err(|_| corrupt())?;
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(document)),
                &mut buf,
            )
            .map_err(|_| corrupt())?;
        serde_json::from_slice(plain).map_err(|_| corrupt())
    }
}

/// The text of the key file at `path` (`id:secret` lines), made with one new random key
/// if it is missing.
pub fn key_file(path: &Path) -> Result<String, SealError> {
    let describe = |e: std::io::Error| SealError(format!("{}: {e}", path.display()));
    match std::fs::read_to_string(path) {
        Ok(text) => return Ok(text.trim().to_string()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(describe(e)),
        Err(_) => {}
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(describe)?;
    }
    let mut secret = [0u8; 32];
    SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| SealError("no randomness".into()))?;
    let id = chrono::Utc::now().format("k%Y%m%d").to_string();
    let text = format!("{id}:{}\n", hex::encode(secret));
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    write_private(&tmp, &text).map_err(describe)?;
    // A hard link publishes the whole file, and fails if another start got there first.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(text.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path).map_err(describe)?;
            Ok(text.trim().to_string())
        }
        Err(e) => Err(describe(e)),
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "old:0123456789abcdef0123456789abcdef";
    const DOC: Uuid = Uuid::from_u128(7);

    /// Stored data the ring's current key did not seal (what `reseal_documents` selects).
    fn needs_rotation(ring: &Keyring, stored: &Value) -> bool {
        stored
            .get(SEALED)
            .and_then(|s| s.get("key"))
            .and_then(Value::as_str)
            != Some(ring.current())
    }
    const NEW: &str = "new:fedcba9876543210fedcba9876543210";

    #[test]
    fn sealed_data_shows_nothing_and_opens_again() {
        let ring = Keyring::parse(OLD).unwrap();
        let data = json!({"password": "hunter2", "nested": {"token": "abc"}});
        let sealed = ring.seal(&data, DOC).unwrap();
        let text = sealed.to_string();
        assert!(!text.contains("hunter2") && !text.contains("abc\""), "{text}");
        assert_ne!(ring.seal(&data, DOC).unwrap(), sealed, "a fresh nonce each time");
        assert!(
            ring.open(sealed.clone(), Uuid::from_u128(8)).is_err(),
            "bound to its document"
        );
        assert_eq!(ring.open(sealed, DOC).unwrap(), data);
        assert_eq!(ring.open(json!({"plain": 1}), DOC).unwrap(), json!({"plain": 1}));
    }

    #[test]
    fn rotation_opens_old_data_and_seals_under_the_new_key() {
        let old = Keyring::parse(OLD).unwrap();
        let sealed = old.seal(&json!({"v": 1}), DOC).unwrap();
        let rotated = Keyring::parse(&format!("{NEW}\n{OLD}")).unwrap();
        assert!(needs_rotation(&rotated, &sealed));
        let resealed = rotated
            .seal(&rotated.open(sealed.clone(), DOC).unwrap(), DOC)
            .unwrap();
        assert!(!needs_rotation(&rotated, &resealed));
        let new_only = Keyring::parse(NEW).unwrap();
        assert_eq!(new_only.open(resealed, DOC).unwrap(), json!({"v": 1}));
        let err = new_only.open(sealed, DOC).unwrap_err().to_string();
        assert!(err.contains("\"old\"") && !err.contains("0123"), "{err}");
    }

    #[test]
    fn tampered_data_does_not_open() {
        let ring = Keyring::parse(OLD).unwrap();
        let mut sealed = ring.seal(&json!({"v": 1}), DOC).unwrap();
        let data = sealed[SEALED]["data"].as_str().unwrap().to_string();
        let flipped = format!("{}{}", if data.starts_with('0') { "1" } else { "0" }, &data[1..]);
        sealed[SEALED]["data"] = Value::String(flipped);
        assert!(ring.open(sealed, DOC).is_err());
    }

    #[test]
    fn bad_keyrings_are_refused() {
        assert!(Keyring::parse("").is_err());
        assert!(Keyring::parse("k:short").is_err());
        assert!(Keyring::parse("nocolon").is_err());
        assert_eq!(
            Keyring::parse("0123456789abcdef0123456789abcdefXY")
                .unwrap()
                .current(),
            "k0"
        );
        assert!(Keyring::parse(&format!("{OLD},{OLD}")).is_err());
    }

    #[test]
    fn a_key_file_is_made_once() {
        let dir = std::env::temp_dir().join(format!("stratus-keyring-{}", uuid::Uuid::new_v4()));
        let path = dir.join("encryption-keys");
        let a = Keyring::from_file(&path).unwrap();
        let b = Keyring::from_file(&path).unwrap();
        let sealed = a.seal(&json!({"v": 1}), DOC).unwrap();
        assert_eq!(b.open(sealed, DOC).unwrap(), json!({"v": 1}));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
