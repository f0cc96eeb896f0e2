//! A container's command line as the kubelet runs it: `$(VAR)` expanded
//! from the container's literal env, and split into words (servers are
//! often started as `sh -c "vllm serve … -tp 2"`), with `--flag value` and
//! `--flag=value` read alike. Used by rules that read server flags.
//! [`shell_commands`] splits a `sh -c` script as a POSIX shell would:
//! quotes, escapes, `$VAR` and `${VAR}`, `;`, `&&`, `|`, newlines.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Container;

/// The container's env with literal values; Secrets and fields are not
/// known before the pod runs. A value may refer to earlier entries. A
/// later entry of the same name wins, as in the kubelet, so a literal
/// followed by a `valueFrom` of that name is not literal.
pub fn literal_env(c: &Container) -> BTreeMap<&str, String> {
    let mut env: BTreeMap<&str, String> = BTreeMap::new();
    for e in c.env.iter().flatten() {
        if e.value_from.is_some() {
            env.remove(e.name.as_str());
        } else {
            let expanded = expand(e.value.as_deref().unwrap_or_default(), &env);
            env.insert(e.name.as_str(), expanded);
        }
    }
    env
}

/// The env names whose value comes from a Secret, ConfigMap, field or
/// resource (`valueFrom`) when the pod starts: unknown here.
pub fn runtime_env(c: &Container) -> BTreeSet<&str> {
    let mut names = BTreeSet::new();
    for e in c.env.iter().flatten() {
        if e.value_from.is_some() {
            names.insert(e.name.as_str());
        } else {
            names.remove(e.name.as_str());
        }
    }
    names
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

/// One simple command of a shell script: its `NAME=value` prefix
/// assignments and its words after expansion.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShellCommand {
    pub assignments: Vec<(String, String)>,
    pub words: Vec<String>,
}

/// A piece of a word as written: literal text, or a `$NAME` / `${NAME}`
/// reference (with the text it was written as).
enum Piece {
    Text {
        text: String,
        quoted: bool,
    },
    Var {
        name: String,
        written: String,
        quoted: bool,
    },
}

enum Token {
    Word(Vec<Piece>),
    /// `;`, `&`, `&&`, `|`, `||`, a newline, `(` or `)`: ends a command.
    Separator,
}

/// Splits a `sh -c` script into its simple commands as a POSIX shell
/// would: single quotes literal, double quotes with `\$`, `\"`, `\\`
/// escapes, backslash escapes and line continuations, `#` comments,
/// redirections dropped. `$NAME` and `${NAME}` expand from `env` and from
/// the script's own assignments (`export A=b`, `A=b`); unquoted values are
/// split on whitespace. A reference with no known value (a Secret, an
/// image's ENV, `$(cmd)`, `${A:-b}`, `$1`) is kept as written, so a reader
/// can tell the word is only known at run time. None when a quote or `${`
/// is never closed: the shell would refuse the script.
pub fn shell_commands(script: &str, env: &BTreeMap<&str, String>) -> Option<Vec<ShellCommand>> {
    let mut vars: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let mut out = Vec::new();
    let mut command: Vec<Vec<Piece>> = Vec::new();
    let tokens = tokenize(script)?;
    let mut tokens = tokens.into_iter().peekable();
    while let Some(token) = tokens.next() {
        if let Token::Word(w) = token {
            command.push(w);
        }
        let ended = !matches!(tokens.peek(), Some(Token::Word(_)));
        if ended && !command.is_empty() {
            out.push(simple_command(std::mem::take(&mut command), &mut vars));
        }
    }
    Some(
        out.into_iter()
            .filter(|c: &ShellCommand| !c.words.is_empty())
            .collect(),
    )
}

/// Expands one command's words; assignments without a command, and
/// `export`, set variables for the commands after it.
fn simple_command(words: Vec<Vec<Piece>>, vars: &mut BTreeMap<String, String>) -> ShellCommand {
    let mut cmd = ShellCommand::default();
    let mut words = words.into_iter().peekable();
    while let Some(w) = words.next_if(|w| assignment_name(w).is_some()) {
        if let Some(a) = assignment(&w, vars) {
            cmd.assignments.push(a);
        }
    }
    for w in words {
        let exporting = cmd.words.first().is_some_and(|f| f == "export");
        if exporting && let Some(a) = assignment(&w, vars) {
            vars.insert(a.0, a.1);
            continue;
        }
        let mut fields = Vec::new();
        let mut current: Option<String> = None;
        for piece in &w {
            match piece {
                Piece::Text { text, .. } => current.get_or_insert_default().push_str(text),
                Piece::Var {
                    name,
                    written,
                    quoted,
                } => match vars.get(name) {
                    Some(value) if *quoted => current.get_or_insert_default().push_str(value),
                    Some(value) => {
                        for (i, part) in value.split([' ', '\t', '\n']).enumerate() {
                            if i > 0
                                && let Some(done) = current.take()
                            {
                                fields.push(done);
                            }
                            if !part.is_empty() {
                                current.get_or_insert_default().push_str(part);
                            }
                        }
                    }
                    None => current.get_or_insert_default().push_str(written),
                },
            }
        }
        // An empty quoted word ('') is a word; an unquoted empty expansion is none.
        let quoted = w
            .iter()
            .any(|p| matches!(p, Piece::Text { quoted: true, .. }));
        if let Some(done) = current.filter(|d| !d.is_empty() || quoted) {
            fields.push(done);
        }
        cmd.words.extend(fields);
    }
    if cmd.words.is_empty() {
        vars.extend(cmd.assignments.iter().cloned());
    }
    cmd
}

/// `NAME` when the word starts, unquoted, with `NAME=`.
fn assignment_name(w: &[Piece]) -> Option<&str> {
    let Some(Piece::Text {
        text,
        quoted: false,
    }) = w.first()
    else {
        return None;
    };
    let (name, _) = text.split_once('=')?;
    let mut chars = name.chars();
    let first = chars.next()?;
    ((first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_'))
    .then_some(name)
}

/// The name and value of an assignment word; its value is not split.
fn assignment(w: &[Piece], vars: &BTreeMap<String, String>) -> Option<(String, String)> {
    let name = assignment_name(w)?.to_owned();
    let mut value = String::new();
    for (i, piece) in w.iter().enumerate() {
        match piece {
            Piece::Text { text, .. } if i == 0 => value.push_str(&text[name.len() + 1..]),
            Piece::Text { text, .. } => value.push_str(text),
            Piece::Var { name, written, .. } => {
                value.push_str(vars.get(name).map_or(written.as_str(), String::as_str))
            }
        }
    }
    Some((name, value))
}

fn tokenize(script: &str) -> Option<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut word: Option<Vec<Piece>> = None;
    let mut drop_next_word = false;
    let mut chars = script.chars().peekable();
    let text = |word: &mut Option<Vec<Piece>>, c: char, quoted: bool| {
        let pieces = word.get_or_insert_default();
        match pieces.last_mut() {
            Some(Piece::Text { text, quoted: q }) if *q == quoted => text.push(c),
            _ => pieces.push(Piece::Text {
                text: c.to_string(),
                quoted,
            }),
        }
    };
    let end = |word: &mut Option<Vec<Piece>>, tokens: &mut Vec<Token>, drop: &mut bool| {
        if let Some(w) = word.take() {
            if std::mem::take(drop) {
                return;
            }
            tokens.push(Token::Word(w));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\r' => end(&mut word, &mut tokens, &mut drop_next_word),
            '\n' | ';' | '&' | '|' | '(' | ')' => {
                end(&mut word, &mut tokens, &mut drop_next_word);
                tokens.push(Token::Separator);
            }
            '<' | '>' => {
                // `2>&1`, `> log`, `<file`: the descriptor and the target go.
                let descriptor = matches!(&word, Some(p) if p.len() == 1
                    && matches!(&p[0], Piece::Text { text, quoted: false } if text.chars().all(|d| d.is_ascii_digit())));
                if descriptor {
                    word = None;
                } else {
                    end(&mut word, &mut tokens, &mut drop_next_word);
                }
                while chars.next_if(|n| matches!(n, '<' | '>')).is_some() {}
                if chars.next_if_eq(&'&').is_some()
                    && chars
                        .peek()
                        .is_some_and(|d| d.is_ascii_digit() || *d == '-')
                {
                    while chars.next_if(|d| d.is_ascii_digit() || *d == '-').is_some() {}
                } else {
                    drop_next_word = true;
                }
            }
            '#' if word.is_none() => while chars.next_if(|n| *n != '\n').is_some() {},
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(n) => text(&mut word, n, true),
            },
            '\'' => {
                word.get_or_insert_default().push(Piece::Text {
                    text: String::new(),
                    quoted: true,
                });
                loop {
                    match chars.next()? {
                        '\'' => break,
                        n => text(&mut word, n, true),
                    }
                }
            }
            '"' => {
                word.get_or_insert_default().push(Piece::Text {
                    text: String::new(),
                    quoted: true,
                });
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            '\n' => {}
                            n @ ('$' | '`' | '"' | '\\') => text(&mut word, n, true),
                            n => {
                                text(&mut word, '\\', true);
                                text(&mut word, n, true);
                            }
                        },
                        '$' => dollar(&mut chars, &mut word, true)?,
                        n => text(&mut word, n, true),
                    }
                }
            }
            '$' => dollar(&mut chars, &mut word, false)?,
            _ => text(&mut word, c, false),
        }
    }
    end(&mut word, &mut tokens, &mut drop_next_word);
    Some(tokens)
}

/// Reads what follows a `$`: a variable, or something only the running
/// shell knows (`$(…)`, `${A:-b}`, `$1`), kept as written.
fn dollar(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    word: &mut Option<Vec<Piece>>,
    quoted: bool,
) -> Option<()> {
    let pieces = word.get_or_insert_default();
    let name_char = |c: &char| c.is_ascii_alphanumeric() || *c == '_';
    match chars.peek() {
        Some('{') => {
            chars.next();
            let mut inner = String::new();
            loop {
                match chars.next()? {
                    '}' => break,
                    c => inner.push(c),
                }
            }
            let plain = !inner.is_empty()
                && inner.chars().all(|c| name_char(&c))
                && !inner.starts_with(|c: char| c.is_ascii_digit());
            let written = format!("${{{inner}}}");
            let name = if plain { inner } else { written.clone() };
            pieces.push(Piece::Var {
                name,
                written,
                quoted,
            });
        }
        Some('(') => {
            let mut written = String::from("$");
            let mut depth = 0;
            for c in chars.by_ref() {
                written.push(c);
                match c {
                    '(' => depth += 1,
                    ')' if depth == 1 => break,
                    ')' => depth -= 1,
                    _ => {}
                }
            }
            pieces.push(Piece::Var {
                name: written.clone(),
                written,
                quoted,
            });
        }
        Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
            let mut name = String::new();
            while let Some(c) = chars.next_if(name_char) {
                name.push(c);
            }
            pieces.push(Piece::Var {
                written: format!("${name}"),
                name,
                quoted,
            });
        }
        Some(c) if c.is_ascii_digit() || matches!(c, '@' | '*' | '#' | '?' | '$' | '!' | '-') => {
            let written = format!("${}", chars.next()?);
            pieces.push(Piece::Var {
                name: written.clone(),
                written,
                quoted,
            });
        }
        _ => pieces.push(Piece::Text {
            text: "$".into(),
            quoted,
        }),
    }
    Some(())
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

    fn split(script: &str, env: &[(&'static str, &str)]) -> Vec<Vec<String>> {
        let env = env.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        shell_commands(script, &env)
            .expect("a script the shell accepts")
            .into_iter()
            .map(|c| c.words)
            .collect()
    }

    #[test]
    fn shell_quotes_keep_spaces_and_lose_their_marks() {
        assert_eq!(
            split(
                r#"vllm serve 'org/m' --chat-template "{{ a }} 'b'" --x=it\'s"#,
                &[]
            ),
            [[
                "vllm",
                "serve",
                "org/m",
                "--chat-template",
                "{{ a }} 'b'",
                "--x=it's"
            ]]
        );
        assert_eq!(split(r#"a "" 'c'd"e f""#, &[]), [["a", "", "cde f"]]);
        assert_eq!(split(r#"echo "a\"b\$c\x""#, &[]), [["echo", "a\"b$c\\x"]]);
    }

    #[test]
    fn shell_commands_end_at_operators_newlines_and_comments() {
        assert_eq!(
            split(
                "set -e # strict\npip install x && exec vllm serve m \\\n  --tp 2 2>&1 | tee /log; echo done > /f",
                &[]
            ),
            vec![
                vec!["set", "-e"],
                vec!["pip", "install", "x"],
                vec!["exec", "vllm", "serve", "m", "--tp", "2"],
                vec!["tee", "/log"],
                vec!["echo", "done"],
            ]
        );
        assert!(shell_commands("echo 'open", &BTreeMap::new()).is_none());
        assert!(shell_commands("echo \"open", &BTreeMap::new()).is_none());
    }

    #[test]
    fn shell_variables_expand_from_env_and_the_script_itself() {
        assert_eq!(
            split(
                r#"export TP=4; M=org/m; vllm serve $M --tp "$TP" $EXTRA ${X:-1} "${SECRET}" $(cat f) $ARGS"#,
                &[("ARGS", " --a 1  --b ")]
            ),
            [
                vec!["export"],
                vec![
                    "vllm",
                    "serve",
                    "org/m",
                    "--tp",
                    "4",
                    "$EXTRA",
                    "${X:-1}",
                    "${SECRET}",
                    "$(cat f)",
                    "--a",
                    "1",
                    "--b"
                ],
            ]
        );
        let env = BTreeMap::from([("A", "x".to_owned())]);
        let commands = shell_commands("NUM_SHARD=2 A=y text-generation-launcher $A", &env).unwrap();
        assert_eq!(
            commands,
            [ShellCommand {
                assignments: vec![("NUM_SHARD".into(), "2".into()), ("A".into(), "y".into())],
                words: vec!["text-generation-launcher".into(), "x".into()],
            }]
        );
    }

    #[test]
    fn a_later_value_from_hides_an_earlier_literal() {
        let c: Container = serde_json::from_value(json!({
            "name": "c",
            "env": [
                {"name": "A", "value": "1"},
                {"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "a"}}},
                {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "B", "value": "2"},
            ],
        }))
        .unwrap();
        assert_eq!(literal_env(&c), BTreeMap::from([("B", "2".to_owned())]));
        assert_eq!(runtime_env(&c), BTreeSet::from(["A"]));
    }
}
