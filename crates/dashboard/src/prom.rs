//! A reader of the Prometheus text exposition format (and OpenMetrics text, which weft's
//! proxies serve): one [`Sample`] per series line. Comments (`# HELP`, `# TYPE`, `# EOF`)
//! and timestamps are ignored; a line that does not parse is skipped, so one odd series
//! does not hide a proxy's others.

use std::collections::BTreeMap;

/// One series' value in a scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name with its suffix (`istio_requests_total`, `..._bucket`).
    pub name: String,
    /// Label names and values.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// The value of `label`, or `""` when the series has none.
    #[must_use]
    pub fn label(&self, label: &str) -> &str {
        self.labels.get(label).map_or("", String::as_str)
    }
}

/// Every series of a metrics page.
#[must_use]
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next()?;
    Some(Sample {
        name: name.to_owned(),
        labels,
        value: parse_value(value)?,
    })
}

/// Labels up to the closing `}`; returns them and the text after it.
fn parse_labels(mut text: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        text = text.trim_start_matches([' ', ',']);
        if let Some(after) = text.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after_key) = text.split_once('=')?;
        let (value, after_value) = quoted(after_key.trim_start())?;
        labels.insert(key.trim().to_owned(), value);
        text = after_value;
    }
}

/// A double-quoted label value with `\\`, `\"` and `\n` escapes.
fn quoted(text: &str) -> Option<(String, &str)> {
    let body = text.strip_prefix('"')?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((value, &body[at + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            other => value.push(other),
        }
    }
    None
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        other => other.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_labels_escapes_and_special_values_and_skips_comments() {
        let text = "# HELP istio_requests_total Requests.\n\
                    # TYPE istio_requests_total counter\n\
                    istio_requests_total{reporter=\"waypoint\",path=\"a\\\"b\\\\c\"} 7\n\
                    istio_request_duration_milliseconds_bucket{le=\"+Inf\"} 3 1700000000\n\
                    up 1\n\
                    broken{le=\"1\" 2\n\
                    # EOF\n";
        let samples = parse(text);
        assert_eq!(samples.len(), 3, "{samples:?}");
        assert_eq!(samples[0].name, "istio_requests_total");
        assert_eq!(samples[0].label("reporter"), "waypoint");
        assert_eq!(samples[0].label("path"), "a\"b\\c");
        assert!((samples[0].value - 7.0).abs() < f64::EPSILON);
        assert_eq!(samples[1].label("le"), "+Inf");
        assert!((samples[1].value - 3.0).abs() < f64::EPSILON);
        assert_eq!(samples[2].name, "up");
        assert!(samples[2].labels.is_empty());
    }
}
