//! The CustomResourceDefinitions, generated from the Rust types. The YAML in
//! `manifests/crds/` (and the Helm chart) is this output, and a test fails
//! when it drifts: `waf-admission crd --out-dir manifests/crds` regenerates it.
//!
//! Unknown fields: a structural schema may not combine `properties` with
//! `additionalProperties: false`, so the apiserver prunes unknown fields
//! rather than rejecting them, and `kubectl apply` (server-side field
//! validation, Strict by default) reports them as errors. The policy types
//! also refuse unknown fields wherever a policy is read (`check`, the
//! webhook's own validation of policy objects).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use super::{WellArchitectedException, WellArchitectedPolicy};
use crate::error::{Error, Result};

/// Both CRDs, policies first.
pub fn definitions() -> Vec<CustomResourceDefinition> {
    vec![
        WellArchitectedPolicy::crd(),
        WellArchitectedException::crd(),
    ]
}

/// `waf-admission.dev_wellarchitectedpolicies.yaml`, the kubebuilder naming.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}

pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String> {
    serde_yaml_ng::to_string(crd).map_err(|e| Error::input("generated CRD", e.to_string()))
}

/// Every CRD as one multi-document YAML stream (`waf-admission crd`).
pub fn crd_yaml() -> Result<String> {
    let mut out = String::new();
    for crd in definitions() {
        out.push_str("---\n");
        out.push_str(&to_yaml(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_crds_carry_names_scope_status_and_printer_columns() {
        let [policy, exception] = <[_; 2]>::try_from(definitions()).unwrap();
        assert_eq!(policy.spec.scope, "Cluster");
        assert_eq!(exception.spec.scope, "Namespaced");
        assert_eq!(policy.spec.names.short_names, Some(vec!["wap".to_owned()]));
        assert_eq!(
            exception.spec.names.short_names,
            Some(vec!["wae".to_owned()])
        );
        let v = &policy.spec.versions[0];
        assert!(
            v.subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        let columns: Vec<_> = v
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(columns, ["Action", "Ready", "Violations", "Age"]);
        assert_eq!(
            file_name(&policy),
            "waf-admission.dev_wellarchitectedpolicies.yaml"
        );
    }

    #[test]
    fn the_schema_has_the_baselines_defaults_and_closed_enums() {
        let policy = WellArchitectedPolicy::crd();
        let schema = serde_json::to_value(&policy.spec.versions[0].schema).unwrap();
        let spec = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"];
        assert_eq!(spec["action"]["default"], "Deny");
        assert_eq!(
            spec["action"]["enum"],
            serde_json::json!(["Deny", "Warn", "Audit"])
        );
        let zone = &spec["rules"]["properties"]["zoneSpread"]["properties"];
        assert_eq!(zone["maxSkew"]["default"], 1);
        assert_eq!(zone["minReplicas"]["default"], 2);
        let rules = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["rules"];
        assert!(rules.is_object());
    }
}
