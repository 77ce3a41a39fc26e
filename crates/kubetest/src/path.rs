//! Request paths of the resource API: `/api/v1/...` (core group) and
//! `/apis/{group}/{version}/...`, each followed by `{plural}[/{name}[/{subresource}]]`,
//! optionally after `namespaces/{namespace}/`.

/// A parsed resource path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    /// API group (`""` for the core group).
    pub group: String,
    /// Version.
    pub version: String,
    /// Plural resource name.
    pub plural: String,
    /// The namespace in the path (`None`: cluster-scoped, or across all namespaces).
    pub namespace: Option<String>,
    /// The object's name (`None`: the collection).
    pub name: Option<String>,
    /// A subresource such as `status`.
    pub subresource: Option<String>,
}

impl ResourcePath {
    /// Parses `path`; `None` when it is no resource path.
    #[must_use]
    pub fn parse(path: &str) -> Option<ResourcePath> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version, rest) = match segments.as_slice() {
            ["api", version, rest @ ..] => ("", *version, rest),
            ["apis", group, version, rest @ ..] => (*group, *version, rest),
            _ => return None,
        };
        let (namespace, rest) = match rest {
            ["namespaces", namespace, rest @ ..] if !rest.is_empty() => (Some(*namespace), rest),
            _ => (None, rest),
        };
        let (plural, name, subresource) = match rest {
            [plural] => (*plural, None, None),
            [plural, name] => (*plural, Some(*name), None),
            [plural, name, subresource] => (*plural, Some(*name), Some(*subresource)),
            _ => return None,
        };
        Some(ResourcePath {
            group: group.to_owned(),
            version: version.to_owned(),
            plural: plural.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.map(str::to_owned),
            subresource: subresource.map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ResourcePath;

    #[test]
    fn core_and_group_paths_parse_into_their_parts() {
        let pods = ResourcePath::parse("/api/v1/namespaces/shop/pods/web-0/status").unwrap();
        assert_eq!((pods.group.as_str(), pods.plural.as_str()), ("", "pods"));
        assert_eq!(pods.namespace.as_deref(), Some("shop"));
        assert_eq!(pods.name.as_deref(), Some("web-0"));
        assert_eq!(pods.subresource.as_deref(), Some("status"));
        let namespace = ResourcePath::parse("/api/v1/namespaces/shop").unwrap();
        assert_eq!(namespace.plural, "namespaces");
        assert_eq!(namespace.name.as_deref(), Some("shop"));
        let routes = ResourcePath::parse("/apis/gateway.networking.k8s.io/v1/httproutes").unwrap();
        assert_eq!(routes.group, "gateway.networking.k8s.io");
        assert_eq!((routes.namespace, routes.name), (None, None));
        assert!(ResourcePath::parse("/version").is_none());
    }
}
