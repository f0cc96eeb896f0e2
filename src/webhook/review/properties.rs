//! The fast reader, its fallback and [`read`] hold to what
//! `serde_json::from_slice::<AdmissionReview<DynamicObject>>` (kube's own
//! reading) makes of the same body, over generated AdmissionReviews: fields
//! in any order, optional ones present, absent or null, unknown fields,
//! strings escaped plainly or as `\uXXXX`, duplicated fields, nested
//! objects, `oldObject`, `dryRun`, `subResource`, `userInfo`, `options`,
//! and values of the wrong type. Each either gives kube's request (and
//! kube's objects, as text or as the workload read on the way) or refuses
//! where kube refuses.
//!
//! Where the webhook means to differ from kube, the oracle says so:
//! - it answers admission.k8s.io/v1 AdmissionReviews only, with a request;
//! - `options` is skipped unread (kube keeps it; nothing here uses it);
//! - an `oldObject` that is not a JSON object is ignored, not refused;
//! - the fast pass alone may refuse an object it cannot read as a workload:
//!   [`read`] then falls back, so only the fast pass's acceptances are held
//!   to kube's.

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::Value;

use super::{BadRequest, Envelope, Objects, ReadRequest, checked, fallback, read};
use crate::workload::Workload;

/// A JSON value as it is written in the body, and what it stands for.
#[derive(Clone, Debug)]
struct Json {
    text: String,
    /// A value kube reads for this field (false: the wrong type).
    ok: bool,
}

fn ok(text: String) -> Json {
    Json { text, ok: true }
}

fn bad(text: &str) -> Json {
    Json {
        text: text.to_owned(),
        ok: false,
    }
}

/// A string in JSON: serde_json's escaping, or every character as `\uXXXX`
/// (surrogate pairs beyond the BMP), which the reader must decode the same.
fn string(s: &str, unicode: bool) -> String {
    if !unicode {
        return serde_json::to_string(s).unwrap_or_default();
    }
    let mut out = String::from("\"");
    for unit in s.encode_utf16() {
        out.push_str(&format!("\\u{unit:04x}"));
    }
    out.push('"');
    out
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9-]{1,12}",
        // Quotes, backslashes, controls, non-ASCII and beyond the BMP.
        proptest::collection::vec(
            prop_oneof![
                Just('"'),
                Just('\\'),
                Just('\n'),
                Just('\u{1}'),
                Just('/'),
                Just('é'),
                Just('😀'),
                proptest::char::range('a', 'z'),
            ],
            0..10
        )
        .prop_map(|c| c.into_iter().collect()),
    ]
}

fn json_string() -> impl Strategy<Value = String> {
    (text(), any::<bool>()).prop_map(|(s, u)| string(&s, u))
}

/// A value of the wrong type for a string, bool, enum or struct field.
fn wrong() -> impl Strategy<Value = Json> {
    prop_oneof![
        Just(bad("42")),
        Just(bad("true")),
        Just(bad("[]")),
        Just(bad("{\"x\":1}")),
        Just(bad("\"x\"")),
        Just(bad("null")),
    ]
}

/// Members in a shuffled order, rendered as a JSON object; keys are
/// written plainly or as `\uXXXX` escapes.
fn object(members: Vec<(String, Json)>) -> impl Strategy<Value = Json> {
    let n = members.len();
    (
        Just(members).prop_shuffle(),
        proptest::collection::vec(any::<bool>(), n),
    )
        .prop_map(|(members, escaped)| {
            let ok = members.iter().all(|(_, v)| v.ok);
            let body: Vec<String> = members
                .iter()
                .zip(escaped)
                .map(|((k, v), e)| format!("{}:{}", string(k, e), v.text))
                .collect();
            Json {
                text: format!("{{{}}}", body.join(",")),
                ok,
            }
        })
}

/// A field that may be left out: `None` is absent.
type Member = Option<(String, Json)>;

/// `name` present with probability `p`: kube's required fields nearly
/// always, so that most bodies are read and the comparison is of requests.
fn member(
    name: &'static str,
    p: f64,
    value: impl Strategy<Value = Json>,
) -> impl Strategy<Value = Member> {
    proptest::option::weighted(p, value.prop_map(move |v| (name.to_owned(), v)))
}

/// The kinds the webhook tells apart: workloads read on the way, our own
/// kinds, autoscalers and a kind it does not judge.
fn kinds() -> impl Strategy<Value = (&'static str, &'static str, &'static str, &'static str)> {
    prop_oneof![
        4 => Just(("apps", "v1", "Deployment", "deployments")),
        3 => Just(("", "v1", "Pod", "pods")),
        3 => Just(("batch", "v1", "Job", "jobs")),
        1 => Just(("apps", "v1beta1", "Deployment", "deployments")),
        1 => Just((
            "waf-admission.dev",
            "v1alpha1",
            "WellArchitectedPolicy",
            "wellarchitectedpolicies"
        )),
        1 => Just(("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers")),
        1 => Just(("example.com", "v1", "Widget", "widgets")),
    ]
}

fn gvk(g: &'static str, v: &'static str, k: &'static str) -> BoxedStrategy<Json> {
    prop_oneof![
        40 => object(vec![
            ("group".into(), ok(string(g, false))),
            ("version".into(), ok(string(v, false))),
            ("kind".into(), ok(string(k, false))),
        ]),
        1 => object(vec![("group".into(), ok(string(g, false))), ("kind".into(), ok(string(k, false)))])
            .prop_map(|j| Json { ok: false, ..j }),
        1 => wrong(),
    ]
    .boxed()
}

fn gvr(g: &'static str, v: &'static str, r: &'static str) -> BoxedStrategy<Json> {
    prop_oneof![
        40 => object(vec![
            ("group".into(), ok(string(g, false))),
            ("version".into(), ok(string(v, false))),
            ("resource".into(), ok(string(r, false))),
        ]),
        1 => wrong(),
    ]
    .boxed()
}

/// Any JSON, nested: what unknown fields, labels' neighbours and
/// `options` carry.
fn any_json() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("-1.5e3".to_owned()),
        Just("18446744073709551616".to_owned()),
        json_string(),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4)
                .prop_map(|v| format!("[{}]", v.join(","))),
            proptest::collection::vec(("[a-z]{1,6}", inner), 0..4).prop_map(|m| {
                let m: Vec<String> = m
                    .into_iter()
                    .enumerate()
                    // Keys made unique: a duplicated key is a choice of the
                    // reader (last wins or refused), not of the body.
                    .map(|(i, (k, v))| format!("{}:{v}", string(&format!("{k}{i}"), false)))
                    .collect();
                format!("{{{}}}", m.join(","))
            }),
        ]
    })
}

/// A workload-shaped object kube reads: valid metadata, a spec that may be
/// a Deployment's, a Pod's or nonsense to the workload reader (replicas
/// as text), unknown fields anywhere.
fn workload_object(api_version: &'static str, kind: &'static str) -> impl Strategy<Value = Json> {
    let container = (json_string(), json_string(), proptest::option::of(0u8..4)).prop_map(
        |(name, image, gpus)| {
            let resources = gpus
                .map(|n| format!(",\"resources\":{{\"limits\":{{\"nvidia.com/gpu\":\"{n}\"}}}}"))
                .unwrap_or_default();
            format!("{{\"name\":{name},\"image\":{image}{resources}}}")
        },
    );
    let pod_spec = proptest::collection::vec(container, 0..3)
        .prop_map(|c| format!("{{\"containers\":[{}]}}", c.join(",")));
    let replicas = prop_oneof![
        Just("2".to_owned()),
        Just("null".to_owned()),
        Just("\"two\"".to_owned()),
    ];
    let labels = proptest::collection::btree_map("[a-z]{1,5}", json_string(), 0..3).prop_map(|m| {
        let m: Vec<String> = m
            .iter()
            .map(|(k, v)| format!("{}:{v}", string(k, false)))
            .collect();
        format!("{{{}}}", m.join(","))
    });
    (
        json_string(),
        proptest::option::of(json_string()),
        labels,
        pod_spec,
        replicas,
        any_json(),
        any::<bool>(),
    )
        .prop_flat_map(move |(name, namespace, labels, pod_spec, replicas, extra, typed)| {
            let mut metadata = vec![
                ("name".to_owned(), ok(name)),
                ("labels".to_owned(), ok(labels)),
            ];
            if let Some(ns) = namespace {
                metadata.push(("namespace".to_owned(), ok(ns)));
            }
            let spec = if kind == "Pod" {
                pod_spec
            } else {
                format!(
                    "{{\"replicas\":{replicas},\"template\":{{\"metadata\":{{}},\"spec\":{pod_spec}}}}}"
                )
            };
            (object(metadata), Just(spec), Just(extra), Just(typed))
        })
        .prop_flat_map(move |(metadata, spec, extra, typed)| {
            let mut members = vec![
                ("metadata".to_owned(), metadata),
                ("spec".to_owned(), ok(spec)),
                ("x-unknown".to_owned(), ok(extra)),
            ];
            if typed {
                members.push(("apiVersion".to_owned(), ok(string(api_version, false))));
                members.push(("kind".to_owned(), ok(string(kind, false))));
            }
            object(members)
        })
}

/// `object` or `oldObject`: an object, null, or not an object.
fn object_field(api_version: &'static str, kind: &'static str) -> BoxedStrategy<Json> {
    prop_oneof![
        12 => workload_object(api_version, kind),
        1 => Just(ok("{}".to_owned())),
        1 => Just(ok("null".to_owned())),
        1 => prop_oneof![Just(bad("42")), Just(bad("\"text\"")), Just(bad("[{}]"))],
    ]
    .boxed()
}

fn user_info() -> BoxedStrategy<Json> {
    let groups = proptest::collection::vec(json_string(), 0..3)
        .prop_map(|g| ok(format!("[{}]", g.join(","))));
    let extra = proptest::collection::btree_map("[a-z]{1,5}", json_string(), 0..2).prop_map(|m| {
        let m: Vec<String> = m
            .iter()
            .map(|(k, v)| format!("{}:[{v}]", string(k, false)))
            .collect();
        ok(format!("{{{}}}", m.join(",")))
    });
    (
        member(
            "username",
            0.9,
            prop_oneof![40 => json_string().prop_map(ok), 1 => wrong()],
        ),
        member("uid", 0.8, json_string().prop_map(ok)),
        member(
            "groups",
            0.8,
            prop_oneof![40 => groups, 1 => Just(bad("\"system:masters\""))],
        ),
        member("extra", 0.5, extra),
    )
        .prop_flat_map(|(a, b, c, d)| {
            let members: Vec<(String, Json)> = [a, b, c, d].into_iter().flatten().collect();
            prop_oneof![40 => object(members), 1 => wrong()]
        })
        .boxed()
}

fn optional_string() -> BoxedStrategy<Json> {
    prop_oneof![
        15 => json_string().prop_map(ok),
        5 => Just(ok("null".to_owned())),
        1 => prop_oneof![Just(bad("42")), Just(bad("{}"))],
    ]
    .boxed()
}

/// One generated AdmissionReview: its text, and what kube is given to read
/// as the same review (the body without the fields the webhook means to
/// ignore).
#[derive(Clone, Debug)]
struct Body {
    text: String,
    for_kube: String,
}

fn review() -> impl Strategy<Value = Body> {
    (kinds(), kinds())
        .prop_flat_map(|((g, v, k, r), (rg, rv, rk, rr))| {
            let api_version = if g.is_empty() {
                v
            } else {
                // Leaked once per generated kind: a handful in all.
                &*Box::leak(format!("{g}/{v}").into_boxed_str())
            };
            let operation = prop_oneof![
                10 => Just(ok("\"CREATE\"".into())),
                10 => Just(ok("\"UPDATE\"".into())),
                2 => Just(ok("\"DELETE\"".into())),
                2 => Just(ok("\"CONNECT\"".into())),
                1 => prop_oneof![Just(bad("\"PATCH\"")), Just(bad("1"))],
            ];
            let dry_run = prop_oneof![
                20 => any::<bool>().prop_map(|b| ok(b.to_string())),
                1 => prop_oneof![Just(bad("null")), Just(bad("\"true\""))],
            ];
            let name = prop_oneof![40 => json_string().prop_map(ok), 1 => wrong()];
            let options = any_json().prop_map(ok);
            (
                (
                    member(
                        "uid",
                        0.98,
                        prop_oneof![40 => json_string().prop_map(ok), 1 => wrong()],
                    ),
                    member("kind", 0.98, gvk(g, v, k)),
                    member("resource", 0.98, gvr(g, v, r)),
                    member("subResource", 0.5, optional_string()),
                    member(
                        "requestKind",
                        0.5,
                        prop_oneof![4 => gvk(rg, rv, rk), 1 => Just(ok("null".into()))],
                    ),
                    member(
                        "requestResource",
                        0.5,
                        prop_oneof![4 => gvr(rg, rv, rr), 1 => Just(ok("null".into()))],
                    ),
                    member("requestSubResource", 0.5, optional_string()),
                ),
                (
                    member("name", 0.8, name),
                    member("namespace", 0.9, optional_string()),
                    member("operation", 0.98, operation),
                    member("userInfo", 0.98, user_info()),
                    member("object", 0.9, object_field(api_version, k)),
                    member("oldObject", 0.5, object_field(api_version, k)),
                    member("dryRun", 0.5, dry_run),
                    member("options", 0.3, options),
                ),
                proptest::collection::vec(("x[a-z]{0,5}", any_json()), 0..3),
                // A known field written twice, by index into the members.
                proptest::option::weighted(0.05, any::<proptest::sample::Index>()),
            )
        })
        .prop_flat_map(
            |((a, b, c, d, e, f, g), (h, i, j, k, l, m, n, o), unknown, twice)| {
                let known: Vec<(String, Json)> = [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o]
                    .into_iter()
                    .flatten()
                    .collect();
                let mut members = known.clone();
                for (n, (key, value)) in unknown.into_iter().enumerate() {
                    members.push((format!("{key}{n}"), ok(value)));
                }
                // `options` twice is refused by kube and skipped here: that
                // difference is the one `options` already has. So is an
                // `oldObject` that is not an object: kube is given neither
                // copy of it (see below), so the two readers would be
                // compared on different bodies.
                if let Some(i) = twice
                    && let Some(dup) = known
                        .iter()
                        .filter(|(k, v)| k != "options" && (k != "oldObject" || v.ok))
                        .nth(i.index(known.len().max(1)))
                {
                    members.push(dup.clone());
                }
                let n = members.len();
                (
                    Just(members).prop_shuffle(),
                    proptest::collection::vec(any::<bool>(), n),
                    envelope(),
                )
            },
        )
        .prop_map(|(members, escaped, (api_version, kind, before))| {
            let render = |members: &mut dyn Iterator<Item = (&(String, Json), &bool)>| {
                let m: Vec<String> = members
                    .map(|((k, v), e)| format!("{}:{}", string(k, *e), v.text))
                    .collect();
                format!("{{{}}}", m.join(","))
            };
            let request = render(&mut members.iter().zip(&escaped));
            // kube is not given what the webhook ignores: an `oldObject`
            // that is not an object.
            let request_for_kube = render(
                &mut members
                    .iter()
                    .zip(&escaped)
                    .filter(|((k, v), _)| k != "oldObject" || v.ok),
            );
            let wrap = |request: &str| {
                let members = [
                    api_version.as_ref().map(|v| format!("\"apiVersion\":{v}")),
                    kind.as_ref().map(|k| format!("\"kind\":{k}")),
                    Some(format!("\"request\":{request}")),
                ];
                let mut members: Vec<String> = members.into_iter().flatten().collect();
                if !before {
                    members.reverse();
                }
                format!("{{{}}}", members.join(","))
            };
            Body {
                text: wrap(&request),
                for_kube: wrap(&request_for_kube),
            }
        })
}

/// The envelope's apiVersion and kind (`None`: absent), and whether they
/// come before the request.
fn envelope() -> impl Strategy<Value = (Option<String>, Option<String>, bool)> {
    let api_version = prop_oneof![
        30 => prop_oneof![
            Just("admission.k8s.io/v1".to_owned()),
            Just("\"admission.k8s.io\\/v1\"".to_owned()),
        ]
        .prop_map(|v| if v.starts_with('"') { v } else { string(&v, false) }),
        1 => Just(string("admission.k8s.io/v1beta1", false)),
        1 => Just("1".to_owned()),
    ];
    let kind = prop_oneof![
        20 => Just(string("AdmissionReview", false)),
        10 => Just(string("AdmissionReview", true)),
        1 => Just(string("Review", false)),
    ];
    (
        proptest::option::weighted(0.99, api_version),
        proptest::option::weighted(0.99, kind),
        any::<bool>(),
    )
}

/// kube's reading of the body, held to what the webhook answers: an
/// admission.k8s.io/v1 AdmissionReview with a request whose object, if
/// any, is a JSON object.
fn kube(body: &str) -> Option<AdmissionRequest<DynamicObject>> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_str(body).ok()?;
    let request: AdmissionRequest<DynamicObject> = review.try_into().ok()?;
    (request.types.api_version == "admission.k8s.io/v1" && request.types.kind == "AdmissionReview")
        .then_some(request)
}

/// The request's fields as JSON, objects and `options` left out (the
/// webhook reads its objects apart, and skips `options`).
fn fields(request: &AdmissionRequest<DynamicObject>) -> Value {
    let mut request = request.clone();
    request.object = None;
    request.old_object = None;
    request.options = None;
    let mut v = serde_json::to_value(&request).unwrap_or_default();
    v["types"] = serde_json::to_value(&request.types).unwrap_or_default();
    v
}

/// What the webhook read, held to kube's request; `Err` says how not.
fn same(
    got: &(Box<AdmissionRequest<DynamicObject>>, Objects<'_>),
    want: &AdmissionRequest<DynamicObject>,
) -> Result<(), String> {
    let (request, objects) = got;
    if fields(request) != fields(want) {
        return Err(format!(
            "request differs:\n got {}\nwant {}",
            fields(request),
            fields(want)
        ));
    }
    let as_kube = |raw: Option<&serde_json::value::RawValue>| {
        raw.map(|r| serde_json::from_str::<DynamicObject>(r.get()).map_err(|e| e.to_string()))
            .transpose()
    };
    match (&objects.read, &want.object) {
        (Some(read), Some(object)) => {
            if objects.new.is_some() {
                return Err("object both read and kept as text".into());
            }
            let text = serde_json::to_string(object).map_err(|e| e.to_string())?;
            let namespace = want.namespace.as_deref().unwrap_or("default");
            let slow =
                Workload::from_json_as(&text, namespace, &want.kind.api_version(), &want.kind.kind);
            match slow {
                Ok(Some(slow)) if format!("{slow:?}") == format!("{read:?}") => {}
                other => {
                    return Err(format!(
                        "object read on the way as {read:?}, read from kube's as {other:?}"
                    ));
                }
            }
        }
        (Some(read), None) => return Err(format!("an object read where kube has none: {read:?}")),
        (None, want_object) => {
            let new = as_kube(objects.new)?;
            if new.as_ref() != want_object.as_ref() {
                return Err(format!("object {new:?}, kube's {want_object:?}"));
            }
        }
    }
    let old = as_kube(objects.old)?;
    if old.as_ref() != want.old_object.as_ref() {
        return Err(format!("oldObject {old:?}, kube's {:?}", want.old_object));
    }
    Ok(())
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

/// Where `got` and `want` disagree: accepted against refused, or a
/// different request.
fn agree(
    path: &str,
    got: &Result<(Box<AdmissionRequest<DynamicObject>>, Objects<'_>), BadRequest>,
    want: &Option<AdmissionRequest<DynamicObject>>,
) -> Result<(), TestCaseError> {
    match (got, want) {
        (Ok(got), Some(want)) => {
            same(got, want).map_err(|e| TestCaseError::fail(format!("{path}: {e}")))
        }
        (Err(_), None) => Ok(()),
        (Ok(_), None) => Err(TestCaseError::fail(format!(
            "{path} accepts what kube refuses"
        ))),
        (Err(e), Some(_)) => Err(TestCaseError::fail(format!(
            "{path} refuses what kube reads: {}",
            e.0
        ))),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_readers_read_a_review_as_kube_does(body in review()) {
        let want = kube(&body.for_kube);
        let bytes = body.text.as_bytes();
        // The fast pass alone: what it accepts is kube's reading.
        let fast = serde_json::from_slice::<Envelope<'_, ReadRequest<'_>>>(bytes)
            .map_err(|e| BadRequest(e.to_string()))
            .and_then(checked);
        if fast.is_ok() {
            agree("the fast pass", &fast, &want)?;
        }
        // The fallback alone, and the two together, read it all as kube does.
        agree("the fallback", &fallback(bytes).and_then(checked), &want)?;
        agree("read", &read(bytes), &want)?;
    }
}

/// The generator reaches what the property is about: bodies kube reads,
/// bodies it refuses, objects read on the way and objects kept as text.
#[test]
fn the_generated_reviews_cover_both_paths() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut accepted, mut refused, mut read_on_the_way, mut as_text) = (0, 0, 0, 0);
    for _ in 0..400 {
        let body = review().new_tree(&mut runner).map(|t| t.current());
        let Ok(body) = body else { continue };
        if kube(&body.for_kube).is_some() {
            accepted += 1;
        } else {
            refused += 1;
        }
        if let Ok((_, objects)) = read(body.text.as_bytes()) {
            if objects.read.is_some() {
                read_on_the_way += 1;
            }
            if objects.new.is_some() {
                as_text += 1;
            }
        }
    }
    assert!(
        accepted > 40 && refused > 40 && read_on_the_way > 10 && as_text > 10,
        "accepted {accepted}, refused {refused}, read on the way {read_on_the_way}, as text {as_text}"
    );
}
