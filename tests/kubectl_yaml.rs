//! `check` reads every manifest as kubectl reads it: for each file of the
//! repository's corpora (tests/fixtures, examples, manifests), the JSON the
//! library's decoder gives equals the JSON kubectl's own decoder gives
//! (`kubectl patch --local -f FILE --type merge -p '{}' -o json` decodes
//! offline and prints every object, Lists flattened). Numbers compare by
//! value, so 1 and 1.0 are equal. kubectl is required: without it this test
//! fails, naming it.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use waf_admission::yaml;

fn manifests(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        // Price tables (the Retail Prices API's pages, `check --prices`
        // input) are not Kubernetes objects.
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name == "prices" || name == "prices.yaml" {
            continue;
        }
        if path.is_dir() {
            manifests(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(path);
        }
    }
}

fn corpus() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["tests/fixtures", "examples", "manifests"] {
        manifests(&root.join(dir), &mut files);
    }
    files.sort();
    files
}

/// What kubectl decodes: the objects it prints, and whether it refused to
/// decode the file.
fn kubectl(file: &Path) -> (Vec<Value>, Option<String>) {
    let out = Command::new("kubectl")
        .args([
            "patch", "--local", "--type", "merge", "-p", "{}", "-o", "json", "-f",
        ])
        .arg(file)
        .output()
        .unwrap_or_else(|e| {
            panic!("kubectl is needed for this test (its decoder is the reference): {e}")
        });
    let stdout = String::from_utf8(out.stdout).unwrap();
    let printed = serde_json::Deserializer::from_str(&stdout)
        .into_iter::<Value>()
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("{}: kubectl printed no JSON stream: {e}", file.display()));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let refused = (!out.status.success() || !stderr.is_empty()).then_some(stderr);
    (printed, refused)
}

/// What `check` decodes, flattened and filtered as kubectl prints it: the
/// items of a List (an object with `items`), only objects with a kind and an
/// apiVersion. The error, if reading stopped at one.
fn ours(text: &str) -> (Vec<Value>, Option<yaml::Error>) {
    let mut objects = Vec::new();
    for doc in yaml::documents(text) {
        match doc {
            Ok(doc) => match doc.value.get("items") {
                Some(Value::Array(items)) => objects.extend(items.iter().cloned()),
                _ => objects.push(doc.value),
            },
            Err(e) => return (objects.into_iter().filter(is_object).collect(), Some(e)),
        }
    }
    (objects.into_iter().filter(is_object).collect(), None)
}

fn is_object(v: &Value) -> bool {
    ["kind", "apiVersion"].iter().all(|f| {
        v.get(f)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    })
}

/// The first place two values differ, numbers compared by value.
fn difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let same = match (x.as_i64(), y.as_i64()) {
                (Some(i), Some(j)) => i == j,
                _ => x.as_f64() == y.as_f64(),
            };
            (!same).then(|| format!("{at}: {x} vs {y}"))
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Some(format!("{at}: {} items vs {}", x.len(), y.len()));
            }
            x.iter()
                .zip(y)
                .enumerate()
                .find_map(|(i, (x, y))| difference(x, y, &format!("{at}/{i}")))
        }
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                let at = format!("{at}/{k}");
                match (x.get(k), y.get(k)) {
                    (Some(x), Some(y)) => {
                        if let Some(d) = difference(x, y, &at) {
                            return Some(d);
                        }
                    }
                    (x, y) => return Some(format!("{at}: {x:?} vs {y:?}")),
                }
            }
            None
        }
        (x, y) => (x != y).then(|| format!("{at}: {x} vs {y}")),
    }
}

#[test]
fn check_reads_every_corpus_manifest_as_kubectl_does() {
    let files = corpus();
    assert!(files.len() >= 90, "only {} manifests found", files.len());
    let mut objects = 0;
    for file in &files {
        let at = file.display();
        let text = std::fs::read_to_string(file).unwrap();
        let (theirs, refused) = kubectl(file);
        let (mine, error) = ours(&text);
        match (&refused, &error) {
            (None, Some(e)) => panic!("{at}: kubectl reads it, check refuses it: {e}"),
            (Some(why), None) if why.contains("error parsing") => {
                panic!("{at}: kubectl refuses it ({why}), check reads it")
            }
            (Some(why), None) => panic!("{at}: kubectl could not handle it: {why}"),
            _ => {}
        }
        assert_eq!(
            mine.len(),
            theirs.len(),
            "{at}: check reads {} objects, kubectl {}",
            mine.len(),
            theirs.len()
        );
        for (i, (m, t)) in mine.iter().zip(&theirs).enumerate() {
            if let Some(d) = difference(m, t, "") {
                panic!("{at}, object {i}: check and kubectl differ at {d}");
            }
        }
        objects += mine.len();
    }
    assert!(objects > 150, "only {objects} objects compared");
}

/// The rules that make YAML 1.1 differ from YAML 1.2, each checked against
/// kubectl itself, so that the unit tests' expectations are kubectl's.
#[test]
fn yaml_1_1_edge_cases_read_as_kubectl_reads_them() {
    let dir = std::env::temp_dir().join(format!("waf-kubectl-yaml-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        "defaultMode: 0400\nb: 0o17\nc: 0x1F\nd: 0b101\ne: 0b-101\nf: 08\ng: 1_000\nh: -0\n",
        "a: yes\nb: Yes\nc: YES\nd: y\ne: N\nf: on\ng: Off\nh: yEs\ni: 'yes'\nj: \"on\"\n",
        "a: ~\nb: null\nc:\nd: NULL\ne: nULL\n",
        "a: 1.5\nb: .5\nc: +.5\nd: 1.\ne: 1e5\nf: 1e400\ng: .5_0\nh: ._5\ni: 99999999999999999999\nj: 18446744073709551615\n",
        "a: 2001-12-14\nb: !!timestamp 2001-12-14t21:59:43.10-05:00\nc: !!str 12\nd: !!int '0x10'\ne: !!float 1\nf: !foo bar\ng: ! 12\nh: !!binary aGVsbG8=\n",
        "1: a\n1.5: b\n1e10: c\ny: d\n0x10: e\n1234567.0: f\n-0.0: g\n.inf: h\n",
        "x: &x {p: 1}\ny: *x\nz: {<<: *x, q: 2}\nm:\n  a: 1\n  <<: [{a: 2, b: 3}, {a: 4, c: 5}]\n  c: 9\nd: {a: 1, a: 2}\n",
    ];
    for (i, case) in cases.iter().enumerate() {
        let text = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}}}\ndata:\n{}",
            indent(case)
        );
        let file = dir.join(format!("case-{i}.yaml"));
        std::fs::write(&file, &text).unwrap();
        let (theirs, refused) = kubectl(&file);
        assert!(
            refused.is_none(),
            "case {i}: kubectl refused it: {refused:?}"
        );
        let (mine, error) = ours(&text);
        assert!(error.is_none(), "case {i}: {error:?}");
        assert_eq!(mine.len(), 1, "case {i}");
        if let Some(d) = difference(&mine[0], &theirs[0], "") {
            panic!("case {i}: check and kubectl differ at {d}");
        }
    }
    // Whole files: a byte-order mark, CRLF line ends, separators with
    // comments, a JSON stream, text after `...`.
    for (i, text) in [
        "\u{feff}apiVersion: v1\r\nkind: ConfigMap\r\nmetadata: {name: a}\r\ndata:\r\n  a: yes\r\n  b: |\r\n    x\r\n    y\r\n---\r\napiVersion: v1\r\nkind: ConfigMap\r\nmetadata: {name: b}\r\n",
        "# preamble\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n--- # next\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}, data: {x: off}}\n",
        "  {\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"metadata\": {\"name\": \"a\"}, \"data\": {\"a\": \"1\", \"a\": \"2\"}}\n{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"metadata\": {\"name\": \"b\"}}\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n...\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: never}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    ]
    .iter()
    .enumerate()
    {
        let file = dir.join(format!("file-{i}.yaml"));
        std::fs::write(&file, text).unwrap();
        let (theirs, refused) = kubectl(&file);
        assert!(refused.is_none(), "file {i}: kubectl refused it: {refused:?}");
        let (mine, error) = ours(text);
        assert!(error.is_none(), "file {i}: {error:?}");
        assert_eq!(mine.len(), theirs.len(), "file {i}: {mine:?} vs {theirs:?}");
        for (m, t) in mine.iter().zip(&theirs) {
            if let Some(d) = difference(m, t, "") {
                panic!("file {i}: check and kubectl differ at {d}");
            }
        }
    }
    // What kubectl refuses, check refuses too.
    for (i, case) in [
        "a: .inf\n",
        "~: 1\n",
        "18446744073709551615: x\n",
        "a: !!int 1.5\n",
        "a: &a [*a]\n",
        "a: *nope\n",
        "<<: [{c: 1}, x]\n",
        "a: !!binary aGVsbG8\n",
        "? [a, b]\n: x\n",
    ]
    .iter()
    .enumerate()
    {
        let text = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: r{i}}}\ndata:\n{}",
            indent(case)
        );
        let file = dir.join(format!("refused-{i}.yaml"));
        std::fs::write(&file, &text).unwrap();
        let (_, refused) = kubectl(&file);
        assert!(
            refused
                .as_deref()
                .is_some_and(|r| r.contains("error parsing")),
            "refused case {i}: kubectl read it: {refused:?}"
        );
        let (_, error) = ours(&text);
        let error = error.unwrap_or_else(|| panic!("refused case {i}: check read it"));
        assert_eq!(error.line, 5, "refused case {i}: {error}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

#[path = "kubectl_yaml/generate.rs"]
mod generate;

/// One generated file: its text and how many documents it was made of.
struct Batch {
    text: String,
    documents: Vec<String>,
    json: bool,
}

/// A stream of `n` random documents in one file-level style: CRLF or LF,
/// a byte-order mark, Helm's `# Source:` separators, empty and
/// comment-only documents, `...` ends, or a JSON stream.
fn batch(rng: &mut generate::Rng, n: usize) -> Batch {
    let json = rng.one_in(10);
    let crlf = rng.one_in(8);
    let helm = rng.one_in(4);
    let mut text = String::new();
    if rng.one_in(20) {
        text.push('\u{feff}');
    }
    let mut documents = Vec::new();
    for i in 0..n {
        let object = generate::object(rng, 0);
        let doc = if json {
            let mut d = if rng.one_in(2) {
                serde_json::to_string_pretty(&object).unwrap()
            } else {
                serde_json::to_string(&object).unwrap()
            };
            d.push('\n');
            d
        } else {
            let style = generate::Style::random(rng);
            let mut w = generate::Writer::new(rng, style);
            w.document(&object);
            w.finish()
        };
        if !json {
            let separator = if helm {
                format!("---\n# Source: chart/templates/t{i}.yaml\n")
            } else {
                (*rng.pick(&[
                    "---\n",
                    "---\n",
                    "--- # next\n",
                    "---\n---\n",
                    "---\n# only a comment\n---\n",
                    "...\n---\n",
                ]))
                .to_owned()
            };
            // Before the first document, only an opening `---` (a `...`
            // there, or JSON first in a YAML stream, kubectl refuses: rarely,
            // so that most files are compared object by object).
            if i == 0 && (doc.starts_with('{') || rng.one_in(2)) && !rng.one_in(30) {
                text.push_str("---\n");
            } else if i > 0 {
                text.push_str(&separator);
            }
        }
        text.push_str(&doc);
        documents.push(doc);
    }
    if crlf {
        text = text.replace('\n', "\r\n");
        for d in &mut documents {
            *d = d.replace('\n', "\r\n");
        }
    }
    Batch {
        text,
        documents,
        json,
    }
}

/// Whether kubectl and check both refused `text` (`Ok(true)`) or read it
/// alike, or where they part.
fn agreement(file: &Path, text: &str) -> Result<bool, String> {
    std::fs::write(file, text).unwrap();
    let (theirs, refused) = kubectl(file);
    let (mine, error) = ours(text);
    match (&refused, &error) {
        (None, Some(e)) => return Err(format!("kubectl reads it, check refuses it: {e}")),
        (Some(why), None) => return Err(format!("kubectl refuses it ({why}), check reads it")),
        (Some(_), Some(_)) => return Ok(true),
        (None, None) => {}
    }
    if mine.len() != theirs.len() {
        return Err(format!(
            "check reads {} objects, kubectl {}",
            mine.len(),
            theirs.len()
        ));
    }
    match mine
        .iter()
        .zip(&theirs)
        .enumerate()
        .find_map(|(i, (m, t))| difference(m, t, "").map(|d| format!("object {i}: {d}")))
    {
        Some(d) => Err(d),
        None => Ok(false),
    }
}

/// Thousands of generated documents, in the styles real manifests use,
/// read by check and by kubectl: refused or not, the same objects in the
/// same order, equal down to every container's name and image. Seeded
/// (WAF_YAML_SEED overrides the seed; the failing seed is printed) and
/// batched, one kubectl call per multi-document file; a disagreement is
/// narrowed to one document, written out for reproduction.
#[test]
fn generated_manifests_read_as_kubectl_reads_them() {
    let seed: u64 = std::env::var("WAF_YAML_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(22);
    let batches: usize = std::env::var("WAF_YAML_BATCHES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(125);
    let dir = std::env::temp_dir().join(format!(
        "waf-kubectl-generated-{seed}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = generate::Rng::new(seed);
    let started = std::time::Instant::now();
    let mut documents = 0;
    let mut refused = 0;
    for b in 0..batches {
        let batch = batch(&mut rng, 40);
        documents += batch.documents.len();
        let file = dir.join(format!("batch-{b}.yaml"));
        let why = match agreement(&file, &batch.text) {
            Ok(both_refused) => {
                refused += usize::from(both_refused);
                continue;
            }
            Err(why) => why,
        };
        // Narrow it down to one document, alone in its file.
        let mut culprit = None;
        if !batch.json {
            for (d, doc) in batch.documents.iter().enumerate() {
                let one = dir.join(format!("batch-{b}-document-{d}.yaml"));
                if let Err(why) = agreement(&one, doc) {
                    culprit = Some((one, why));
                    break;
                }
                std::fs::remove_file(&one).ok();
            }
        }
        match culprit {
            Some((one, why)) => panic!(
                "seed {seed}: check and kubectl part on {} (from {}): {why}",
                one.display(),
                file.display()
            ),
            None => panic!(
                "seed {seed}: check and kubectl part on {}: {why}",
                file.display()
            ),
        }
    }
    assert!(documents >= 4000, "only {documents} documents");
    // Most files are read: the comparison is of objects, not of refusals.
    assert!(
        refused * 5 < batches,
        "seed {seed}: {refused} of {batches} files in {} refused by both",
        dir.display()
    );
    std::fs::remove_dir_all(&dir).ok();
    eprintln!(
        "{documents} generated documents in {batches} files read alike by check and kubectl \
         ({refused} files refused by both) in {:.1?} (seed {seed})",
        started.elapsed()
    );
}
