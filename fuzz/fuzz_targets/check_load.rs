//! Manifest text → `check`'s loader (`check::load::parse_text`, which reads
//! JSON and YAML as kubectl does), then the whole `check` run over it and
//! every output format.
//!
//! Invariants: no panic; problems are reported as errors, never panics;
//! every document is a mapping, named after its input, at a line inside
//! the text; every result names a line inside the text; the exit code is
//! 0, 1 or 2; text, JSON, SARIF and JUnit outputs render.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use waf_admission::check::load::{Loaded, parse_text};
use waf_admission::check::{self, junit, sarif};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut loaded = Loaded::default();
    parse_text(text, "fuzz.yaml", &mut loaded);
    // Lines are counted from 1, as YAML counts them (a lone CR breaks a line
    // too); a document may start on the line after the last.
    let last_line =
        text.matches('\n').count() + text.matches('\r').count() - text.matches("\r\n").count() + 1;
    for doc in &loaded.documents {
        assert!(doc.source.starts_with("fuzz.yaml#"), "{}", doc.source);
        assert!(doc.value.is_object(), "{}: not a mapping", doc.source);
        assert!(
            (1..=last_line).contains(&doc.line),
            "{}: line {} of {last_line}",
            doc.source,
            doc.line
        );
        assert!(doc.line_near("/spec/template/spec/containers/0/image") <= last_line);
    }
    for (source, _) in &loaded.skipped {
        assert!(source.starts_with("fuzz.yaml#"), "{source}");
    }
    for e in &loaded.errors {
        assert!(e.to_string().contains("fuzz.yaml#"), "{e}");
    }

    let sets = common::policy_sets();
    let (_, set) = &sets[text.len() % sets.len()];
    let report = check::run(set, loaded, common::now());
    assert!(matches!(report.exit_code(), 0..=2));
    for r in &report.results {
        assert!(r.source.starts_with("fuzz.yaml#"), "{}", r.source);
        for line in r
            .line
            .iter()
            .chain(r.violations.iter().filter_map(|v| v.line.as_ref()))
        {
            assert!(
                (1..=last_line).contains(&(*line as usize)),
                "{}: line {line}",
                r.source
            );
        }
        if r.patch.is_empty() {
            assert!(r.violations.iter().all(|v| !v.patched), "{}", r.source);
        }
    }
    serde_json::to_string(&report.to_json()).expect("the JSON report serializes");
    let _ = report.to_text(false);
    let _ = sarif::to_sarif(&report);
    let _ = junit::to_junit(&report);
});
