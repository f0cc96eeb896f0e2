//! Reading manifests: files, folders (recursive, *.yaml|*.yml|*.json) and
//! stdin; multi-document YAML and `kind: List`. Every document carries its
//! source (`deploy/llm.yaml#0`, `list.yaml#0/items/3`) so that every result
//! and every error says where it came from. The text is decoded as kubectl
//! decodes it ([`crate::yaml`]): what `check` judges is what the cluster
//! would be sent.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use serde_json::Value;

use crate::error::Error;
use crate::policy::compiled::{Policy, PolicySet};
use crate::policy::{API_VERSION, WellArchitectedPolicy};
use crate::workload::typed;
use crate::yaml::{self, FieldLines};

/// One Kubernetes object read from the input.
#[derive(Clone, Debug)]
pub struct Document {
    pub source: String,
    pub value: Value,
    /// The line of its file where the object starts.
    pub line: usize,
    fields: Arc<FieldLines>,
    /// Where this object sits in its YAML document (`/items/3` in a List).
    root: String,
}

impl Document {
    /// The document's place (source, lines), without its object.
    pub fn clone_without_value(&self) -> Document {
        Document {
            source: self.source.clone(),
            value: Value::Null,
            line: self.line,
            fields: Arc::clone(&self.fields),
            root: self.root.clone(),
        }
    }

    /// The line of a field of this object, by JSON pointer
    /// (`/spec/replicas`), where the file says it.
    pub fn line_of(&self, pointer: &str) -> Option<usize> {
        if pointer.is_empty() {
            return Some(self.line);
        }
        self.fields.get(&format!("{}{pointer}", self.root))
    }

    /// The line of the field, or of its nearest ancestor the file has (a
    /// violation may point at a field that is missing), or of the object.
    pub fn line_near(&self, pointer: &str) -> usize {
        let mut p = pointer;
        loop {
            if let Some(line) = self.line_of(p) {
                return line;
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return self.line,
            }
        }
    }
}

/// What reading produced: the objects, the problems, and the documents
/// that were not Kubernetes objects (reported, never silently dropped).
#[derive(Debug, Default)]
pub struct Loaded {
    pub documents: Vec<Document>,
    pub errors: Vec<Error>,
    pub skipped: Vec<(String, String)>,
}

/// Reads every input. `-` is stdin. Files are parsed in parallel; what
/// they hold comes back in the order given (a folder's files sorted).
pub fn load(inputs: &[PathBuf]) -> Loaded {
    let mut items: Vec<Result<Option<PathBuf>, Error>> = Vec::new();
    for input in inputs {
        if input.as_os_str() == "-" {
            items.push(Ok(None));
            continue;
        }
        match walk(input) {
            Ok(found) => {
                items.extend(found.files.into_iter().map(|f| Ok(Some(f))));
                items.extend(found.charts.iter().map(|c| Err(chart_error(c))));
            }
            Err(e) => items.push(Err(e)),
        }
    }
    let parts: Vec<Loaded> = items
        .into_par_iter()
        .map(|item| {
            let mut out = Loaded::default();
            match item {
                Ok(Some(file)) => load_file(&file, &mut out),
                Ok(None) => load_stdin(&mut out),
                Err(e) => out.errors.push(e),
            }
            out
        })
        .collect();
    let mut out = Loaded::default();
    for part in parts {
        out.documents.extend(part.documents);
        out.errors.extend(part.errors);
        out.skipped.extend(part.skipped);
    }
    out
}

fn load_stdin(out: &mut Loaded) {
    let mut text = String::new();
    match std::io::stdin().read_to_string(&mut text) {
        Ok(_) => parse_text(&text, "<stdin>", out),
        Err(source) => out.errors.push(Error::Io {
            path: "<stdin>".into(),
            source,
        }),
    }
}

/// A file as given, or a folder's manifests in a stable (sorted) order;
/// Helm charts in it are left out (see [`walk`]).
pub fn manifest_files(path: &Path) -> Result<Vec<PathBuf>, Error> {
    walk(path).map(|found| found.files)
}

/// What a path holds: manifest files, and Helm charts, whose templates are
/// not manifests until Helm renders them.
#[derive(Debug, Default)]
pub struct Found {
    pub files: Vec<PathBuf>,
    pub charts: Vec<PathBuf>,
}

/// The folder of the Helm chart `path` is, or is a template of, if any.
fn chart_of(path: &Path) -> Option<PathBuf> {
    let dir = if path.is_dir() { path } else { path.parent()? };
    [Some(dir), dir.parent()]
        .into_iter()
        .flatten()
        .find(|d| d.join("Chart.yaml").is_file())
        .map(Path::to_path_buf)
}

/// Says what to run instead of reading a chart's templates as manifests.
fn chart_error(chart: &Path) -> Error {
    Error::input(
        chart.display().to_string(),
        format!(
            "a Helm chart: its templates become manifests only when Helm renders them; \
             check what it renders: helm template RELEASE {} | waf-admission check -",
            chart.display()
        ),
    )
}

/// Walks `path`: a file as given (unless it is a chart's template), or a
/// folder's manifests in a stable (sorted) order, charts apart.
pub fn walk(path: &Path) -> Result<Found, Error> {
    let meta = std::fs::metadata(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    if !meta.is_dir() {
        let in_chart = path
            .parent()
            .filter(|p| p.file_name().is_some_and(|n| n == "templates"))
            .and_then(chart_of);
        return Ok(match in_chart {
            Some(chart) => Found {
                files: Vec::new(),
                charts: vec![chart],
            },
            None => Found {
                files: vec![path.to_owned()],
                charts: Vec::new(),
            },
        });
    }
    let mut files = Vec::new();
    let mut charts = Vec::new();
    let mut stack = vec![path.to_owned()];
    while let Some(dir) = stack.pop() {
        if dir.join("Chart.yaml").is_file() {
            charts.push(dir);
            continue;
        }
        let entries = std::fs::read_dir(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| Error::Io {
                path: dir.clone(),
                source,
            })?;
            let p = entry.path();
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if is_dir && !hidden {
                stack.push(p);
            } else if !is_dir && is_manifest(&p) {
                files.push(p);
            }
        }
    }
    files.sort();
    charts.sort();
    Ok(Found { files, charts })
}

fn is_manifest(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

fn load_file(path: &Path, out: &mut Loaded) {
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => parse_text(&text, &path.display().to_string(), out),
            Err(e) => out.errors.push(Error::input(
                path.display().to_string(),
                format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
            )),
        },
        Err(source) => out.errors.push(Error::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Parses one text into documents, as kubectl does: a JSON stream when it
/// starts with `{`, YAML otherwise, whatever the file is called. After an
/// error the rest of that text cannot be trusted, so reading it stops there
/// (and says so), as kubectl stops reading that file.
pub fn parse_text(text: &str, name: &str, out: &mut Loaded) {
    for doc in yaml::documents(text) {
        match doc {
            Ok(doc) => {
                let source = format!("{name}#{}", doc.index);
                if let Some(line) = doc.ignored_from {
                    out.skipped.push((
                        source.clone(),
                        format!(
                            "the text after `...` on line {line}: kubectl reads nothing more \
                             until the next `---` line"
                        ),
                    ));
                }
                let fields = Arc::new(doc.fields);
                push_document(source, doc.value, doc.line, &fields, String::new(), out);
            }
            Err(e) => {
                out.errors.push(Error::input(
                    format!("{name}#{}", e.index),
                    format!("{e} (the rest of this file was not read)"),
                ));
                return;
            }
        }
    }
}

fn push_document(
    source: String,
    value: Value,
    line: usize,
    fields: &Arc<FieldLines>,
    root: String,
    out: &mut Loaded,
) {
    let Some(obj) = value.as_object() else {
        out.errors.push(Error::input(
            source,
            format!(
                "line {line}: expected a Kubernetes object (a mapping with apiVersion and kind)"
            ),
        ));
        return;
    };
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind.is_empty() || api_version.is_empty() {
        out.skipped.push((
            source,
            "not a Kubernetes object (no apiVersion or kind)".into(),
        ));
        return;
    }
    if kind.ends_with("List") && obj.get("items").is_some() {
        match obj.get("items") {
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let root = format!("{root}/items/{i}");
                    let line = fields.get(&root).unwrap_or(line);
                    push_document(
                        format!("{source}/items/{i}"),
                        item.clone(),
                        line,
                        fields,
                        root,
                        out,
                    );
                }
            }
            _ => out
                .errors
                .push(Error::input(source, "items of a List must be a sequence")),
        }
        return;
    }
    out.documents.push(Document {
        source,
        value,
        line,
        fields: Arc::clone(fields),
        root,
    });
}

/// Reads `--policy` files. Every document must be a WellArchitectedPolicy;
/// one bad policy refuses the whole set (never half-applied). No files:
/// the built-in baseline.
pub fn load_policies(paths: &[PathBuf]) -> Result<PolicySet, Vec<Error>> {
    if paths.is_empty() {
        return PolicySet::baseline().map_err(|e| vec![e]);
    }
    let loaded = load(paths);
    let mut errors = loaded.errors;
    errors.extend(
        loaded
            .skipped
            .into_iter()
            .map(|(at, why)| Error::input(at, format!("{why}; expected a WellArchitectedPolicy"))),
    );
    let mut policies = Vec::new();
    let mut names = BTreeSet::new();
    for mut doc in loaded.documents {
        let kind = doc
            .value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let api_version = doc
            .value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if kind != "WellArchitectedPolicy" || api_version != API_VERSION {
            errors.push(Error::input(
                &doc.source,
                format!("expected {API_VERSION} WellArchitectedPolicy, found {api_version} {kind}"),
            ));
            continue;
        }
        let policy = typed::<WellArchitectedPolicy>(std::mem::take(&mut doc.value), &doc.source)
            .map_err(|e| at_document(&doc, e))
            .and_then(|p| Policy::compile(&p));
        match policy {
            Ok(p) if !names.insert(p.name.clone()) => errors.push(Error::input(
                &doc.source,
                format!(
                    "a second policy named {:?}; policy names are unique",
                    p.name
                ),
            )),
            Ok(p) => policies.push(p),
            Err(Error::Policy {
                kind,
                name,
                problems,
            }) => errors.push(Error::input(
                &doc.source,
                format!("{kind} {name} refused: {}", problems.join("; ")),
            )),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(PolicySet::new(policies))
    } else {
        Err(errors)
    }
}

/// An error about one document as `check` reports it: at the document's
/// source, with the line of the field it names, and, where YAML as kubectl
/// reads it made a string into a boolean or a number, why.
pub fn at_document(doc: &Document, e: Error) -> Error {
    let (object, message) = match e {
        Error::Input { at, message } if at == doc.source => (None, message),
        Error::Input { at, message } => (Some(at), message),
        other => return Error::input(&doc.source, other.to_string()),
    };
    let message = match message
        .strip_prefix("field ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((path, why)) => {
            let line = doc
                .line_of(&pointer(path))
                .map(|l| format!(" (line {l})"))
                .unwrap_or_default();
            format!("field {path}: {why}{line}{}", yaml_hint(why))
        }
        None => message,
    };
    match object {
        Some(object) => Error::input(&doc.source, format!("{object}: {message}")),
        None => Error::input(&doc.source, message),
    }
}

/// serde's field path (`spec.containers[0].env[1].value`) as a JSON
/// pointer. A key with a dot in it reads as two keys; its line is then not
/// found, which leaves the message without one.
fn pointer(path: &str) -> String {
    let mut out = String::new();
    for part in path.split('.') {
        let (name, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if !name.is_empty() {
            out.push('/');
            out.push_str(&name.replace('~', "~0").replace('/', "~1"));
        }
        while let Some((index, after)) = rest.strip_prefix('[').and_then(|r| r.split_once(']')) {
            out.push('/');
            out.push_str(index);
            rest = after;
        }
    }
    out
}

fn yaml_hint(why: &str) -> &'static str {
    if !why.ends_with("expected a string") {
        ""
    } else if why.starts_with("invalid type: boolean") {
        "; kubectl reads an unquoted yes, no, on, off, y or n (and True, OFF, ...) as a \
         boolean: quote the value to keep it a string"
    } else if why.starts_with("invalid type: integer") || why.starts_with("invalid type: floating")
    {
        "; kubectl reads an unquoted number as a number (0400 is octal 256): quote the value \
         to keep it a string"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Loaded {
        let mut out = Loaded::default();
        parse_text(text, "t.yaml", &mut out);
        out
    }

    #[test]
    fn numbers_documents_and_list_items() {
        let out = parse(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: b}}\n- {apiVersion: v1, kind: Namespace, metadata: {name: c}}\n",
        );
        let sources: Vec<_> = out.documents.iter().map(|d| d.source.as_str()).collect();
        assert_eq!(
            sources,
            ["t.yaml#0", "t.yaml#2/items/0", "t.yaml#2/items/1"]
        );
        assert!(out.errors.is_empty());
    }

    #[test]
    fn a_syntax_error_names_document_and_line() {
        let out = parse("apiVersion: v1\nkind: Namespace\n---\nkind: [unclosed\n");
        assert_eq!(out.documents.len(), 1);
        let msg = out.errors[0].to_string();
        assert!(msg.starts_with("t.yaml#1: "), "{msg}");
        assert!(msg.contains("line 4 column 7"), "{msg}");
    }

    #[test]
    fn non_objects_are_reported() {
        let out = parse("just a string\n---\nfoo: bar\n");
        assert_eq!(out.errors.len(), 1);
        assert!(
            out.errors[0]
                .to_string()
                .contains("expected a Kubernetes object")
        );
        assert_eq!(
            out.skipped,
            [(
                "t.yaml#1".into(),
                "not a Kubernetes object (no apiVersion or kind)".into()
            )]
        );
    }

    #[test]
    fn objects_keep_their_lines_in_lists_too() {
        let out = parse(
            "# c\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: b}\n",
        );
        let a = &out.documents[0];
        assert_eq!((a.line, a.line_of("/metadata/name")), (2, Some(4)));
        let b = &out.documents[1];
        assert_eq!(b.source, "t.yaml#1/items/0");
        assert_eq!((b.line, b.line_of("/metadata/name")), (9, Some(11)));
        assert_eq!(b.line_of("/spec"), None);
    }

    #[test]
    fn text_kubectl_never_reads_is_reported_as_skipped() {
        let out = parse("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n...\nkind: Lost\n");
        assert_eq!(out.documents.len(), 1);
        assert_eq!(out.skipped.len(), 1);
        assert!(
            out.skipped[0].1.contains("after `...` on line 4"),
            "{:?}",
            out.skipped
        );
    }

    #[test]
    fn json_files_read_with_line_numbers() {
        let mut out = Loaded::default();
        parse_text(
            "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\"}\n{oops",
            "t.json",
            &mut out,
        );
        assert_eq!(out.documents.len(), 1);
        assert!(
            out.errors[0]
                .to_string()
                .starts_with("t.json#1: line 2 column")
        );
    }
}
