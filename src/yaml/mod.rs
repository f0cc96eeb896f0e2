//! Manifests read as kubectl reads them, so that `check` judges the JSON the
//! cluster would be sent.
//!
//! kubectl (1.32, k8s.io/apimachinery's `YAMLOrJSONDecoder`) reads a file as
//! a JSON stream when its first non-blank character is `{`, and otherwise
//! as YAML: it cuts the text into documents at every line that starts with
//! `---` (anything after it but a comment is an error), and gives each piece
//! to sigs.k8s.io/yaml, which decodes the first YAML document in it with
//! go-yaml v2 (YAML 1.1 scalars: `0400` is 256, `yes` and `on` are `true`)
//! and turns the result into JSON. This module walks the same road on the
//! events of a YAML 1.2 parser (granit-parser), applying go-yaml v2's rules
//! itself ([`resolve`]):
//! - inside a flow collection indentation means nothing, as in libyaml: a
//!   closing `]` at or left of its key's column (vLLM's and Istio's
//!   documented manifests) is read. granit-parser does so unless told to be
//!   strict; saphyr-parser 0.3, which it forked, refuses it;
//! - merge keys (`<<`) are go-yaml v2's: applied where they stand, so a
//!   merged key overrides one written before the `<<` and not one after;
//!   in a list of maps, the earlier map wins;
//! - a key written twice keeps its last value, as kubectl does;
//! - non-string keys become strings as sigs.k8s.io/yaml makes them (`1`,
//!   `true`, `1e+10`); a null key, a map key or a list key is refused;
//! - a document that is empty or `null` is skipped, as kubectl skips it;
//!   after a `...` line kubectl reads nothing until the next `---` line, and
//!   [`Document::ignored_from`] says so.
//!
//! Bounds, so that hostile input is refused with an error, never a crash:
//! - nesting deeper than [`MAX_DEPTH`] (the depth serde_json allows the
//!   webhook's request body) is refused at the line where it goes too deep;
//! - aliases copy their anchor's value; the copies in one document, and the
//!   copies anchors keep for them, may add up to [`ALIAS_BUDGET`] nodes and
//!   bytes of text, the most the kube-apiserver takes in one request (an
//!   alias bomb stops there);
//! - the parser keeps its own state on the heap, and this module builds
//!   values with an explicit stack: no recursion follows the input's depth.
//!
//! Where a parser-level difference between libyaml (go-yaml's scanner, YAML
//! 1.1) and granit-parser (YAML 1.2) is not mirrored: NEL and the Unicode
//! line and paragraph separators are not line breaks here, and anchor names
//! may use more characters than libyaml accepts. The corpus test compares
//! every manifest in the repository with kubectl's own decoding.

mod resolve;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use granit_parser::{Event, Marker, Parser, ScanError, Span};
use serde_json::{Map, Value};

use resolve::Scalar;

/// The deepest nesting of maps and lists accepted in one document.
pub const MAX_DEPTH: usize = 128;

/// How much aliases may copy in one document, counted as one per map, list
/// or scalar plus one per byte of key and string: 3 MiB, the kube-apiserver's
/// limit on a request body.
pub const ALIAS_BUDGET: usize = 3 * 1024 * 1024;

/// One document of a manifest stream, decoded as kubectl decodes it.
#[derive(Clone, Debug)]
pub struct Document {
    /// Position in the stream: documents separated by `---` lines count from
    /// 0; a file's leading comments before its first `---` are not one.
    pub index: usize,
    /// The line (from 1) where the document's content starts.
    pub line: usize,
    /// The JSON kubectl makes of it; never `null` (kubectl skips those).
    pub value: Value,
    /// The line of a `...` after which this document has text that kubectl
    /// never reads.
    pub ignored_from: Option<usize>,
    /// The line of each map value and list item, by JSON pointer.
    pub fields: FieldLines,
}

/// Lines of fields by JSON pointer (`/spec/replicas`), for the values
/// written in the document itself (not those copied by an alias or a merge).
#[derive(Clone, Debug, Default)]
pub struct FieldLines(BTreeMap<String, usize>);

impl FieldLines {
    pub fn get(&self, pointer: &str) -> Option<usize> {
        self.0.get(pointer).copied()
    }
}

/// Why a document cannot be read, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// The document it happened in, counted as [`Document::index`].
    pub index: usize,
    pub line: usize,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column {
            Some(c) => write!(f, "line {} column {c}: {}", self.line, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

impl std::error::Error for Error {}

/// The documents of a manifest stream, in order. After an error the rest of
/// the stream cannot be trusted, so the iterator ends there (kubectl, too,
/// reads no further in that file).
pub fn documents(text: &str) -> Documents<'_> {
    // kubectl drops a byte-order mark before it guesses JSON or YAML.
    let unmarked = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mode = if looks_like_json(unmarked) {
        let text = unmarked;
        Mode::Json(Json {
            text,
            stream: serde_json::Deserializer::from_str(text).into_iter(),
            index: 0,
        })
    } else {
        Mode::Yaml(Chunks::new(text))
    };
    Documents { mode, done: false }
}

/// apimachinery's `GuessJSONStream`: the first non-blank character of the
/// first 4096 bytes is `{`.
fn looks_like_json(text: &str) -> bool {
    let head = text.as_bytes().get(..4096).unwrap_or(text.as_bytes());
    let head = String::from_utf8_lossy(head);
    head.trim_start().starts_with('{')
}

pub struct Documents<'a> {
    mode: Mode<'a>,
    done: bool,
}

enum Mode<'a> {
    Json(Json<'a>),
    Yaml(Chunks<'a>),
}

struct Json<'a> {
    text: &'a str,
    stream: serde_json::StreamDeserializer<'a, serde_json::de::StrRead<'a>, Value>,
    index: usize,
}

impl Iterator for Documents<'_> {
    type Item = Result<Document, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let item = match &mut self.mode {
                Mode::Json(json) => json.next(),
                Mode::Yaml(chunks) => chunks.next().map(|chunk| chunk.and_then(decode)),
            };
            match item {
                None => self.done = true,
                Some(Ok(None)) => {} // empty or null: kubectl skips it
                Some(Ok(Some(doc))) => return Some(Ok(doc)),
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

impl Json<'_> {
    fn next(&mut self) -> Option<Result<Option<Document>, Error>> {
        let start = self.stream.byte_offset();
        let value = self.stream.next()?;
        let index = self.index;
        self.index += 1;
        Some(match value {
            Ok(Value::Null) => Ok(None),
            Ok(value) => {
                let rest = &self.text[start..];
                let skipped = rest.len() - rest.trim_start().len();
                let line = 1 + self.text[..start + skipped].matches('\n').count();
                Ok(Some(Document {
                    index,
                    line,
                    value,
                    ignored_from: None,
                    fields: FieldLines::default(),
                }))
            }
            Err(e) => Err(Error {
                index,
                line: e.line(),
                column: Some(e.column()),
                message: e.to_string(),
            }),
        })
    }
}

/// A piece of the text between `---` lines, as apimachinery's `YAMLReader`
/// cuts it (the separator lines themselves left out).
struct Chunk<'a> {
    index: usize,
    text: &'a str,
    /// The line of the file where `text` starts.
    first_line: usize,
}

struct Chunks<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
    next_index: usize,
    first: bool,
    done: bool,
}

impl<'a> Chunks<'a> {
    fn new(text: &'a str) -> Self {
        Chunks {
            text,
            pos: 0,
            line: 1,
            next_index: 0,
            first: true,
            done: false,
        }
    }

    /// The index of the chunk that ends here. Before the first `---`, only
    /// text other than blank lines and comments makes a document.
    fn index(&mut self, text: &str) -> usize {
        let first = std::mem::replace(&mut self.first, false);
        let counts = !first
            || text.lines().any(|l| {
                let l = l.trim();
                !l.is_empty() && !l.starts_with('#')
            });
        let index = self.next_index;
        self.next_index += usize::from(counts);
        index
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = Result<Chunk<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let start = self.pos;
        let first_line = self.line;
        loop {
            let rest = &self.text[self.pos..];
            if rest.is_empty() {
                self.done = true;
                let text = &self.text[start..];
                let index = self.index(text);
                return Some(Ok(Chunk {
                    index,
                    text,
                    first_line,
                }));
            }
            let (line, len) = match rest.find('\n') {
                Some(i) => (&rest[..i], i + 1),
                None => (rest, rest.len()),
            };
            if let Some(after) = line.strip_prefix("---") {
                let after = after.trim();
                if !after.is_empty() && !after.starts_with('#') {
                    self.done = true;
                    let index = if self.first { 0 } else { self.next_index };
                    return Some(Err(Error {
                        index,
                        line: self.line,
                        column: None,
                        message: format!(
                            "`---{after}`: kubectl allows only a comment after `---` on a \
                             document separator line (invalid Yaml document separator)"
                        ),
                    }));
                }
                let text = &self.text[start..self.pos];
                self.pos += len;
                self.line += 1;
                let index = self.index(text);
                return Some(Ok(Chunk {
                    index,
                    text,
                    first_line,
                }));
            }
            self.pos += len;
            self.line += 1;
        }
    }
}

/// Decodes the first YAML document of a chunk, as go-yaml v2's `Unmarshal`
/// does; `None` when there is none, or it is null.
fn decode(chunk: Chunk<'_>) -> Result<Option<Document>, Error> {
    if chunk.text.contains('\t')
        && let Some(at) = libyaml_refused_tab(chunk.text)
    {
        return Err(Error {
            index: chunk.index,
            line: chunk.first_line + at.line().saturating_sub(1),
            column: Some(at.col() + 1),
            message: "a tab at the start of a line, or after `-`, `?` or the `:` of a `?` key, \
                      outside a flow collection (kubectl refuses it: found character that \
                      cannot start any token); indent with spaces"
                .to_owned(),
        });
    }
    if let Some(line) = opening_document_end(chunk.text) {
        return Err(Error {
            index: chunk.index,
            line: chunk.first_line + line - 1,
            column: Some(1),
            message: "`...` before any content: kubectl reads no empty document there (did not \
                      find expected node content); remove it or put `---` before it"
                .to_owned(),
        });
    }
    let mut parser = Parser::new_from_str(chunk.text);
    let mut b = Builder::new(&chunk);
    let mut root: Option<(Value, usize)> = None;
    let mut ignored_from = None;
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| b.scan_error(&e))?;
        match event {
            Event::StreamStart => {}
            Event::DocumentStart(..) if root.is_none() => {}
            Event::StreamEnd => break,
            Event::DocumentEnd => {
                // Whatever follows, kubectl never reads: say so if it is text.
                if let Some(Ok((Event::DocumentStart(..), _)) | Err(_)) = parser.next_event() {
                    ignored_from = Some(b.line(span.start));
                }
                break;
            }
            Event::DocumentStart(..) => break,
            event => {
                if let Some(value) = b.event(event, span)? {
                    root = Some(value);
                }
            }
        }
    }
    Ok(match root {
        Some((Value::Null, _)) | None => None,
        Some((value, line)) => Some(Document {
            index: chunk.index,
            line,
            value,
            ignored_from,
            fields: FieldLines(b.fields),
        }),
    })
}

/// Where libyaml (go-yaml v2's scanner) refuses a tab that YAML 1.2, and so
/// granit-parser, allows. Between tokens outside flow collections libyaml
/// skips a tab only where a simple key may not start: not at the start of a
/// line, nor after `-`, `?` or the `:` of a `?` key (its
/// `yaml_parser_scan_to_next_token`); after a plain scalar, the scalar's own
/// scan takes the lines that follow and refuses a tab left of its indent.
/// Runs on the scanner's tokens, only for text with a tab.
fn libyaml_refused_tab(text: &str) -> Option<Marker> {
    use granit_parser::ScalarStyle::{Folded, Literal, Plain};
    use granit_parser::{Scanner, StrInput, TokenType};
    let mut flow = 0usize;
    // Where the text no token covered starts, whether a simple key may
    // start there, and after a plain scalar the indent its continuation
    // needs.
    let mut end = 0usize;
    let mut key_allowed = true;
    let mut plain_indent: Option<isize> = None;
    let mut explicit_key = false;
    // A block scalar's span starts past its header and may stop before its
    // last lines: its text runs from the token before to the token after.
    let mut block: Option<usize> = None;
    for token in Scanner::new(StrInput::new(text)) {
        let Ok(token) = token else { return None };
        let (span, kind) = token.into_parts();
        let (Some(start), Some(stop)) = (span.start.byte_offset(), span.end.byte_offset()) else {
            return None;
        };
        if let Some(from) = block.take() {
            if let Some(offset) = block_scalar_tab(text.get(from..start).unwrap_or_default()) {
                return Some(marker_at(text, from + offset));
            }
            end = end.max(start);
        }
        let is_block_scalar = matches!(kind, TokenType::Scalar(Literal | Folded, _));
        if start > end && !is_block_scalar {
            let gap = text.get(end..start).unwrap_or_default();
            if flow == 0
                && let Some(offset) = refused_tab(gap, key_allowed, plain_indent)
            {
                return Some(marker_at(text, end + offset));
            }
            plain_indent = None;
        }
        match kind {
            TokenType::FlowSequenceStart | TokenType::FlowMappingStart => {
                flow += 1;
                key_allowed = true;
            }
            TokenType::FlowSequenceEnd | TokenType::FlowMappingEnd => {
                flow = flow.saturating_sub(1);
                key_allowed = false;
            }
            TokenType::BlockEntry => key_allowed = true,
            // A simple key's Key is virtual (empty); `?` is not.
            TokenType::Key if stop > start => {
                explicit_key = true;
                key_allowed = flow == 0;
            }
            TokenType::Value => {
                key_allowed = std::mem::take(&mut explicit_key) && flow == 0;
                if text.get(start..).is_some_and(|t| t.starts_with(':')) {
                    end = end.max(start + 1);
                }
            }
            TokenType::Scalar(Plain, _) => {
                // libyaml's indent here is the innermost block collection's
                // column: the key's for a map value, the `-`'s for an item.
                let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
                let line = &text[line_start..start];
                let first = line.len() - line.trim_start_matches([' ', '-']).len();
                plain_indent = if first == line.len() {
                    line.rfind('-').map(|i| i as isize)
                } else {
                    Some(first as isize)
                };
                key_allowed = false;
            }
            TokenType::Scalar(Literal | Folded, _) => {
                block = Some(end);
                key_allowed = true;
            }
            TokenType::Scalar(..)
            | TokenType::Alias(_)
            | TokenType::Anchor(_)
            | TokenType::Tag(..)
            | TokenType::DocumentStart
            | TokenType::DocumentEnd => key_allowed = false,
            _ => {}
        }
        end = end.max(stop);
    }
    None
}

fn marker_at(text: &str, offset: usize) -> Marker {
    let before = text.get(..offset).unwrap_or(text);
    let line = 1 + before.matches('\n').count();
    let col = before
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .chars()
        .count();
    Marker::new(0, line, col)
}

/// The offset of a tab in a block scalar's indentation, which libyaml
/// refuses (`yaml_parser_scan_block_scalar_breaks`): before the first
/// line with content, any tab after the leading spaces; after it, a tab
/// left of the content's indent.
fn block_scalar_tab(token: &str) -> Option<usize> {
    let body = token.find('\n')? + 1;
    let mut indent: Option<usize> = None;
    let mut offset = body;
    for line in token[body..].split_inclusive('\n') {
        let spaces = line.len() - line.trim_start_matches(' ').len();
        let rest = &line[spaces..];
        if rest.starts_with('\t') && indent.is_none_or(|i| spaces < i) {
            return Some(offset + spaces);
        }
        if indent.is_none() && !rest.trim_end_matches(['\r', '\n']).is_empty() {
            indent = Some(spaces);
        }
        offset += line.len();
    }
    None
}

/// The offset in `gap` (the text between two tokens, outside flow
/// collections) of a tab libyaml would not skip.
fn refused_tab(gap: &str, mut key_allowed: bool, plain_indent: Option<isize>) -> Option<usize> {
    let mut col_in_line: Option<usize> = None; // Some after a line break
    let mut comment = false;
    for (i, c) in gap.char_indices() {
        match c {
            '\n' | '\r' => {
                comment = false;
                key_allowed = true;
                col_in_line = Some(0);
                continue;
            }
            _ if comment => {}
            '#' => comment = true,
            ' ' => {}
            // Indicators the scanner's spans leave out.
            '-' | '?' => key_allowed = true,
            '\t' => {
                let refused = match (plain_indent, col_in_line) {
                    // The plain scalar's scan: a tab left of its indent.
                    (Some(indent), Some(col)) => col as isize <= indent,
                    (Some(_), None) => false,
                    (None, _) => key_allowed,
                };
                if refused {
                    return Some(i);
                }
            }
            // Text no token covers (a byte-order mark): not libyaml's gap.
            _ => return None,
        }
        if let Some(col) = &mut col_in_line {
            *col += 1;
        }
    }
    None
}

/// The line of a `...` that comes before anything but blank lines and
/// comments: go-yaml v2 then expects a node and refuses the text.
fn opening_document_end(text: &str) -> Option<usize> {
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start_matches('\u{feff}');
        if let Some(after) = line.strip_prefix("...") {
            return (after.is_empty() || after.starts_with([' ', '\t', '\r'])).then_some(i + 1);
        }
        let trimmed = line.trim();
        if !trimmed.is_empty() && !trimmed.starts_with('#') {
            return None;
        }
    }
    None
}

/// What an anchor holds for its aliases.
enum Anchor {
    /// Its node is still open: an alias to it would contain itself.
    Open,
    Scalar(Scalar),
    Collection {
        value: Value,
        depth: usize,
        weight: usize,
    },
}

enum Container {
    Seq(Vec<Value>),
    Map {
        map: Map<String, Value>,
        key: Option<Key>,
    },
}

enum Key {
    Name(String),
    Merge,
}

struct Frame {
    container: Container,
    anchor: usize,
    start: Marker,
    /// Depth of the deepest child collection.
    depth: usize,
    weight: usize,
    /// Length of the builder's pointer before this frame's own segment.
    pointer_len: usize,
    /// Whether this frame's children get lines (not inside a merged map).
    record: bool,
}

struct Builder {
    index: usize,
    first_line: usize,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Anchor>,
    copied: usize,
    pointer: String,
    fields: BTreeMap<String, usize>,
}

impl Builder {
    fn new(chunk: &Chunk<'_>) -> Self {
        Builder {
            index: chunk.index,
            first_line: chunk.first_line,
            stack: Vec::new(),
            anchors: HashMap::new(),
            copied: 0,
            pointer: String::new(),
            fields: BTreeMap::new(),
        }
    }

    fn line(&self, m: Marker) -> usize {
        self.first_line + m.line().saturating_sub(1)
    }

    fn error(&self, at: Marker, message: impl fmt::Display) -> Error {
        Error {
            index: self.index,
            line: self.line(at),
            column: Some(at.col() + 1),
            message: message.to_string(),
        }
    }

    fn scan_error(&self, e: &ScanError) -> Error {
        let mut message = e.info().to_owned();
        if let Some(open) = self.stack.last() {
            let what = match open.container {
                Container::Seq(_) => "list",
                Container::Map { .. } => "map",
            };
            message.push_str(&format!(
                " (in the {what} that starts at line {} column {})",
                self.line(open.start),
                open.start.col() + 1
            ));
        }
        self.error(*e.marker(), message)
    }

    /// Whether the next node is a key of the innermost map.
    fn wants_key(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Frame {
                container: Container::Map { key: None, .. },
                ..
            })
        )
    }

    /// Where the next node goes, as a JSON pointer, when it gets a line.
    fn child_pointer(&self) -> Option<String> {
        let top = self.stack.last()?;
        if !top.record {
            return None;
        }
        let segment = match &top.container {
            Container::Seq(items) => items.len().to_string(),
            Container::Map {
                key: Some(Key::Name(k)),
                ..
            } => k.replace('~', "~0").replace('/', "~1"),
            Container::Map { .. } => return None,
        };
        Some(format!("{}/{segment}", self.pointer))
    }

    fn record(&mut self, at: Marker) {
        if let Some(pointer) = self.child_pointer() {
            let line = self.line(at);
            self.fields.insert(pointer, line);
        }
    }

    /// Handles one node event; returns the root value, with its line, once
    /// it is complete.
    fn event(&mut self, event: Event<'_>, span: Span) -> Result<Option<(Value, usize)>, Error> {
        let at = span.start;
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let tag = tag.map(|t| {
                    if t.handle().is_empty() && t.suffix() == "!" {
                        "!".to_owned()
                    } else {
                        format!("{}{}", t.handle(), t.suffix())
                    }
                });
                let key = self.wants_key();
                if key && resolve::is_merge_key(&text, style, tag.as_deref()) {
                    if anchor > 0 {
                        self.anchors
                            .insert(anchor, Anchor::Scalar(Scalar::Str(text.into_owned())));
                    }
                    self.set_key(Key::Merge);
                    return Ok(None);
                }
                let s =
                    resolve::scalar(&text, style, tag.as_deref()).map_err(|m| self.error(at, m))?;
                if anchor > 0 {
                    self.anchors.insert(anchor, Anchor::Scalar(s.clone()));
                }
                if key {
                    let name = resolve::json_key(&s).map_err(|m| self.error(at, m))?;
                    self.set_key(Key::Name(name));
                    return Ok(None);
                }
                let weight = 1 + text.len();
                let value = resolve::json_value(s).map_err(|m| self.error(at, m))?;
                self.record(at);
                self.deliver(value, 0, weight, at)
            }
            Event::Alias(id) => {
                let key = self.wants_key();
                let (value, depth, weight) = match self.anchors.get(&id) {
                    None => return Err(self.error(at, "an alias to an unknown anchor")),
                    Some(Anchor::Open) => {
                        return Err(self.error(
                            at,
                            "an alias inside the value of its own anchor (kubectl refuses it: \
                             anchor value contains itself)",
                        ));
                    }
                    Some(Anchor::Collection { .. }) if key => {
                        return Err(self.error(
                            at,
                            "an alias to a map or list as a map key (kubectl refuses it: invalid map key)",
                        ));
                    }
                    Some(Anchor::Scalar(s)) => {
                        let weight = 1 + match s {
                            Scalar::Str(s) => s.len(),
                            _ => 0,
                        };
                        if key {
                            let name = resolve::json_key(s).map_err(|m| self.error(at, m))?;
                            self.charge(weight, at)?;
                            self.set_key(Key::Name(name));
                            return Ok(None);
                        }
                        let value =
                            resolve::json_value(s.clone()).map_err(|m| self.error(at, m))?;
                        (value, 0, weight)
                    }
                    Some(Anchor::Collection {
                        value,
                        depth,
                        weight,
                    }) => {
                        if self.stack.len() + depth > MAX_DEPTH {
                            return Err(self.too_deep(at));
                        }
                        (value.clone(), *depth, *weight)
                    }
                };
                self.charge(weight, at)?;
                self.record(at);
                self.deliver(value, depth, weight, at)
            }
            Event::SequenceStart(_, anchor, _) | Event::MappingStart(_, anchor, _) => {
                let is_map = matches!(event, Event::MappingStart(..));
                if self.wants_key() {
                    let what = if is_map { "a map" } else { "a list" };
                    return Err(self.error(
                        at,
                        format!("{what} as a map key (kubectl refuses it: invalid map key)"),
                    ));
                }
                if self.stack.len() >= MAX_DEPTH {
                    return Err(self.too_deep(at));
                }
                let child = self.child_pointer();
                if let Some(p) = &child {
                    let line = self.line(at);
                    self.fields.insert(p.clone(), line);
                }
                // The root records its children; so does every collection
                // that got a pointer (not a merged one).
                let record = self.stack.is_empty() || child.is_some();
                let pointer_len = self.pointer.len();
                if let Some(p) = child {
                    self.pointer = p;
                }
                if anchor > 0 {
                    self.anchors.insert(anchor, Anchor::Open);
                }
                self.stack.push(Frame {
                    container: if is_map {
                        Container::Map {
                            map: Map::new(),
                            key: None,
                        }
                    } else {
                        Container::Seq(Vec::new())
                    },
                    anchor,
                    start: at,
                    depth: 0,
                    weight: 1,
                    pointer_len,
                    record,
                });
                Ok(None)
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else {
                    return Err(self.error(at, "the end of a map or list that never started"));
                };
                self.pointer.truncate(frame.pointer_len);
                let value = match frame.container {
                    Container::Seq(items) => Value::Array(items),
                    Container::Map { map, .. } => Value::Object(map),
                };
                let depth = frame.depth + 1;
                if frame.anchor > 0 {
                    // The copy the anchor keeps counts as aliases' copies do:
                    // nested anchors could otherwise keep many copies.
                    self.charge(frame.weight, at)?;
                    self.anchors.insert(
                        frame.anchor,
                        Anchor::Collection {
                            value: value.clone(),
                            depth,
                            weight: frame.weight,
                        },
                    );
                }
                self.deliver(value, depth, frame.weight, frame.start)
            }
            _ => Ok(None),
        }
    }

    fn set_key(&mut self, key: Key) {
        if let Some(Frame {
            container: Container::Map { key: slot, .. },
            ..
        }) = self.stack.last_mut()
        {
            *slot = Some(key);
        }
    }

    fn too_deep(&self, at: Marker) -> Error {
        self.error(
            at,
            format!("maps and lists nested deeper than {MAX_DEPTH} levels are not read"),
        )
    }

    fn charge(&mut self, weight: usize, at: Marker) -> Result<(), Error> {
        self.copied = self.copied.saturating_add(weight);
        if self.copied > ALIAS_BUDGET {
            return Err(self.error(
                at,
                format!(
                    "aliases copy more than {ALIAS_BUDGET} nodes and bytes in this document \
                     (more than the kube-apiserver takes in one request; an alias bomb?)"
                ),
            ));
        }
        Ok(())
    }

    /// Puts a finished value where it belongs: the root, a list, a map value
    /// or a merge.
    fn deliver(
        &mut self,
        value: Value,
        depth: usize,
        weight: usize,
        at: Marker,
    ) -> Result<Option<(Value, usize)>, Error> {
        let line = self.line(at);
        let Some(top) = self.stack.last_mut() else {
            return Ok(Some((value, line)));
        };
        top.depth = top.depth.max(depth);
        top.weight = top.weight.saturating_add(weight);
        let placed = match &mut top.container {
            Container::Seq(items) => {
                items.push(value);
                Ok(())
            }
            Container::Map { map, key } => match key.take() {
                Some(Key::Name(k)) => {
                    top.weight = top.weight.saturating_add(k.len());
                    map.insert(k, value);
                    Ok(())
                }
                Some(Key::Merge) => merge(map, value).map_err(PlaceError::from),
                None => Err(PlaceError::NoKey),
            },
        };
        placed.map_err(|m| self.error(at, m))?;
        Ok(None)
    }
}

/// Why a value could not be put into the container that is open.
#[derive(Debug, thiserror::Error)]
enum PlaceError {
    #[error(transparent)]
    Merge(#[from] MergeError),
    #[error("a map value with no key")]
    NoKey,
}

/// A `<<` whose value is neither a map nor a list of maps.
#[derive(Debug, thiserror::Error)]
#[error(
    "`<<` takes a map or a list of maps (kubectl refuses anything else: map merge \
     requires map or sequence of maps as the value)"
)]
struct MergeError;

/// go-yaml v2's merge: the merged map's keys are set where `<<` stands;
/// from a list of maps, the earlier map wins.
fn merge(map: &mut Map<String, Value>, value: Value) -> Result<(), MergeError> {
    match value {
        Value::Object(m) => map.extend(m),
        Value::Array(items) => {
            if !items.iter().all(Value::is_object) {
                return Err(MergeError);
            }
            for item in items.into_iter().rev() {
                if let Value::Object(m) = item {
                    map.extend(m);
                }
            }
        }
        _ => return Err(MergeError),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(text: &str) -> Vec<Result<Document, Error>> {
        documents(text).collect()
    }

    /// The one document of `text`, or its error.
    fn one(text: &str) -> Result<Value, Error> {
        let mut docs = read(text);
        assert_eq!(docs.len(), 1, "{docs:?}");
        docs.remove(0).map(|d| d.value)
    }

    fn error(text: &str) -> Error {
        match read(text).pop() {
            Some(Err(e)) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn yaml_1_1_scalars_in_a_manifest() {
        let v = one(
            "spec:\n  volumes:\n  - secret: {defaultMode: 0400}\n  env:\n  - {name: A, value: yes}\n  - {name: B, value: \"yes\"}\n  - {name: C, value: 'on'}\n",
        )
        .unwrap();
        assert_eq!(v["spec"]["volumes"][0]["secret"]["defaultMode"], json!(256));
        assert_eq!(v["spec"]["env"][0]["value"], json!(true));
        assert_eq!(v["spec"]["env"][1]["value"], json!("yes"));
        assert_eq!(v["spec"]["env"][2]["value"], json!("on"));
    }

    #[test]
    fn flow_collections_ignore_indentation_as_kubectl_does() {
        // vLLM's documented Deployment: `]` at the column of its key.
        let v = one("spec:\n  args: [\n    \"vllm serve m\"\n  ]\n  b: 1\n").unwrap();
        assert_eq!(v, json!({"spec": {"args": ["vllm serve m"], "b": 1}}));
        // Items and brackets left of the key, down to column 0.
        let v = one("a:\n  b: [\nx,\n z, {c:\n1}\n]\n  d: 2\n").unwrap();
        assert_eq!(v, json!({"a": {"b": ["x", "z", {"c": 1}], "d": 2}}));
        let v = one("- {a: [\n1]\n}\n").unwrap();
        assert_eq!(v, json!([{"a": [1]}]));
    }

    #[test]
    fn tabs_are_refused_where_libyaml_refuses_them() {
        // Each checked with kubectl (go-yaml v2).
        for ok in [
            "key:\tvalue\n",
            "key: value\t# c\n",
            "a: [\t1,\t2]\n",
            "a: |\t# c\n  x\n",
            "a: &x\t1\n",
            "a: \"x\ty\"\n",
            "a: 1 # c\t\nb: 2\n",
            "a:\t\n  b: 1\n",
            "a: |\n  x\n  \ty\n",
        ] {
            assert!(read(ok).iter().all(Result::is_ok), "{ok:?}: {:?}", read(ok));
        }
        for (bad, line) in [
            ("a: 1\n\t\nb: 2\n", 2),
            ("a:\n  - \tx\n", 2),
            ("a:\n\t# c\n  b: 1\n", 2),
            ("\ta: 1\n", 1),
            ("? \ta\n: 1\n", 1),
            ("a: x\n\n\t\n", 3),
            ("c: 1\n---\nb:\n-\t# note\n  - x\n", 4),
            ("a: |\n  \tx\n", 2),
            ("a: |\n    x\n  \ty\n", 3),
        ] {
            let e = error(bad);
            assert_eq!(e.line, line, "{bad:?}: {e}");
            assert!(e.message.contains("kubectl refuses it"), "{e}");
        }
    }

    #[test]
    fn documents_are_cut_at_separator_lines_and_numbered() {
        let docs = read("# preamble\n---\na: 1\n--- # two\n---\nb: 2\n---\n");
        let got: Vec<_> = docs
            .into_iter()
            .map(|d| d.map(|d| (d.index, d.line, d.value)))
            .collect();
        assert_eq!(
            got,
            [Ok((0, 3, json!({"a": 1}))), Ok((2, 6, json!({"b": 2})))]
        );
        // With content before the first separator, that is document 0.
        let docs = read("a: 1\n---\n---\nb: 2\n");
        let indexes: Vec<_> = docs.iter().map(|d| d.as_ref().unwrap().index).collect();
        assert_eq!(indexes, [0, 2]);
    }

    #[test]
    fn only_a_comment_may_follow_a_separator() {
        let docs = read("a: 1\n---\nb: 2\n--- {c: 3}\n");
        assert_eq!(docs.len(), 2);
        // The document the bad line ends is not read, as kubectl does not.
        let e = docs[1].as_ref().unwrap_err();
        assert_eq!((e.index, e.line), (1, 4));
        assert!(e.message.contains("only a comment after `---`"), "{e}");
        assert_eq!(error("---foo\na: 1\n").line, 1);
    }

    #[test]
    fn a_document_end_before_any_content_is_refused_as_kubectl_does() {
        let e = error("a: 1\n---\n# c\n...\n---\nb: 2\n");
        assert_eq!((e.index, e.line), (1, 4), "{e}");
        assert_eq!(error("...\n").line, 1);
        // After content it ends the document.
        assert_eq!(read("a: 1\n...\n...\n").len(), 1);
    }

    #[test]
    fn empty_and_null_documents_are_skipped() {
        assert!(read("").is_empty());
        assert!(read("---\n---\n# only a comment\n").is_empty());
        assert!(read("~\n").is_empty());
        assert!(read("null\n---\n").is_empty());
    }

    #[test]
    fn text_after_a_document_end_marker_is_not_read() {
        let docs = read("a: 1\n...\nb: 2\n---\nc: 3\n");
        let first = docs[0].as_ref().unwrap();
        assert_eq!(first.value, json!({"a": 1}));
        assert_eq!(first.ignored_from, Some(2));
        assert_eq!(docs[1].as_ref().unwrap().value, json!({"c": 3}));
        assert_eq!(
            read("a: 1\n...\n").pop().unwrap().unwrap().ignored_from,
            None
        );
    }

    #[test]
    fn a_key_written_twice_keeps_its_last_value() {
        assert_eq!(one("a: 1\nb: 2\na: 3\n").unwrap(), json!({"a": 3, "b": 2}));
        // yes, on and true are all the boolean key true.
        assert_eq!(one("yes: 1\non: 2\ntrue: 3\n").unwrap(), json!({"true": 3}));
    }

    #[test]
    fn non_string_keys_become_strings() {
        assert_eq!(
            one("1: a\n1.5: b\n1e10: c\ny: d\n0x10: e\n2001-12-14: f\n").unwrap(),
            json!({"1": "a", "1.5": "b", "1e+10": "c", "true": "d", "16": "e", "2001-12-14": "f"})
        );
        let e = error("a: 1\n~: 2\n");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("null key"), "{e}");
        assert!(
            error("? [a, b]\n: x\n")
                .message
                .contains("a list as a map key")
        );
        assert!(
            error("x: 1\n{a: 1}: x\n")
                .message
                .contains("a map as a map key")
        );
        assert!(
            error("k: &k [1]\n*k : x\n")
                .message
                .contains("alias to a map or list as a map key")
        );
    }

    #[test]
    fn merge_keys_apply_where_they_stand() {
        // go-yaml v2: the merge overrides what came before it, not after.
        assert_eq!(
            one("a: 1\n<<: {a: 2, b: 3}\n").unwrap(),
            json!({"a": 2, "b": 3})
        );
        assert_eq!(one("<<: {a: 2}\na: 1\n").unwrap(), json!({"a": 1}));
        // From a list of maps, the earlier map wins.
        assert_eq!(
            one("<<: [{a: 2, b: 3}, {a: 4, c: 5}]\nc: 9\n").unwrap(),
            json!({"a": 2, "b": 3, "c": 9})
        );
        assert_eq!(
            one("base: &b {p: 1}\nx: {<<: *b, q: 2}\n").unwrap(),
            json!({"base": {"p": 1}, "x": {"p": 1, "q": 2}})
        );
        // `! <<` and `!!merge` merge; a quoted "<<" is a key.
        assert_eq!(
            one("! <<: {a: 1}\n!!merge \"<<\": {b: 1}\n\"<<\": 2\n").unwrap(),
            json!({"a": 1, "b": 1, "<<": 2})
        );
        let e = error("a: 1\n<<: [{c: 1}, x]\n");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("`<<` takes a map"), "{e}");
        assert!(error("<<: 5\n").message.contains("`<<` takes a map"));
        assert!(
            error("s: &s 1\n<<: *s\n")
                .message
                .contains("`<<` takes a map")
        );
    }

    #[test]
    fn anchors_and_aliases_copy_values() {
        assert_eq!(
            one("a: &x {p: [1, 2]}\nb: *x\nc: &s yes\nd: *s\n*s : key\n").unwrap(),
            json!({"a": {"p": [1, 2]}, "b": {"p": [1, 2]}, "c": true, "d": true, "true": "key"})
        );
        // A later anchor of the same name replaces the earlier one.
        assert_eq!(
            one("a: &x 1\nb: *x\nc: &x 2\nd: *x\n").unwrap(),
            json!({"a": 1, "b": 1, "c": 2, "d": 2})
        );
        let e = error("a: 1\nb: &a [*a]\n");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("its own anchor"), "{e}");
        let e = error("a: 1\nb: *nope\n");
        assert_eq!(e.line, 2);
    }

    #[test]
    fn an_alias_bomb_stops_at_the_budget() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = error(&text);
        assert!(e.message.contains("aliases copy more than"), "{e}");
        // A string copied many times counts its bytes.
        let mut text = format!("s: &s {}\nl:\n", "x".repeat(1 << 20));
        for _ in 0..4 {
            text.push_str("- *s\n");
        }
        assert!(error(&text).message.contains("aliases copy more than"));
        // Ordinary reuse is fine.
        let ok = "x: &r {cpu: 1, memory: 1Gi}\ncontainers:\n- resources: *r\n- resources: *r\n";
        assert!(one(ok).is_ok());
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = |n: usize| format!("{}{}\n", "[".repeat(n), "]".repeat(n));
        assert!(one(&deep(MAX_DEPTH)).is_ok());
        let e = error(&deep(MAX_DEPTH + 1));
        assert!(e.message.contains("deeper than 128"), "{e}");
        // A million open brackets: refused at once (the scanner has
        // its own limit), no stack overflow.
        let e = error(&"[".repeat(1_000_000));
        assert!(e.message.contains("recursion limit"), "{e}");
        let e = error(&"- ".repeat(100_000));
        assert!(e.message.contains("deeper"), "{e}");
        // Aliases cannot stack depth past the bound either.
        let half = MAX_DEPTH / 2 + 1;
        let text = format!(
            "a: &a {}1{}\nb: {}*a{}\n",
            "[".repeat(half),
            "]".repeat(half),
            "[".repeat(half),
            "]".repeat(half)
        );
        assert!(error(&text).message.contains("deeper"));
    }

    #[test]
    fn syntax_errors_name_the_line_and_the_open_collection() {
        let e = error("a: 1\n---\nkind: [unclosed\n");
        assert_eq!(e.index, 1);
        assert!(e.to_string().contains("line 3 column 7"), "{e}");
        let e = error("a: 1\n  b: 2\n");
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn infinity_is_refused_naming_the_line() {
        let e = error("a: 1\nb: .inf\n");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("not a number JSON can hold"), "{e}");
        // As a key it is just text.
        assert_eq!(one(".inf: a\n").unwrap(), json!({".inf": "a"}));
    }

    #[test]
    fn fields_keep_their_lines() {
        let doc = read("# c\napiVersion: v1\nspec:\n  containers:\n  - name: a\n    env:\n    - {name: A, value: yes}\n  a/b~c: 1\n")
            .remove(0)
            .unwrap();
        assert_eq!(doc.line, 2);
        assert_eq!(doc.fields.get("/apiVersion"), Some(2));
        assert_eq!(doc.fields.get("/spec/containers/0"), Some(5));
        assert_eq!(doc.fields.get("/spec/containers/0/env/0/value"), Some(7));
        assert_eq!(doc.fields.get("/spec/a~1b~0c"), Some(8));
        assert_eq!(doc.fields.get("/spec/nothing"), None);
    }

    #[test]
    fn a_stream_starting_with_a_brace_is_json() {
        let docs = read("\u{feff}\n {\"a\": 1, \"a\": 2}\nnull\n{\"b\": true}\n");
        let got: Vec<_> = docs
            .into_iter()
            .map(|d| d.map(|d| (d.index, d.line, d.value)))
            .collect();
        assert_eq!(
            got,
            [Ok((0, 2, json!({"a": 2}))), Ok((2, 4, json!({"b": true})))]
        );
        // kubectl reads it as JSON too, so YAML's flow style is refused.
        let e = error("{apiVersion: v1}\n");
        assert_eq!((e.index, e.line), (0, 1));
    }

    #[test]
    fn hostile_input_never_panics() {
        // A fixed pseudo-random walk over YAML's punctuation: every input
        // either reads or is refused with a line.
        let alphabet: Vec<char> = "ab0 :-?[]{},&*!|>'\"#%@`\n\t~<.\\".chars().collect();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut text = String::new();
            let len = (state >> 59) as usize + 1;
            for _ in 0..len * 2 {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                text.push(alphabet[(state >> 33) as usize % alphabet.len()]);
            }
            for doc in documents(&text) {
                if let Err(e) = doc {
                    assert!(e.line >= 1, "{text:?}: {e}");
                }
            }
        }
    }
}
