//! Lenient event times that remember exactly how they were written.

use std::fmt;

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use crate::pyjson;

/// A time field of an event, as the plugin wrote it.
///
/// Real NEMO payloads carry times in several shapes: Django `isoformat()` strings with an offset
/// (`"2025-10-16T14:02:32.944572+00:00"`), sometimes without fraction or offset, with `Z`, epoch
/// numbers, and — a plugin bug — the booleans `true`/`false` in `timestamp`. `EventTime` keeps
/// the original JSON value so writing the event again reproduces the input byte for byte, and
/// interprets it on demand with [`EventTime::datetime`] (a boolean or unparsable text is `None`).
///
/// ```
/// use nemo_events::EventTime;
///
/// let t = EventTime::from_text("2025-10-16T14:02:32.944572+00:00");
/// assert_eq!(t.datetime().map(|d| d.unix_timestamp()), Some(1_760_623_352));
/// assert_eq!(EventTime::from_bool(false).datetime(), None);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EventTime(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    /// A JSON string (unescaped).
    Text(String),
    /// A JSON number, as its exact source text.
    Number(String),
    /// `true` / `false` (the plugin's `timestamp` bug).
    Flag(bool),
}

impl EventTime {
    /// A time written as a JSON string; the text is kept verbatim.
    ///
    /// ```
    /// let t = nemo_events::EventTime::from_text("2025-10-17T09:48:14Z");
    /// assert_eq!(t.as_str(), Some("2025-10-17T09:48:14Z"));
    /// ```
    pub fn from_text(text: impl Into<String>) -> EventTime {
        EventTime(Repr::Text(text.into()))
    }

    /// The time as Django's `datetime.isoformat()` writes an aware datetime:
    /// `YYYY-MM-DDTHH:MM:SS[.ffffff]+HH:MM` (microseconds only when non-zero, like Python).
    ///
    /// ```
    /// use time::macros::datetime;
    ///
    /// let t = nemo_events::EventTime::from_datetime(datetime!(2025-10-16 14:02:32.944572 UTC));
    /// assert_eq!(t.as_str(), Some("2025-10-16T14:02:32.944572+00:00"));
    /// ```
    pub fn from_datetime(dt: OffsetDateTime) -> EventTime {
        EventTime(Repr::Text(isoformat(dt)))
    }

    /// Epoch seconds written as a JSON number (Python float repr), or `None` if not finite.
    ///
    /// ```
    /// let t = nemo_events::EventTime::from_unix_seconds(1760623352.5).unwrap();
    /// assert_eq!(t.to_json(), "1760623352.5");
    /// assert_eq!(t.datetime().map(|d| d.unix_timestamp()), Some(1760623352));
    /// ```
    pub fn from_unix_seconds(secs: f64) -> Option<EventTime> {
        secs.is_finite()
            .then(|| EventTime(Repr::Number(pyjson::float_repr(secs))))
    }

    /// The boolean the plugin sometimes writes instead of a time; it never has a datetime.
    ///
    /// ```
    /// assert_eq!(nemo_events::EventTime::from_bool(true).as_bool(), Some(true));
    /// ```
    pub fn from_bool(flag: bool) -> EventTime {
        EventTime(Repr::Flag(flag))
    }

    /// Reads a JSON value's text (`"…"`, a number, `true`/`false`); `None` for anything else.
    pub(crate) fn from_json_text(text: &str) -> Option<EventTime> {
        match text.as_bytes().first()? {
            b'"' => serde_json::from_str::<String>(text)
                .ok()
                .map(EventTime::from_text),
            b't' if text == "true" => Some(EventTime::from_bool(true)),
            b'f' if text == "false" => Some(EventTime::from_bool(false)),
            b'-' | b'0'..=b'9' => serde_json::from_str::<serde_json::Number>(text)
                .ok()
                .map(|_| EventTime(Repr::Number(text.to_owned()))),
            _ => None,
        }
    }

    /// The instant this value denotes, if it denotes one.
    ///
    /// Strings are read with [`parse_time`]; numbers as Unix epoch seconds (fraction allowed);
    /// booleans are `None`.
    ///
    /// ```
    /// let t = nemo_events::EventTime::from_text("not a time");
    /// assert_eq!(t.datetime(), None);
    /// ```
    pub fn datetime(&self) -> Option<OffsetDateTime> {
        match &self.0 {
            Repr::Text(s) => parse_time(s),
            Repr::Number(n) => parse_epoch(n),
            Repr::Flag(_) => None,
        }
    }

    /// The text, when the time was written as a JSON string.
    ///
    /// ```
    /// assert_eq!(nemo_events::EventTime::from_bool(true).as_str(), None);
    /// ```
    pub fn as_str(&self) -> Option<&str> {
        match &self.0 {
            Repr::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean, when the plugin wrote `true`/`false` instead of a time.
    ///
    /// ```
    /// assert_eq!(nemo_events::EventTime::from_text("x").as_bool(), None);
    /// ```
    pub fn as_bool(&self) -> Option<bool> {
        match &self.0 {
            Repr::Flag(b) => Some(*b),
            _ => None,
        }
    }

    /// The JSON text of the value, exactly as it will be written (Python `json.dumps` style).
    ///
    /// ```
    /// assert_eq!(nemo_events::EventTime::from_text("é").to_json(), r#""\u00e9""#);
    /// ```
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    pub(crate) fn write_json(&self, out: &mut String) {
        match &self.0 {
            Repr::Text(s) => pyjson::write_str(out, s),
            Repr::Number(n) => out.push_str(n),
            Repr::Flag(b) => out.push_str(if *b { "true" } else { "false" }),
        }
    }
}

impl fmt::Debug for EventTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventTime({})", self.to_json())
    }
}

impl fmt::Display for EventTime {
    /// Writes the JSON text, like [`EventTime::to_json`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

impl From<OffsetDateTime> for EventTime {
    fn from(dt: OffsetDateTime) -> Self {
        EventTime::from_datetime(dt)
    }
}

/// Formats like Python's `datetime.isoformat()` for an aware datetime.
fn isoformat(dt: OffsetDateTime) -> String {
    let off = dt.offset();
    let secs = off.whole_seconds();
    let sign = if secs < 0 { '-' } else { '+' };
    let abs = secs.unsigned_abs();
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    );
    if dt.microsecond() != 0 {
        s.push_str(&format!(".{:06}", dt.microsecond()));
    }
    s.push_str(&format!("{sign}{:02}:{:02}", abs / 3600, (abs / 60) % 60));
    if !abs.is_multiple_of(60) {
        s.push_str(&format!(":{:02}", abs % 60));
    }
    s
}

/// Parses the time formats seen from NEMO, leniently.
///
/// Accepted: `YYYY-MM-DD` then `T` or a space, then `HH:MM`, optional `:SS`, optional fraction
/// of 1–9+ digits (beyond nanoseconds is truncated), then an optional offset: `Z`, `+HH:MM`,
/// `+HHMM` or `+HH`. A time without an offset is taken as UTC (Django with `USE_TZ` stores UTC).
/// Returns `None` for anything else, never panics.
///
/// ```
/// use nemo_events::parse_time;
///
/// let a = parse_time("2025-10-16T14:02:32.944572+00:00").unwrap();
/// let b = parse_time("2025-10-16T16:02:32.944572+02:00").unwrap();
/// assert_eq!(a, b);
/// assert_eq!(parse_time("2025-10-16 14:02:32Z").map(|d| d.unix_timestamp()), Some(1760623352));
/// assert_eq!(parse_time("2025-10-16T14:02:32").map(|d| d.unix_timestamp()), Some(1760623352));
/// assert!(parse_time("2025-13-01T00:00:00").is_none());
/// ```
pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    let mut p = Cursor {
        b: s.trim().as_bytes(),
        i: 0,
    };
    let year = i32::try_from(p.digits(4)?).ok()?;
    p.eat(b'-')?;
    let month = Month::try_from(u8::try_from(p.digits(2)?).ok()?).ok()?;
    p.eat(b'-')?;
    let day = u8::try_from(p.digits(2)?).ok()?;
    let date = Date::from_calendar_date(year, month, day).ok()?;
    if p.at_end() {
        return Some(PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_utc());
    }
    match p.next()? {
        b'T' | b't' | b' ' => {}
        _ => return None,
    }
    let hour = u8::try_from(p.digits(2)?).ok()?;
    p.eat(b':')?;
    let minute = u8::try_from(p.digits(2)?).ok()?;
    let mut second = 0u8;
    let mut nanos = 0u32;
    if p.peek() == Some(b':') {
        p.i += 1;
        second = u8::try_from(p.digits(2)?).ok()?;
        if matches!(p.peek(), Some(b'.' | b',')) {
            p.i += 1;
            let mut n = 0usize;
            while let Some(d) = p.peek().filter(u8::is_ascii_digit) {
                if n < 9 {
                    nanos = nanos * 10 + u32::from(d - b'0');
                }
                n += 1;
                p.i += 1;
            }
            if n == 0 {
                return None;
            }
            for _ in n..9 {
                nanos *= 10;
            }
        }
    }
    let time = Time::from_hms_nano(hour, minute, second, nanos).ok()?;
    let offset = match p.next() {
        None => UtcOffset::UTC,
        Some(b'Z' | b'z') => UtcOffset::UTC,
        Some(sign @ (b'+' | b'-')) => {
            let h = i8::try_from(p.digits(2)?).ok()?;
            let m = match p.peek() {
                Some(b':') => {
                    p.i += 1;
                    i8::try_from(p.digits(2)?).ok()?
                }
                Some(_) => i8::try_from(p.digits(2)?).ok()?,
                None => 0,
            };
            if h > 23 || m > 59 {
                return None;
            }
            let (h, m) = if sign == b'-' { (-h, -m) } else { (h, m) };
            UtcOffset::from_hms(h, m, 0).ok()?
        }
        Some(_) => return None,
    };
    if !p.at_end() {
        return None;
    }
    Some(PrimitiveDateTime::new(date, time).assume_offset(offset))
}

/// Parses a JSON number as epoch seconds, exactly for plain decimals.
fn parse_epoch(n: &str) -> Option<OffsetDateTime> {
    let nanos: i128 = if n.contains(['e', 'E']) {
        let f: f64 = n.parse().ok()?;
        let ns = f * 1e9;
        if !ns.is_finite() || ns.abs() > 1e30 {
            return None;
        }
        ns as i128
    } else {
        let (neg, body) = match n.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, n),
        };
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        if int.len() > 20 {
            return None;
        }
        let int: i128 = int.parse().ok()?;
        let mut frac_ns: i128 = 0;
        for c in frac.bytes().chain(std::iter::repeat(b'0')).take(9) {
            frac_ns = frac_ns * 10 + i128::from(c.checked_sub(b'0').filter(|d| *d < 10)?);
        }
        let v = int * 1_000_000_000 + frac_ns;
        if neg { -v } else { v }
    };
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }
    fn at_end(&self) -> bool {
        self.i >= self.b.len()
    }
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }
    /// Exactly `n` ASCII digits.
    fn digits(&mut self, n: usize) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let d = self.next()?;
            if !d.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(d - b'0');
        }
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_numbers() {
        let t = EventTime::from_json_text("1760623352.944572").and_then(|t| t.datetime());
        assert_eq!(
            t.map(|d| d.unix_timestamp_nanos()),
            Some(1_760_623_352_944_572_000)
        );
        let t = EventTime::from_json_text("-1.5").and_then(|t| t.datetime());
        assert_eq!(t.map(|d| d.unix_timestamp_nanos()), Some(-1_500_000_000));
        let t = EventTime::from_json_text("1.7606e9").and_then(|t| t.datetime());
        assert_eq!(t.map(|d| d.unix_timestamp()), Some(1_760_600_000));
        assert_eq!(
            EventTime::from_json_text("1e400").and_then(|t| t.datetime()),
            None
        );
        assert_eq!(
            EventTime::from_json_text("99999999999999999999999").and_then(|t| t.datetime()),
            None
        );
        assert!(EventTime::from_json_text("null").is_none());
        assert!(EventTime::from_json_text("[1]").is_none());
    }

    #[test]
    fn time_strings() {
        let base = parse_time("2025-10-16T14:02:32.944572+00:00").map(|d| d.unix_timestamp_nanos());
        assert_eq!(base, Some(1_760_623_352_944_572_000));
        for s in [
            "2025-10-16T14:02:32.944572Z",
            "2025-10-16T14:02:32.944572",
            "2025-10-16 14:02:32.944572+0000",
            "2025-10-16T09:02:32.944572-05:00",
            "2025-10-16T16:02:32.944572+02",
            "2025-10-16T14:02:32.944572000999+00:00",
        ] {
            assert_eq!(parse_time(s).map(|d| d.unix_timestamp_nanos()), base, "{s}");
        }
        for s in [
            "",
            "2025",
            "2025-10-16T",
            "2025-10-16T14",
            "2025-10-16T14:02:32.",
            "2025-10-16T14:02:32+25:00",
            "2025-10-16T14:02:32 junk",
            "２０２５-10-16",
        ] {
            assert_eq!(parse_time(s), None, "{s}");
        }
        assert_eq!(
            parse_time("2025-10-16").map(|d| d.unix_timestamp()),
            Some(1_760_572_800)
        );
    }

    #[test]
    fn isoformat_like_python() {
        use time::macros::datetime;
        assert_eq!(
            isoformat(datetime!(2025-10-16 14:02:32 UTC)),
            "2025-10-16T14:02:32+00:00"
        );
        assert_eq!(
            isoformat(datetime!(2025-10-16 14:02:32.000123 -05:30)),
            "2025-10-16T14:02:32.000123-05:30"
        );
    }
}
