//! The one JSON writer that matches Python's `json.dumps` byte for byte.
//!
//! The NEMO plugin is written in Python and serializes with `json.dumps(obj)` and its defaults:
//!
//! * separators `", "` between items and `": "` between a key and its value;
//! * `ensure_ascii=True`: every character outside printable ASCII is written as `\uXXXX`
//!   (lowercase hex), characters above U+FFFF as a UTF-16 surrogate pair, and DEL (U+007F) too;
//! * `"`, `\`, `\n`, `\r`, `\t`, `\b`, `\f` use their short escapes, other control characters
//!   `\u00XX`; `/` is **not** escaped;
//! * floats as `repr(float)`: the shortest digits that round-trip, in fixed notation when the
//!   decimal exponent is in `-4..16`, else like `1e+16` / `1e-05`; integral floats keep `.0`.
//!
//! Everything this crate writes (queue items, event payloads, HMAC envelopes) goes through this
//! module, so a value parsed from the plugin and written again is byte-identical — which matters
//! because the HMAC signs the exact bytes.
//!
//! ```
//! use nemo_events::pyjson;
//!
//! let v = serde_json::json!({"tool_name": "Süss #2", "ratio": 1e16});
//! assert_eq!(pyjson::to_string(&v), r#"{"ratio": 1e+16, "tool_name": "S\u00fcss #2"}"#);
//! ```

use std::fmt::Write as _;
use std::io;

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter};

/// A [`serde_json::ser::Formatter`] that writes like Python's `json.dumps` with default options.
///
/// Use it with [`serde_json::Serializer::with_formatter`], or simply call [`to_string`].
///
/// ```
/// use nemo_events::pyjson::PyFormatter;
///
/// let mut out = Vec::new();
/// let mut ser = serde_json::Serializer::with_formatter(&mut out, PyFormatter);
/// serde::Serialize::serialize(&vec![1.0, 0.5], &mut ser).unwrap();
/// assert_eq!(out, b"[1.0, 0.5]");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct PyFormatter;

impl Formatter for PyFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_f64<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        w.write_all(float_repr(value).as_bytes())
    }

    fn write_f32<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f32) -> io::Result<()> {
        // Python has no f32; widen exactly like `float(numpy.float32(x))` would.
        w.write_all(float_repr(f64::from(value)).as_bytes())
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if fragment.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return w.write_all(fragment.as_bytes());
        }
        let mut buf = String::with_capacity(fragment.len() + 8);
        escape_into(&mut buf, fragment);
        w.write_all(buf.as_bytes())
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        escape: CharEscape,
    ) -> io::Result<()> {
        let s: &[u8] = match escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Solidus => b"/",
            CharEscape::Backspace => b"\\b",
            CharEscape::FormFeed => b"\\f",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::AsciiControl(byte) => {
                let mut buf = String::with_capacity(6);
                push_u_escape(&mut buf, u16::from(byte));
                return w.write_all(buf.as_bytes());
            }
        };
        w.write_all(s)
    }
}

/// Serializes `value` exactly like Python's `json.dumps(value)` would.
///
/// Map keys keep the order the value's [`Serialize`] impl yields them in (for
/// [`serde_json::Value`] without `preserve_order` that is sorted order).
///
/// # Errors
///
/// None are returned: if `value`'s `Serialize` impl fails (for example a map with non-string
/// keys), the result is `null`. Use [`try_to_string`] to see such errors.
///
/// ```
/// assert_eq!(nemo_events::pyjson::to_string(&("a/b", 2, true, None::<u8>)), r#"["a/b", 2, true, null]"#);
/// ```
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> String {
    try_to_string(value).unwrap_or_else(|_| String::from("null"))
}

/// Like [`to_string`], but returns the serializer's error instead of writing `null`.
///
/// # Errors
///
/// Whatever `value`'s `Serialize` impl reports, e.g. "key must be a string".
///
/// ```
/// let s = nemo_events::pyjson::try_to_string(&[("k", "é")].into_iter().collect::<std::collections::BTreeMap<_, _>>())?;
/// assert_eq!(s, r#"{"k": "\u00e9"}"#);
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn try_to_string<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    let mut out = Vec::with_capacity(128);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PyFormatter);
    value.serialize(&mut ser)?;
    // The formatter only emits ASCII, raw values are valid UTF-8 JSON text: never lossy.
    Ok(match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// Returns `s` as a quoted JSON string literal, exactly like Python's `json.dumps(s)`.
///
/// ```
/// use nemo_events::pyjson::escape_str;
///
/// assert_eq!(escape_str("Jos\u{e9} \"#1\"/2"), r##""Jos\u00e9 \"#1\"/2""##);
/// assert_eq!(escape_str("\u{1F600}\n"), r#""\ud83d\ude00\n""#);
/// ```
pub fn escape_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    write_str(&mut out, s);
    out
}

/// Appends `s` as a quoted Python-style JSON string literal to `out`.
pub(crate) fn write_str(out: &mut String, s: &str) {
    out.push('"');
    escape_into(out, s);
    out.push('"');
}

/// Appends the escaped contents of `s` (without quotes).
fn escape_into(out: &mut String, s: &str) {
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            continue;
        }
        if b >= 0x80 && !s.is_char_boundary(i) {
            continue;
        }
        out.push_str(&s[start..i]);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            0x00..=0x7f => push_u_escape(out, u16::from(b)),
            _ => {
                let ch = s[i..].chars().next().unwrap_or(char::REPLACEMENT_CHARACTER);
                let mut units = [0u16; 2];
                for unit in ch.encode_utf16(&mut units) {
                    push_u_escape(out, *unit);
                }
                start = i + ch.len_utf8();
                continue;
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

fn push_u_escape(out: &mut String, unit: u16) {
    // Writing to a String cannot fail.
    let _ = write!(out, "\\u{unit:04x}");
}

/// Formats a float like Python's `repr(float)` (which `json.dumps` uses).
///
/// Non-finite values are written as Python does (`NaN`, `Infinity`, `-Infinity`), although
/// strict JSON parsers reject them.
///
/// ```
/// use nemo_events::pyjson::float_repr;
///
/// assert_eq!(float_repr(1760623352.944572), "1760623352.944572");
/// assert_eq!(float_repr(3.0), "3.0");
/// assert_eq!(float_repr(1e16), "1e+16");
/// assert_eq!(float_repr(0.0001), "0.0001");
/// assert_eq!(float_repr(0.00001), "1e-05");
/// assert_eq!(float_repr(-0.0), "-0.0");
/// ```
pub fn float_repr(value: f64) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    // Rust's `{:e}` gives the shortest round-tripping digits, like Python's repr.
    let sci = format!("{:e}", value.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut out = String::with_capacity(24);
    if value.is_sign_negative() {
        out.push('-');
    }
    if !(-5 < exp && exp < 16) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(
            out,
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        );
    } else if exp >= 0 {
        let int_len = usize::try_from(exp).unwrap_or(0) + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', int_len - digits.len()));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', exp.unsigned_abs() as usize - 1));
        out.push_str(&digits);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_match_python_repr() {
        // Values checked against CPython 3 `repr`.
        let cases = [
            (0.0, "0.0"),
            (1.0, "1.0"),
            (123456789.0, "123456789.0"),
            (1234567890123456.0, "1234567890123456.0"),
            (1e16, "1e+16"),
            (1.5e300, "1.5e+300"),
            (1e-5, "1e-05"),
            (1.25e-7, "1.25e-07"),
            (0.001, "0.001"),
            (-2.5, "-2.5"),
            (0.1, "0.1"),
            (1760694494.6657364, "1760694494.6657364"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
        ];
        for (v, want) in cases {
            assert_eq!(float_repr(v), want, "{v:e}");
        }
    }

    #[test]
    fn strings_match_python() {
        assert_eq!(
            escape_str("\u{7f}\u{1}\u{8}\u{c}\t"),
            r#""\u007f\u0001\b\f\t""#
        );
        assert_eq!(escape_str("a\\b"), r#""a\\b""#);
        assert_eq!(escape_str("李雷"), r#""\u674e\u96f7""#);
        assert_eq!(to_string("é\u{7f}\"x"), r#""\u00e9\u007f\"x""#);
    }
}
