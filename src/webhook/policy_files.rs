//! Standalone `serve --policy FILE|DIR`: the files are looked at every
//! [`POLL`] and, when one changed, appeared or went away, read and compiled
//! again. A set that compiles replaces the old one between two requests
//! (the snapshot is swapped; a request in flight finishes with the one it
//! started with), so a changed file, or a ConfigMap Kubernetes updates in
//! its mount, takes effect without a restart and without a failed request.
//! A set that does not compile, or holds no policy at all, is refused and
//! said, and the previous policies stay in force.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::tls::{Stamp, stamp};
use crate::PolicySet;
use crate::load::{self, manifest_files};
use crate::metrics::Metrics;
use crate::state::{Snapshot, State};

/// How often the files are looked at.
pub const POLL: Duration = Duration::from_secs(2);

/// Each file under the paths, with what identifies its version on disk; a
/// path that cannot be listed is there with no stamp.
type Stamps = Vec<(PathBuf, Option<Stamp>)>;

fn stamps(paths: &[PathBuf]) -> Stamps {
    let mut out = Vec::new();
    for path in paths {
        match manifest_files(path) {
            Ok(files) => out.extend(files.into_iter().map(|f| {
                let s = stamp(&f);
                (f, s)
            })),
            Err(_) => out.push((path.clone(), None)),
        }
    }
    out
}

/// The policy files a standalone webhook was started with.
pub struct PolicyFiles {
    paths: Vec<PathBuf>,
    seen: Stamps,
}

/// What a look at the files found.
#[derive(Debug, PartialEq, Eq)]
pub enum Refresh {
    Unchanged,
    /// Changed, and now in force.
    Reloaded {
        policies: usize,
    },
    /// Changed, refused; the previous policies stay.
    Refused(String),
}

/// Every problem the policy files have, each naming its file; shown as
/// one message, `; ` between them.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct PolicyFilesError(pub Vec<crate::Error>);

impl PolicyFiles {
    /// Stamps the files as they are now: call before the first load, so a
    /// change made during it is seen at the next look.
    pub fn new(paths: Vec<PathBuf>) -> Self {
        let seen = stamps(&paths);
        PolicyFiles { paths, seen }
    }

    /// Reads and compiles the files; every problem, each naming its file,
    /// in one message.
    pub fn load(&self) -> Result<PolicySet, PolicyFilesError> {
        load::load_policies(&self.paths).map_err(PolicyFilesError)
    }

    /// Reloads the policies into `state` if any file changed since the last look.
    pub fn refresh(&mut self, state: &State, metrics: &Metrics) -> Refresh {
        let now = stamps(&self.paths);
        if now == self.seen {
            return Refresh::Unchanged;
        }
        self.seen = now;
        let refused = |why: String| {
            metrics.policy_reload(false);
            tracing::error!(error = %why, "changed policy files refused; the previous policies stay in force");
            Refresh::Refused(why)
        };
        match self.load() {
            Ok(set) if set.policies().is_empty() => refused(
                "no WellArchitectedPolicy in the files (to judge with none, restart without --policy)"
                    .to_owned(),
            ),
            Ok(set) => {
                let policies = set.policies().len();
                let context = state.load().context.clone();
                state.store(Snapshot {
                    policies: set,
                    context,
                });
                metrics.policy_reload(true);
                tracing::info!(policies, "policy files reloaded");
                Refresh::Reloaded { policies }
            }
            Err(why) => refused(why.to_string()),
        }
    }
}

/// Looks at the files every `every`, off the runtime's worker threads,
/// until the process ends.
pub async fn follow(
    mut files: PolicyFiles,
    state: Arc<State>,
    metrics: Arc<Metrics>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let (state, metrics) = (state.clone(), metrics.clone());
        let looked = tokio::task::spawn_blocking(move || {
            files.refresh(&state, &metrics);
            files
        })
        .await;
        match looked {
            Ok(f) => files = f,
            Err(e) => {
                tracing::error!(error = %e, "looking at the policy files failed; they are no longer followed");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::baseline::BASELINE_YAML;

    fn named(name: &str) -> String {
        BASELINE_YAML.replacen("name: baseline", &format!("name: {name}"), 1)
    }

    fn names(state: &State) -> Vec<String> {
        state
            .load()
            .policies
            .policies()
            .iter()
            .map(|p| p.name.clone())
            .collect()
    }

    /// Writes as Kubernetes updates a ConfigMap mount and editors save:
    /// a new file renamed over the old.
    fn replace(path: &std::path::Path, text: &str) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[test]
    fn a_changed_file_replaces_the_policies_and_a_broken_one_keeps_them() {
        assert!(BASELINE_YAML.contains("name: baseline"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("policy.yaml");
        std::fs::write(&file, named("first")).unwrap();
        let mut files = PolicyFiles::new(vec![dir.path().to_owned()]);
        let state = State::standalone(load::load_policies(&[dir.path().to_owned()]).unwrap());
        let metrics = Metrics::new();
        assert_eq!(names(&state), ["first"]);
        assert_eq!(files.refresh(&state, &metrics), Refresh::Unchanged);

        replace(&file, &named("second"));
        assert_eq!(
            files.refresh(&state, &metrics),
            Refresh::Reloaded { policies: 1 }
        );
        assert_eq!(names(&state), ["second"]);
        assert_eq!(files.refresh(&state, &metrics), Refresh::Unchanged);

        // A second file in the folder is a change too.
        std::fs::write(dir.path().join("more.yaml"), named("third")).unwrap();
        assert_eq!(
            files.refresh(&state, &metrics),
            Refresh::Reloaded { policies: 2 }
        );
        assert_eq!(names(&state), ["second", "third"]);

        replace(
            &file,
            "apiVersion: waf-admission.dev/v1alpha1\nkind: WellArchitectedPolicy\nmetadata: {name: broken}\nspec: {action: Sometimes}\n",
        );
        let Refresh::Refused(why) = files.refresh(&state, &metrics) else {
            panic!("a policy that does not compile is refused");
        };
        assert!(why.contains("policy.yaml"), "names the file: {why}");
        assert_eq!(names(&state), ["second", "third"], "the previous ones stay");

        std::fs::write(&file, "").unwrap();
        std::fs::remove_file(dir.path().join("more.yaml")).unwrap();
        assert!(matches!(
            files.refresh(&state, &metrics),
            Refresh::Refused(why) if why.contains("no WellArchitectedPolicy")
        ));
        assert_eq!(names(&state), ["second", "third"]);

        replace(&file, &named("fourth"));
        assert_eq!(
            files.refresh(&state, &metrics),
            Refresh::Reloaded { policies: 1 }
        );
        assert_eq!(names(&state), ["fourth"]);
        let text = metrics.encode();
        assert!(
            text.contains(r#"policy_reloads_total{result="ok"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"policy_reloads_total{result="refused"} 2"#),
            "{text}"
        );
    }

    #[test]
    fn a_file_that_goes_away_is_refused_and_its_return_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("policy.yaml");
        std::fs::write(&file, named("first")).unwrap();
        let mut files = PolicyFiles::new(vec![file.clone()]);
        let state = State::standalone(load::load_policies(std::slice::from_ref(&file)).unwrap());
        let metrics = Metrics::new();
        std::fs::remove_file(&file).unwrap();
        assert!(matches!(
            files.refresh(&state, &metrics),
            Refresh::Refused(_)
        ));
        assert_eq!(names(&state), ["first"]);
        std::fs::write(&file, named("back")).unwrap();
        assert_eq!(
            files.refresh(&state, &metrics),
            Refresh::Reloaded { policies: 1 }
        );
        assert_eq!(names(&state), ["back"]);
    }
}
