//! The certificate authority's part of `weft status`: where a root rotation stands (phase,
//! trusted roots with fingerprint, expiry, which one signs and how many live certificates
//! chain to each), from the control plane's `/debug/caz`.

use super::{columns, text};
use serde_json::Value;

/// The CA section for the `/debug/caz` JSON.
pub fn render(caz: &Value) -> String {
    let phase = text(&caz["phase"]);
    let mut out = format!(
        "\nCA root rotation: {phase} (since {})\n",
        text(&caz["since"])
    );
    let mut rows = vec![[
        "ROOT (SHA-256)".to_owned(),
        "NOT AFTER".to_owned(),
        "SIGNING".to_owned(),
        "LIVE CERTS".to_owned(),
    ]];
    for root in caz["roots"].as_array().into_iter().flatten() {
        let signing = if root["signing"] == Value::Bool(true) {
            "yes"
        } else {
            "no"
        };
        rows.push([
            text(&root["fingerprint_sha256"]),
            text(&root["not_after"]),
            signing.to_owned(),
            text(&root["live_certificates"]),
        ]);
    }
    out.push_str(&columns(&rows, "  "));
    if phase == "publishing" {
        out.push_str(&format!(
            "  certificate holders without both roots yet: {}\n",
            text(&caz["holders_without_bundle"])
        ));
    }
    if !caz["unknown_until"].is_null() {
        out.push_str(&format!(
            "  resumed after a restart: no phase ends before {}\n",
            text(&caz["unknown_until"])
        ));
    }
    if !caz["last_error"].is_null() {
        out.push_str(&format!("  last error: {}\n", text(&caz["last_error"])));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_the_phase_each_root_and_what_holds_the_rotation() {
        let caz = serde_json::json!({
            "phase": "publishing", "since": "2026-12-04T17:00:00Z",
            "roots": [
                {"fingerprint_sha256": "aa11", "not_after": "2036-12-01T00:00:00Z",
                 "signing": true, "live_certificates": 4},
                {"fingerprint_sha256": "bb22", "not_after": "2036-12-04T00:00:00Z",
                 "signing": false, "live_certificates": 0}
            ],
            "holders_without_bundle": 3, "unknown_until": null,
            "last_error": "cannot start the root rotation: bad dir"
        });
        let shown = render(&caz);
        assert!(shown.contains("CA root rotation: publishing"), "{shown}");
        assert!(
            shown.contains("aa11            2036-12-01T00:00:00Z  yes      4"),
            "{shown}"
        );
        assert!(shown.contains("bb22"), "{shown}");
        assert!(shown.contains("without both roots yet: 3"), "{shown}");
        assert!(shown.contains("last error: cannot start"), "{shown}");
    }
}
