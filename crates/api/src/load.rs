//! Parsing manifests: multi-document YAML files (and `kind: List`) into typed [`Object`]s,
//! with a [`Finding`] for every document that cannot be read as written.
//!
//! Each document is parsed once into the spanned tree of [`crate::yaml`] (syntax errors,
//! repeated keys and broken bounds, with line and column), then read twice from that tree:
//! for its `apiVersion`/`kind` (unknown kinds are skipped with an info finding), then into its
//! typed model through `serde_ignored`, which reports every field the schema does not have. Those are errors with a "did you mean" hint, also when the
//! parse fails (a misspelled `sepc:` is reported at its line instead of "missing field spec").
//! A parsed object is then checked on its own ([`crate::validate`]) and against the upstream
//! CRD bounds ([`crate::schema`]); every finding points at its field's line ([`Layout`]).
//!
//! Files are split into documents at `---` lines before parsing, so a syntax error in one
//! document leaves the file's other documents readable.

use crate::files::read_manifest;
pub use crate::files::{IGNORE_FILE, collect_manifest_files};
use crate::finding::{Code, Finding};
use crate::locate::Layout;
use crate::object::{Kind, KindLookup, LoadedObject, Object, ObjectRef, Source};
use crate::suggest::{Segment, closest, segments_of};
use crate::yaml::{ErrorKind, Node, NodeDeserializer};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    let value = match crate::yaml::parse(document.text) {
        Ok(Some(value)) => Arc::new(value),
        Ok(None) => return,
        Err(error) => {
            result.findings.push(yaml_finding(&error, document, file));
            return;
        }
    };
    if value.is_null() {
        return;
    }
    let header = match crate::yaml::from_node::<TypeHeader>(&value) {
        Ok(header) => header,
        Err(error) => {
            let message = format!("not a Kubernetes object: {}", error.message());
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
    if lookup == KindLookup::Unknown {
        check_cluster_kind(api_version, kind, &value, document, file, result);
    }
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
        layout: Layout::new(Arc::clone(&value), document.first_line, Vec::new()),
        file,
    };
    report_parsed(parse_object(&target), &target, result);
}

/// The finding for a document the YAML parser refused.
fn yaml_finding(error: &crate::yaml::Error, document: &Document<'_>, file: &Path) -> Finding {
    let mark = error.mark().unwrap_or_default();
    let code = match error.kind() {
        ErrorKind::DuplicateKey => Code::DuplicateKey,
        ErrorKind::OverLimit => Code::OverLimit,
        ErrorKind::Syntax | ErrorKind::Data => Code::YamlSyntax,
    };
    let source = Source {
        file: file.to_owned(),
        line: document.first_line + mark.line.max(1) - 1,
    };
    let message = format!("{} (column {})", error.message(), mark.column);
    Finding::new(code, None, source, message)
}

/// The largest YAML document read: 3 MiB, what the Kubernetes API server accepts in one
/// request (an object in etcd is limited to 1.5 MiB).
pub const MAX_DOCUMENT_BYTES: usize = 3 * 1024 * 1024;

/// Refuses a document over [`MAX_DOCUMENT_BYTES`] before the YAML parser spends time on it
/// (the nesting and alias bounds are kept by the parser itself, see [`crate::yaml::parse`]).
fn over_limit(document: &Document<'_>, file: &Path) -> Option<Finding> {
    if document.text.len() <= MAX_DOCUMENT_BYTES {
        return None;
    }
    let message = format!(
        "YAML document is {} bytes, over the limit of {MAX_DOCUMENT_BYTES} bytes for one object; not read",
        document.text.len()
    );
    let source = Source {
        file: file.to_owned(),
        line: document.first_line,
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

/// Reports the schema problems of an install object weft does not read (RBAC,
/// PodDisruptionBudget, Lease: [`crate::cluster_kinds`]), each at its field's line.
fn check_cluster_kind(
    api_version: &str,
    kind: &str,
    value: &Arc<Node>,
    document: &Document<'_>,
    file: &Path,
    result: &mut LoadResult,
) {
    let Ok(json) = crate::yaml::from_node::<serde_json::Value>(value) else {
        return;
    };
    let Some(problems) = crate::cluster_kinds::check(api_version, kind, &json) else {
        return;
    };
    let layout = Layout::new(Arc::clone(value), document.first_line, Vec::new());
    for problem in problems {
        let line = layout.line_of(&problem.path).unwrap_or(document.first_line);
        let source = Source {
            file: file.to_owned(),
            line,
        };
        let finding = Finding::new(problem.code, None, source, problem.message);
        result.findings.push(finding);
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

/// `kind: List`: each item is parsed as its own object; an item's findings point at its own
/// lines, problems with the item as a whole at the list document.
fn parse_list(value: &Arc<Node>, document: &Document<'_>, file: &Path, result: &mut LoadResult) {
    let items = value
        .get("items")
        .and_then(Node::as_seq)
        .unwrap_or_default();
    for (index, item) in items.iter().enumerate() {
        let header: Option<TypeHeader> = crate::yaml::from_node(item).ok();
        let source = Source {
            file: file.to_owned(),
            line: document.first_line + item.mark.line.max(1) - 1,
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
        let prefix = vec![Segment::Key("items".to_owned()), Segment::Index(index)];
        let target = Target {
            kind: known,
            api_version: &api_version,
            meta: metadata.as_ref(),
            value: item,
            layout: Layout::new(Arc::clone(value), document.first_line, prefix),
            file,
        };
        report_parsed(parse_object(&target), &target, result);
    }
}

/// What is being parsed: one object of a known kind, as written.
struct Target<'a> {
    kind: Kind,
    api_version: &'a str,
    meta: Option<&'a HeaderMeta>,
    /// The object as parsed.
    value: &'a Node,
    layout: Layout,
    file: &'a Path,
}

impl Target<'_> {
    /// The file and line of the field at `path` (of its deepest parent written, if the
    /// field is not).
    fn source_at(&self, path: &[Segment]) -> Source {
        Source {
            file: self.file.to_owned(),
            line: self.layout.nearest(path).line,
        }
    }

    fn object_ref(&self) -> ObjectRef {
        header_ref(self.kind, self.meta)
    }
}

/// A field a kind may leave out (at some versions, or any when `versions` is empty)
/// although its Rust type requires it.
struct Defaulted {
    kind: Kind,
    versions: &'static [&'static str],
    path: &'static [&'static str],
    key: &'static str,
    /// What it means when left out: an empty mapping or an empty list.
    empty: Empty,
}

#[derive(Clone, Copy)]
enum Empty {
    Map,
    List,
}

/// What leaving these out means: an AuthorizationPolicy without `spec` is valid in Istio (it
/// denies every request to its scope); a `v1alpha2` TLSRoute without `spec.hostnames`
/// matches any SNI (later versions require hostnames).
const DEFAULTED: &[Defaulted] = &[
    Defaulted {
        kind: Kind::AuthorizationPolicy,
        versions: &[],
        path: &[],
        key: "spec",
        empty: Empty::Map,
    },
    Defaulted {
        kind: Kind::TlsRoute,
        versions: &["gateway.networking.k8s.io/v1alpha2"],
        path: &["spec"],
        key: "hostnames",
        empty: Empty::List,
    },
];

/// The object with the [`DEFAULTED`] fields of its kind and version it leaves out filled
/// in (an empty mapping or list, as the field's type needs), or `None` when it leaves none
/// out.
fn defaults_filled(kind: Kind, api_version: &str, value: &Node) -> Option<Node> {
    let mut filled: Option<Node> = None;
    let applies = |d: &&Defaulted| {
        d.kind == kind && (d.versions.is_empty() || d.versions.contains(&api_version))
    };
    for Defaulted {
        path, key, empty, ..
    } in DEFAULTED.iter().filter(applies)
    {
        let empty = match empty {
            Empty::Map => crate::yaml::Value::Map(Vec::new()),
            Empty::List => crate::yaml::Value::Seq(Vec::new()),
        };
        let current = filled.as_ref().unwrap_or(value);
        if let Some(next) = with_entry(current, path, key, &empty) {
            filled = Some(next);
        }
    }
    filled
}

/// `node` with `key: default` added to the mapping at `path`, when that mapping exists and
/// lacks `key`.
fn with_entry(node: &Node, path: &[&str], key: &str, default: &crate::yaml::Value) -> Option<Node> {
    let crate::yaml::Value::Map(entries) = &node.value else {
        return None;
    };
    let mut entries = entries.clone();
    match path.split_first() {
        None => {
            if node.get(key).is_some() {
                return None;
            }
            entries.push(crate::yaml::Entry {
                key: key.into(),
                key_mark: node.mark,
                value: Node {
                    value: default.clone(),
                    mark: node.mark,
                },
            });
        }
        Some((first, rest)) => {
            let child = entries.iter_mut().find(|e| &*e.key == *first)?;
            child.value = with_entry(&child.value, rest, key, default)?;
        }
    }
    Some(Node {
        value: crate::yaml::Value::Map(entries),
        mark: node.mark,
    })
}

/// The typed object (or the schema error) and the paths of unknown fields, which are
/// known even when the parse fails (a misspelled `sepc` shows up before `spec` is missed).
type Parsed = (Result<Object, crate::yaml::Error>, Vec<Vec<Segment>>);

/// Deserializes the target's kind from its node, collecting the paths of unknown fields.
fn parse_object(target: &Target<'_>) -> Parsed {
    let kind = target.kind;
    let filled = defaults_filled(kind, target.api_version, target.value);
    let value = filled.as_ref().unwrap_or(target.value);
    let mut unknown = Vec::new();
    let object = Object::deserialize_as(
        kind,
        serde_ignored::Deserializer::new(NodeDeserializer::new(value), &mut |path| {
            unknown.push(segments_of(&path));
        }),
    );
    (object, unknown)
}

fn report_parsed((parsed, unknown_paths): Parsed, target: &Target<'_>, result: &mut LoadResult) {
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
            let message = error.message().to_owned();
            if explained_by_typo(&message, &suggested) {
                return;
            }
            let source = Source {
                file: target.file.to_owned(),
                line: error.mark().map_or_else(
                    || target.source_at(&[]).line,
                    |mark| target.layout.file_line(mark.line),
                ),
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

/// The message for an unknown field, and the field it probably meant.
fn unknown_field_message(kind: Kind, path: &[Segment]) -> (String, Option<&'static str>) {
    let (field, parent, location) = crate::suggest::unknown_field_location(path);
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
