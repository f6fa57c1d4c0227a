//! Topic templates (`{prefix}/tools/{tool_id}/enabled`) and level sanitizing.
//!
//! A template is a `/`-separated list of levels. A level is literal text, placeholders
//! `{name}`, or a mix (`tool-{tool_id}`). Placeholders:
//!
//! - `{prefix}` — the configured prefix, inserted as is (it may span several levels, e.g.
//!   `site-a/nemo`; it is validated once, at configuration time);
//! - `{kind}` — the event kind (`tool_enabled`, ...);
//! - `{tool_id}`, `{tool_name}` and any other top-level field of the event's JSON payload
//!   (`{area_id}`, `{user_name}`, ...).
//!
//! Everything but `{prefix}` goes through [`sanitize_level`], so a value can never add a level
//! or a wildcard: the rendered topic has exactly the levels the template has.

use std::borrow::Cow;
use std::fmt;

use crate::fields::{Fields, Scalar};

/// Makes `value` safe to insert into one topic level.
///
/// Each of `/` (level separator), `+` and `#` (wildcards), NUL and every other control
/// character (U+0000–U+001F, U+007F–U+009F, which MQTT says topics should not contain) is
/// replaced by `_`; an empty value becomes `_` (an empty level would shift what consumers read
/// at a level position). Everything else, including non-ASCII, spaces and quotes, is kept.
/// Borrows when nothing needs replacing.
///
/// ```
/// use nemo_topics::sanitize_level;
/// assert_eq!(sanitize_level("Oxford ICP Etcher #2"), "Oxford ICP Etcher _2");
/// assert_eq!(sanitize_level("New ALD / Cambridge"), "New ALD _ Cambridge");
/// assert_eq!(sanitize_level("a+b\0c"), "a_b_c");
/// assert_eq!(sanitize_level(""), "_");
/// assert_eq!(sanitize_level("José"), "José");
/// ```
pub fn sanitize_level(value: &str) -> Cow<'_, str> {
    fn bad(c: char) -> bool {
        matches!(c, '/' | '+' | '#') || c.is_control()
    }
    if value.is_empty() {
        Cow::Borrowed("_")
    } else if value.contains(bad) {
        Cow::Owned(
            value
                .chars()
                .map(|c| if bad(c) { '_' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(value)
    }
}

/// Why a template is rejected (wrapped with the route name in [`ConfigError`](crate::ConfigError)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template is the empty string.
    #[error("the template is empty")]
    Empty,
    /// A `{` without a matching `}`.
    #[error("unbalanced braces: '{{' at byte {pos} is not closed")]
    Unclosed {
        /// Byte offset of the `{`.
        pos: usize,
    },
    /// A `}` without a matching `{`.
    #[error("unbalanced braces: '}}' at byte {pos} has no matching '{{'")]
    Unopened {
        /// Byte offset of the `}`.
        pos: usize,
    },
    /// `{}` or a name that is not `[A-Za-z_][A-Za-z0-9_]*`.
    #[error("invalid placeholder '{{{name}}}': a name is letters, digits and '_'")]
    BadName {
        /// The text between the braces.
        name: String,
    },
    /// A placeholder that this kind of event does not carry.
    #[error("unknown placeholder '{{{name}}}'; allowed: {allowed}")]
    Unknown {
        /// The unknown name.
        name: String,
        /// The allowed names, comma separated.
        allowed: String,
    },
    /// A literal `+` or `#`: a topic name cannot contain wildcards.
    #[error("the wildcard '{ch}' is not allowed in a topic name")]
    Wildcard {
        /// The wildcard found.
        ch: char,
    },
    /// A NUL or other control character in the literal text.
    #[error("control character U+{code:04X} is not allowed in a topic")]
    Control {
        /// Its code point.
        code: u32,
    },
    /// `a//b`, a leading or a trailing `/`.
    #[error("empty topic level (leading, trailing or doubled '/')")]
    EmptyLevel,
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Prefix,
    Kind,
    Field(String),
}

/// A parsed, validated topic template. Rendering cannot produce wildcards, NUL or empty levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    source: String,
    parts: Vec<Part>,
    /// Literal bytes, to size the output buffer.
    lit_len: usize,
}

/// A value a template needs but the event lacks (or has as null / object / array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Missing(pub(crate) String);

/// Field placeholders accepted for every kind, even where the plugin's payload lacks them
/// (a reservation of a tool may well carry `tool_id`); rendering fails if the event lacks them.
const ALWAYS: &[&str] = &["tool_id", "tool_name"];

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks literal text of a template or a prefix / rewrite: no wildcard, no control character.
pub(crate) fn check_literal(text: &str) -> Result<(), TemplateError> {
    for c in text.chars() {
        match c {
            '+' | '#' => return Err(TemplateError::Wildcard { ch: c }),
            c if c.is_control() => return Err(TemplateError::Control { code: u32::from(c) }),
            _ => {}
        }
    }
    Ok(())
}

/// Checks that `/`-separated `text` has no empty level.
pub(crate) fn check_levels(text: &str) -> Result<(), TemplateError> {
    if text.is_empty() {
        return Err(TemplateError::Empty);
    }
    if text.split('/').any(str::is_empty) {
        return Err(TemplateError::EmptyLevel);
    }
    Ok(())
}

impl Template {
    /// Parses `source`. `fields`, when given, is the closed list of payload fields this
    /// template's event kind carries; `None` accepts any field name.
    pub(crate) fn parse(source: &str, fields: Option<&[&str]>) -> Result<Template, TemplateError> {
        if source.is_empty() {
            return Err(TemplateError::Empty);
        }
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut lit_len = 0;
        let mut rest = source;
        let mut offset = 0;
        while let Some(i) = rest.find(['{', '}']) {
            let (before, tail) = rest.split_at(i);
            lit.push_str(before);
            if tail.starts_with('}') {
                return Err(TemplateError::Unopened { pos: offset + i });
            }
            let close = tail
                .find('}')
                .ok_or(TemplateError::Unclosed { pos: offset + i })?;
            let name = &tail[1..close];
            if name.contains('{') {
                return Err(TemplateError::Unclosed { pos: offset + i });
            }
            if !valid_name(name) {
                return Err(TemplateError::BadName {
                    name: name.to_owned(),
                });
            }
            let part = match name {
                "prefix" => Part::Prefix,
                "kind" => Part::Kind,
                _ => {
                    if let Some(known) = fields
                        && !ALWAYS.contains(&name)
                        && !known.contains(&name)
                    {
                        let mut allowed = vec!["prefix", "kind"];
                        for f in ALWAYS.iter().chain(known) {
                            if !allowed.contains(f) {
                                allowed.push(f);
                            }
                        }
                        return Err(TemplateError::Unknown {
                            name: name.to_owned(),
                            allowed: allowed.join(", "),
                        });
                    }
                    Part::Field(name.to_owned())
                }
            };
            if !lit.is_empty() {
                lit_len += lit.len();
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(part);
            offset += i + close + 1;
            rest = &tail[close + 1..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            lit_len += lit.len();
            parts.push(Part::Lit(lit));
        }
        for part in &parts {
            if let Part::Lit(text) = part {
                check_literal(text)?;
            }
        }
        // Placeholders always render to a non-empty text without '/', so the levels of the
        // source (with placeholders standing in) are the levels of every rendered topic.
        check_levels(source)?;
        Ok(Template {
            source: source.to_owned(),
            parts,
            lit_len,
        })
    }

    /// The template as written.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// Renders with `prefix` (inserted verbatim), `kind` and the event's top-level `fields`
    /// (both sanitized).
    pub(crate) fn render(
        &self,
        prefix: &str,
        kind: &str,
        fields: Option<&Fields<'_>>,
    ) -> Result<String, Missing> {
        let mut out = String::with_capacity(self.lit_len + prefix.len() + 24);
        for part in &self.parts {
            match part {
                Part::Lit(text) => out.push_str(text),
                Part::Prefix => out.push_str(prefix),
                Part::Kind => out.push_str(&sanitize_level(kind)),
                Part::Field(name) => match fields.and_then(|f| f.scalar(name)) {
                    Some(Scalar::Str(s)) => out.push_str(&sanitize_level(&s)),
                    // numbers and booleans as written (`12`, `1.50`, `true`); `1e+30` has a `+`
                    Some(Scalar::Other(text)) => out.push_str(&sanitize_level(text)),
                    None => return Err(Missing(name.clone())),
                },
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_and_renders() {
        let t = Template::parse("{prefix}/tools/{tool_id}/x-{kind}", None).unwrap();
        let text = r#"{"tool_id": 12, "tool_name": "a/b"}"#;
        let fields = Fields::parse(text).unwrap();
        assert_eq!(
            t.render("site/nemo", "tool_enabled", Some(&fields))
                .unwrap(),
            "site/nemo/tools/12/x-tool_enabled"
        );
        let t = Template::parse("{prefix}/{tool_name}", None).unwrap();
        assert_eq!(t.render("n", "k", Some(&fields)).unwrap(), "n/a_b");
        assert_eq!(t.render("n", "k", None), Err(Missing("tool_name".into())));
    }

    #[test]
    fn rejects_bad_templates() {
        let e = |s: &str| Template::parse(s, Some(&["tool_id"])).unwrap_err();
        assert_eq!(e(""), TemplateError::Empty);
        assert_eq!(e("{prefix"), TemplateError::Unclosed { pos: 0 });
        assert_eq!(e("a/{b{c}"), TemplateError::Unclosed { pos: 2 });
        assert_eq!(e("a/b}"), TemplateError::Unopened { pos: 3 });
        assert_eq!(
            e("a/{}"),
            TemplateError::BadName {
                name: String::new()
            }
        );
        assert_eq!(
            e("a/{tool id}"),
            TemplateError::BadName {
                name: "tool id".into()
            }
        );
        assert!(
            matches!(e("a/{tool_idd}"), TemplateError::Unknown { name, .. } if name == "tool_idd")
        );
        assert_eq!(e("a/+/b"), TemplateError::Wildcard { ch: '+' });
        assert_eq!(e("a/#"), TemplateError::Wildcard { ch: '#' });
        assert_eq!(e("a/\0"), TemplateError::Control { code: 0 });
        assert_eq!(e("a//{tool_id}"), TemplateError::EmptyLevel);
        assert_eq!(e("/a"), TemplateError::EmptyLevel);
        assert_eq!(e("a/"), TemplateError::EmptyLevel);
    }
}
