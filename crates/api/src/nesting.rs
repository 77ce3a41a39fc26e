//! A linear pre-check of a YAML document's flow nesting (`[` and `{`), run before the
//! parser sees the text.
//!
//! The YAML parser in use keeps one pending "simple key" per open flow collection and looks
//! at all of them for every token, so a document nested 100,000 levels deep in flow style
//! (`[[[[...` or `{a: {a: ...`) costs seconds to minutes before its own recursion limit of
//! [`MAX_NESTING`] levels rejects it. Block nesting costs the parser nothing extra (and is
//! bounded by the same recursion limit), so only flow nesting is measured here, in one pass:
//! outside quoted scalars and comments, a `[` or `{` opens a flow collection inside another
//! one, or where a block node starts (line start, after `- `, `? ` or `: `); inside a flow
//! collection plain scalars cannot hold these characters. Block scalar content (`|`, `>`)
//! is skipped. The count can only overestimate on odd text (a plain scalar continuation
//! line starting with an unbalanced `[`), and a real document deeper than the limit is
//! refused by the parser anyway.

/// The deepest nesting a document may have; the YAML parser's own recursion limit.
pub const MAX_NESTING: usize = 128;

/// Where a document's flow nesting first goes deeper than [`MAX_NESTING`]: 1-based line and
/// 0-based column of the opening bracket.
#[must_use]
pub fn too_deep_at(text: &str) -> Option<(usize, usize)> {
    let mut scan = Scan::default();
    for (index, line) in text.split('\n').enumerate() {
        if let Some(column) = scan.line(line) {
            return Some((index + 1, column));
        }
    }
    None
}

/// The scanner's state between lines.
#[derive(Default)]
struct Scan {
    /// Open flow collections.
    depth: usize,
    /// The open quote of a quoted scalar, if inside one.
    quote: Option<u8>,
    /// Inside a block scalar introduced at this indentation: more indented lines (and blank
    /// ones) are its content.
    block_scalar_parent: Option<usize>,
}

impl Scan {
    /// Scans one line; the column of the bracket going too deep, if any.
    fn line(&mut self, line: &str) -> Option<usize> {
        let bytes = line.as_bytes();
        let indent = bytes.iter().take_while(|&&b| b == b' ').count();
        if let Some(parent) = self.block_scalar_parent {
            if indent > parent || line.trim().is_empty() {
                return None;
            }
            self.block_scalar_parent = None;
        }
        // whether the next character starts a node (where a quote or a bracket means one)
        let mut node_start = self.quote.is_none();
        let mut index = 0;
        while index < bytes.len() {
            let byte = bytes[index];
            let next = bytes.get(index + 1).copied();
            if let Some(quote) = self.quote {
                let escaped = (quote == b'"' && byte == b'\\')
                    || (quote == b'\'' && byte == b'\'' && next == Some(b'\''));
                if byte == quote && !escaped {
                    self.quote = None;
                }
                index += if escaped { 2 } else { 1 };
                continue;
            }
            let in_flow = self.depth > 0;
            let after_space = index == 0 || matches!(bytes[index - 1], b' ' | b'\t');
            let indicator = next.is_none_or(|n| matches!(n, b' ' | b'\t'));
            node_start = match byte {
                b' ' | b'\t' => node_start,
                b'#' if after_space => break,
                b'"' | b'\'' if node_start => {
                    self.quote = Some(byte);
                    false
                }
                b'[' | b'{' if node_start || in_flow => {
                    self.depth += 1;
                    if self.depth > MAX_NESTING {
                        return Some(index);
                    }
                    true
                }
                b']' | b'}' if in_flow => {
                    self.depth -= 1;
                    false
                }
                b',' => in_flow,
                b':' => in_flow || indicator,
                b'-' | b'?' => indicator,
                b'|' | b'>' if node_start && !in_flow && is_block_header(&line[index..]) => {
                    self.block_scalar_parent = Some(indent);
                    return None;
                }
                _ => false,
            };
            index += 1;
        }
        None
    }
}

/// Whether `rest` (starting at `|` or `>`) is a block scalar header: the indicator, optional
/// chomping and indentation indicators, then nothing but an optional comment.
fn is_block_header(rest: &str) -> bool {
    let body = rest[1..].trim_start_matches(|c: char| c == '+' || c == '-' || c.is_ascii_digit());
    let body = body.trim_start();
    body.is_empty() || body.starts_with('#')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_nesting_past_the_limit_is_found_where_it_happens() {
        let deep = format!("spec: {}", "[".repeat(MAX_NESTING + 1));
        assert_eq!(too_deep_at(&deep), Some((1, 6 + MAX_NESTING)));
        let maps = format!("a:\n  b: {}", "{k: ".repeat(MAX_NESTING + 5));
        assert_eq!(too_deep_at(&maps).map(|(line, _)| line), Some(2));
        let at_limit = "[".repeat(MAX_NESTING) + &"]".repeat(MAX_NESTING);
        assert_eq!(too_deep_at(&at_limit), None);
    }

    #[test]
    fn brackets_in_scalars_comments_and_block_text_do_not_count() {
        let many = "[".repeat(MAX_NESTING + 1);
        let texts = [
            format!("a: x{many}\n"),
            format!("a: '{many}'\n"),
            format!("a: \"\\\"{many}\"\n"),
            format!("a: 1 # {many}\n"),
            format!("a: |\n  {many}\n\n  {many}\nb: 1\n"),
            format!("- >-\n    {many}\n"),
            format!("a: ['it''s', \"{many}\", x]\n"),
            format!("a: \"multi\n  line {many}\"\n"),
        ];
        for text in texts {
            assert_eq!(too_deep_at(&text), None, "{text}");
        }
    }

    #[test]
    fn nesting_continues_across_lines_and_closes() {
        let open = "[\n".repeat(MAX_NESTING + 1);
        assert_eq!(too_deep_at(&open), Some((MAX_NESTING + 1, 0)));
        let closed = "- [1, [2]]\n".repeat(MAX_NESTING * 2);
        assert_eq!(too_deep_at(&closed), None);
    }
}
