//! One replica at a time writes policy status and runs the audit, by
//! holding a coordination.k8s.io/v1 Lease; the others only serve admission.
//! The decision is a pure function of the Lease and the clock.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};

pub const LEASE_SECONDS: i32 = 15;

#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// No Lease yet: create one held by us.
    Create,
    /// Ours: renew it.
    Renew,
    /// Someone else's, expired: take it over.
    TakeOver,
    /// Someone else holds it.
    Follow,
}

pub fn decide(lease: Option<&Lease>, me: &str, now: jiff::Timestamp) -> Step {
    let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else {
        return if lease.is_some() {
            Step::TakeOver
        } else {
            Step::Create
        };
    };
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == me => return Step::Renew,
        // Released by a replica that shut down: free to take at once.
        None | Some("") => return Step::TakeOver,
        Some(_) => {}
    }
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS));
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    match renewed {
        Some(t) if t.as_second() + duration > now.as_second() => Step::Follow,
        _ => Step::TakeOver,
    }
}

fn held_by(me: &str, now: jiff::Timestamp, previous: Option<&LeaseSpec>) -> LeaseSpec {
    let same_holder = previous.is_some_and(|p| p.holder_identity.as_deref() == Some(me));
    LeaseSpec {
        holder_identity: Some(me.to_owned()),
        lease_duration_seconds: Some(LEASE_SECONDS),
        acquire_time: if same_holder {
            previous.and_then(|p| p.acquire_time.clone())
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(
            previous.and_then(|p| p.lease_transitions).unwrap_or(0)
                + i32::from(!same_holder && previous.is_some()),
        ),
        ..LeaseSpec::default()
    }
}

/// One round: returns whether we hold the Lease afterwards. Conflicts
/// (another replica wrote first) simply mean we do not.
pub async fn try_hold(api: &Api<Lease>, name: &str, me: &str) -> bool {
    let now = jiff::Timestamp::now();
    let current = match api.get_opt(name).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the Lease");
            return false;
        }
    };
    let step = decide(current.as_ref(), me, now);
    let result = match step {
        Step::Follow => return false,
        Step::Create => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    ..ObjectMeta::default()
                },
                spec: Some(held_by(me, now, None)),
            };
            api.create(&PostParams::default(), &lease).await.map(|_| ())
        }
        Step::Renew | Step::TakeOver => {
            let Some(mut lease) = current else {
                return false;
            };
            // resourceVersion stays set: a concurrent writer makes this a conflict.
            lease.spec = Some(held_by(me, now, lease.spec.as_ref()));
            api.replace(name, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
    };
    match result {
        Ok(()) => {
            if step != Step::Renew {
                tracing::info!(
                    lease = name,
                    holder = me,
                    "took the Lease: this replica writes status and audits"
                );
            }
            true
        }
        Err(e) => {
            tracing::debug!(error = %e, "Lease held elsewhere");
            false
        }
    }
}

/// Gives the Lease up on shutdown, if we hold it, so another replica takes
/// over status and audit at its next round instead of waiting for expiry.
/// Returns whether a release was written.
pub async fn release(api: &Api<Lease>, name: &str, me: &str) -> bool {
    let mut lease = match api.get_opt(name).await {
        Ok(Some(l)) => l,
        Ok(None) => return false,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the Lease to release it");
            return false;
        }
    };
    let Some(spec) = lease.spec.as_mut() else {
        return false;
    };
    if spec.holder_identity.as_deref() != Some(me) {
        return false;
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
    // resourceVersion stays set: if someone else took it meanwhile, the
    // write conflicts and their hold stands.
    match api.replace(name, &PostParams::default(), &lease).await {
        Ok(_) => {
            tracing::info!(lease = name, holder = me, "released the Lease");
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not release the Lease; it expires on its own");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed: &str) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(renewed.parse().unwrap())),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn who_holds_the_lease() {
        let now: jiff::Timestamp = "2026-11-25T10:00:20Z".parse().unwrap();
        assert_eq!(decide(None, "a", now), Step::Create);
        assert_eq!(
            decide(Some(&lease("a", "2026-11-25T10:00:00Z")), "a", now),
            Step::Renew
        );
        assert_eq!(
            decide(Some(&lease("b", "2026-11-25T10:00:10Z")), "a", now),
            Step::Follow
        );
        assert_eq!(
            decide(Some(&lease("b", "2026-11-25T10:00:00Z")), "a", now),
            Step::TakeOver,
            "expired"
        );
        let mut released = lease("b", "2026-11-25T10:00:19Z");
        released.spec.as_mut().unwrap().holder_identity = None;
        assert_eq!(
            decide(Some(&released), "a", now),
            Step::TakeOver,
            "released"
        );
    }

    #[test]
    fn a_take_over_counts_a_transition_and_a_renewal_does_not() {
        let now: jiff::Timestamp = "2026-11-25T10:00:20Z".parse().unwrap();
        let theirs = lease("b", "2026-11-25T10:00:00Z");
        let taken = held_by("a", now, theirs.spec.as_ref());
        assert_eq!(taken.lease_transitions, Some(1));
        assert_eq!(taken.acquire_time, Some(MicroTime(now)));
        let renewed = held_by("a", now, Some(&taken));
        assert_eq!(renewed.lease_transitions, Some(1));
    }
}
