//! The version's name: SHA-256 over the tree's relative paths, types, installed modes and
//! contents (DESIGN §3c), so the same files from another image or owner are one version.

use super::tree::{Entry, Kind};
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::os::unix::ffi::OsStrExt;

/// The length of a digest in hex: the length of every version directory's name.
pub const HEX_LEN: usize = 64;

/// A tree's digest, as lowercase hex (the version directory's name).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// The digest spelt `name`, if it is 64 lowercase hex digits.
    pub fn parse(name: &[u8]) -> Option<Digest> {
        let hex = name.len() == HEX_LEN
            && name
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
        hex.then(|| Digest(String::from_utf8_lossy(name).into_owned()))
    }

    /// The hex spelling.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 digits, for logs.
    pub fn short(&self) -> &str {
        self.0.get(..12).unwrap_or(&self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Builds a digest: each entry's header in path order, each file's contents after its header.
#[derive(Default)]
pub struct TreeHasher(Sha256);

impl TreeHasher {
    /// Adds an entry's header: its path, type and installed mode, and a symlink's target or
    /// a file's length (length-prefixed fields, so no two trees frame the same bytes).
    pub fn entry(&mut self, entry: &Entry) {
        self.field(entry.path.as_os_str().as_bytes());
        let (kind, detail): (u8, &[u8]) = match &entry.kind {
            Kind::Dir => (b'd', b""),
            Kind::File { .. } => (b'f', b""),
            Kind::Symlink { target } => (b'l', target.as_os_str().as_bytes()),
            Kind::Special { .. } => (b's', b""),
        };
        self.0.update([kind]);
        self.0.update(entry.installed_mode().to_le_bytes());
        self.field(detail);
        if let Kind::File { size } = entry.kind {
            self.0.update(size.to_le_bytes());
        }
    }

    /// Adds the next bytes of the current file's contents.
    pub fn content(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest.
    pub fn finish(self) -> Digest {
        let bytes = self.0.finalize();
        let mut hex = String::with_capacity(HEX_LEN);
        for byte in bytes {
            hex.push_str(&format!("{byte:02x}"));
        }
        Digest(hex)
    }

    fn field(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(entries: &[(Entry, &[u8])]) -> Digest {
        let mut hasher = TreeHasher::default();
        for (entry, content) in entries {
            hasher.entry(entry);
            hasher.content(content);
        }
        hasher.finish()
    }

    fn file<'a>(path: &str, mode: u32, content: &'a [u8]) -> (Entry, &'a [u8]) {
        let kind = Kind::File {
            size: content.len() as u64,
        };
        (
            Entry {
                path: path.into(),
                kind,
                mode,
            },
            content,
        )
    }

    #[test]
    fn the_digest_follows_paths_modes_and_contents_but_not_the_raw_mode() {
        let base = digest(&[file("a", 0o644, b"x")]);
        assert_eq!(base.as_str().len(), HEX_LEN);
        assert_eq!(Digest::parse(base.as_str().as_bytes()), Some(base.clone()));
        // The same files with another raw mode that normalises alike: the same version.
        assert_eq!(digest(&[file("a", 0o600, b"x")]), base);
        for other in [
            digest(&[file("b", 0o644, b"x")]),
            digest(&[file("a", 0o755, b"x")]),
            digest(&[file("a", 0o644, b"y")]),
            // Framing: the bytes move from content to path.
            digest(&[file("ax", 0o644, b"")]),
        ] {
            assert_ne!(other, base);
        }
    }

    #[test]
    fn only_64_lowercase_hex_digits_name_a_version() {
        let ok = "0123456789abcdef".repeat(4);
        assert!(Digest::parse(ok.as_bytes()).is_some());
        for bad in [&ok[1..], &ok.to_uppercase(), &format!("{}g", &ok[1..]), ""] {
            assert_eq!(Digest::parse(bad.as_bytes()), None, "{bad}");
        }
    }
}
