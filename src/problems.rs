//! Checks every spec uses when it collects its problems (a policy, an
//! exception, a rule's settings), so they word the same mistake the same
//! way.

/// A list that names the same thing twice is a typo or a merge gone wrong:
/// say so rather than guess which entry was meant.
pub fn duplicates<'a>(items: impl Iterator<Item = &'a str>, at: &str, problems: &mut Vec<String>) {
    let mut seen = std::collections::BTreeSet::new();
    for (i, item) in items.enumerate() {
        if !seen.insert(item) {
            problems.push(format!("{at}[{i}]: {item:?} is listed twice"));
        }
    }
}
