//! Flow code packages: a directory as a deterministic `.tar.gz` (same files, same bytes,
//! same digest, so re-deploying unchanged code stores nothing new), and unpacking one
//! safely (no entry may land outside the target).

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Directories and files that never belong in a package.
const SKIPPED: &[&str] = &[
    ".git",
    "__pycache__",
    ".venv",
    "venv",
    "node_modules",
    ".mypy_cache",
    ".pytest_cache",
];

fn files(root: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if SKIPPED.contains(&name.as_ref()) || name.ends_with(".pyc") {
                continue;
            }
            let kind = entry
                .file_type()
                .map_err(|e| format!("{}: {e}", entry.path().display()))?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Packs `root`'s files (not symlinks) into a gzipped tar with fixed metadata.
pub fn pack(root: &Path) -> Result<Vec<u8>, String> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let files = files(root)?;
    if files.len() > MAX_ENTRIES {
        return Err(format!("{} holds more than {MAX_ENTRIES} files", root.display()));
    }
    let mut total = 0u64;
    for path in files {
        let rel = path.strip_prefix(root).map_err(|e| e.to_string())?;
        let data = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        // What an agent would refuse to unpack is refused here, where it can be fixed.
        total += data.len() as u64;
        if total > MAX_UNPACKED_BYTES {
            return Err(format!(
                "{} holds more than {MAX_UNPACKED_BYTES} bytes of files: too large for a flow code package",
                root.display()
            ));
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, rel, data.as_slice())
            .map_err(|e| format!("cannot pack {}: {e}", rel.display()))?;
    }
    let gz = tar.into_inner().map_err(|e| format!("cannot pack: {e}"))?;
    gz.finish().map_err(|e| format!("cannot pack: {e}"))
}

pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The storage key of a package: content-addressed.
pub fn key(bytes: &[u8]) -> String {
    format!("flows/{}.tar.gz", digest(bytes))
}

/// Where a workspace keeps its flow code: under `workspaces/{id}/` for a workspace URL
/// (`.../api/accounts/{a}/workspaces/{w}`), at the top for the default workspace.
pub fn workspace_key(api_url: &str, key: &str) -> String {
    let workspace = api_url
        .trim_end_matches('/')
        .rsplit_once("/workspaces/")
        .map(|(_, w)| w)
        .and_then(|w| uuid::Uuid::parse_str(w).ok());
    match workspace {
        Some(w) => format!("workspaces/{w}/{key}"),
        None => key.to_string(),
    }
}

/// The most a package may unpack to, and the most entries it may hold: a small archive of
/// zeros could otherwise fill the agent's disk.
pub const MAX_UNPACKED_BYTES: u64 = 100 * 1024 * 1024;
pub const MAX_ENTRIES: usize = 50_000;

/// Unpacks into `target` (created). `tar` refuses entries that would escape it.
pub fn unpack(bytes: &[u8], target: &Path) -> Result<(), String> {
    unpack_within(bytes, target, MAX_UNPACKED_BYTES)
}

/// [`unpack`], refusing a package whose files add up to more than `max_bytes`.
pub fn unpack_within(bytes: &[u8], target: &Path, max_bytes: u64) -> Result<(), String> {
    std::fs::create_dir_all(target).map_err(|e| format!("cannot create {}: {e}", target.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let (mut total, mut count) = (0u64, 0usize);
    for entry in archive
        .entries()
        .map_err(|e| format!("not a flow code package: {e}"))?
    {
        let mut entry = entry.map_err(|e| format!("not a flow code package: {e}"))?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            continue;
        }
        count += 1;
        total = total.saturating_add(entry.size());
        if total > max_bytes || count > MAX_ENTRIES {
            return Err(format!(
                "the package unpacks to more than {max_bytes} bytes or {MAX_ENTRIES} files"
            ));
        }
        if !entry
            .unpack_in(target)
            .map_err(|e| format!("cannot unpack into {}: {e}", target.display()))?
        {
            return Err("the package holds a path outside its folder".into());
        }
    }
    Ok(())
}

/// Checks a downloaded package against the digest its key names, when it names one.
pub fn verify(url: &str, bytes: &[u8]) -> Result<(), String> {
    let name = url.rsplit('/').next().unwrap_or_default();
    match name.strip_suffix(".tar.gz") {
        Some(expected) if expected.len() == 64 && expected.bytes().all(|b| b.is_ascii_hexdigit()) => {
            let got = digest(bytes);
            if got == expected {
                Ok(())
            } else {
                Err(format!("{url} is corrupt: its digest is {got}"))
            }
        }
        _ => Ok(()),
    }
}

/// Reads up to `limit` bytes (a guard against unbounded downloads into memory).
pub fn read_limited(mut r: impl Read, limit: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    r.by_ref()
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    if out.len() as u64 > limit {
        return Err(format!("larger than {limit} bytes"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_urls_keep_code_apart() {
        let w = uuid::Uuid::new_v4();
        let a = uuid::Uuid::new_v4();
        assert_eq!(
            workspace_key(
                &format!("http://s/api/accounts/{a}/workspaces/{w}/"),
                "flows/x.tar.gz"
            ),
            format!("workspaces/{w}/flows/x.tar.gz")
        );
        assert_eq!(workspace_key("http://s/api", "flows/x.tar.gz"), "flows/x.tar.gz");
    }

    fn scratch() -> PathBuf {
        let d = std::env::temp_dir().join(format!("stratus-code-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn packs_deterministically_and_unpacks() {
        let src = scratch();
        std::fs::create_dir_all(src.join("pkg/__pycache__")).unwrap();
        std::fs::write(src.join("flow.py"), "print('hi')\n").unwrap();
        std::fs::write(src.join("pkg/util.py"), "X = 1\n").unwrap();
        std::fs::write(src.join("pkg/__pycache__/util.cpython-311.pyc"), "junk").unwrap();
        let a = pack(&src).unwrap();
        let b = pack(&src).unwrap();
        assert_eq!(a, b, "same files, same bytes");
        let url = format!("s3://bucket/{}", key(&a));
        verify(&url, &a).unwrap();
        assert!(verify(&url, b"tampered").is_err());
        let dst = scratch();
        unpack(&a, &dst).unwrap();
        assert_eq!(
            std::fs::read_to_string(dst.join("pkg/util.py")).unwrap(),
            "X = 1\n"
        );
        assert!(!dst.join("pkg/__pycache__").exists());
        let _ = std::fs::remove_dir_all(src);
        let _ = std::fs::remove_dir_all(dst);
    }

    #[test]
    fn refuses_a_package_that_unpacks_past_the_limit() {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        let zeros = vec![0u8; 2 * 1024 * 1024];
        for name in ["a.bin", "b.bin"] {
            let mut header = tar::Header::new_gnu();
            header.set_size(zeros.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, zeros.as_slice()).unwrap();
        }
        let bytes = tar.into_inner().unwrap().finish().unwrap();
        assert!(bytes.len() < 64 * 1024, "a small archive: {} bytes", bytes.len());
        let dst = scratch();
        let err = unpack_within(&bytes, &dst.join("bomb"), 3 * 1024 * 1024).unwrap_err();
        assert!(err.contains("unpacks to more than"), "{err}");
        assert!(unpack_within(&bytes, &dst.join("fits"), 5 * 1024 * 1024).is_ok());
    }

    #[test]
    fn refuses_escaping_entries() {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        let mut header = tar::Header::new_gnu();
        let data = b"evil";
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        // Bypasses the builder's own path check, as a hostile archive would.
        header.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../evil.t");
        header.set_cksum();
        tar.append(&header, &data[..]).unwrap();
        let bytes = tar.into_inner().unwrap().finish().unwrap();
        let dst = scratch();
        assert!(unpack(&bytes, &dst.join("inner")).is_err());
        assert!(!dst.join("evil.t").exists());
        let _ = std::fs::remove_dir_all(dst);
    }
}
