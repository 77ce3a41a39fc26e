//! Waypoint manifests in a config directory (`weft waypoint apply|list|delete`).
//!
//! A waypoint is a `Gateway` of class `istio-waypoint` with the listener `{name: mesh, port:
//! 15008, protocol: HBONE}`; its label `istio.io/waypoint-for` (`service`, `workload`, `all`,
//! `none`) says which traffic it takes, and `istio.io/use-waypoint` (plus
//! `istio.io/use-waypoint-namespace`) on a Namespace, Service or Pod sends traffic to it.
//!
//! `apply` writes the Gateway as its own file, `waypoint-<namespace>-<name>.yaml` at the top
//! of the directory, and never touches a Gateway of that name written elsewhere by hand.
//! Enrolling a namespace edits its Namespace object in place where the user wrote it
//! ([`text`]), or adds a Namespace to the waypoint's file when there is none. Every change is
//! checked before it is written ([`edits`]).

mod edits;
pub mod text;

use crate::analyze::{USE_WAYPOINT_LABEL, USE_WAYPOINT_NAMESPACE_LABEL};
use crate::gateway::WAYPOINT_CLASS;
use crate::load::load_paths;
use crate::object::{Kind, LoadedObject, Object};
use crate::suggest::Segment;
use edits::Edits;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use text::LabelSite;

mod list;
pub use list::{WaypointEntry, list};

/// Label on the waypoint Gateway saying which traffic it takes (default `service`).
pub const WAYPOINT_FOR_LABEL: &str = "istio.io/waypoint-for";

/// Which traffic a waypoint takes (`istio.io/waypoint-for`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrafficType {
    /// Traffic addressed to services (the default).
    Service,
    /// Traffic addressed to workloads directly.
    Workload,
    /// Both.
    All,
    /// Neither.
    None,
}

impl TrafficType {
    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            TrafficType::Service => "service",
            TrafficType::Workload => "workload",
            TrafficType::All => "all",
            TrafficType::None => "none",
        }
    }
}

/// Why a waypoint command did not change anything.
#[derive(Debug, thiserror::Error)]
pub enum WaypointError {
    /// The request conflicts with what the directory holds.
    #[error("{0}")]
    Refused(String),
    /// A file could not be read or written.
    #[error("{0}")]
    Io(String),
    /// An edit would produce (or produced) an invalid file.
    #[error("{0}")]
    Invalid(String),
}

impl WaypointError {
    fn io(path: &Path, error: &std::io::Error) -> Self {
        WaypointError::Io(format!("{}: {error}", path.display()))
    }
}

/// What happened, one line per change or non-change, for the user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// What was written, removed or left as it was (with file paths).
    pub messages: Vec<String>,
    /// Things the user should look at (e.g. labels still naming a deleted waypoint).
    pub warnings: Vec<String>,
    /// The files written or removed.
    pub files: Vec<PathBuf>,
}

/// `weft waypoint apply`: the waypoint to write and whether to enroll its namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyRequest {
    /// Namespace of the waypoint.
    pub namespace: String,
    /// Its name (`waypoint` by convention).
    pub name: String,
    /// Which traffic it takes.
    pub traffic: TrafficType,
    /// Label the Namespace `istio.io/use-waypoint: <name>`.
    pub enroll_namespace: bool,
    /// Replace a `istio.io/use-waypoint` label that names another waypoint.
    pub overwrite: bool,
}

/// The file `apply` writes for waypoint `namespace/name`.
#[must_use]
pub fn file_name(namespace: &str, name: &str) -> String {
    format!("waypoint-{namespace}-{name}.yaml")
}

/// The waypoint Gateway's document, as `apply` writes it.
#[must_use]
pub fn gateway_document(namespace: &str, name: &str, traffic: TrafficType) -> String {
    format!(
        "# Waypoint {namespace}/{name}, written by `weft waypoint apply`; \
         `weft waypoint delete -n {namespace} --name {name}` removes it.\n\
         apiVersion: gateway.networking.k8s.io/v1\n\
         kind: Gateway\n\
         metadata:\n  name: {name}\n  namespace: {namespace}\n  labels:\n    \
         {WAYPOINT_FOR_LABEL}: {traffic}\n\
         spec:\n  gatewayClassName: {WAYPOINT_CLASS}\n  listeners:\n  \
         - name: mesh\n    port: 15008\n    protocol: HBONE\n",
        traffic = traffic.as_str()
    )
}

fn namespace_document(namespace: &str, waypoint: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n  labels:\n    \
         {USE_WAYPOINT_LABEL}: {waypoint}\n"
    )
}

/// Whether `name` is a DNS-1123 label (what namespaces and waypoint names must be).
fn check_name(what: &str, name: &str) -> Result<(), WaypointError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(WaypointError::Refused(format!(
            "{what} {name:?} is not a valid name (lowercase letters, digits and '-', at most 63)"
        )))
    }
}

/// The objects of a directory (findings are `weft validate`'s business).
fn load_dir(dir: &Path) -> Result<Vec<LoadedObject>, WaypointError> {
    if !dir.is_dir() {
        return Err(WaypointError::Refused(format!(
            "config directory {} does not exist",
            dir.display()
        )));
    }
    Ok(load_paths(&[dir.to_owned()]).objects)
}

fn find<'a>(
    objects: &'a [LoadedObject],
    kind: Kind,
    namespace: Option<&str>,
    name: &str,
) -> Option<&'a LoadedObject> {
    objects.iter().find(|o| {
        o.object.kind() == kind && o.object.namespace() == namespace && o.object.name() == name
    })
}

/// `weft waypoint apply`: writes (or updates) the waypoint's file and, when asked, the
/// namespace's label. Re-applying the same settings changes nothing.
pub fn apply(dir: &Path, request: &ApplyRequest) -> Result<Outcome, WaypointError> {
    check_name("namespace", &request.namespace)?;
    check_name("waypoint name", &request.name)?;
    let objects = load_dir(dir)?;
    let own = dir.join(file_name(&request.namespace, &request.name));
    let mut run = ApplyRun {
        objects: &objects,
        own: &own,
        request,
        edits: Edits::default(),
        outcome: Outcome::default(),
    };
    run.write_gateway()?;
    if request.enroll_namespace {
        run.enroll_namespace()?;
    }
    let mut outcome = run.outcome;
    outcome.files = run.edits.commit()?;
    Ok(outcome)
}

/// One `apply`: what the directory holds, what is asked, and the edits so far.
struct ApplyRun<'a> {
    objects: &'a [LoadedObject],
    /// The waypoint's own file.
    own: &'a Path,
    request: &'a ApplyRequest,
    edits: Edits,
    outcome: Outcome,
}

impl ApplyRun<'_> {
    /// Writes (or updates) the waypoint's own file.
    fn write_gateway(&mut self) -> Result<(), WaypointError> {
        let (objects, own, request) = (self.objects, self.own, self.request);
        let (edits, outcome) = (&mut self.edits, &mut self.outcome);
        let (namespace, name) = (request.namespace.as_str(), request.name.as_str());
        let existing = find(objects, Kind::Gateway, Some(namespace), name);
        if let Some(other) = existing.filter(|o| o.source.file != own) {
            return Err(WaypointError::Refused(format!(
                "Gateway {namespace}/{name} already exists at {} (not written by weft waypoint); \
             edit it there, delete it, or choose another --name",
                other.source
            )));
        }
        let document = gateway_document(namespace, name, request.traffic);
        let traffic = request.traffic.as_str();
        let current = edits.text(own)?;
        let new = match (&current, existing) {
            (Some(text), Some(gateway)) => {
                text::replace_document(text, gateway.source.line, Some(&document))
                    .map_err(WaypointError::Refused)?
            }
            (Some(text), None) => format!("{document}---\n{text}"),
            (None, _) => document.clone(),
        };
        let shown = own.display();
        let message = match existing {
            _ if current.as_ref() == Some(&new) => {
                format!(
                    "unchanged: Gateway {namespace}/{name} ({WAYPOINT_FOR_LABEL}: {traffic}) in {shown}"
                )
            }
            Some(gateway) => {
                let old = gateway
                    .object
                    .label(WAYPOINT_FOR_LABEL)
                    .unwrap_or("service");
                format!(
                    "updated Gateway {namespace}/{name} in {shown}: {WAYPOINT_FOR_LABEL}: {old} -> {traffic}"
                )
            }
            None => {
                format!(
                    "wrote Gateway {namespace}/{name} ({WAYPOINT_FOR_LABEL}: {traffic}) to {shown}"
                )
            }
        };
        outcome.messages.push(message);
        edits.set(own, Some(new))
    }
}

/// The lines of an object's labels, from its layout.
fn label_site(loaded: &LoadedObject, key: &str) -> Option<LabelSite> {
    let layout = loaded.layout.as_ref()?;
    let path = |segments: &[&str]| -> Vec<Segment> {
        segments
            .iter()
            .map(|s| Segment::Key((*s).to_owned()))
            .collect()
    };
    let labels = loaded.object.metadata().labels.as_ref();
    Some(LabelSite {
        metadata: layout.line_of(&path(&["metadata"]))?,
        labels: labels.and(layout.line_of(&path(&["metadata", "labels"]))),
        key: labels
            .filter(|l| l.contains_key(key))
            .and_then(|_| layout.line_of(&path(&["metadata", "labels", key]))),
    })
}

fn refuse_json(path: &Path, what: &str) -> Result<(), WaypointError> {
    if path.extension().is_some_and(|e| e == "json") {
        return Err(WaypointError::Refused(format!(
            "{what} is in a JSON file ({}), which weft waypoint does not edit; change it by hand",
            path.display()
        )));
    }
    Ok(())
}

/// The waypoint (namespace, name) a labelled object in `own_namespace` points at.
fn points_at(labels: &BTreeMap<String, String>, own_namespace: &str) -> Option<(String, String)> {
    let name = labels.get(USE_WAYPOINT_LABEL)?;
    let namespace = labels
        .get(USE_WAYPOINT_NAMESPACE_LABEL)
        .map_or(own_namespace, String::as_str);
    Some((namespace.to_owned(), name.clone()))
}

impl ApplyRun<'_> {
    /// Labels the Namespace (in place), or writes one into the waypoint's file.
    fn enroll_namespace(&mut self) -> Result<(), WaypointError> {
        let (objects, own, request) = (self.objects, self.own, self.request);
        let (edits, outcome) = (&mut self.edits, &mut self.outcome);
        let (namespace, name) = (request.namespace.as_str(), request.name.as_str());
        let label = format!("{USE_WAYPOINT_LABEL}={name}");
        let Some(existing) = find(objects, Kind::Namespace, None, namespace) else {
            let text = edits.text(own)?.unwrap_or_default();
            let new = format!("{text}---\n{}", namespace_document(namespace, name));
            edits.set(own, Some(new))?;
            outcome.messages.push(format!(
            "wrote Namespace {namespace} with label {label} to {} (there was no Namespace object)",
            own.display()
        ));
            return Ok(());
        };
        let file = existing.source.file.clone();
        let wanted = (namespace.to_owned(), name.to_owned());
        match points_at(existing.object.labels(), namespace) {
            Some(current) if current == wanted => {
                outcome.messages.push(format!(
                    "unchanged: Namespace {namespace} already has label {label} ({})",
                    existing.source
                ));
                return Ok(());
            }
            Some((other_ns, other)) if !request.overwrite => {
                return Err(WaypointError::Refused(format!(
                    "Namespace {namespace} ({}) already uses waypoint {other_ns}/{other} \
                 ({USE_WAYPOINT_LABEL}={other}); pass --overwrite to point it at {namespace}/{name}",
                    existing.source
                )));
            }
            _ => {}
        }
        refuse_json(&file, &format!("Namespace {namespace}"))?;
        set_namespace_label(edits, &file, namespace, USE_WAYPOINT_LABEL, name)?;
        if existing
            .object
            .label(USE_WAYPOINT_NAMESPACE_LABEL)
            .is_some()
        {
            set_namespace_label(
                edits,
                &file,
                namespace,
                USE_WAYPOINT_NAMESPACE_LABEL,
                namespace,
            )?;
        }
        let at = edits
            .find(&file, Kind::Namespace, None, namespace)?
            .map_or_else(|| file.display().to_string(), |o| o.source.to_string());
        outcome
            .messages
            .push(format!("labelled Namespace {namespace} {label} in {at}"));
        Ok(())
    }
}

/// Sets one label on the Namespace in `file`, on the file's current text.
fn set_namespace_label(
    edits: &mut Edits,
    file: &Path,
    namespace: &str,
    key: &str,
    value: &str,
) -> Result<(), WaypointError> {
    let loaded = edits
        .find(file, Kind::Namespace, None, namespace)?
        .ok_or_else(|| {
            WaypointError::Refused(format!(
                "Namespace {namespace} vanished from {}",
                file.display()
            ))
        })?;
    let site = label_site(&loaded, key).ok_or_else(|| {
        WaypointError::Refused(format!(
            "cannot place the labels of Namespace {namespace} in {}",
            loaded.source
        ))
    })?;
    let text = edits.text(file)?.unwrap_or_default();
    let new = text::set_label(&text, site, key, value)
        .map_err(|e| WaypointError::Refused(format!("{}: {e}", file.display())))?;
    edits.set(file, Some(new))
}

/// `weft waypoint delete`: removes the waypoint Gateway (its file, or its document from a
/// user's file) and the Namespace labels that point at it; warns about other objects that
/// still do.
pub fn delete(dir: &Path, namespace: &str, name: &str) -> Result<Outcome, WaypointError> {
    let objects = load_dir(dir)?;
    let gateway = find(&objects, Kind::Gateway, Some(namespace), name).ok_or_else(|| {
        WaypointError::Refused(format!(
            "no Gateway {namespace}/{name} in {}",
            dir.display()
        ))
    })?;
    if !matches!(&gateway.object, Object::Gateway(g) if g.spec.gateway_class_name == WAYPOINT_CLASS)
    {
        return Err(WaypointError::Refused(format!(
            "Gateway {namespace}/{name} ({}) is not a waypoint (gatewayClassName is not {WAYPOINT_CLASS}); not deleting it",
            gateway.source
        )));
    }
    let mut edits = Edits::default();
    let mut outcome = Outcome::default();
    let wanted = (namespace.to_owned(), name.to_owned());
    for loaded in &objects {
        let own_namespace = loaded.object.namespace().unwrap_or(loaded.object.name());
        let Some(labels) = list::enrollment_labels(&loaded.object) else {
            continue;
        };
        if points_at(labels, own_namespace).as_ref() != Some(&wanted) {
            continue;
        }
        if loaded.object.kind() == Kind::Namespace {
            unlabel_namespace(&mut edits, loaded, name, &mut outcome)?;
        } else {
            outcome.warnings.push(format!(
                "{} ({}) still has {USE_WAYPOINT_LABEL}={name}, which now names a missing waypoint",
                loaded.object.object_ref(),
                loaded.source
            ));
        }
    }
    remove_gateway(&mut edits, gateway, &mut outcome)?;
    outcome.files = edits.commit()?;
    Ok(outcome)
}

fn unlabel_namespace(
    edits: &mut Edits,
    loaded: &LoadedObject,
    name: &str,
    outcome: &mut Outcome,
) -> Result<(), WaypointError> {
    let file = &loaded.source.file;
    let namespace = loaded.object.name();
    refuse_json(file, &format!("Namespace {namespace}"))?;
    let current = edits
        .find(file, Kind::Namespace, None, namespace)?
        .unwrap_or_else(|| loaded.clone());
    let sites = [USE_WAYPOINT_LABEL, USE_WAYPOINT_NAMESPACE_LABEL].map(|k| label_site(&current, k));
    let labels_line = sites[0].and_then(|s| s.labels);
    let keys: Vec<usize> = sites.iter().filter_map(|s| s.and_then(|s| s.key)).collect();
    let (Some(labels_line), false) = (labels_line, keys.is_empty()) else {
        return Err(WaypointError::Refused(format!(
            "cannot place the {USE_WAYPOINT_LABEL} label of Namespace {namespace} in {}; remove it by hand",
            current.source
        )));
    };
    let text = edits.text(file)?.unwrap_or_default();
    let new = text::remove_labels(&text, labels_line, &keys)
        .map_err(|e| WaypointError::Refused(format!("{}: {e}", file.display())))?;
    edits.set(file, Some(new))?;
    outcome.messages.push(format!(
        "removed label {USE_WAYPOINT_LABEL}={name} from Namespace {namespace} in {}",
        current.source
    ));
    Ok(())
}

fn remove_gateway(
    edits: &mut Edits,
    gateway: &LoadedObject,
    outcome: &mut Outcome,
) -> Result<(), WaypointError> {
    let file = &gateway.source.file;
    let object = gateway.object.object_ref();
    let (namespace, name) = (object.namespace.as_deref(), object.name.as_str());
    let current = edits
        .find(file, Kind::Gateway, namespace, name)?
        .unwrap_or_else(|| gateway.clone());
    let text = edits.text(file)?.unwrap_or_default();
    let document = text::document_at(&text, current.source.line).unwrap_or_default();
    let is_whole_document = crate::yaml::parse(&document)
        .ok()
        .flatten()
        .is_some_and(|v| v.get("kind").and_then(crate::yaml::Node::as_str) == Some("Gateway"));
    if !is_whole_document || file.extension().is_some_and(|e| e == "json") {
        return Err(WaypointError::Refused(format!(
            "Gateway {}/{name} ({}) is not a YAML document of its own (a List item or JSON); remove it by hand",
            namespace.unwrap_or_default(),
            current.source
        )));
    }
    let new =
        text::replace_document(&text, current.source.line, None).map_err(WaypointError::Refused)?;
    let shown = namespace.unwrap_or_default();
    let own = file.file_name().and_then(|f| f.to_str()) == Some(&file_name(shown, name));
    if text::is_empty_manifest(&new) || (own && only_bare_namespaces(&new, file)) {
        edits.set(file, None)?;
        outcome.messages.push(format!(
            "removed {} (Gateway {shown}/{name})",
            file.display()
        ));
    } else {
        edits.set(file, Some(new))?;
        outcome.messages.push(format!(
            "removed Gateway {shown}/{name} from {}",
            current.source
        ));
    }
    Ok(())
}

/// Whether a text holds only Namespaces without labels or annotations (what `apply` added to
/// the waypoint's file, once `delete` took its label off: nothing worth keeping).
fn only_bare_namespaces(text: &str, file: &Path) -> bool {
    crate::load::parse_manifests(text, file)
        .objects
        .iter()
        .all(|o| {
            let meta = o.object.metadata();
            o.object.kind() == Kind::Namespace
                && meta.labels.as_ref().is_none_or(BTreeMap::is_empty)
                && meta.annotations.as_ref().is_none_or(BTreeMap::is_empty)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(name: &str, enroll: bool) -> ApplyRequest {
        ApplyRequest {
            namespace: "shop".to_owned(),
            name: name.to_owned(),
            traffic: TrafficType::Service,
            enroll_namespace: enroll,
            overwrite: false,
        }
    }

    #[test]
    fn the_written_gateway_is_a_valid_waypoint() {
        let text = gateway_document("shop", "waypoint", TrafficType::All);
        let loaded = crate::load::parse_manifests(&text, Path::new("w.yaml"));
        assert!(loaded.findings.is_empty(), "{:?}", loaded.findings);
        let gateway = &loaded.objects[0].object;
        assert!(
            matches!(gateway, Object::Gateway(g) if g.spec.gateway_class_name == WAYPOINT_CLASS)
        );
        assert_eq!(gateway.label(WAYPOINT_FOR_LABEL), Some("all"));
    }

    #[test]
    fn bad_names_are_refused_before_anything_is_read() {
        let error = apply(Path::new("/nonexistent"), &request("Bad_Name", false)).unwrap_err();
        assert!(error.to_string().contains("not a valid name"), "{error}");
    }

    #[test]
    fn delete_takes_a_users_gateway_document_out_of_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mixed.yaml");
        let gateway = gateway_document("shop", "waypoint", TrafficType::Service);
        let service = "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  namespace: shop\nspec:\n  ports: [{port: 80}]\n";
        std::fs::write(&file, format!("{service}---\n{gateway}")).unwrap();
        assert_eq!(list(dir.path(), Some("shop")).unwrap().len(), 1);
        let outcome = delete(dir.path(), "shop", "waypoint").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), service);
        assert!(outcome.messages[0].starts_with("removed Gateway shop/waypoint from "));
        assert_eq!(outcome.files, vec![file]);
    }

    #[test]
    fn enrolling_twice_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        apply(dir.path(), &request("waypoint", true)).unwrap();
        let again = apply(dir.path(), &request("waypoint", true)).unwrap();
        assert!(again.files.is_empty(), "{again:?}");
        assert!(
            again.messages.iter().all(|m| m.starts_with("unchanged")),
            "{again:?}"
        );
    }
}
