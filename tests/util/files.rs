//! Test files: random contents, digests (BLAKE3 as `b3sum` prints it, the default on
//! the wire; SHA-256 for `--digest sha256`), the digest an event reports, and
//! recursive listings (hidden files included; symlinks not followed).

use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::MIB;

/// Writes `size` random bytes to `path` and returns their BLAKE3 (lowercase hex, as
/// `b3sum` prints it).
pub fn write_random(path: &Path, size: usize) -> String {
    let mut rng = StdRng::from_entropy();
    let mut hasher = blake3::Hasher::new();
    let mut out = BufWriter::new(fs::File::create(path).expect("create random file"));
    let mut chunk = vec![0u8; MIB];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len());
        rng.fill_bytes(&mut chunk[..n]);
        hasher.update(&chunk[..n]);
        out.write_all(&chunk[..n]).expect("write random file");
        left -= n;
    }
    out.flush().expect("flush random file");
    hasher.finalize().to_hex().to_string()
}

/// `size` random bytes.
pub fn random_bytes(size: usize) -> Vec<u8> {
    let mut v = vec![0u8; size];
    StdRng::from_entropy().fill_bytes(&mut v);
    v
}

/// SHA-256 of `data`, lowercase hex.
pub fn sha256(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

/// BLAKE3 of `data`, lowercase hex: what `b3sum` prints, and the default digest.
pub fn blake3(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

/// BLAKE3 of the file at `path`, lowercase hex, read in chunks.
pub fn blake3_file(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut hasher = blake3::Hasher::new();
    let mut chunk = vec![0u8; MIB];
    loop {
        let n = f.read(&mut chunk).expect("read file");
        if n == 0 {
            break;
        }
        hasher.update(&chunk[..n]);
    }
    hasher.finalize().to_hex().to_string()
}

/// The digest value of a `sent` / `received` event: the field its `digest` field names
/// (`"digest": "blake3", "blake3": HEX`). Panics when either is missing.
pub fn digest(ev: &Value) -> &str {
    let algorithm = ev["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("no digest algorithm in {ev}"));
    ev[algorithm]
        .as_str()
        .unwrap_or_else(|| panic!("no {algorithm} value in {ev}"))
}

/// Every entry under `dir`, directories included, as [`list_all`], but for the hidden
/// folder of partial files kept for resume (`.qp2p-partial`): what landed, or is
/// visible as on its way.
pub fn list_landed(dir: &Path) -> Vec<PathBuf> {
    list_all(dir)
        .into_iter()
        .filter(|p| !p.starts_with(".qp2p-partial"))
        .collect()
}

/// Every entry under `dir` that is not a directory (regular files, symlinks, fifos
/// …; hidden ones included), as paths relative to `dir`, sorted. Symlinks are not
/// followed.
pub fn list_files(dir: &Path) -> Vec<PathBuf> {
    list(dir, false)
}

/// Every entry under `dir`, directories included, relative to `dir`, sorted.
pub fn list_all(dir: &Path) -> Vec<PathBuf> {
    list(dir, true)
}

fn list(dir: &Path, with_dirs: bool) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, with_dirs: bool, out: &mut Vec<PathBuf>) {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => panic!("read_dir {}: {e}", dir.display()),
        };
        for entry in entries {
            let entry = entry.expect("dir entry");
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let meta = fs::symlink_metadata(&path).expect("symlink_metadata");
            if meta.is_dir() {
                if with_dirs {
                    out.push(rel);
                }
                walk(root, &path, with_dirs, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, with_dirs, &mut out);
    out.sort();
    out
}
