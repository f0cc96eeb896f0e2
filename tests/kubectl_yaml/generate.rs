//! Random Kubernetes manifests in the styles real ones use, for the
//! differential test against kubectl's decoder. Deterministic from a seed.
//! The generator only needs to write YAML that is mostly valid: what a
//! document decodes to is kubectl's answer, compared with check's.

use serde_json::{Value, json};

/// splitmix64: small, seedable, and the same everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const NAMES: &[&str] = &[
    "llm",
    "vllm-server",
    "gemma",
    "ray-head",
    "tgi",
    "embed",
    "web",
];
const IMAGES: &[&str] = &[
    "vllm/vllm-openai:v0.6.3",
    "contoso.azurecr.io/models/vllm-openai:v0.6.3@sha256:4f8c1e1d36ca6a7bb3b5f4b3e6d8f2a9c0b1d2e3f4a5b6c7d8e9f0a1b2c3d4e5",
    "nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3.3",
    "busybox",
    "ghcr.io/huggingface/text-generation-inference:2.4",
    "mcr.microsoft.com/aks/kaito/kaito-base:0.0.8",
];
/// Strings YAML 1.1 and 1.2 read differently, and other awkward ones.
const AWKWARD: &[&str] = &[
    "yes",
    "no",
    "on",
    "Off",
    "y",
    "N",
    "true",
    "False",
    "0755",
    "0400",
    "0x1F",
    "1_000",
    "1e3",
    ".5",
    "08",
    "~",
    "null",
    "",
    "-1",
    "+12",
    "2001-12-14",
    "a: b",
    "#hash",
    "x #y",
    "modèle",
    "日本語",
    "emoji 🚀",
    "with space",
    "trailing ",
    " leading",
    "tab\there",
    "quote'single",
    "quote\"double",
    "back\\slash",
    "colon:inside",
    "[brackets]",
    "{braces}",
    "*star",
    "&amp",
    "!bang",
    "%pct",
    "@at",
    "`tick",
    "|pipe",
    ">gt",
    "line one\nline two\n",
    "no final break\nsecond",
    "kept\n\n",
    "  indented first\nline\n",
];

fn name(rng: &mut Rng) -> String {
    format!("{}-{}", rng.pick(NAMES), rng.below(1000))
}

fn scalar(rng: &mut Rng) -> Value {
    match rng.below(6) {
        0 => json!(rng.below(100_000)),
        1 => json!(rng.one_in(2)),
        2 => json!(name(rng)),
        _ => json!(rng.pick(AWKWARD)),
    }
}

/// A map of 1 to `most` entries.
fn string_map(rng: &mut Rng, most: usize) -> Value {
    let n = 1 + rng.below(most);
    let mut m = serde_json::Map::new();
    for i in 0..n {
        let key = match rng.below(5) {
            0 => format!("app.kubernetes.io/k{i}"),
            1 => (*rng.pick(AWKWARD)).to_owned(),
            _ => format!("key{i}"),
        };
        m.insert(key, scalar(rng));
    }
    Value::Object(m)
}

/// Strings that read as strings however they are written, for the fields
/// kubectl itself types (metadata: a boolean label is refused there).
const STRINGS: &[&str] = &[
    "llm",
    "a: b",
    "#hash",
    "x #y",
    "modèle",
    "日本語",
    "emoji 🚀",
    "with space",
    "quote'single",
    "quote\"double",
    "colon:inside",
    "[brackets]",
    "*star",
    "|pipe",
    "line one\nline two\n",
    "no final break\nsecond",
    "kept\n\n",
    "  indented first\nline\n",
];

fn metadata(rng: &mut Rng) -> Value {
    let mut m = json!({"name": name(rng)});
    if rng.one_in(2) {
        m["namespace"] = json!(rng.pick(&["ml", "default"]));
    }
    for field in ["labels", "annotations"] {
        if rng.one_in(2) {
            let mut map = serde_json::Map::new();
            for i in 0..1 + rng.below(3) {
                let key = match rng.below(3) {
                    0 => format!("app.kubernetes.io/k{i}"),
                    1 => format!("{}{i}", rng.pick(STRINGS)),
                    _ => format!("key{i}"),
                };
                map.insert(key, json!(rng.pick(STRINGS)));
            }
            m[field] = Value::Object(map);
        }
    }
    m
}

fn container(rng: &mut Rng) -> Value {
    let mut c = json!({"name": name(rng), "image": rng.pick(IMAGES)});
    if rng.one_in(2) {
        c["command"] = json!(["/bin/sh", "-c"]);
    }
    if rng.one_in(2) {
        let args: Vec<Value> = (0..1 + rng.below(4))
            .map(|_| match rng.below(3) {
                0 => json!(format!("--max-model-len={}", rng.below(9000))),
                1 => json!("vllm serve meta-llama/Llama-3.2-1B-Instruct --trust-remote-code"),
                _ => scalar(rng),
            })
            .collect();
        c["args"] = Value::Array(args);
    }
    if rng.one_in(2) {
        c["env"] = json!([{"name": "A", "value": scalar(rng)},
                          {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}]);
    }
    if rng.one_in(2) {
        c["resources"] = json!({"limits": {"nvidia.com/gpu": rng.below(3), "memory": "20Gi"},
                                "requests": {"cpu": scalar(rng), "memory": "6G"}});
    }
    if rng.one_in(3) {
        c["ports"] = json!([{"containerPort": 8000 + rng.below(100), "name": "http"}]);
    }
    c
}

fn pod_spec(rng: &mut Rng) -> Value {
    let containers: Vec<Value> = (0..1 + rng.below(3)).map(|_| container(rng)).collect();
    let mut spec = json!({"containers": containers});
    if rng.one_in(3) {
        spec["volumes"] = json!([{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}},
                                 {"name": "s", "secret": {"secretName": "s", "defaultMode": 256}}]);
    }
    if rng.one_in(3) {
        spec["nodeSelector"] = string_map(rng, 1);
    }
    spec
}

fn workload(rng: &mut Rng, kind: &str) -> Value {
    let app = name(rng);
    json!({
        "apiVersion": "apps/v1", "kind": kind, "metadata": metadata(rng),
        "spec": {"replicas": rng.below(4), "selector": {"matchLabels": {"app": app}},
                 "template": {"metadata": {"labels": {"app": app}}, "spec": pod_spec(rng)}}
    })
}

/// One random object of the kinds real manifests hold.
pub fn object(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth == 0 { 10 } else { 9 }) {
        0 | 1 => workload(rng, "Deployment"),
        2 => workload(rng, "StatefulSet"),
        3 => {
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata(rng), "spec": pod_spec(rng)})
        }
        4 => {
            json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": metadata(rng),
                    "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name(rng)},
                             "minReplicas": rng.below(3), "maxReplicas": 5, "targetCPUUtilizationPercentage": 80}})
        }
        5 => {
            json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": metadata(rng),
                    "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name(rng)},
                             "minReplicas": rng.below(3), "maxReplicas": 5,
                             "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                                          "target": {"type": "Utilization", "averageUtilization": 60}}}]}})
        }
        6 => {
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": metadata(rng), "type": "Opaque",
                    "data": {"token": "aGVsbG8=\n", "b": "d29ybGQ="}, "stringData": string_map(rng, 2)})
        }
        7 => json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(rng),
                    "data": string_map(rng, 5)}),
        8 => json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata(rng),
                    "spec": {"selector": {"app": name(rng)}, "ports": [{"port": 80, "targetPort": 8000}]}}),
        _ => {
            let items: Vec<Value> = (0..1 + rng.below(3)).map(|_| object(rng, 1)).collect();
            json!({"apiVersion": "v1", "kind": "List", "items": items})
        }
    }
}

/// How one document is written.
pub struct Style {
    indent: usize,
    /// Block sequences under a key at the key's column (`- ` not indented).
    compact_seq: bool,
    flow_one_in: usize,
    tabs: bool,
    comments: bool,
    trailing_space: bool,
    anchors: bool,
}

impl Style {
    pub fn random(rng: &mut Rng) -> Style {
        Style {
            indent: *rng.pick(&[2, 2, 3, 4]),
            compact_seq: rng.one_in(2),
            flow_one_in: *rng.pick(&[3, 6, 1000]),
            tabs: rng.one_in(4),
            comments: rng.one_in(3),
            trailing_space: rng.one_in(4),
            anchors: rng.one_in(3),
        }
    }
}

pub struct Writer<'a> {
    rng: &'a mut Rng,
    style: Style,
    out: String,
    anchors: Vec<(String, Value)>,
}

impl<'a> Writer<'a> {
    pub fn new(rng: &'a mut Rng, style: Style) -> Writer<'a> {
        Writer {
            rng,
            style,
            out: String::new(),
            anchors: Vec::new(),
        }
    }

    pub fn finish(self) -> String {
        self.out
    }

    fn end_line(&mut self) {
        if self.style.comments && self.rng.one_in(12) {
            // A tab right after `-` is refused by kubectl (and check): now
            // and then, so that refusals are compared too.
            let tab = self.style.tabs && (!self.out.ends_with('-') || self.rng.one_in(20));
            self.out.push_str(if tab { "\t# note" } else { "  # note" });
        } else if self.style.trailing_space && self.rng.one_in(4) {
            self.out.push_str("  ");
        }
        self.out.push('\n');
        if self.style.comments && self.rng.one_in(20) {
            self.out.push_str("# a comment line\n");
        }
    }

    /// A key as written: plain when that reads back as the same string,
    /// otherwise quoted.
    fn key(&mut self, k: &str) -> String {
        // A null key (`~`) kubectl refuses: now and then.
        let null = matches!(k, "~" | "null") && !self.rng.one_in(10);
        if plain_ok(k, false) && !null && !self.rng.one_in(8) {
            k.to_owned()
        } else if self.rng.one_in(2) && !k.contains(['\n', '\t']) {
            format!("'{}'", k.replace('\'', "''"))
        } else {
            double_quoted(k)
        }
    }

    /// A scalar in flow or on the same line as its key.
    fn inline_scalar(&mut self, v: &Value, flow: bool) -> String {
        match v {
            Value::String(s) => {
                if plain_ok(s, flow) && !self.rng.one_in(4) {
                    s.clone()
                } else if !s.contains(['\n', '\t']) && self.rng.one_in(2) {
                    format!("'{}'", s.replace('\'', "''"))
                } else {
                    double_quoted(s)
                }
            }
            Value::Null => "null".to_owned(),
            other => {
                // Now and then the number or boolean as YAML 1.1 writes it.
                match other {
                    Value::Bool(true) if self.rng.one_in(3) => {
                        (*self.rng.pick(&["yes", "on", "True"])).to_owned()
                    }
                    Value::Bool(false) if self.rng.one_in(3) => {
                        (*self.rng.pick(&["no", "off", "N"])).to_owned()
                    }
                    Value::Number(n) if self.rng.one_in(4) && n.as_u64().is_some_and(|n| n > 0) => {
                        format!("0{:o}", n.as_u64().unwrap_or(1))
                    }
                    _ => other.to_string(),
                }
            }
        }
    }

    /// A flow collection, broken over lines whose columns and closing
    /// bracket's column are random: kubectl ignores indentation there.
    fn flow(&mut self, v: &Value) -> String {
        let broken = self.rng.one_in(2);
        let sep = |w: &mut Writer<'_>| -> String {
            if broken && w.rng.one_in(2) {
                // Any column, left of the key too; no tab in a line's
                // leading white space, where YAML 1.2 allows none
                // (libyaml does in a flow collection: not mirrored).
                let col = w.rng.below(12);
                format!("\n{}", " ".repeat(col))
            } else if w.style.tabs && w.rng.one_in(4) {
                "\t".to_owned()
            } else {
                " ".to_owned()
            }
        };
        match v {
            Value::Array(items) => {
                let mut s = "[".to_owned();
                for (i, item) in items.iter().enumerate() {
                    s.push_str(&sep(self));
                    s.push_str(&self.flow(item));
                    if i + 1 < items.len() || self.rng.one_in(5) {
                        s.push(',');
                    }
                }
                s.push_str(&sep(self));
                s.push(']');
                s
            }
            Value::Object(map) => {
                let mut s = "{".to_owned();
                for (i, (k, item)) in map.iter().enumerate() {
                    s.push_str(&sep(self));
                    let key = if plain_ok(k, true) {
                        k.clone()
                    } else {
                        double_quoted(k)
                    };
                    s.push_str(&key);
                    s.push_str(": ");
                    s.push_str(&self.flow(item));
                    if i + 1 < map.len() {
                        s.push(',');
                    }
                }
                s.push_str(&sep(self));
                s.push('}');
                s
            }
            scalar => self.inline_scalar(scalar, true),
        }
    }

    /// Writes `v` as the value after `key: ` (or `- `) at `col`.
    fn value(&mut self, v: &Value, col: usize, in_seq: bool) {
        let collection = matches!(v, Value::Array(a) if !a.is_empty())
            || matches!(v, Value::Object(m) if !m.is_empty());
        if self.style.anchors && collection && self.rng.one_in(10) {
            if let Some((label, _)) = self.anchors.iter().find(|(_, a)| a == v) {
                let label = label.clone();
                self.out.push_str(&format!(" *{label}"));
                self.end_line();
                return;
            }
            let label = format!("a{}", self.anchors.len());
            self.anchors.push((label.clone(), v.clone()));
            self.out.push_str(&format!(" &{label}"));
        }
        match v {
            Value::String(s) if s.contains('\n') && !self.rng.one_in(4) => {
                let chomp = if !s.ends_with('\n') {
                    "-"
                } else if s.ends_with("\n\n") {
                    "+"
                } else {
                    ""
                };
                let style = if self.rng.one_in(3) { ">" } else { "|" };
                let pad = self.style.indent;
                let indicator = if s.starts_with(' ') || self.rng.one_in(4) {
                    pad.to_string()
                } else {
                    String::new()
                };
                self.out.push_str(&format!(" {style}{indicator}{chomp}"));
                self.out.push('\n');
                let body = s.strip_suffix('\n').unwrap_or(s);
                let body = if chomp == "+" {
                    s.trim_end_matches('\n')
                } else {
                    body
                };
                for line in body.split('\n') {
                    if !line.is_empty() {
                        self.out.push_str(&" ".repeat(col + pad));
                        self.out.push_str(line);
                    }
                    self.out.push('\n');
                }
                if chomp == "+" {
                    for _ in 1..s.len() - s.trim_end_matches('\n').len() {
                        self.out.push('\n');
                    }
                }
            }
            Value::Array(items)
                if !items.is_empty() && !self.rng.one_in(self.style.flow_one_in) =>
            {
                self.end_line();
                let at = if self.style.compact_seq && !in_seq {
                    col
                } else {
                    col + self.style.indent
                };
                for item in items {
                    self.out.push_str(&" ".repeat(at));
                    self.out.push('-');
                    self.item(item, at + 2);
                }
            }
            Value::Object(map) if !map.is_empty() && !self.rng.one_in(self.style.flow_one_in) => {
                self.end_line();
                self.mapping(map, col + self.style.indent, None);
            }
            Value::Array(_) | Value::Object(_) => {
                let flow = self.flow(v);
                self.out.push(' ');
                self.out.push_str(&flow);
                self.end_line();
            }
            scalar => {
                let text = self.inline_scalar(scalar, false);
                self.out.push(' ');
                self.out.push_str(&text);
                self.end_line();
            }
        }
    }

    /// A sequence item after its `-`.
    fn item(&mut self, v: &Value, col: usize) {
        match v {
            Value::Object(map) if !map.is_empty() && !self.rng.one_in(self.style.flow_one_in) => {
                // `- key: value` with the rest of the map under the key.
                self.out.push(' ');
                self.mapping(map, col, Some(()));
            }
            _ => self.value(v, col - 2, true),
        }
    }

    /// A block mapping at `col`; `first_inline` when its first key follows
    /// a `- ` already written.
    fn mapping(
        &mut self,
        map: &serde_json::Map<String, Value>,
        col: usize,
        first_inline: Option<()>,
    ) {
        let mut first = first_inline.is_some();
        for (k, v) in map {
            if !first {
                self.out.push_str(&" ".repeat(col));
            }
            first = false;
            let key = self.key(k);
            self.out.push_str(&key);
            self.out.push(':');
            self.value(v, col, false);
        }
    }

    /// A whole document: a block map, or JSON (a flow map with quoted keys).
    pub fn document(&mut self, v: &Value) {
        match v {
            Value::Object(_) if self.rng.one_in(12) => {
                // A JSON document inside a YAML stream.
                self.out
                    .push_str(&serde_json::to_string(v).unwrap_or_default());
                self.out.push('\n');
            }
            Value::Object(map) => {
                if self.style.anchors && self.rng.one_in(4) {
                    self.merged(map);
                } else {
                    self.mapping(map, 0, None);
                }
            }
            other => {
                self.out.push_str(&other.to_string());
                self.out.push('\n');
            }
        }
    }

    /// The document with its metadata merged from an anchored map (`<<`).
    fn merged(&mut self, map: &serde_json::Map<String, Value>) {
        let mut rest = map.clone();
        let Some(Value::Object(meta)) = rest.remove("metadata") else {
            self.mapping(map, 0, None);
            return;
        };
        self.out.push_str("x-base: &base\n");
        let ind = self.style.indent;
        self.mapping(&meta, ind, None);
        self.out.push_str("metadata:\n");
        self.out.push_str(&" ".repeat(ind));
        self.out.push_str("<<: *base\n");
        self.out.push_str(&" ".repeat(ind));
        self.out.push_str("extra: merged\n");
        self.mapping(&rest, 0, None);
    }
}

/// Whether `s` written plain reads back as the string `s` in both YAML 1.1
/// and 1.2 syntax (not its type: `yes` plain is meant to be a boolean).
fn plain_ok(s: &str, flow: bool) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) || first.is_whitespace() {
        return false;
    }
    if s.ends_with(char::is_whitespace) || s.contains(": ") || s.contains(" #") || s.ends_with(':')
    {
        return false;
    }
    if s.contains(['\n', '\t', '\r']) {
        return false;
    }
    !(flow && s.contains([',', '[', ']', '{', '}']))
}

fn double_quoted(s: &str) -> String {
    let mut out = "\"".to_owned();
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            'é' => out.push_str("\\u00e9"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
