//! `check -o junit`: JUnit XML for CI test tabs. One testsuite per file, one
//! testcase per workload (at its file and line), a `failure` per deny
//! violation, warnings in `system-out`, a `skipped` for workloads no policy
//! governs, and an `error` testcase per input error.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::report::{Report, WorkloadResult};
use super::sarif::file_of;

/// Escapes text for XML content and attribute values; characters XML 1.0
/// cannot carry at all (most C0 controls) become U+FFFD.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn testcase(out: &mut String, file: &str, r: &WorkloadResult) {
    let _ = write!(
        out,
        "    <testcase name=\"{}\" classname=\"{}\" file=\"{}\"",
        escape(&format!("{} {}/{}", r.kind, r.namespace, r.name)),
        escape(&format!("waf-admission.{}", r.kind)),
        escape(file)
    );
    if let Some(line) = r.line {
        let _ = write!(out, " line=\"{line}\"");
    }
    out.push_str(" time=\"0\">\n");
    if let Some(why) = &r.not_governed {
        let _ = writeln!(out, "      <skipped message=\"{}\"/>", escape(why));
    }
    for v in r
        .violations
        .iter()
        .filter(|v| v.action == "deny" && !v.patched)
    {
        let _ = writeln!(
            out,
            "      <failure type=\"{}\" message=\"{}\">[{}] ({}) {}\nFix: {}\nAt: {}</failure>",
            escape(v.rule),
            escape(&v.message),
            escape(v.rule),
            escape(v.pillar),
            escape(&v.message),
            escape(&v.fix),
            escape(&v.at(r))
        );
    }
    let mut notes: Vec<String> = r
        .violations
        .iter()
        .filter(|v| v.action != "deny" || v.patched)
        .map(|v| {
            let patched = if v.patched { " [patched]" } else { "" };
            format!(
                "{} [{}] {}{patched}. Fix: {} (at {})",
                v.action,
                v.rule,
                v.message,
                v.fix,
                v.at(r)
            )
        })
        .collect();
    notes.extend(r.exemptions.iter().map(|e| {
        format!(
            "exempt [{}] by {} until {}: {}",
            e.rule, e.exception, e.expires, e.reason
        )
    }));
    if !notes.is_empty() {
        let _ = writeln!(
            out,
            "      <system-out>{}</system-out>",
            escape(&notes.join("\n"))
        );
    }
    out.push_str("    </testcase>\n");
}

pub fn to_junit(report: &Report) -> String {
    let mut by_file: BTreeMap<&str, Vec<&WorkloadResult>> = BTreeMap::new();
    for r in &report.results {
        by_file.entry(file_of(&r.source)).or_default().push(r);
    }
    let failures = report.results.iter().filter(|r| !r.allowed).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"waf-admission\" tests=\"{}\" failures=\"{failures}\" errors=\"{}\">",
        report.results.len() + report.errors.len(),
        report.errors.len()
    );
    for (file, results) in &by_file {
        let skipped = results.iter().filter(|r| r.not_governed.is_some()).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{skipped}\">",
            escape(file),
            results.len(),
            results.iter().filter(|r| !r.allowed).count()
        );
        for r in results {
            testcase(&mut out, file, r);
        }
        out.push_str("  </testsuite>\n");
    }
    if !report.errors.is_empty() {
        let _ = writeln!(
            out,
            "  <testsuite name=\"input errors\" tests=\"{0}\" failures=\"0\" errors=\"{0}\">",
            report.errors.len()
        );
        for (i, e) in report.errors.iter().enumerate() {
            let _ = writeln!(
                out,
                "    <testcase name=\"input error {i}\" classname=\"waf-admission.input\">\n      <error message=\"{}\"/>\n    </testcase>",
                escape(&e.to_string())
            );
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_controls_cannot_break_the_document() {
        assert_eq!(
            escape("a<b & \"c\" 'd'>\u{1}"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;\u{FFFD}"
        );
    }
}
