//! `PeerAuthentication` -> L4 DENY policies. A node proxy has no notion of mTLS modes; STRICT
//! is expressed as "deny connections that carry no peer principal" (`notPrincipals: [presence]`),
//! restricted to or excepting ports where `portLevelMtls` says otherwise.
//!
//! Each workload's effective mode is resolved here with the precedence of `docs/policy.md`
//! (workload selector > namespace > root namespace; a port entry overrides its level's mode;
//! DISABLE counts as PERMISSIVE, except a DISABLE port entry of a policy whose own mode is
//! UNSET and that has no PERMISSIVE entry, which inherits as in Istio's ambient mode; see
//! [`port_strictness`]). Port entries count only on selector policies outside the
//! root namespace, as in Istio's ambient mode. Distinct results become shared policies in the root
//! namespace (`weft-mtls-strict[-except-<ports>|-only-<ports>]`, WORKLOAD_SELECTOR scope) and
//! each workload lists the one that expresses its mode. The set of policies depends only on
//! the PeerAuthentication objects, never on which workloads exist.

use super::context::{Context, Dep, Unit};
use super::{Resource, ResourceKey, TranslateOptions};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use weft_api::istio::{MtlsMode, MutualTls, PeerAuthentication};
use weft_api::selector::labels_match;
use weft_api::{ConfigSnapshot, Kind, ObjectRef};
use weft_proto::security::string_match::MatchType;
use weft_proto::security::{Action, Authorization, Clause, Match, Rule, Scope, StringMatch};

/// Name prefix of the policies compiled from PeerAuthentication (reserved: validation
/// refuses an AuthorizationPolicy named so).
pub const MTLS_POLICY_PREFIX: &str = weft_api::validate::RESERVED_POLICY_PREFIX;

/// PeerAuthentications by level.
pub(crate) struct MtlsIndex<'a> {
    root: Option<&'a PeerAuthentication>,
    namespace_level: HashMap<String, &'a PeerAuthentication>,
    workload_level: HashMap<String, Vec<&'a PeerAuthentication>>,
}

fn namespace_of(policy: &PeerAuthentication) -> &str {
    policy
        .metadata
        .namespace
        .as_deref()
        .unwrap_or(weft_api::object::DEFAULT_NAMESPACE)
}

fn selector_of(policy: &PeerAuthentication) -> Option<&BTreeMap<String, String>> {
    policy
        .spec
        .selector
        .as_ref()
        .map(|s| &s.match_labels)
        .filter(|labels| !labels.is_empty())
}

fn object_ref(policy: &PeerAuthentication) -> ObjectRef {
    ObjectRef {
        kind: Kind::PeerAuthentication,
        namespace: Some(namespace_of(policy).to_owned()),
        name: policy.metadata.name.clone().unwrap_or_default(),
    }
}

impl<'a> MtlsIndex<'a> {
    /// Sorts the snapshot's PeerAuthentications into levels; when several apply at the same
    /// level, the oldest (`creationTimestamp`, as Istio) wins, then the first by name (objects
    /// from files carry no timestamp). A selector policy in the root namespace is ignored,
    /// as Istio's ambient mode does.
    pub fn new(snapshot: &'a ConfigSnapshot, options: &TranslateOptions) -> Self {
        let mut all: Vec<&PeerAuthentication> =
            snapshot.peer_authentications().map(|(p, _)| p).collect();
        all.sort_by_key(|p| {
            let created = p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            (created.is_none(), created, p.metadata.name.clone())
        });
        let mut index = MtlsIndex {
            root: None,
            namespace_level: HashMap::new(),
            workload_level: HashMap::new(),
        };
        for policy in all {
            let namespace = namespace_of(policy).to_owned();
            if selector_of(policy).is_some() && namespace == options.root_namespace {
                continue;
            } else if selector_of(policy).is_some() {
                index
                    .workload_level
                    .entry(namespace)
                    .or_default()
                    .push(policy);
            } else if namespace == options.root_namespace {
                index.root.get_or_insert(policy);
            } else {
                index.namespace_level.entry(namespace).or_insert(policy);
            }
        }
        index
    }

    /// The PeerAuthentications that decide a workload's mode, most specific first.
    fn chain(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Vec<&'a PeerAuthentication> {
        let workload = self.workload_level.get(namespace).and_then(|policies| {
            policies
                .iter()
                .find(|p| selector_of(p).is_some_and(|s| labels_match(s, labels)))
        });
        workload
            .into_iter()
            .copied()
            .chain(self.namespace_level.get(namespace).copied())
            .chain(self.root)
            .collect()
    }
}

/// A resolved mTLS setting: the mode of all ports, and the ports whose mode differs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Profile {
    strict: bool,
    exceptions: BTreeSet<u32>,
}

/// `Some(true)` for STRICT, `Some(false)` for PERMISSIVE/DISABLE, `None` for UNSET (inherit).
fn strictness(mtls: Option<&MutualTls>) -> Option<bool> {
    match mtls?.mode? {
        MtlsMode::Strict => Some(true),
        MtlsMode::Permissive | MtlsMode::Disable => Some(false),
        MtlsMode::Unset => None,
    }
}

/// A `portLevelMtls` entry's strictness on `level`. `DISABLE` counts as `PERMISSIVE`,
/// except on a level whose own mode is UNSET and that has no `PERMISSIVE` entry: there it
/// inherits. That is Istio's ambient mode: a workload inheriting STRICT gets its ports
/// opened only when some entry is `PERMISSIVE` (then its `DISABLE` entries open too).
fn port_strictness(entry: Option<&MutualTls>, level: &Level<'_>) -> Option<bool> {
    let mode_of = |mtls: &MutualTls| mtls.mode;
    let disable = entry.and_then(mode_of) == Some(MtlsMode::Disable);
    let any_permissive = level
        .ports
        .into_iter()
        .flat_map(BTreeMap::values)
        .any(|e| e.mode == Some(MtlsMode::Permissive));
    if disable && strictness(level.mtls).is_none() && !any_permissive {
        return None;
    }
    strictness(entry)
}

/// One level of a workload's chain as far as mTLS goes: its mode and the port entries that
/// count.
#[derive(Clone, Copy)]
struct Level<'a> {
    mtls: Option<&'a MutualTls>,
    ports: Option<&'a BTreeMap<u32, MutualTls>>,
}

impl<'a> Level<'a> {
    /// `portLevelMtls` counts only on a selector PeerAuthentication outside the root
    /// namespace: Istio rejects it without a selector, and its ambient conversion ignores it
    /// in the root namespace. Elsewhere it would open plaintext ports namespace- or mesh-wide.
    fn of(policy: &'a PeerAuthentication, root_namespace: &str) -> Self {
        let ports_count = selector_of(policy).is_some() && namespace_of(policy) != root_namespace;
        Level {
            mtls: policy.spec.mtls.as_ref(),
            ports: policy.spec.port_level_mtls.as_ref().filter(|_| ports_count),
        }
    }
}

/// The profile a chain of PeerAuthentications (most specific first) resolves to.
fn resolve_chain(chain: &[&PeerAuthentication], options: &TranslateOptions) -> Profile {
    let levels: Vec<Level<'_>> = chain
        .iter()
        .map(|p| Level::of(p, &options.root_namespace))
        .collect();
    resolve(&levels)
}

fn resolve(chain: &[Level<'_>]) -> Profile {
    let strict = chain
        .iter()
        .find_map(|level| strictness(level.mtls))
        .unwrap_or(false);
    let ports: BTreeSet<u32> = chain
        .iter()
        .flat_map(|level| level.ports.into_iter().flatten())
        .map(|(p, _)| *p)
        .collect();
    let port_strict = |port: u32| {
        chain
            .iter()
            .find_map(|level| {
                let entry = level.ports.and_then(|ports| ports.get(&port));
                port_strictness(entry, level).or_else(|| strictness(level.mtls))
            })
            .unwrap_or(false)
    };
    let exceptions = ports
        .into_iter()
        .filter(|&port| port_strict(port) != strict)
        .collect();
    Profile { strict, exceptions }
}

fn join_ports(ports: &BTreeSet<u32>) -> String {
    ports
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join("-")
}

/// The policy name (without namespace) and rule expressing a profile; `None` when nothing is
/// strict.
fn profile_policy(profile: &Profile) -> Option<(String, Match)> {
    let no_principal = vec![StringMatch {
        match_type: Some(MatchType::Presence(())),
    }];
    let ports: Vec<u32> = profile.exceptions.iter().copied().collect();
    match (profile.strict, ports.is_empty()) {
        (true, true) => Some((
            MTLS_POLICY_PREFIX.to_owned(),
            Match {
                not_principals: no_principal,
                ..Match::default()
            },
        )),
        (true, false) => Some((
            format!(
                "{MTLS_POLICY_PREFIX}-except-{}",
                join_ports(&profile.exceptions)
            ),
            Match {
                not_principals: no_principal,
                not_destination_ports: ports,
                ..Match::default()
            },
        )),
        (false, false) => Some((
            format!(
                "{MTLS_POLICY_PREFIX}-only-{}",
                join_ports(&profile.exceptions)
            ),
            Match {
                not_principals: no_principal,
                destination_ports: ports,
                ..Match::default()
            },
        )),
        (false, true) => None,
    }
}

fn authorization(name: String, rule: Match, options: &TranslateOptions) -> Authorization {
    Authorization {
        name,
        namespace: options.root_namespace.clone(),
        scope: Scope::WorkloadSelector.into(),
        action: Action::Deny.into(),
        rules: vec![Rule {
            clauses: vec![Clause {
                matches: vec![rule],
            }],
        }],
        dry_run: false,
        extensions: Vec::new(),
    }
}

/// Every compiled mTLS policy, by resource name: one per distinct profile any workload could
/// resolve to (root alone; namespace over root; workload over namespace over root).
pub(crate) fn mtls_policies(
    index: &MtlsIndex<'_>,
    options: &TranslateOptions,
) -> BTreeMap<String, Authorization> {
    let mut chains: Vec<Vec<&PeerAuthentication>> = vec![index.root.into_iter().collect()];
    for policy in index.namespace_level.values() {
        chains.push([*policy].into_iter().chain(index.root).collect());
    }
    for (namespace, policies) in &index.workload_level {
        for policy in policies {
            let namespace_level = index.namespace_level.get(namespace).copied();
            chains.push(
                [*policy]
                    .into_iter()
                    .chain(namespace_level)
                    .chain(index.root)
                    .collect(),
            );
        }
    }
    let mut out = BTreeMap::new();
    for chain in chains {
        if let Some((name, rule)) = profile_policy(&resolve_chain(&chain, options)) {
            let key = format!("{}/{name}", options.root_namespace);
            out.insert(key, authorization(name, rule, options));
        }
    }
    out
}

/// The compiled mTLS policy (resource name) a workload must list, and the
/// PeerAuthentications that decided it.
pub(crate) fn workload_mtls(
    context: &Context<'_>,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> (Option<String>, Vec<Dep>) {
    let chain = context.mtls.chain(namespace, labels);
    let deps = chain
        .iter()
        .map(|p| Dep::Selection(object_ref(p)))
        .collect();
    let name = profile_policy(&resolve_chain(&chain, context.options))
        .map(|(name, _)| format!("{}/{name}", context.options.root_namespace));
    (name, deps)
}

/// Resource unit of one compiled mTLS policy.
pub(crate) fn mtls_unit(_context: &Context<'_>, name: &str, policy: &Authorization) -> Unit {
    let resource = Resource::encode(name.to_owned(), Vec::new(), policy);
    Unit {
        resource: Some(resource),
        warnings: Vec::new(),
        deps: Vec::new(),
    }
}

/// Workloads whose mode a PeerAuthentication (as it is in `context`) may decide.
pub(crate) fn workloads_in_reach(context: &Context<'_>, object: &ObjectRef) -> Vec<ResourceKey> {
    let Some(policy) = context
        .snapshot
        .peer_authentications()
        .map(|(p, _)| p)
        .find(|p| object_ref(p) == *object)
    else {
        return Vec::new();
    };
    let namespace = namespace_of(policy);
    match selector_of(policy) {
        Some(selector) => context.workloads_matching(Some(namespace), Some(selector)),
        None if namespace == context.options.root_namespace => {
            context.workloads_matching(None, None)
        }
        None => context.workloads_matching(Some(namespace), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_api::istio::PeerAuthenticationSpec;

    /// A level whose port entries count (a selector policy outside the root namespace).
    fn level(spec: &PeerAuthenticationSpec) -> Level<'_> {
        Level {
            mtls: spec.mtls.as_ref(),
            ports: spec.port_level_mtls.as_ref(),
        }
    }

    fn spec(mode: Option<MtlsMode>, ports: &[(u32, MtlsMode)]) -> PeerAuthenticationSpec {
        PeerAuthenticationSpec {
            selector: None,
            mtls: mode.map(|m| MutualTls { mode: Some(m) }),
            port_level_mtls: (!ports.is_empty()).then(|| {
                ports
                    .iter()
                    .map(|(p, m)| (*p, MutualTls { mode: Some(*m) }))
                    .collect()
            }),
        }
    }

    #[test]
    fn most_specific_level_wins() {
        let root = spec(Some(MtlsMode::Strict), &[]);
        let namespace = spec(Some(MtlsMode::Permissive), &[]);
        let workload = spec(None, &[(8080, MtlsMode::Strict)]);
        let profile = resolve(&[level(&workload), level(&namespace), level(&root)]);
        assert_eq!(
            profile,
            Profile {
                strict: false,
                exceptions: BTreeSet::from([8080])
            }
        );
        assert_eq!(
            profile_policy(&profile).map(|p| p.0).as_deref(),
            Some("weft-mtls-strict-only-8080")
        );
    }

    #[test]
    fn port_entry_of_a_less_specific_level_is_overridden_by_a_more_specific_mode() {
        let namespace = spec(Some(MtlsMode::Strict), &[(9000, MtlsMode::Permissive)]);
        let workload = spec(Some(MtlsMode::Strict), &[]);
        assert_eq!(
            resolve(&[level(&workload), level(&namespace)]),
            Profile {
                strict: true,
                exceptions: BTreeSet::new()
            }
        );
        assert_eq!(
            resolve(&[level(&namespace)]),
            Profile {
                strict: true,
                exceptions: BTreeSet::from([9000])
            }
        );
    }

    #[test]
    fn disable_counts_as_permissive_and_unset_inherits() {
        let root = spec(Some(MtlsMode::Strict), &[(15020, MtlsMode::Disable)]);
        let namespace = spec(Some(MtlsMode::Unset), &[]);
        let profile = resolve(&[level(&namespace), level(&root)]);
        assert_eq!(
            profile_policy(&profile).map(|p| p.0).as_deref(),
            Some("weft-mtls-strict-except-15020")
        );
        assert_eq!(
            resolve(&[]),
            Profile {
                strict: false,
                exceptions: BTreeSet::new()
            }
        );
    }
}
