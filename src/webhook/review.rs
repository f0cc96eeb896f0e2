//! Reading the AdmissionReview body: one pass over the bytes, no tree. The
//! fast path ([`ReadRequest`]) reads `request.object` into a workload on the
//! way when the fields before it say what it is; a body whose object does
//! not read that way is read again ([`RawRequest`], the object kept as
//! text), which words its error. Either way the request is kube's
//! `AdmissionRequest`, as `serde_json` would read it, without the objects.

use std::borrow::Cow;

use k8s_openapi::api::authentication::v1::UserInfo;
use kube::core::admission::{AdmissionRequest, Operation};
use kube::core::{DynamicObject, GroupVersionKind, GroupVersionResource, TypeMeta};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::policy::GROUP;
use crate::workload::{ReadAs, Workload};

/// The AdmissionReview as it arrives, read in one pass: `R` is
/// [`ReadRequest`] (the object read as it goes) or, when that fails,
/// [`RawRequest`] (the object kept as text).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a, R> {
    #[serde(default, borrow)]
    api_version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default = "Option::default")]
    request: Option<R>,
}

/// A [`RawRequest`] whose `request.object` was read into a workload in the
/// same pass as the rest ([`ReadAs`]), when the fields before it say what
/// it is: `kind` a workload type and `namespace`, as the apiserver writes
/// them (Go writes struct fields in order, and both come before `object`),
/// and no `operation` of DELETE or CONNECT before it. Otherwise, or for our
/// own kinds, the object stays text as in `RawRequest`.
struct ReadRequest<'a> {
    raw: RawRequest<'a>,
    read: Option<Workload>,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum Field {
    Uid,
    Kind,
    Resource,
    SubResource,
    RequestKind,
    RequestResource,
    RequestSubResource,
    Name,
    Namespace,
    Operation,
    UserInfo,
    Object,
    OldObject,
    DryRun,
    #[serde(other)]
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for ReadRequest<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ReadRequestVisitor(std::marker::PhantomData))
    }
}

struct ReadRequestVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> serde::de::Visitor<'de> for ReadRequestVisitor<'a> {
    type Value = ReadRequest<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an AdmissionRequest")
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        use serde::de::Error as _;
        // Each field at most once, as the derived reading of `RawRequest` has it.
        fn once<'de, M: serde::de::MapAccess<'de>, T: Deserialize<'de>>(
            map: &mut M,
            slot: &mut Option<T>,
            name: &'static str,
        ) -> Result<(), M::Error> {
            if slot.is_some() {
                return Err(M::Error::duplicate_field(name));
            }
            *slot = Some(map.next_value()?);
            Ok(())
        }
        let mut uid: Option<String> = None;
        let mut kind: Option<GroupVersionKind> = None;
        let mut resource: Option<GroupVersionResource> = None;
        let mut sub_resource: Option<Option<String>> = None;
        let mut request_kind: Option<Option<GroupVersionKind>> = None;
        let mut request_resource: Option<Option<GroupVersionResource>> = None;
        let mut request_sub_resource: Option<Option<String>> = None;
        let mut name: Option<String> = None;
        let mut namespace: Option<Option<String>> = None;
        let mut operation: Option<Operation> = None;
        let mut user_info: Option<UserInfo> = None;
        let mut object: Option<Option<&'de RawValue>> = None;
        let mut read: Option<Workload> = None;
        let mut old_object: Option<Option<&'de RawValue>> = None;
        let mut dry_run: Option<bool> = None;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Uid => once(&mut map, &mut uid, "uid")?,
                Field::Kind => once(&mut map, &mut kind, "kind")?,
                Field::Resource => once(&mut map, &mut resource, "resource")?,
                Field::SubResource => once(&mut map, &mut sub_resource, "subResource")?,
                Field::RequestKind => once(&mut map, &mut request_kind, "requestKind")?,
                Field::RequestResource => once(&mut map, &mut request_resource, "requestResource")?,
                Field::RequestSubResource => {
                    once(&mut map, &mut request_sub_resource, "requestSubResource")?
                }
                Field::Name => once(&mut map, &mut name, "name")?,
                Field::Namespace => once(&mut map, &mut namespace, "namespace")?,
                Field::Operation => once(&mut map, &mut operation, "operation")?,
                Field::UserInfo => once(&mut map, &mut user_info, "userInfo")?,
                Field::Object => {
                    if object.is_some() || read.is_some() {
                        return Err(M::Error::duplicate_field("object"));
                    }
                    // A DELETE's object is null and a CONNECT's is not a workload.
                    let judged = !matches!(operation, Some(Operation::Delete | Operation::Connect));
                    let seed_for = match (&kind, &namespace) {
                        (Some(k), Some(Some(ns))) if judged && k.group != GROUP => Some((k, ns)),
                        _ => None,
                    };
                    let api_version = seed_for.map(|(k, _)| k.api_version());
                    let seed =
                        seed_for
                            .zip(api_version.as_deref())
                            .and_then(|((k, ns), api_version)| {
                                ReadAs::for_type(api_version, &k.kind, ns)
                            });
                    match seed {
                        Some(seed) => read = Some(map.next_value_seed(seed)?),
                        None => object = Some(map.next_value()?),
                    }
                }
                Field::OldObject => once(&mut map, &mut old_object, "oldObject")?,
                Field::DryRun => once(&mut map, &mut dry_run, "dryRun")?,
                Field::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        let raw = RawRequest {
            uid: uid.ok_or_else(|| M::Error::missing_field("uid"))?,
            kind: kind.ok_or_else(|| M::Error::missing_field("kind"))?,
            resource: resource.ok_or_else(|| M::Error::missing_field("resource"))?,
            sub_resource: sub_resource.flatten(),
            request_kind: request_kind.flatten(),
            request_resource: request_resource.flatten(),
            request_sub_resource: request_sub_resource.flatten(),
            name: name.unwrap_or_default(),
            namespace: namespace.flatten(),
            operation: operation.ok_or_else(|| M::Error::missing_field("operation"))?,
            user_info: user_info.ok_or_else(|| M::Error::missing_field("userInfo"))?,
            object: object.flatten(),
            old_object: old_object.flatten(),
            dry_run: dry_run.unwrap_or_default(),
        };
        Ok(ReadRequest { raw, read })
    }
}

/// kube's `AdmissionRequest` with the objects kept as JSON text (borrowed
/// slices of the body: `oldObject` is parsed only for an UPDATE that would
/// be denied); `options` is skipped unparsed.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRequest<'a> {
    uid: String,
    kind: GroupVersionKind,
    resource: GroupVersionResource,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    request_kind: Option<GroupVersionKind>,
    #[serde(default)]
    request_resource: Option<GroupVersionResource>,
    #[serde(default)]
    request_sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    user_info: UserInfo,
    #[serde(default, borrow)]
    object: Option<&'a RawValue>,
    #[serde(default, borrow)]
    old_object: Option<&'a RawValue>,
    #[serde(default)]
    dry_run: bool,
}

impl RawRequest<'_> {
    fn into_request(self, api_version: &str, kind: &str) -> AdmissionRequest<DynamicObject> {
        AdmissionRequest {
            types: TypeMeta {
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
            },
            uid: self.uid,
            kind: self.kind,
            resource: self.resource,
            sub_resource: self.sub_resource,
            request_kind: self.request_kind,
            request_resource: self.request_resource,
            request_sub_resource: self.request_sub_resource,
            name: self.name,
            namespace: self.namespace,
            operation: self.operation,
            user_info: self.user_info,
            object: None,
            old_object: None,
            dry_run: self.dry_run,
            options: None,
        }
    }
}

/// A request body that is not a usable AdmissionReview.
#[derive(Debug, PartialEq, Eq)]
pub struct BadRequest(pub String);

/// The request and its objects, read from the body in one pass over it, no
/// tree: the request's fields go straight into their types,
/// `request.object` into a workload where the fields before it say what it
/// is (or stays JSON text), and `oldObject` is kept as text, read only for
/// an UPDATE that would be denied. A request whose object does not read
/// cleanly on the way is read again with the object kept as text, which
/// words its error.
pub(super) fn read(
    body: &[u8],
) -> Result<(Box<AdmissionRequest<DynamicObject>>, Objects<'_>), BadRequest> {
    if body.is_empty() {
        return Err(BadRequest(
            "empty body: expected an admission.k8s.io/v1 AdmissionReview".into(),
        ));
    }
    // JSON is UTF-8 (RFC 8259). Read as bytes, serde_json checks every
    // string it reads; checked once here, the strings are read without.
    // A body that is not UTF-8 is read as bytes, as before, so its answer
    // is the same.
    let fast = match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(body),
    };
    let envelope: Envelope<'_, ReadRequest<'_>> = match fast {
        Ok(envelope) => envelope,
        Err(_) => fallback(body)?,
    };
    checked(envelope)
}

/// The reading with every object kept as text: what [`read`] falls back to
/// when the fast pass fails, and what words the error.
fn fallback(body: &[u8]) -> Result<Envelope<'_, ReadRequest<'_>>, BadRequest> {
    let slow: Envelope<'_, RawRequest<'_>> = serde_json::from_slice(body)
        .map_err(|e| BadRequest(format!("body is not an AdmissionReview: {e}")))?;
    Ok(Envelope {
        api_version: slow.api_version,
        kind: slow.kind,
        request: slow.request.map(|raw| ReadRequest { raw, read: None }),
    })
}

/// The envelope as the webhook answers it: an admission.k8s.io/v1
/// AdmissionReview with a request whose object, if any, is a JSON object.
fn checked<'a>(
    envelope: Envelope<'a, ReadRequest<'a>>,
) -> Result<(Box<AdmissionRequest<DynamicObject>>, Objects<'a>), BadRequest> {
    let api_version = envelope.api_version.as_deref().unwrap_or_default();
    let kind = envelope.kind.as_deref().unwrap_or_default();
    if api_version != "admission.k8s.io/v1" || kind != "AdmissionReview" {
        return Err(BadRequest(format!(
            "expected apiVersion admission.k8s.io/v1 and kind AdmissionReview, got {api_version:?} {kind:?}"
        )));
    }
    let Some(ReadRequest { raw, read }) = envelope.request else {
        return Err(BadRequest("the AdmissionReview has no request".into()));
    };
    let object = raw.object.filter(|o| o.get() != "null");
    if object.is_some_and(|o| !o.get().starts_with('{')) {
        return Err(BadRequest("request.object is not a JSON object".into()));
    }
    let old_object = raw.old_object.filter(|o| o.get().starts_with('{'));
    let request = Box::new(raw.into_request(api_version, kind));
    let objects = Objects {
        new: object,
        old: old_object,
        read,
    };
    Ok((request, objects))
}

/// `request.object` and `request.oldObject`, as JSON text, or the object
/// already read (see [`ReadRequest`]).
pub(super) struct Objects<'a> {
    pub(super) new: Option<&'a RawValue>,
    pub(super) old: Option<&'a RawValue>,
    pub(super) read: Option<Workload>,
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    use crate::workload::WorkloadKind;

    /// The review `kubectl apply` sends for a GPU Deployment, as the
    /// apiserver wrote it.
    fn applied() -> String {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/reviews/gpu-deployment-apply.json"
        ))
        .unwrap()
    }

    #[test]
    fn the_apiservers_review_has_its_object_read_on_the_way() {
        let text = applied();
        let envelope: Envelope<'_, ReadRequest<'_>> = serde_json::from_str(&text).unwrap();
        let request = envelope.request.unwrap();
        let read = request.read.expect("read in the envelope's pass");
        assert!(request.raw.object.is_none(), "not kept as text as well");
        assert_eq!(
            (read.kind, read.name.as_str()),
            (WorkloadKind::Deployment, "llm")
        );
        let slow = Workload::from_json_as(
            &serde_json::to_string(
                &serde_json::from_str::<Value>(&text).unwrap()["request"]["object"],
            )
            .unwrap(),
            "ml",
            "apps/v1",
            "Deployment",
        )
        .unwrap()
        .unwrap();
        assert_eq!(format!("{read:?}"), format!("{slow:?}"));

        // With `object` before `kind`, its type is not known yet: kept as text.
        let mut v: Value = serde_json::from_str(&text).unwrap();
        let request = v["request"].as_object_mut().unwrap();
        let object = request.remove("object").unwrap();
        let rest = serde_json::to_string(request).unwrap();
        let reordered = format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"object":{object},{}}}"#,
            &rest[1..]
        );
        let envelope: Envelope<'_, ReadRequest<'_>> = serde_json::from_str(&reordered).unwrap();
        let request = envelope.request.unwrap();
        assert!(request.read.is_none());
        assert!(request.raw.object.is_some());
    }

    #[test]
    fn an_object_that_does_not_read_fails_the_fast_pass_only() {
        let text = applied().replacen(
            "\"spec\":{\"replicas\":2,",
            "\"spec\":{\"replicas\":\"two\",",
            1,
        );
        assert!(
            text.contains("\"two\""),
            "the fixture's replicas line moved"
        );
        assert!(serde_json::from_str::<Envelope<'_, ReadRequest<'_>>>(&text).is_err());
        let slow: Envelope<'_, RawRequest<'_>> = serde_json::from_str(&text).unwrap();
        assert!(slow.request.unwrap().object.is_some());
    }

    /// The workload [`read`] finds in `body`, as Debug text.
    fn read_workload(body: &[u8]) -> Result<String, BadRequest> {
        let (_, objects) = read(body)?;
        let w = objects.read.expect("read in the envelope's pass");
        Ok(format!("{w:?}"))
    }

    #[test]
    fn a_body_read_as_text_gives_what_it_gave_read_as_bytes() {
        // Non-ASCII in a judged string: read without the per-string check,
        // the same workload as serde_json's reading of the bytes.
        let text = applied().replacen("\"app\":\"llm\"", "\"app\":\"llm-café\"", 1);
        assert!(text.contains("café"), "the fixture's labels moved");
        let as_bytes: Envelope<'_, ReadRequest<'_>> =
            serde_json::from_slice(text.as_bytes()).unwrap();
        let as_text = read_workload(text.as_bytes()).unwrap();
        assert_eq!(
            as_text,
            format!("{:?}", as_bytes.request.unwrap().read.unwrap())
        );
        assert!(as_text.contains("llm-café"));

        // A body that is not UTF-8 is read as bytes, as before: a stray byte
        // in a string that is stepped over (kubectl's last-applied copy)
        // changes nothing, one in a string that is read is refused, named.
        let base = applied();
        let clean = read_workload(base.as_bytes()).unwrap();
        let at = base.find("{\\\"apiVersion").expect("the last-applied copy");
        let mut stray = base.clone().into_bytes();
        stray.insert(at + 1, 0xFF);
        assert!(std::str::from_utf8(&stray).is_err());
        assert_eq!(read_workload(&stray).unwrap(), clean);
        let name = base
            .find("\"name\":\"llm\",\"image\"")
            .expect("the container");
        let mut named = base.into_bytes();
        named.insert(name + 10, 0xFF);
        let err = read(&named).err().expect("refused");
        assert!(err.0.contains("invalid unicode code point"), "{}", err.0);
    }
}
