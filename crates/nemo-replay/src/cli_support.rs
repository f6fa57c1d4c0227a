//! Small parsers and formatters the `replay` binary needs, kept here so the
//! binary stays thin and these are tested.

use nemo_redis::{DeadLetter, Requeue};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Parse an RFC 3339 time for `--from`/`--until`, e.g. `2025-10-16T14:00:00Z`
/// or `2025-10-16T16:00:00+02:00`.
///
/// ```
/// let t = nemo_replay::parse_rfc3339("2025-10-16T16:00:00+02:00").unwrap();
/// assert_eq!(t, time::macros::datetime!(2025-10-16 14:00 UTC));
/// assert!(nemo_replay::parse_rfc3339("yesterday").is_err());
/// ```
///
/// # Errors
/// A message naming the value and the expected form.
pub fn parse_rfc3339(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s.trim(), &Rfc3339)
        .map_err(|e| format!("{s:?} is not an RFC 3339 time like 2025-10-16T14:00:00Z ({e})"))
}

/// Parse the value of `--requeue`: a count, or `all`.
///
/// ```
/// use nemo_redis::Requeue;
/// assert_eq!(nemo_replay::parse_requeue("all"), Ok(Requeue::All));
/// assert_eq!(nemo_replay::parse_requeue("5"), Ok(Requeue::Count(5)));
/// assert!(nemo_replay::parse_requeue("0").is_err());
/// assert!(nemo_replay::parse_requeue("some").is_err());
/// ```
///
/// # Errors
/// A message naming the value and what is allowed.
pub fn parse_requeue(s: &str) -> Result<Requeue, String> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(Requeue::All);
    }
    match s.parse::<u64>() {
        Ok(n) if n > 0 => Ok(Requeue::Count(n)),
        _ => Err(format!("--requeue {s:?}: must be a count > 0 or \"all\"")),
    }
}

/// Longest raw item text shown in a dead-letter listing, in characters.
const RAW_SHOWN: usize = 160;

/// One line of `replay dead-letters`: position (1 = oldest), time in UTC,
/// reason, and the start of the raw item (control characters escaped).
///
/// ```
/// let d = nemo_redis::DeadLetter { raw: "not json at all".into(), error: "not JSON".into(), at: 1760623352.5 };
/// assert_eq!(
///     nemo_replay::dead_letter_line(1, &d),
///     "#1  2025-10-16T14:02:32.5Z  not JSON  raw: not json at all"
/// );
/// ```
pub fn dead_letter_line(position: u64, d: &DeadLetter) -> String {
    let at = crate::formats::from_epoch(d.at)
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{:.3}", d.at));
    let raw = String::from_utf8_lossy(&d.raw);
    let mut shown: String = raw
        .chars()
        .take(RAW_SHOWN)
        .flat_map(char::escape_debug)
        .collect();
    if raw.chars().count() > RAW_SHOWN {
        shown.push('…');
    }
    // escape_debug escapes quotes too; a listing is easier to read without that.
    let shown = shown.replace("\\\"", "\"").replace("\\'", "'");
    format!("#{position}  {at}  {}  raw: {shown}", d.error)
}
