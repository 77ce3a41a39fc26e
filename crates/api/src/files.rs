//! Finding and reading manifest files, treating the config directory as hostile input.
//!
//! - Directories are walked recursively in name order, taking `*.yaml`, `*.yml` and
//!   `*.json`, skipping hidden entries and anything listed in the directory's
//!   [`IGNORE_FILE`]. Symlinks are followed, but each directory (by device and inode) is
//!   read once per walk, so a symlink loop or a second link to the same tree is reported
//!   (`directory-loop`) instead of being walked again and again.
//! - A directory or entry that cannot be read is reported (`read-error`) and listed in
//!   [`ManifestFiles::unreadable`], so the config store keeps what it last read below it.
//! - Only regular files are read: a FIFO, socket or device named `*.yaml` (directly or
//!   through a symlink, e.g. to `/dev/zero`) is refused (`not-a-regular-file`) without
//!   blocking, since the file is opened non-blocking and checked before reading.
//! - A file over [`MAX_FILE_BYTES`] is refused (`over-limit`) before being read; the read
//!   itself stops after the limit, so a file growing meanwhile cannot exceed it either.

use crate::finding::{Code, Finding};
use crate::object::Source;
use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Name of the per-directory file listing entries (relative to that directory) to skip.
pub const IGNORE_FILE: &str = ".weftignore";

/// The largest manifest file read (16 MiB, about 80,000 small objects). A mesh larger than
/// that is split over several files, which also makes each edit cheaper to reload.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The manifest files found below some paths, and what could not be looked at.
#[derive(Debug, Default)]
pub struct ManifestFiles {
    /// Files to read, in walk order.
    pub files: Vec<PathBuf>,
    /// Problems and skips found on the way.
    pub findings: Vec<Finding>,
    /// Directories (or directory entries) that could not be read: what was last read below
    /// them is unknown rather than gone.
    pub unreadable: Vec<PathBuf>,
}

/// Expands files and directories into the manifest files to read (see the module docs).
/// Files given explicitly are always read. Problems become findings.
#[must_use]
pub fn find_manifests(paths: &[PathBuf]) -> ManifestFiles {
    let mut walk = Walk::default();
    for path in paths {
        if path.is_dir() {
            walk.dir(path);
        } else {
            walk.found.files.push(path.clone());
        }
    }
    walk.found
}

/// [`find_manifests`] as the file list and the findings.
#[must_use]
pub fn collect_manifest_files(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<Finding>) {
    let found = find_manifests(paths);
    (found.files, found.findings)
}

/// One walk: what was found and the directories already entered.
#[derive(Default)]
struct Walk {
    found: ManifestFiles,
    /// (device, inode) of every directory entered.
    visited: HashSet<(u64, u64)>,
}

impl Walk {
    fn dir(&mut self, dir: &Path) {
        if !self.first_visit(dir) {
            return;
        }
        let ignored = read_ignore_file(dir, &mut self.found.findings);
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) => return self.unreadable(dir, "directory", &error),
        };
        let mut paths = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => paths.push(entry.path()),
                Err(error) => return self.unreadable(dir, "directory", &error),
            }
        }
        paths.sort();
        for path in paths {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.starts_with('.') || ignored.iter().any(|i| i == name) {
                continue;
            }
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_dir() => self.dir(&path),
                Ok(_) if is_manifest(&path) => self.found.files.push(path),
                Ok(_) => {}
                // a dangling symlink named *.yaml is reported when read; any other entry
                // whose target cannot be looked at may hide a directory
                Err(_) if is_manifest(&path) => self.found.files.push(path),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => self.unreadable(&path, "entry", &error),
            }
        }
    }

    /// Records `dir` as entered; false (and a finding) if this walk entered it already.
    fn first_visit(&mut self, dir: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::metadata(dir) else {
            return true; // reading it reports the error
        };
        if self.visited.insert((meta.dev(), meta.ino())) {
            return true;
        }
        let message = format!(
            "directory {} was already read (a symlink loop or a second link to it); not read again",
            dir.display()
        );
        self.found
            .findings
            .push(Finding::new(Code::DirectoryLoop, None, at(dir, 0), message));
        false
    }

    fn unreadable(&mut self, path: &Path, what: &str, error: &std::io::Error) {
        let message = format!("cannot read {what}: {error}");
        self.found
            .findings
            .push(Finding::new(Code::ReadError, None, at(path, 0), message));
        self.found.unreadable.push(path.to_owned());
    }
}

fn at(path: &Path, line: usize) -> Source {
    Source {
        file: path.to_owned(),
        line,
    }
}

/// File names read from directories.
fn is_manifest(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
}

fn read_ignore_file(dir: &Path, findings: &mut Vec<Finding>) -> Vec<String> {
    let path = dir.join(IGNORE_FILE);
    if std::fs::symlink_metadata(&path).is_err() {
        return Vec::new();
    }
    let text = match read_manifest(&path) {
        Ok(text) => text,
        Err(finding) => {
            findings.push(finding);
            return Vec::new();
        }
    };
    let mut entries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let entry = line
            .split('#')
            .next()
            .unwrap_or_default()
            .trim()
            .trim_end_matches('/');
        if entry.is_empty() {
            continue;
        }
        let message = format!(
            "skipping {} (listed in {IGNORE_FILE})",
            dir.join(entry).display()
        );
        findings.push(Finding::new(
            Code::IgnoredPath,
            None,
            at(&path, index + 1),
            message,
        ));
        entries.push(entry.to_owned());
    }
    entries
}

/// Reads a manifest file: a regular file of at most [`MAX_FILE_BYTES`], as UTF-8. The
/// error is a finding naming the file and the reason.
///
/// # Errors
/// `read-error` (missing, unreadable, not UTF-8), `not-a-regular-file`, `over-limit`.
pub fn read_manifest(path: &Path) -> Result<String, Finding> {
    let refuse = |code: Code, message: String| Finding::new(code, None, at(path, 0), message);
    let cannot_read =
        |error: std::io::Error| refuse(Code::ReadError, format!("cannot read file: {error}"));
    let file = open_nonblocking(path).map_err(cannot_read)?;
    let meta = file.metadata().map_err(cannot_read)?;
    if !meta.is_file() {
        let what = file_type_name(&meta.file_type());
        let message = format!("not a regular file ({what}); only regular files are read");
        return Err(refuse(Code::NotARegularFile, message));
    }
    let too_large = |size: u64| {
        let message = format!(
            "file is {size} bytes, over the limit of {MAX_FILE_BYTES} bytes for one config file; split it"
        );
        refuse(Code::OverLimit, message)
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large(meta.len()));
    }
    let mut text = String::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(cannot_read)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(text.len() as u64));
    }
    Ok(text)
}

/// Opens for reading without blocking: opening a FIFO that has no writer would otherwise
/// wait forever. Regular files ignore the flag.
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
}

fn file_type_name(file_type: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_dir() {
        "a directory"
    } else {
        "not a file"
    }
}
