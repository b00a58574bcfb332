//! A `newc` cpio writer: the format the kernel unpacks as an initramfs.

use std::collections::BTreeSet;

/// An in-memory cpio archive. Parent directories are added on demand, before their
/// contents (the kernel does not create them by itself).
#[derive(Debug, Default)]
pub struct Archive {
    data: Vec<u8>,
    dirs: BTreeSet<String>,
    ino: u32,
}

const DIR: u32 = 0o040_000;
const FILE: u32 = 0o100_000;
const SYMLINK: u32 = 0o120_000;

impl Archive {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directory (and its parents) with mode 0755 (`/tmp`-like dirs: pass 0o1777
    /// through [`Archive::dir_mode`]).
    pub fn dir(&mut self, path: &str) {
        self.dir_mode(path, 0o755);
    }

    /// Adds a directory (and its parents) with `perm`.
    pub fn dir_mode(&mut self, path: &str, perm: u32) {
        let path = path.trim_matches('/');
        if path.is_empty() || self.dirs.contains(path) {
            return;
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.dirs.insert(path.to_string());
        self.entry(path, DIR | perm, &[]);
    }

    /// Adds a regular file with `perm` (0o644, 0o755).
    pub fn file(&mut self, path: &str, perm: u32, content: &[u8]) {
        let path = path.trim_matches('/');
        self.parent(path);
        self.entry(path, FILE | perm, content);
    }

    /// Adds a symbolic link `path` → `target`.
    pub fn symlink(&mut self, path: &str, target: &str) {
        let path = path.trim_matches('/');
        self.parent(path);
        self.entry(path, SYMLINK | 0o777, target.as_bytes());
    }

    fn parent(&mut self, path: &str) {
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
    }

    fn entry(&mut self, name: &str, mode: u32, content: &[u8]) {
        self.ino += 1;
        let nlink = if mode & DIR == DIR { 2 } else { 1 };
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            content.len() as u32,
            0, // devmajor
            0, // devminor
            0, // rdevmajor
            0, // rdevminor
            name.len() as u32 + 1,
            0, // check
        ];
        self.data.extend_from_slice(b"070701");
        for f in fields {
            self.data.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.data.extend_from_slice(name.as_bytes());
        self.data.push(0);
        self.pad();
        self.data.extend_from_slice(content);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.data.len().is_multiple_of(4) {
            self.data.push(0);
        }
    }

    /// Ends the archive (trailer entry) and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_newc_entries_with_parents_first() {
        let mut a = Archive::new();
        a.file("/a/b/c.txt", 0o644, b"hello");
        let bytes = a.finish();
        let text = String::from_utf8_lossy(&bytes);
        let a_pos = text.find("a\0").unwrap();
        let ab_pos = text.find("a/b\0").unwrap();
        let file_pos = text.find("a/b/c.txt\0").unwrap();
        assert!(a_pos < ab_pos && ab_pos < file_pos);
        assert!(text.ends_with("TRAILER!!!\0\0\0\0") || text.contains("TRAILER!!!"));
        assert_eq!(bytes.len() % 4, 0);
        assert!(bytes.starts_with(b"070701"));
    }
}
