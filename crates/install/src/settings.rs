//! The values an install can be tuned with (`--set key=value`): every key, its default and
//! how its value is checked. [`KEYS`] is the one list the CLI help, the docs table and the
//! error for an unknown key are written from.

use std::fmt;

/// Where the image comes from when neither `image` nor `hub`/`tag` is set.
pub const DEFAULT_HUB: &str = "ghcr.io/weft-mesh";

/// One settable key: its name, its default (as written) and what it sets.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The name given to `--set`.
    pub name: &'static str,
    /// The value used when the key is not set.
    pub default: &'static str,
    /// One line: what the key changes.
    pub help: &'static str,
}

/// Every key `--set` accepts.
pub const KEYS: &[Key] = &[
    Key {
        name: "namespace",
        default: "weft-system",
        help: "namespace of the control plane and node proxies",
    },
    Key {
        name: "hub",
        default: DEFAULT_HUB,
        help: "image registry and path; the image is HUB/weft:TAG",
    },
    Key {
        name: "tag",
        default: env!("CARGO_PKG_VERSION"),
        help: "image tag",
    },
    Key {
        name: "image",
        default: "",
        help: "full image reference; overrides hub and tag",
    },
    Key {
        name: "imagePullPolicy",
        default: "IfNotPresent",
        help: "Always, IfNotPresent or Never",
    },
    Key {
        name: "logLevel",
        default: "info",
        help: "log filter of every weft process (e.g. info, weft=debug)",
    },
    Key {
        name: "trustDomain",
        default: "cluster.local",
        help: "SPIFFE trust domain",
    },
    Key {
        name: "control.replicas",
        default: "2",
        help: "control plane replicas (all serve xDS and the CA; one leader writes status)",
    },
    Key {
        name: "control.resources.requests.cpu",
        default: "200m",
        help: "control plane CPU request",
    },
    Key {
        name: "control.resources.requests.memory",
        default: "256Mi",
        help: "control plane memory request",
    },
    Key {
        name: "control.resources.limits.memory",
        default: "1Gi",
        help: "control plane memory limit",
    },
    Key {
        name: "node.resources.requests.cpu",
        default: "100m",
        help: "node proxy CPU request",
    },
    Key {
        name: "node.resources.requests.memory",
        default: "64Mi",
        help: "node proxy memory request",
    },
    Key {
        name: "node.resources.limits.memory",
        default: "512Mi",
        help: "node proxy memory limit",
    },
    Key {
        name: "node.drainSeconds",
        default: "30",
        help: "how long a stopping node proxy drains open connections",
    },
    Key {
        name: "cni.binDir",
        default: "/opt/cni/bin",
        help: "host directory of CNI plugin binaries",
    },
    Key {
        name: "cni.confDir",
        default: "/etc/cni/net.d",
        help: "host directory of CNI network configurations",
    },
];

/// The resolved values of an install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    values: Vec<(&'static str, String)>,
}

/// A `--set` that cannot be applied, naming the key and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    /// Not `key=value`.
    #[error("--set {0:?}: expected key=value")]
    NotKeyValue(String),
    /// A key no install uses.
    #[error("--set {key}: unknown key{hint}; known keys: {known}")]
    UnknownKey {
        /// The key as given.
        key: String,
        /// "; did you mean ..." when one is close.
        hint: String,
        /// Every key, comma-separated.
        known: String,
    },
    /// A value the key does not take.
    #[error("--set {key}={value}: {reason}")]
    BadValue {
        /// The key.
        key: String,
        /// The value as given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            values: KEYS
                .iter()
                .map(|k| (k.name, k.default.to_owned()))
                .collect(),
        }
    }
}

impl Settings {
    /// The defaults with each `key=value` of `sets` applied in order.
    ///
    /// # Errors
    /// The first `--set` that is malformed, names an unknown key or has a bad value.
    pub fn from_sets<S: AsRef<str>>(sets: &[S]) -> Result<Settings, SettingError> {
        let mut settings = Settings::default();
        for set in sets {
            settings.set(set.as_ref())?;
        }
        Ok(settings)
    }

    /// Applies one `key=value`.
    ///
    /// # Errors
    /// See [`SettingError`].
    pub fn set(&mut self, assignment: &str) -> Result<(), SettingError> {
        let (key, value) = assignment
            .split_once('=')
            .ok_or_else(|| SettingError::NotKeyValue(assignment.to_owned()))?;
        let (key, value) = (key.trim(), value.trim());
        let Some(slot) = self.values.iter_mut().find(|(name, _)| *name == key) else {
            return Err(unknown_key(key));
        };
        check_value(key, value).map_err(|reason| SettingError::BadValue {
            key: key.to_owned(),
            value: value.to_owned(),
            reason,
        })?;
        value.clone_into(&mut slot.1);
        Ok(())
    }

    /// The value of `key` (one of [`KEYS`]).
    ///
    /// # Panics
    /// When `key` is not in [`KEYS`]: a programming error.
    #[must_use]
    pub fn get(&self, key: &str) -> &str {
        self.values
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value.as_str())
            .unwrap_or_else(|| panic!("install setting {key} is not in KEYS"))
    }

    /// The namespace everything namespaced goes into.
    #[must_use]
    pub fn namespace(&self) -> &str {
        self.get("namespace")
    }

    /// The image reference of every container.
    #[must_use]
    pub fn image(&self) -> String {
        match self.get("image") {
            "" => format!("{}/weft:{}", self.get("hub"), self.get("tag")),
            image => image.to_owned(),
        }
    }

    /// A numeric key (checked when set).
    #[must_use]
    pub fn number(&self, key: &str) -> i64 {
        self.get(key).parse().unwrap_or_default()
    }
}

fn unknown_key(key: &str) -> SettingError {
    let names: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
    let hint = names
        .iter()
        .find(|name| name.eq_ignore_ascii_case(key) || name.ends_with(&format!(".{key}")))
        .map(|name| format!("; did you mean {name}?"))
        .unwrap_or_default();
    SettingError::UnknownKey {
        key: key.to_owned(),
        hint,
        known: names.join(", "),
    }
}

/// Why `value` is refused for `key`, if it is.
fn check_value(key: &str, value: &str) -> Result<(), String> {
    match key {
        "namespace" => dns_label(value),
        "imagePullPolicy" => one_of(value, &["Always", "IfNotPresent", "Never"]),
        "control.replicas" => count(value, 1, 100),
        "node.drainSeconds" => count(value, 0, 3600),
        "cni.binDir" | "cni.confDir" => absolute_path(value),
        "hub" | "tag" | "logLevel" | "trustDomain" => not_empty(value),
        key if key.contains(".resources.") => quantity(value),
        _ => Ok(()),
    }
}

fn not_empty(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(())
}

fn dns_label(value: &str) -> Result<(), String> {
    let valid = (1..=63).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if !valid {
        return Err(
            "a namespace is a DNS label: 1-63 of a-z, 0-9 and '-', not starting or ending with '-'"
                .into(),
        );
    }
    Ok(())
}

fn one_of(value: &str, allowed: &[&str]) -> Result<(), String> {
    if !allowed.contains(&value) {
        return Err(format!("must be one of {}", allowed.join(", ")));
    }
    Ok(())
}

fn count(value: &str, min: i64, max: i64) -> Result<(), String> {
    match value.parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(()),
        _ => Err(format!("must be a whole number from {min} to {max}")),
    }
}

fn absolute_path(value: &str) -> Result<(), String> {
    if !value.starts_with('/') {
        return Err("must be an absolute path on the node".into());
    }
    Ok(())
}

/// A Kubernetes quantity as resources take it: a decimal number with an optional unit
/// (`m`, `k`, `M`, `G`, `T`, `Ki`, `Mi`, `Gi`, `Ti`).
fn quantity(value: &str) -> Result<(), String> {
    const UNITS: &[&str] = &["Ki", "Mi", "Gi", "Ti", "m", "k", "M", "G", "T", ""];
    let number = UNITS
        .iter()
        .find_map(|unit| value.strip_suffix(unit).filter(|n| !n.is_empty()));
    let valid = number.is_some_and(|n| {
        n.parse::<f64>().is_ok_and(|v| v > 0.0)
            && n.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    });
    if !valid {
        return Err("expected a quantity such as 100m, 0.5, 64Mi or 1Gi".into());
    }
    Ok(())
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (default {:?}): {}",
            self.name, self.default, self.help
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let settings = Settings::from_sets(&["namespace=mesh", "tag=1.2.3"]).unwrap();
        assert_eq!(settings.namespace(), "mesh");
        assert_eq!(settings.image(), format!("{DEFAULT_HUB}/weft:1.2.3"));
        let settings = Settings::from_sets(&["image=registry.local/w:dev", "tag=x"]).unwrap();
        assert_eq!(settings.image(), "registry.local/w:dev");
        assert_eq!(Settings::default().number("control.replicas"), 2);
    }

    #[test]
    fn bad_sets_name_the_key_and_reason() {
        let err = Settings::from_sets(&["replicas=3"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown key") && err.contains("did you mean control.replicas"),
            "{err}"
        );
        let err = Settings::from_sets(&["control.replicas=0"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("control.replicas=0") && err.contains("from 1 to 100"),
            "{err}"
        );
        let err = Settings::from_sets(&["node.resources.requests.memory=lots"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("quantity"), "{err}");
        let err = Settings::from_sets(&["namespace=Weft_System"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("DNS label"), "{err}");
        assert!(matches!(
            Settings::from_sets(&["tag"]),
            Err(SettingError::NotKeyValue(_))
        ));
        for good in ["100m", "0.5", "64Mi", "1Gi", "2"] {
            assert_eq!(quantity(good), Ok(()), "{good}");
        }
    }
}
