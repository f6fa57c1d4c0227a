//! `pyjson` against what CPython's `json.dumps` actually writes.
//!
//! `tests/data/python-reference.json` was produced by `tests/data/gen_python_reference.py`
//! (CPython 3): ~800 floats (random bit patterns, epoch-like values, all magnitudes) with their
//! `repr`, ~200 strings (controls, DEL, BMP, astral) with `json.dumps`, and whole documents.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use nemo_events::pyjson;

const REFERENCE: &str = include_str!("data/python-reference.json");

#[derive(serde::Deserialize)]
struct Reference {
    floats: Vec<(u64, String)>,
    strings: Vec<(String, String)>,
    docs: Vec<(serde_json::Value, String)>,
}

fn reference() -> Reference {
    serde_json::from_str(REFERENCE).unwrap()
}

#[test]
fn floats_match_cpython_repr() {
    let r = reference();
    assert!(r.floats.len() > 700);
    for (bits, want) in &r.floats {
        let f = f64::from_bits(*bits);
        assert_eq!(pyjson::float_repr(f), *want, "bits {bits:#x}");
        // And through the serde formatter.
        assert_eq!(pyjson::to_string(&f), *want, "bits {bits:#x}");
    }
}

#[test]
fn strings_match_cpython_json_dumps() {
    let r = reference();
    assert!(r.strings.len() > 200);
    for (s, want) in &r.strings {
        assert_eq!(pyjson::escape_str(s), *want, "{s:?}");
        assert_eq!(pyjson::to_string(s), *want, "{s:?}");
    }
}

#[test]
fn documents_match_cpython_json_dumps_sort_keys() {
    for (doc, want) in reference().docs {
        // serde_json::Value without preserve_order iterates keys sorted, like sort_keys=True.
        assert_eq!(pyjson::to_string(&doc), want);
    }
}
