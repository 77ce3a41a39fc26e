//! A set of file edits made as one change: every file's new text is computed in memory,
//! checked with the same per-file validation `weft validate` runs, and only then written
//! (or the file removed). Nothing is written when any file would gain an error.

use super::WaypointError;
use crate::finding::{Finding, Severity};
use crate::load::parse_manifests;
use crate::object::{Kind, LoadedObject};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One file's text before and after (`None`: the file does not exist / is removed).
struct FileEdit {
    old: Option<String>,
    new: Option<String>,
}

/// Pending edits, by file.
#[derive(Default)]
pub(super) struct Edits {
    files: BTreeMap<PathBuf, FileEdit>,
}

impl Edits {
    /// The file's current text (with the edits so far), `None` if it does not exist.
    pub(super) fn text(&mut self, path: &Path) -> Result<Option<String>, WaypointError> {
        if !self.files.contains_key(path) {
            let old = match std::fs::read_to_string(path) {
                Ok(text) => Some(text),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
                Err(error) => return Err(WaypointError::io(path, &error)),
            };
            let new = old.clone();
            self.files.insert(path.to_owned(), FileEdit { old, new });
        }
        Ok(self.files[path].new.clone())
    }

    /// Sets the file's new text (`None`: remove the file).
    pub(super) fn set(&mut self, path: &Path, new: Option<String>) -> Result<(), WaypointError> {
        self.text(path)?;
        if let Some(edit) = self.files.get_mut(path) {
            edit.new = new;
        }
        Ok(())
    }

    /// The object `kind`/`namespace`/`name` as the file's current text has it, with a layout
    /// for its lines.
    pub(super) fn find(
        &mut self,
        path: &Path,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<LoadedObject>, WaypointError> {
        let text = self.text(path)?.unwrap_or_default();
        Ok(parse_manifests(&text, path).objects.into_iter().find(|o| {
            o.object.kind() == kind && o.object.namespace() == namespace && o.object.name() == name
        }))
    }

    /// Validates every changed file and writes it (or removes it). Returns the files
    /// changed, in path order.
    pub(super) fn commit(self) -> Result<Vec<PathBuf>, WaypointError> {
        let changed: Vec<(PathBuf, FileEdit)> = self
            .files
            .into_iter()
            .filter(|(_, edit)| edit.old != edit.new)
            .collect();
        let mut before = Vec::new();
        for (path, edit) in &changed {
            before.push(check_no_new_errors(
                path,
                edit.old.as_deref(),
                edit.new.as_deref(),
            )?);
        }
        for (path, edit) in &changed {
            let result = match &edit.new {
                Some(text) => std::fs::write(path, text),
                None => std::fs::remove_file(path),
            };
            result.map_err(|error| WaypointError::io(path, &error))?;
        }
        for ((path, edit), before) in changed.iter().zip(before) {
            if edit.new.is_some() {
                check_written(path, before)?;
            }
        }
        let paths: Vec<PathBuf> = changed.into_iter().map(|(path, _)| path).collect();
        Ok(paths)
    }
}

/// What `weft validate` would report for a file's text: its findings and duplicates.
fn validation_errors(path: &Path, text: Option<&str>) -> Vec<Finding> {
    let Some(text) = text else {
        return Vec::new();
    };
    let loaded = parse_manifests(text, path);
    let mut findings = loaded.findings;
    findings.extend(crate::analyze::check_duplicates(&loaded.objects));
    findings.retain(|f| f.severity == Severity::Error);
    findings
}

/// Fails when the new text has more errors than the old one (an edit must never break a
/// file; a file that was already broken is not ours to fix). Returns the old error count.
fn check_no_new_errors(
    path: &Path,
    old: Option<&str>,
    new: Option<&str>,
) -> Result<usize, WaypointError> {
    let before = validation_errors(path, old).len();
    let after = validation_errors(path, new);
    if after.len() > before {
        return Err(invalid("refusing to write", path, &after));
    }
    Ok(before)
}

/// The same check on the written file, read back through `weft validate`'s own entry point.
fn check_written(path: &Path, before: usize) -> Result<(), WaypointError> {
    let report = crate::report::validate_paths(&[path.to_owned()]);
    let errors: Vec<Finding> = report
        .findings
        .into_iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    if errors.len() > before {
        return Err(invalid("wrote", path, &errors));
    }
    Ok(())
}

fn invalid(what: &str, path: &Path, errors: &[Finding]) -> WaypointError {
    let listed: String = errors.iter().map(|f| format!("  {f}\n")).collect();
    WaypointError::Invalid(format!(
        "{what} {}, which is invalid (a bug in weft waypoint):\n{listed}",
        path.display()
    ))
}
