//! Parsing manifests: multi-document YAML files (and `kind: List`) into typed [`Object`]s,
//! with a [`Finding`] for every document that cannot be read as written.
//!
//! Each document is parsed three times, cheapest question first: as untyped YAML (syntax
//! errors, with line and column), for its `apiVersion`/`kind` (unknown kinds are skipped with
//! an info finding), then into its typed model through `serde_ignored`, which reports every
//! field the schema does not have. Those are errors with a "did you mean" hint, also when the
//! parse fails (a misspelled `sepc:` is reported at its line instead of "missing field spec").
//! A parsed object is then checked on its own ([`crate::validate`]) and against the upstream
//! CRD bounds ([`crate::schema`]); every finding points at its field's line ([`Layout`]).

use crate::files::read_manifest;
pub use crate::files::{IGNORE_FILE, collect_manifest_files};
use crate::finding::{Code, Finding};
use crate::locate::Layout;
use crate::object::{Kind, KindLookup, LoadedObject, Object, ObjectRef, Source};
use crate::suggest::{Segment, closest, display_path, segments_of};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Objects and findings from loading some files.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadResult {
    /// Objects that parsed (possibly with unknown-field findings).
    pub objects: Vec<LoadedObject>,
    /// Everything that went wrong or was skipped.
    pub findings: Vec<Finding>,
}

impl LoadResult {
    /// Appends another result.
    pub fn extend(&mut self, other: LoadResult) {
        self.objects.extend(other.objects);
        self.findings.extend(other.findings);
    }
}

/// Reads and parses one file (a regular file within the size limit, see [`read_manifest`]).
#[must_use]
pub fn load_file(path: &Path) -> LoadResult {
    match read_manifest(path) {
        Ok(text) => parse_manifests(&text, path),
        Err(finding) => LoadResult {
            objects: Vec::new(),
            findings: vec![finding],
        },
    }
}

/// Parses the text of one manifest file (`file` is only used in sources and messages).
#[must_use]
pub fn parse_manifests(text: &str, file: &Path) -> LoadResult {
    let mut result = LoadResult::default();
    for document in split_documents(text) {
        parse_document(&document, file, &mut result);
    }
    result
}

/// One YAML document of a file.
struct Document<'a> {
    text: &'a str,
    /// 1-based line of the document's first line in the file.
    first_line: usize,
}

/// Splits a file at `---` lines (a `...` line also ends a document).
fn split_documents(text: &str) -> Vec<Document<'_>> {
    let mut documents = Vec::new();
    let mut start_byte = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_end();
        let is_separator = trimmed == "---" || trimmed.starts_with("--- ") || trimmed == "...";
        if is_separator {
            documents.push(Document {
                text: &text[start_byte..offset],
                first_line: start_line,
            });
            start_byte = offset + line.len();
            start_line = index + 2;
        }
        offset += line.len();
    }
    documents.push(Document {
        text: &text[start_byte..],
        first_line: start_line,
    });
    documents
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeHeader {
    api_version: Option<String>,
    kind: Option<String>,
    metadata: Option<HeaderMeta>,
}

#[derive(Deserialize)]
struct HeaderMeta {
    name: Option<String>,
    namespace: Option<String>,
}

fn parse_document(document: &Document<'_>, file: &Path, result: &mut LoadResult) {
    let source = |line_in_doc: usize| Source {
        file: file.to_owned(),
        line: document.first_line + line_in_doc.max(1) - 1,
    };
    if let Some(finding) = over_limit(document, file) {
        result.findings.push(finding);
        return;
    }
    let value: serde_yaml::Value = match serde_yaml::from_str(document.text) {
        Ok(value) => value,
        Err(error) => {
            let (line, column) = error.location().map_or((1, 0), |l| (l.line(), l.column()));
            let message = format!("{} (column {column})", strip_location(&error.to_string()));
            result
                .findings
                .push(Finding::new(Code::YamlSyntax, None, source(line), message));
            return;
        }
    };
    if value.is_null() {
        return;
    }
    let header = match serde_yaml::from_value::<TypeHeader>(value.clone()) {
        Ok(header) => header,
        Err(error) => {
            let message = format!(
                "not a Kubernetes object: {}",
                strip_location(&error.to_string())
            );
            result
                .findings
                .push(Finding::new(Code::NotAnObject, None, source(1), message));
            return;
        }
    };
    let (Some(api_version), Some(kind)) = (header.api_version.as_deref(), header.kind.as_deref())
    else {
        let message = "document has no apiVersion and kind; every object needs both";
        result
            .findings
            .push(Finding::new(Code::NotAnObject, None, source(1), message));
        return;
    };
    if kind == "List" || (kind.ends_with("List") && api_version == "v1") {
        parse_list(&value, document, file, result);
        return;
    }
    let lookup = Kind::lookup(api_version, kind);
    let Some(known) = accept_kind(
        lookup,
        api_version,
        kind,
        header.metadata.as_ref(),
        source(1),
        result,
    ) else {
        return;
    };
    let target = Target {
        kind: known,
        api_version,
        meta: header.metadata.as_ref(),
        value: &value,
        layout: Layout::new(document.text.into(), document.first_line, Vec::new()),
        file,
    };
    let parsed = match optional_spec_filled(known, &value) {
        Some(filled) => parse_typed(known, filled),
        None => parse_typed(known, serde_yaml::Deserializer::from_str(document.text)),
    };
    report_parsed(parsed, &target, result);
}

/// The largest YAML document read: 3 MiB, what the Kubernetes API server accepts in one
/// request (an object in etcd is limited to 1.5 MiB).
pub const MAX_DOCUMENT_BYTES: usize = 3 * 1024 * 1024;

/// Refuses a document over [`MAX_DOCUMENT_BYTES`] or nested deeper than
/// [`crate::nesting::MAX_NESTING`], before the YAML parser spends time on it.
fn over_limit(document: &Document<'_>, file: &Path) -> Option<Finding> {
    let (line, message) = if document.text.len() > MAX_DOCUMENT_BYTES {
        let message = format!(
            "YAML document is {} bytes, over the limit of {MAX_DOCUMENT_BYTES} bytes for one object; not read",
            document.text.len()
        );
        (document.first_line, message)
    } else {
        let (line, column) = crate::nesting::too_deep_at(document.text)?;
        let message = format!(
            "YAML nested deeper than {} levels (column {column}); document not read",
            crate::nesting::MAX_NESTING
        );
        (document.first_line + line - 1, message)
    };
    let source = Source {
        file: file.to_owned(),
        line,
    };
    Some(Finding::new(Code::OverLimit, None, source, message))
}

/// Decides whether to parse an object of this `apiVersion`/`kind`, reporting when not.
fn accept_kind(
    lookup: KindLookup,
    api_version: &str,
    kind: &str,
    meta: Option<&HeaderMeta>,
    source: Source,
    result: &mut LoadResult,
) -> Option<Kind> {
    match lookup {
        KindLookup::Known(known) => Some(known),
        KindLookup::UnsupportedVersion(known) => {
            let message = format!(
                "{kind} at apiVersion {api_version} is not read (supported: {}); object skipped",
                known.api_versions().join(", ")
            );
            let object = header_ref(known, meta);
            result.findings.push(Finding::new(
                Code::UnsupportedVersion,
                Some(object),
                source,
                message,
            ));
            None
        }
        KindLookup::Unknown => {
            let name = meta.and_then(|m| m.name.as_deref()).unwrap_or("?");
            let message =
                format!("kind {kind} ({api_version}) \"{name}\" is not used by weft; skipped");
            result
                .findings
                .push(Finding::new(Code::UnknownKind, None, source, message));
            None
        }
    }
}

fn header_ref(kind: Kind, meta: Option<&HeaderMeta>) -> ObjectRef {
    let namespace = meta
        .and_then(|m| m.namespace.clone())
        .unwrap_or_else(|| crate::object::DEFAULT_NAMESPACE.to_owned());
    ObjectRef {
        kind,
        namespace: kind.is_namespaced().then_some(namespace),
        name: meta.and_then(|m| m.name.clone()).unwrap_or_default(),
    }
}

/// `kind: List`: each item is parsed as its own object; sources point at the list document.
fn parse_list(
    value: &serde_yaml::Value,
    document: &Document<'_>,
    file: &Path,
    result: &mut LoadResult,
) {
    let items = value
        .get("items")
        .and_then(serde_yaml::Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    // each item's own lines when the list is in block style; otherwise one copy of the
    // document's text, shared by the layouts of all its items
    let own_layouts = crate::locate::item_layouts(document.text, document.first_line, "items")
        .filter(|layouts| layouts.len() == items.len());
    let shared_text: std::sync::Arc<str> = match own_layouts {
        Some(_) => "".into(),
        None => document.text.into(),
    };
    for (index, item) in items.into_iter().enumerate() {
        let header: Option<TypeHeader> = serde_yaml::from_value(item.clone()).ok();
        let source = Source {
            file: file.to_owned(),
            line: document.first_line,
        };
        let Some(TypeHeader {
            api_version: Some(api_version),
            kind: Some(kind),
            metadata,
        }) = header
        else {
            let message = "List item has no apiVersion and kind";
            result
                .findings
                .push(Finding::new(Code::NotAnObject, None, source, message));
            continue;
        };
        let lookup = Kind::lookup(&api_version, &kind);
        let Some(known) = accept_kind(
            lookup,
            &api_version,
            &kind,
            metadata.as_ref(),
            source,
            result,
        ) else {
            continue;
        };
        let layout = match &own_layouts {
            Some(layouts) => layouts[index].clone(),
            None => {
                let prefix = vec![Segment::Key("items".to_owned()), Segment::Index(index)];
                Layout::new(
                    std::sync::Arc::clone(&shared_text),
                    document.first_line,
                    prefix,
                )
            }
        };
        let target = Target {
            kind: known,
            api_version: &api_version,
            meta: metadata.as_ref(),
            value: &item,
            layout,
            file,
        };
        let filled = optional_spec_filled(known, &item).unwrap_or_else(|| item.clone());
        report_parsed(parse_typed(known, filled), &target, result);
    }
}

/// What is being parsed: one object of a known kind, as written.
struct Target<'a> {
    kind: Kind,
    api_version: &'a str,
    meta: Option<&'a HeaderMeta>,
    /// The object as untyped YAML.
    value: &'a serde_yaml::Value,
    layout: Layout,
    file: &'a Path,
}

impl Target<'_> {
    /// The file and line of the field at `path` (the object's first line if not found).
    fn source_at(&self, path: &[Segment]) -> Source {
        Source {
            file: self.file.to_owned(),
            line: self
                .layout
                .line_of(path)
                .unwrap_or_else(|| self.first_line()),
        }
    }

    fn first_line(&self) -> usize {
        self.layout
            .line_of(&[])
            .unwrap_or_else(|| self.layout.file_line(1))
    }

    fn object_ref(&self) -> ObjectRef {
        header_ref(self.kind, self.meta)
    }
}

/// Kinds whose `spec` may be left out, and then means `spec: {}`. An AuthorizationPolicy
/// without a spec is valid in Istio: it denies every request to its scope.
const OPTIONAL_SPEC: &[Kind] = &[Kind::AuthorizationPolicy];

/// The object with `spec: {}` added, when its kind's spec is optional and it has none.
fn optional_spec_filled(kind: Kind, value: &serde_yaml::Value) -> Option<serde_yaml::Value> {
    let serde_yaml::Value::Mapping(map) = value else {
        return None;
    };
    if !OPTIONAL_SPEC.contains(&kind) || map.contains_key("spec") {
        return None;
    }
    let mut filled = map.clone();
    filled.insert(
        "spec".into(),
        serde_yaml::Value::Mapping(serde_yaml::Mapping::new()),
    );
    Some(serde_yaml::Value::Mapping(filled))
}

/// The typed object (or the schema error) and the paths of unknown fields, which are
/// known even when the parse fails (a misspelled `sepc` shows up before `spec` is missed).
type Parsed<E> = (Result<Object, E>, Vec<Vec<Segment>>);

/// Deserializes `kind` from any deserializer, collecting the paths of unknown fields.
fn parse_typed<'de, D: serde::Deserializer<'de>>(kind: Kind, deserializer: D) -> Parsed<D::Error> {
    let mut unknown = Vec::new();
    let object = Object::deserialize_as(
        kind,
        serde_ignored::Deserializer::new(deserializer, &mut |path| {
            unknown.push(segments_of(&path));
        }),
    );
    (object, unknown)
}

fn report_parsed<E: std::fmt::Display + ErrorLocation>(
    (parsed, unknown_paths): Parsed<E>,
    target: &Target<'_>,
    result: &mut LoadResult,
) {
    let object_ref = match &parsed {
        Ok(object) => object.object_ref(),
        Err(_) => target.object_ref(),
    };
    let mut suggested = Vec::new();
    for path in unknown_paths {
        let (message, suggestion) = unknown_field_message(target.kind, &path);
        suggested.extend(suggestion);
        result.findings.push(Finding::new(
            Code::UnknownField,
            Some(object_ref.clone()),
            target.source_at(&path),
            message,
        ));
    }
    match parsed {
        Ok(object) => {
            let problems = crate::validate::check_object(&object).into_iter().chain(
                crate::schema::check_schema(target.kind, target.api_version, target.value),
            );
            for problem in problems {
                result.findings.push(Finding::new(
                    problem.code,
                    Some(object_ref.clone()),
                    target.source_at(&problem.path),
                    problem.message,
                ));
            }
            result.objects.push(LoadedObject {
                object,
                source: target.source_at(&[]),
                layout: Some(target.layout.clone()),
            });
        }
        Err(error) => {
            let message = strip_location(&error.to_string());
            if explained_by_typo(&message, &suggested) {
                return;
            }
            let source = Source {
                file: target.file.to_owned(),
                line: error
                    .line()
                    .map_or_else(|| target.first_line(), |line| target.layout.file_line(line)),
            };
            let finding = Finding::new(
                classify_schema_error(&message),
                Some(object_ref),
                source,
                message,
            );
            result.findings.push(finding);
        }
    }
}

/// Whether a "missing field `x`" error is the other half of an unknown field that was
/// reported with the hint "did you mean x" (e.g. `sepc:` written for `spec:`).
fn explained_by_typo(message: &str, suggested: &[&str]) -> bool {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
        .is_some_and(|field| suggested.contains(&field))
}

/// Line information for the two deserializer error types we use.
trait ErrorLocation {
    fn line(&self) -> Option<usize>;
}

impl ErrorLocation for serde_yaml::Error {
    fn line(&self) -> Option<usize> {
        self.location().map(|l| l.line())
    }
}

/// The message for an unknown field, and the field it probably meant.
fn unknown_field_message(kind: Kind, path: &[Segment]) -> (String, Option<&'static str>) {
    let (field, parent) = match path.split_last() {
        Some((Segment::Key(field), parent)) => (field.as_str(), parent),
        _ => ("?", path),
    };
    let location = if parent.is_empty() {
        "top level".to_owned()
    } else {
        display_path(parent)
    };
    let suggestion = Object::known_fields(kind, parent).and_then(|fields| closest(field, fields));
    let hint = suggestion
        .map(|suggestion| format!("; did you mean \"{suggestion}\"?"))
        .unwrap_or_default();
    let message = format!("unknown field \"{field}\" in {location} of {kind}{hint}");
    (message, suggestion)
}

/// Maps serde's error wording to a finding code.
fn classify_schema_error(message: &str) -> Code {
    if message.contains("missing field") {
        Code::MissingField
    } else if message.contains("unknown variant") {
        Code::InvalidEnum
    } else if message.contains("invalid type") {
        Code::WrongType
    } else {
        Code::InvalidValue
    }
}

/// Drops serde_yaml's trailing " at line L column C" (we print the location ourselves).
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) if message[index..].contains(" column ") => message[..index].to_owned(),
        _ => message.to_owned(),
    }
}

/// Collects and parses every manifest under `paths`.
#[must_use]
pub fn load_paths(paths: &[PathBuf]) -> LoadResult {
    let (files, findings) = collect_manifest_files(paths);
    let mut result = LoadResult {
        objects: Vec::new(),
        findings,
    };
    for file in files {
        result.extend(load_file(&file));
    }
    result
}
