//! `--log-format json`: one JSON object per line, exactly as
//! tracing-subscriber's JSON format with `flatten_event(true)` writes it
//! (`timestamp`, `level`, the event's fields in order, `target`), written
//! straight into the line instead of through serde's serializer and an
//! adaptor that checks the UTF-8 of every piece it is handed: the decision
//! line is written for every AdmissionReview, and that way it cost a tenth
//! of the request path's instructions (docs/benchmarks.md).
//!
//! Events this does not write itself go to tracing-subscriber's own
//! formatter, so they read as they always did: events bridged from the
//! `log` crate (their origin is in `log.*` fields) and events inside a
//! span (which add `span` and `spans`).

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::time::SystemTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The JSON line formatter (see the module docs).
pub struct JsonLines {
    stock: Format<Json, SystemTime>,
}

impl JsonLines {
    pub fn new() -> JsonLines {
        JsonLines {
            stock: tracing_subscriber::fmt::format().json().flatten_event(true),
        }
    }
}

impl Default for JsonLines {
    fn default() -> JsonLines {
        JsonLines::new()
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let bridged = meta.fields().field("log.target").is_some();
        let in_span =
            event.parent().is_some() || (event.is_contextual() && ctx.lookup_current().is_some());
        if bridged || in_span {
            return self.stock.format_event(ctx, writer, event);
        }
        write!(
            writer,
            "{{\"timestamp\":\"{:.6}\",\"level\":\"{}\"",
            jiff::Timestamp::now(),
            meta.level().as_str()
        )?;
        let mut fields = Fields {
            out: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_str(",\"target\":")?;
        string(&mut writer, meta.target())?;
        writer.write_str("}\n")
    }
}

/// Writes each field as `,"name":value`, as tracing-serde maps them: bools
/// and integers as JSON numbers, strings as strings, everything else as the
/// string of its `Debug` (`%x` fields are `Debug` of a Display wrapper).
struct Fields<'a, 'w> {
    out: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn entry(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        self.result = (|| {
            self.out.write_char(',')?;
            string(self.out, field.name())?;
            self.out.write_char(':')?;
            value(self.out)
        })();
    }
}

impl Visit for Fields<'_, '_> {
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, |w| w.write_str(if value { "true" } else { "false" }));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, |w| write!(w, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, |w| write!(w, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // serde_json's own number text (and `null` for what JSON lacks).
        self.entry(field, |w| {
            w.write_str(&serde_json::to_string(&value).map_err(|_| fmt::Error)?)
        });
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, |w| string(w, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.entry(field, |w| {
            w.write_char('"')?;
            write!(Escaped(w), "{value:?}")?;
            w.write_char('"')
        });
    }
}

/// `s` as a JSON string.
fn string(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    out.write_char('"')?;
    escape(out, s)?;
    out.write_char('"')
}

/// Writes what it is given escaped for the inside of a JSON string.
struct Escaped<'a, W>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape(self.0, s)
    }
}

/// JSON string escaping as serde_json writes it: `"` and `\`, the short
/// forms `\b \t \n \f \r`, other control characters as `\u00xx`; all else,
/// non-ASCII included, as it is.
fn escape(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            b'\t' => "\\t",
            b'\n' => "\\n",
            0x0C => "\\f",
            b'\r' => "\\r",
            0x00..=0x1F => "",
            _ => continue,
        };
        // Every byte matched is ASCII, so `i` is a character boundary.
        out.write_str(&s[start..i])?;
        if short.is_empty() {
            write!(out, "\\u{b:04x}")?;
        } else {
            out.write_str(short)?;
        }
        start = i + 1;
    }
    out.write_str(&s[start..])
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Lines {
        /// A subscriber's writer into these lines.
        fn writer(&self) -> impl Fn() -> Lines + 'static {
            let sink = self.clone();
            move || sink.clone()
        }

        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[derive(Debug)]
    #[allow(dead_code)] // read by Debug only
    enum Operation {
        Create,
    }

    /// Every kind of field the code logs, and strings that need escaping.
    fn events() {
        let error = std::io::Error::other("disk \"full\"\n");
        let awkward =
            "quote \" backslash \\ tab \t newline \n nul \u{0} bell \u{7} del \u{7f} é ✓ 🚀";
        tracing::info!(
            endpoint = "validate",
            uid = %"0000-1111",
            operation = ?Operation::Create,
            dry_run = false,
            micros = 42u64,
            delta = -7i64,
            ratio = 0.25f64,
            nan = f64::NAN,
            big = 1u128 << 100,
            "admission decision"
        );
        tracing::warn!(error = %error, "could not write {}", "the report");
        tracing::error!(awkward, "{awkward}");
        tracing::info!(target: "custom::target", "no fields but the message");
        tracing::debug!(skipped = true, "below the filter");
    }

    /// The lines `events` makes with `format` (the stock JSON format, or ours).
    fn lines(ours: bool) -> String {
        let sink = Lines::default();
        let builder = tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_writer(sink.writer())
            .json()
            .flatten_event(true);
        if ours {
            tracing::subscriber::with_default(
                builder.event_format(JsonLines::new()).finish(),
                events,
            );
        } else {
            tracing::subscriber::with_default(builder.finish(), events);
        }
        sink.text()
    }

    /// A line without its timestamp's value, which differs by the clock.
    fn untimed(line: &str) -> (String, String) {
        let rest = line
            .strip_prefix("{\"timestamp\":\"")
            .unwrap_or_else(|| panic!("no timestamp first: {line}"));
        let (stamp, rest) = rest.split_once('"').unwrap();
        (stamp.to_owned(), rest.to_owned())
    }

    #[test]
    fn lines_are_byte_for_byte_those_of_tracing_subscribers_json() {
        let (stock, ours) = (lines(false), lines(true));
        assert_eq!(stock.lines().count(), 4, "{stock}");
        assert_eq!(ours.lines().count(), 4, "{ours}");
        for (s, o) in stock.lines().zip(ours.lines()) {
            let (s_stamp, s_rest) = untimed(s);
            let (o_stamp, o_rest) = untimed(o);
            assert_eq!(o_rest, s_rest);
            // Same shape: 2026-12-01T20:04:51.904584Z.
            assert_eq!(o_stamp.len(), s_stamp.len(), "{o_stamp} against {s_stamp}");
            assert!(
                o_stamp.ends_with('Z') && o_stamp.as_bytes()[19] == b'.',
                "{o_stamp}"
            );
            let parsed: jiff::Timestamp = o_stamp.parse().unwrap();
            let stock_time: jiff::Timestamp = s_stamp.parse().unwrap();
            assert!((parsed - stock_time).get_seconds().abs() < 60);
            serde_json::from_str::<serde_json::Value>(o).unwrap();
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut every: String = (0u32..0x80).filter_map(char::from_u32).collect();
        every.push_str("é✓🚀\u{2028}\u{feff}");
        let mut ours = String::new();
        string(&mut ours, &every).unwrap();
        assert_eq!(ours, serde_json::to_string(&every).unwrap());
    }

    #[test]
    fn events_inside_a_span_keep_the_span_as_tracing_subscriber_writes_it() {
        let sink = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(sink.writer())
            .json()
            .flatten_event(true)
            .event_format(JsonLines::new())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("audit", run = 3);
            let _inside = span.enter();
            tracing::info!("judged");
        });
        let line: serde_json::Value = serde_json::from_str(sink.text().trim()).unwrap();
        assert_eq!(line["span"]["name"], "audit", "{line}");
        assert_eq!(line["span"]["run"], 3, "{line}");
        assert_eq!(line["message"], "judged");
    }
}
