//! Listener and route hostname intersection, as the Gateway API defines it: a wildcard
//! `*.example.com` matches one or more labels in front of `example.com` (not `example.com`
//! itself); a route without hostnames takes the listener's; a listener without a hostname
//! takes every route hostname.

/// Whether `pattern` (exact or `*.suffix`) covers `hostname` (exact or wildcard).
fn covers(pattern: &str, hostname: &str) -> bool {
    if pattern.eq_ignore_ascii_case(hostname) {
        return true;
    }
    let Some(suffix) = pattern.strip_prefix('*') else {
        return false;
    };
    // `*.example.com` covers `a.example.com`, `a.b.example.com` and `*.a.example.com`.
    let host = hostname.to_ascii_lowercase();
    let suffix = suffix.to_ascii_lowercase();
    host.len() > suffix.len() && host.ends_with(&suffix)
}

/// The more specific of two hostnames when one covers the other.
#[must_use]
pub fn intersect(a: &str, b: &str) -> Option<String> {
    if covers(a, b) {
        Some(b.to_owned())
    } else if covers(b, a) {
        Some(a.to_owned())
    } else {
        None
    }
}

/// The hostnames a route serves on a listener: `Some(vec![])` means every hostname the
/// listener accepts (neither names one, or the route names none); `None` means none of the
/// route's hostnames intersects the listener's.
#[must_use]
pub fn route_on_listener(listener: Option<&str>, route: &[String]) -> Option<Vec<String>> {
    let Some(listener) = listener.filter(|h| !h.is_empty()) else {
        return Some(route.to_vec());
    };
    if route.is_empty() {
        return Some(Vec::new());
    }
    let mut matched: Vec<String> = route
        .iter()
        .filter_map(|r| intersect(listener, r))
        .collect();
    matched.dedup();
    (!matched.is_empty()).then_some(matched)
}

#[cfg(test)]
mod tests {
    use super::{intersect, route_on_listener};

    #[test]
    fn a_wildcard_covers_one_or_more_labels_but_not_its_suffix() {
        assert_eq!(
            intersect("*.example.com", "a.example.com").as_deref(),
            Some("a.example.com")
        );
        assert_eq!(
            intersect("a.b.example.com", "*.example.com").as_deref(),
            Some("a.b.example.com")
        );
        assert_eq!(intersect("*.example.com", "example.com"), None);
        assert_eq!(intersect("*.example.com", "example.org"), None);
        assert_eq!(
            intersect("*.example.com", "*.a.example.com").as_deref(),
            Some("*.a.example.com")
        );
        assert_eq!(
            intersect("Foo.example.com", "foo.example.com").as_deref(),
            Some("foo.example.com")
        );
    }

    #[test]
    fn a_route_without_hostnames_takes_the_listeners() {
        assert_eq!(route_on_listener(Some("a.com"), &[]), Some(vec![]));
        let route = vec!["x.a.com".to_owned(), "b.com".to_owned()];
        assert_eq!(route_on_listener(None, &route), Some(route.clone()));
        assert_eq!(
            route_on_listener(Some("*.a.com"), &route),
            Some(vec!["x.a.com".to_owned()])
        );
        assert_eq!(route_on_listener(Some("c.com"), &route), None);
    }
}
