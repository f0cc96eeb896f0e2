//! A container's command line as the kubelet runs it: `$(VAR)` expanded
//! from the container's literal env, and split into words (servers are
//! often started as `sh -c "vllm serve … -tp 2"`), with `--flag value` and
//! `--flag=value` read alike. Used by rules that read server flags.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Container;

/// The container's env with literal values; Secrets and fields are not
/// known before the pod runs. A value may refer to earlier entries.
pub fn literal_env(c: &Container) -> BTreeMap<&str, String> {
    let mut env: BTreeMap<&str, String> = BTreeMap::new();
    for e in c.env.iter().flatten() {
        if let Some(v) = &e.value {
            let expanded = expand(v, &env);
            env.insert(e.name.as_str(), expanded);
        }
    }
    env
}

/// Kubernetes' `$(VAR)` expansion: a defined variable is replaced, an
/// undefined one is kept as written, `$$` is a literal `$`.
pub fn expand(s: &str, env: &BTreeMap<&str, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
            && let Some(v) = env.get(&inner[..end])
        {
            out.push_str(v);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// `command` then `args`, expanded and split on whitespace, quotes trimmed.
pub fn words(c: &Container, env: &BTreeMap<&str, String>) -> Vec<String> {
    c.command
        .iter()
        .flatten()
        .chain(c.args.iter().flatten())
        .flat_map(|a| {
            expand(a, env)
                .split_whitespace()
                .map(|w| w.trim_matches(|ch| ch == '"' || ch == '\'').to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The last value given to any of `flags` (`--flag v` or `--flag=v`), and
/// which flag gave it: the last one wins, as in argparse.
pub fn flag_value<'a>(
    words: &'a [String],
    flags: &[&'static str],
) -> Option<(&'a str, &'static str)> {
    let mut found = None;
    for (i, w) in words.iter().enumerate() {
        for flag in flags {
            let value = if w == flag {
                words.get(i + 1).map(String::as_str)
            } else {
                w.strip_prefix(flag).and_then(|r| r.strip_prefix('='))
            };
            if let Some(v) = value {
                found = Some((v, *flag));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dollar_expansion_follows_kubernetes() {
        let env = BTreeMap::from([("A", "1".to_owned())]);
        assert_eq!(expand("x$(A)y", &env), "x1y");
        assert_eq!(expand("$(B)", &env), "$(B)");
        assert_eq!(expand("$$(A)", &env), "$(A)");
        assert_eq!(expand("$A", &env), "$A");
    }

    #[test]
    fn flags_are_read_in_both_spellings_from_shell_strings_too() {
        let c: Container = serde_json::from_value(json!({
            "name": "c",
            "command": ["/bin/sh", "-c"],
            "args": ["vllm serve $(MODEL) --revision=abc"],
            "env": [{"name": "ORG", "value": "org"}, {"name": "MODEL", "value": "$(ORG)/m"}],
        }))
        .unwrap();
        let w = words(&c, &literal_env(&c));
        assert_eq!(
            w,
            ["/bin/sh", "-c", "vllm", "serve", "org/m", "--revision=abc"]
        );
        assert_eq!(flag_value(&w, &["--revision"]), Some(("abc", "--revision")));
        assert_eq!(flag_value(&w, &["--model"]), None);
    }
}
