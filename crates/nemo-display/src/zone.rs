//! [`DisplayZone`]: the zone of the times on the displays, and their format.

use jiff::Timestamp;
use jiff::tz::{Offset, TimeZone};

use crate::DisplayError;

/// The zone in which the displays show times: an IANA zone (daylight saving followed, from the
/// system's tz database or, where the machine has none, the one built in), a fixed offset, or
/// the machine's own zone.
///
/// ```
/// use nemo_display::DisplayZone;
/// let la = DisplayZone::parse("America/Los_Angeles")?;
/// let t: jiff::Timestamp = "2025-10-16T14:02:32.944572Z".parse().unwrap();
/// assert_eq!(la.format(t), "Oct 16, 07:02 AM");
/// assert_eq!(DisplayZone::parse("+05:30")?.format(t), "Oct 16, 07:32 PM");
/// # Ok::<(), nemo_display::DisplayError>(())
/// ```
#[derive(Debug, Clone)]
pub struct DisplayZone {
    tz: TimeZone,
    name: String,
}

impl DisplayZone {
    /// `""` = the machine's zone (`TZ`, else `/etc/localtime`; UTC when neither says); an IANA
    /// name (`America/Los_Angeles`, `Europe/Berlin`, `UTC`); or a fixed offset `±HH:MM`,
    /// `±HHMM`, `±HH` (`-07:00`, `+0530`, `+9`), `Z`.
    ///
    /// # Errors
    /// [`DisplayError::Invalid`] naming `display.timezone` for anything else.
    pub fn parse(text: &str) -> Result<DisplayZone, DisplayError> {
        let t = text.trim();
        if t.is_empty() {
            let tz = TimeZone::try_system().unwrap_or(TimeZone::UTC);
            let name = tz.iana_name().unwrap_or("the machine's zone").to_string();
            return Ok(DisplayZone { tz, name });
        }
        if let Some(offset) = parse_offset(t) {
            let offset = Offset::from_seconds(offset).map_err(|_| bad(t))?;
            return Ok(DisplayZone {
                tz: TimeZone::fixed(offset),
                name: t.to_string(),
            });
        }
        if t.starts_with(['+', '-']) || t.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            return Err(bad(t));
        }
        let tz = TimeZone::get(t).map_err(|_| bad(t))?;
        Ok(DisplayZone {
            tz,
            name: t.to_string(),
        })
    }

    /// The zone as configured (or the machine's zone's IANA name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `t` in this zone as the relay writes it: `%b %d, %I:%M %p`, e.g. `Oct 16, 07:02 AM`
    /// (English month, zero-padded day and 12-hour clock).
    ///
    /// ```
    /// let z = nemo_display::DisplayZone::parse("UTC")?;
    /// assert_eq!(z.format("2025-01-05T00:30:00Z".parse().unwrap()), "Jan 05, 12:30 AM");
    /// assert_eq!(z.format("2025-01-05T12:30:00Z".parse().unwrap()), "Jan 05, 12:30 PM");
    /// # Ok::<(), nemo_display::DisplayError>(())
    /// ```
    pub fn format(&self, t: Timestamp) -> String {
        t.to_zoned_datetime(self.tz.clone())
            .strftime("%b %d, %I:%M %p")
            .to_string()
    }
}

fn bad(t: &str) -> DisplayError {
    DisplayError::Invalid {
        key: "display.timezone".into(),
        value: format!("{t:?}"),
        allowed: "must be an IANA zone name (e.g. America/Los_Angeles), a fixed offset \
                  (e.g. -07:00) or empty (the machine's zone)"
            .into(),
    }
}

/// `Z`, `±HH`, `±HHMM`, `±HH:MM` → seconds east of UTC; hours up to 18.
fn parse_offset(t: &str) -> Option<i32> {
    if t == "Z" || t == "z" {
        return Some(0);
    }
    let (sign, rest) = match t.as_bytes().first()? {
        b'+' => (1, &t[1..]),
        b'-' => (-1, &t[1..]),
        _ => return None,
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 => rest.split_at(2),
        None => (rest, "0"),
    };
    let all_digits =
        |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(h) || !all_digits(m) {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    if h > 18 || m > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn offsets() {
        assert_eq!(parse_offset("-07:00"), Some(-7 * 3600));
        assert_eq!(parse_offset("+0530"), Some(5 * 3600 + 1800));
        assert_eq!(parse_offset("+9"), Some(9 * 3600));
        assert_eq!(parse_offset("Z"), Some(0));
        for bad in ["+19:00", "-07:60", "+7:0:0", "++07", "-", "+123", "UTC"] {
            assert_eq!(parse_offset(bad), None, "{bad}");
        }
        assert!(DisplayZone::parse("+25:00").is_err());
        assert!(DisplayZone::parse("07:00").is_err());
    }

    #[test]
    fn daylight_saving_is_followed_in_an_iana_zone() {
        let la = DisplayZone::parse("America/Los_Angeles").unwrap();
        // 2025-03-09: PST (-8) until 02:00 local, then PDT (-7).
        assert_eq!(la.format(at("2025-03-09T09:59:00Z")), "Mar 09, 01:59 AM");
        assert_eq!(la.format(at("2025-03-09T10:00:00Z")), "Mar 09, 03:00 AM");
        // 2025-11-02: PDT until 02:00 local, which happens twice; then PST.
        assert_eq!(la.format(at("2025-11-02T08:30:00Z")), "Nov 02, 01:30 AM");
        assert_eq!(la.format(at("2025-11-02T09:30:00Z")), "Nov 02, 01:30 AM");
        assert_eq!(la.format(at("2025-11-02T10:30:00Z")), "Nov 02, 02:30 AM");
        // Summer and winter: one name, two offsets.
        assert_eq!(la.format(at("2025-10-16T14:02:32Z")), "Oct 16, 07:02 AM");
        assert_eq!(la.format(at("2025-12-16T14:02:32Z")), "Dec 16, 06:02 AM");
        // The southern hemisphere: DST in January.
        let syd = DisplayZone::parse("Australia/Sydney").unwrap();
        assert_eq!(syd.format(at("2025-01-15T00:00:00Z")), "Jan 15, 11:00 AM");
        assert_eq!(syd.format(at("2025-07-15T00:00:00Z")), "Jul 15, 10:00 AM");
    }

    #[test]
    fn a_fixed_offset_does_not_follow_daylight_saving() {
        let fixed = DisplayZone::parse("-07:00").unwrap();
        assert_eq!(fixed.format(at("2025-10-16T14:02:32Z")), "Oct 16, 07:02 AM");
        assert_eq!(fixed.format(at("2025-12-16T14:02:32Z")), "Dec 16, 07:02 AM");
        assert_eq!(fixed.name(), "-07:00");
    }

    #[test]
    fn the_machines_zone_is_the_default() {
        let z = DisplayZone::parse("").unwrap();
        let sys = TimeZone::try_system().unwrap_or(TimeZone::UTC);
        let t = at("2025-07-01T12:00:00Z");
        assert_eq!(
            z.format(t),
            t.to_zoned_datetime(sys)
                .strftime("%b %d, %I:%M %p")
                .to_string()
        );
    }
}
