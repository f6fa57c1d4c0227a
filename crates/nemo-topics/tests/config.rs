//! The `[topics]` table: parsing, and errors that name the key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use nemo_topics::{ConfigError, Rewrite, TopicMapper, TopicsConfig};

#[derive(serde::Deserialize)]
struct Root {
    topics: TopicsConfig,
}

fn parse(toml_text: &str) -> TopicsConfig {
    toml::from_str::<Root>(toml_text).unwrap().topics
}

fn err(toml_text: &str) -> ConfigError {
    TopicMapper::from_config(&parse(toml_text)).unwrap_err()
}

#[test]
fn full_table_parses_and_builds() {
    let cfg = parse(
        r#"
        [topics]
        prefix = "site-a/nemo"
        rewrites = [{ from = "nemo", to = "site-a/nemo" }]
        state_topics = true
        state_retain = false
        fallback = "{prefix}/other/{kind}"

        [topics.routes]
        tool_enabled = "{prefix}/tools/{tool_id}/in-use"
        "task_*" = "{prefix}/tasks/{task_id}"
        "#,
    );
    assert_eq!(cfg.prefix, "site-a/nemo");
    assert_eq!(
        cfg.rewrites,
        vec![Rewrite {
            from: "nemo".into(),
            to: "site-a/nemo".into()
        }]
    );
    assert!(cfg.state_topics && !cfg.state_retain);
    assert_eq!(cfg.routes.len(), 2);
    assert!(TopicMapper::from_config(&cfg).is_ok());
}

#[test]
fn empty_table_is_the_default() {
    assert_eq!(parse("[topics]\n"), TopicsConfig::default());
    assert!(TopicMapper::from_config(&TopicsConfig::default()).is_ok());
}

#[test]
fn unknown_keys_are_rejected() {
    let e = toml::from_str::<Root>("[topics]\nprefx = \"nemo\"\n")
        .err()
        .unwrap();
    assert!(e.to_string().contains("prefx"), "{e}");
    let e = toml::from_str::<Root>("[topics]\nrewrites = [{ from = \"a\", too = \"b\" }]\n")
        .err()
        .unwrap();
    assert!(e.to_string().contains("too"), "{e}");
}

#[test]
fn template_errors_name_the_route_the_value_and_the_problem() {
    let cases = [
        (
            "tool_enabled = \"{prefix}/tools/{tool_idd}\"",
            "routes.tool_enabled",
            "unknown placeholder '{tool_idd}'",
        ),
        (
            "tool_enabled = \"{prefix}/tools/{tool_id\"",
            "routes.tool_enabled",
            "'{' at byte 15 is not closed",
        ),
        (
            "tool_disabled = \"{prefix}/tools/tool_id}\"",
            "routes.tool_disabled",
            "'}' at byte 22 has no matching '{'",
        ),
        (
            "area_updated = \"{prefix}/areas/+\"",
            "routes.area_updated",
            "the wildcard '+'",
        ),
        (
            "area_updated = \"{prefix}/#\"",
            "routes.area_updated",
            "the wildcard '#'",
        ),
        (
            "area_updated = \"{prefix}//{area_id}\"",
            "routes.area_updated",
            "empty topic level",
        ),
        (
            "area_updated = \"{prefix}/areas/\"",
            "routes.area_updated",
            "empty topic level",
        ),
        (
            "area_updated = \"\"",
            "routes.area_updated",
            "the template is empty",
        ),
        (
            "area_updated = \"{prefix}/{}\"",
            "routes.area_updated",
            "invalid placeholder '{}'",
        ),
        (
            "my_kind = \"{prefix}/{a-b}\"",
            "routes.my_kind",
            "invalid placeholder '{a-b}'",
        ),
        (
            "\"task_*\" = \"{prefix}/{task_id\"",
            "routes.task_*",
            "not closed",
        ),
        (
            "\"bad key\" = \"{prefix}\"",
            "routes.bad key",
            "route key must be an event kind",
        ),
    ];
    for (line, key, fragment) in cases {
        let e = err(&format!("[topics.routes]\n{line}\n"));
        assert_eq!(e.key(), key, "{line}");
        let msg = e.to_string();
        assert!(msg.starts_with(&format!("invalid topics.{key}")), "{msg}");
        assert!(msg.contains(fragment), "{line}: {msg}");
    }
}

#[test]
fn unknown_placeholder_error_lists_the_allowed_names() {
    let e = err("[topics.routes]\ntool_operational = \"{prefix}/{user_name}\"\n");
    assert_eq!(
        e.to_string(),
        "invalid topics.routes.tool_operational = \"{prefix}/{user_name}\": unknown placeholder '{user_name}'; allowed: prefix, kind, tool_id, tool_name, event, operational, timestamp"
    );
}

#[test]
fn unknown_kinds_may_use_any_field() {
    let cfg = parse("[topics.routes]\nmy_kind = \"{prefix}/mine/{whatever_field}\"\n");
    assert!(TopicMapper::from_config(&cfg).is_ok());
}

#[test]
fn prefix_rewrite_fallback_and_state_errors_name_their_key() {
    let cases = [
        ("prefix = \"nemo/#\"", "prefix", "wildcard"),
        ("prefix = \"\"", "prefix", "empty"),
        ("prefix = \"site//nemo\"", "prefix", "empty topic level"),
        (
            "rewrites = [{ from = \"nemo\", to = \"a\" }, { from = \"x/\", to = \"y\" }]",
            "rewrites[1].from",
            "empty topic level",
        ),
        (
            "rewrites = [{ from = \"nemo\", to = \"a/+\" }]",
            "rewrites[0].to",
            "wildcard '+'",
        ),
        (
            "fallback = \"{prefix}/events/{kind\"",
            "fallback",
            "not closed",
        ),
        (
            "state_topics = true\nstate_template = \"{prefix}/state/#\"",
            "state_template",
            "wildcard '#'",
        ),
    ];
    for (line, key, fragment) in cases {
        let e = err(&format!("[topics]\n{line}\n"));
        assert_eq!(e.key(), key, "{line}");
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("invalid topics.{key} = ")),
            "{msg}"
        );
        assert!(msg.contains(fragment), "{line}: {msg}");
    }
}

#[test]
fn mapper_is_shareable() {
    fn assert_send_sync<T: Send + Sync + Clone + std::fmt::Debug>() {}
    assert_send_sync::<TopicMapper>();
}

#[test]
fn tool_placeholders_are_accepted_for_every_kind() {
    let cfg = parse(
        "[topics.routes]\nreservation_created = \"{prefix}/tools/{tool_id}/reservations/{tool_name}\"\n",
    );
    let m = TopicMapper::from_config(&cfg).unwrap();
    let item = nemo_events::QueueItem::from_payload(
        nemo_events::Topic::new("nemo/reservations/1").unwrap(),
        r#"{"event": "reservation_created", "reservation_id": 1, "tool_id": 4, "tool_name": "SEM"}"#,
    );
    assert_eq!(
        m.map_item(&item, None).unwrap()[0].topic.as_str(),
        "nemo/tools/4/reservations/SEM"
    );
    // ... but other fields a reservation does not carry are typos
    let e = err("[topics.routes]\nreservation_created = \"{prefix}/{area_idd}\"\n");
    assert_eq!(
        e.to_string(),
        "invalid topics.routes.reservation_created = \"{prefix}/{area_idd}\": unknown placeholder '{area_idd}'; allowed: prefix, kind, tool_id, tool_name, event, reservation_id, user_id, user_name, start_time, end_time, timestamp"
    );
}
