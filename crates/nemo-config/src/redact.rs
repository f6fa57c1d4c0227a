//! The one redaction of secrets inside URLs.
//!
//! Every URL the configuration takes may carry a secret (docs/configuration.md): the password
//! of the user-info part (`redis://:pw@host/1`, `postgres://user:pw@host/db`,
//! `mqtt://user:pw@broker`), and query parameters that hold a password: `password=` (libpq
//! style), `sentinelPassword=` (Redis Sentinel), `sslpassword=` (libpq's client-key
//! passphrase). [`redact_url`] replaces each of them by `***`, whatever the scheme, and leaves
//! everything else — user name, host, port, path, other parameters — as written, so a printed
//! URL still says where the program connects.

use crate::REDACTED;

/// Query parameters whose value is a secret (compared without regard to case).
pub const SECRET_PARAMS: &[&str] = &["password", "sentinelPassword", "sslpassword"];

/// `url` with every password replaced by `***`: the password of the user-info part and the
/// values of the query parameters in [`SECRET_PARAMS`]. Any scheme. A user name without a
/// password is kept (`redis://bridge@host`). A password holding an unencoded `@`, `?` or `/`
/// is still hidden whole; percent-encoded ones are hidden as written.
///
/// ```
/// use nemo_config::redact_url;
/// assert_eq!(redact_url("redis://:pw@h:6379/1"), "redis://:***@h:6379/1");
/// assert_eq!(redact_url("postgres://bridge:p%40ss@db/nemo?sslmode=require"),
///            "postgres://bridge:***@db/nemo?sslmode=require");
/// assert_eq!(
///     redact_url("redis-sentinel://s1:26379/1?sentinelServiceName=m&sentinelPassword=pw"),
///     "redis-sentinel://s1:26379/1?sentinelServiceName=m&sentinelPassword=***");
/// assert_eq!(redact_url("postgres://h/nemo?user=b&password=pw"), "postgres://h/nemo?user=b&password=***");
/// assert_eq!(redact_url("mqtt://broker:1883"), "mqtt://broker:1883");
/// ```
pub fn redact_url(url: &str) -> String {
    let (head, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let (userinfo_end, rest) = match userinfo_end(rest) {
        Some(at) => (Some(at), rest),
        None => (None, rest),
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(head);
    let after_userinfo = match userinfo_end {
        Some(at) if !head.is_empty() => {
            let userinfo = &rest[..at];
            match userinfo.split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(REDACTED);
                }
                None => out.push_str(userinfo),
            }
            &rest[at..]
        }
        _ => rest,
    };
    match after_userinfo.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            out.push_str(&redact_query(query));
        }
        None => out.push_str(after_userinfo),
    }
    out
}

/// Where the user-info part of `rest` (the URL after `scheme://`) ends: the last `@` before
/// the path, or else the last `@` before the query (a password with an unencoded `/`).
fn userinfo_end(rest: &str) -> Option<usize> {
    let slash = rest.find('/').unwrap_or(rest.len());
    let query = rest.find(['?', '#']).unwrap_or(rest.len());
    let before_path = rest[..slash].rfind('@');
    let before_query = rest[..query].rfind('@');
    before_path.max(before_query)
}

/// A query string with the values of [`SECRET_PARAMS`] replaced (the fragment, if any, kept).
fn redact_query(query: &str) -> String {
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let mut out: String = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_param(name) => format!("{name}={REDACTED}"),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&");
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// True for a query parameter whose value is a secret ([`SECRET_PARAMS`], any case).
///
/// ```
/// assert!(nemo_config::is_secret_param("sentinelpassword"));
/// assert!(!nemo_config::is_secret_param("sentinelServiceName"));
/// ```
pub fn is_secret_param(name: &str) -> bool {
    SECRET_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn userinfo_passwords_of_every_scheme() {
        for (url, want) in [
            ("redis://:pw@h:1/1", "redis://:***@h:1/1"),
            ("redis://u:pw@h", "redis://u:***@h"),
            ("rediss://bridge:pw@h:1/2", "rediss://bridge:***@h:1/2"),
            ("redis://u@h/1", "redis://u@h/1"),
            ("redis://h:6379/1", "redis://h:6379/1"),
            ("redis://:p@ss@h/1", "redis://:***@h/1"),
            ("mqtt://bob:pw1@broker:1883", "mqtt://bob:***@broker:1883"),
            ("mqtts://bob:pw@[::1]:8883", "mqtts://bob:***@[::1]:8883"),
            ("postgres://u:p%40ss@h:5/d", "postgres://u:***@h:5/d"),
            ("postgresql://u:%2F%3F%23@h/d", "postgresql://u:***@h/d"),
            ("redis://:pa?ss@h/1", "redis://:***@h/1"),
            ("redis://:pa/ss@h/1", "redis://:***@h/1"),
            ("sqlite:///srv/nemo.sqlite3", "sqlite:///srv/nemo.sqlite3"),
            ("", ""),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn sentinel_and_password_parameters() {
        assert_eq!(
            redact_url(
                "redis-sentinel://:a@s1:26379,s2:26379/1?sentinelServiceName=m&sentinelPassword=b&node=s3:26379"
            ),
            "redis-sentinel://:***@s1:26379,s2:26379/1?sentinelServiceName=m&sentinelPassword=***&node=s3:26379"
        );
        assert_eq!(
            redact_url("redis-sentinel://s1:26379/1?SENTINELPASSWORD=x"),
            "redis-sentinel://s1:26379/1?SENTINELPASSWORD=***"
        );
        assert_eq!(
            redact_url("postgresql://u:p%40ss@h:5/d?password=x&sslrootcert=/ca.pem&sslpassword=y"),
            "postgresql://u:***@h:5/d?password=***&sslrootcert=/ca.pem&sslpassword=***"
        );
        assert_eq!(
            redact_url("postgres://h/d?user=a@b&password=x#frag"),
            "postgres://h/d?user=a@b&password=***#frag"
        );
        assert_eq!(
            redact_url("redis-cluster://h:1?node=h2:2"),
            "redis-cluster://h:1?node=h2:2"
        );
    }

    proptest! {
        /// Whatever the password (any characters, percent-encoded or not, except the
        /// separators `&` `#` that end a parameter), it never survives redaction, and
        /// the host stays readable.
        #[test]
        fn no_password_survives(
            pw in "[a-zA-Z0-9%@:!$'()*+,;=._~-]{6,24}",
            scheme in prop::sample::select(vec!["redis", "rediss", "redis-sentinel", "postgres", "postgresql", "mqtt", "mqtts"]),
        ) {
            let marked = format!("Zq{pw}Zq");
            for url in [
                format!("{scheme}://user:{marked}@host.lab:1/1"),
                format!("{scheme}://:{marked}@host.lab:1/1?x=1"),
                format!("{scheme}://host.lab:1/1?sentinelServiceName=m&sentinelPassword={marked}"),
                format!("{scheme}://host.lab:1/1?password={marked}&sslmode=require"),
            ] {
                let shown = redact_url(&url);
                prop_assert!(!shown.contains(&marked), "{} -> {}", url, shown);
                prop_assert!(shown.contains("host.lab:1"), "{} -> {}", url, shown);
            }
        }
    }
}
