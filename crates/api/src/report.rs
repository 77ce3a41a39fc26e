//! What `weft validate` and `weft analyze` compute and print: the findings for a set of
//! files or directories, as text lines or JSON.

use crate::finding::{Finding, Severity, has_errors, sort_findings};
use crate::load::load_paths;
use crate::snapshot::ConfigSnapshot;
use serde::Serialize;
use std::path::PathBuf;

/// Findings for a set of inputs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Every finding, sorted by file, line and code.
    pub findings: Vec<Finding>,
    /// How many objects were read.
    pub objects: usize,
}

/// Checks each object on its own (schema, field values) plus duplicates.
#[must_use]
pub fn validate_paths(paths: &[PathBuf]) -> Report {
    let loaded = load_paths(paths);
    let mut findings = loaded.findings;
    findings.extend(crate::analyze::check_duplicates(&loaded.objects));
    sort_findings(&mut findings);
    Report {
        findings,
        objects: loaded.objects.len(),
    }
}

/// Everything `validate_paths` checks, plus the checks between objects.
#[must_use]
pub fn analyze_paths(paths: &[PathBuf]) -> Report {
    let loaded = load_paths(paths);
    let objects = loaded.objects.len();
    let mut findings = loaded.findings;
    findings.extend(crate::analyze::analyze(&ConfigSnapshot::new(
        loaded.objects,
    )));
    sort_findings(&mut findings);
    Report { findings, objects }
}

#[derive(Serialize)]
struct JsonFinding<'a> {
    severity: Severity,
    code: &'static str,
    object: Option<String>,
    file: String,
    line: usize,
    message: &'a str,
}

impl Report {
    /// Whether any finding is an error (the command then exits 1).
    #[must_use]
    pub fn has_errors(&self) -> bool {
        has_errors(&self.findings)
    }

    /// One line per finding:
    /// `error|warning|info  <code>  <kind>/<namespace>/<name>  <file>:<line>  <message>`.
    #[must_use]
    pub fn to_text(&self) -> String {
        self.findings.iter().map(|f| format!("{f}\n")).collect()
    }

    /// A JSON array of `{severity, code, object, file, line, message}`.
    #[must_use]
    pub fn to_json(&self) -> String {
        let findings: Vec<JsonFinding<'_>> = self
            .findings
            .iter()
            .map(|f| JsonFinding {
                severity: f.severity,
                code: f.code.as_str(),
                object: f.object.as_ref().map(ToString::to_string),
                file: f.source.file.display().to_string(),
                line: f.source.line,
                message: &f.message,
            })
            .collect();
        serde_json::to_string_pretty(&findings)
            .unwrap_or_else(|error| format!("[] // cannot encode findings: {error}"))
    }

    /// A one-line summary for stderr, e.g. `12 objects, 1 error, 0 warnings`.
    #[must_use]
    pub fn summary(&self) -> String {
        let count = |severity| {
            self.findings
                .iter()
                .filter(|f| f.severity == severity)
                .count()
        };
        format!(
            "{} objects, {} errors, {} warnings, {} notes",
            self.objects,
            count(Severity::Error),
            count(Severity::Warning),
            count(Severity::Info)
        )
    }
}
