//! `waf-admission prices`: one region's VM prices from the Azure Retail
//! Prices API, paged through `NextPageLink`, kept to the GPU sizes the
//! catalog knows. The only module here that goes to the network for
//! prices; the table it makes is [`PriceTable`].

use std::time::Duration;

use jiff::Timestamp;

use super::{API_VERSION, Document, PriceTable, filter};
use crate::catalog;
use crate::error::{Error, Result};

/// Where and how to ask.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// The API's address (`prices::API`; a test serves its own).
    pub api: String,
    /// The `armRegionName` (`eastus`, `westeurope`): case-sensitive in
    /// the API's filter.
    pub region: String,
    /// For each page.
    pub timeout: Duration,
    /// Pages followed at most: a `NextPageLink` that never ends stops
    /// here, with an error rather than a partial table.
    pub max_pages: usize,
    /// PEM certificates to trust beside the system's (the image has none).
    pub extra_roots: Vec<Vec<u8>>,
}

/// Percent-encodes a query value: every byte but RFC 3986's unreserved.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The first page's address.
pub fn first_page(api: &str, region: &str) -> String {
    format!(
        "{api}?api-version={API_VERSION}&$filter={}",
        encode(&filter(region))
    )
}

/// Pages through the API and makes the region's table of the catalog's
/// GPU sizes, dated `now`.
pub async fn fetch(opts: &FetchOptions, now: Timestamp) -> Result<PriceTable> {
    let at = |url: &str| format!("GET {url}");
    let mut builder = reqwest::Client::builder()
        .timeout(opts.timeout)
        .user_agent(concat!("waf-admission/", env!("CARGO_PKG_VERSION")));
    for pem in &opts.extra_roots {
        let cert = reqwest::Certificate::from_pem(pem)
            .map_err(|e| Error::input("--ca", format!("not a PEM certificate: {e}")))?;
        builder = builder.add_root_certificate(cert);
    }
    let client = builder
        .build()
        .map_err(|e| Error::input("the HTTP client", e.to_string()))?;
    let first = first_page(&opts.api, &opts.region);
    let mut next = Some(first.clone());
    let mut items = Vec::new();
    let mut pages = 0;
    while let Some(url) = next.take() {
        if pages == opts.max_pages {
            return Err(Error::input(
                at(&url),
                format!(
                    "still more pages after {pages}: raise --max-pages (or the API is looping)"
                ),
            ));
        }
        pages += 1;
        let response = client
            .get(&url)
            .send()
            .await
            .map_err(|e| Error::input(at(&url), causes(&e)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| Error::input(at(&url), causes(&e)))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            let text: String = text.chars().take(300).collect();
            return Err(Error::input(at(&url), format!("HTTP {status}: {text}")));
        }
        let value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| Error::input(at(&url), format!("not JSON: {e}")))?;
        let Document::Page(page) = Document::from_value(value, &at(&url))? else {
            return Err(Error::input(
                at(&url),
                "not a Retail Prices API page (no Items)",
            ));
        };
        items.extend(page.items);
        next = page.next_page_link.filter(|l| !l.is_empty());
    }
    let catalog = catalog::builtin();
    let table = PriceTable::from_items(items, now, first, Some(filter(&opts.region)), |size| {
        catalog.vm_size(size).is_some()
    });
    if table.is_empty() {
        return Err(Error::input(
            format!("region {}", opts.region),
            format!(
                "no GPU VM size of the catalog has a Linux pay-as-you-go price in {pages} page(s): \
                 is the armRegionName right (eastus, westeurope: lower case, no spaces)?"
            ),
        ));
    }
    Ok(table)
}

/// Writes the table into a ConfigMap by server-side apply (the in-cluster
/// ServiceAccount, or the kubeconfig): the CronJob's way, with an image that
/// has no kubectl.
pub async fn apply(table: &PriceTable, name: &str, namespace: &str) -> Result<()> {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, Patch, PatchParams};
    let at = format!("ConfigMap {namespace}/{name}");
    let client = kube::Client::try_default()
        .await
        .map_err(|e| Error::input(&at, format!("no Kubernetes client: {e}")))?;
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    let params = PatchParams::apply("waf-admission-prices").force();
    api.patch(
        name,
        &params,
        &Patch::Apply(table.to_configmap(name, namespace)),
    )
    .await
    .map_err(|e| Error::input(&at, e.to_string()))?;
    Ok(())
}

/// reqwest's words and their causes on one line ("error sending request":
/// the useful part, "Connection refused", is in the source chain).
fn causes(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_is_percent_encoded() {
        assert_eq!(
            first_page("https://prices.azure.com/api/retail/prices", "eastus"),
            "https://prices.azure.com/api/retail/prices?api-version=2023-01-01-preview&$filter=\
             serviceName%20eq%20%27Virtual%20Machines%27%20and%20priceType%20eq%20%27Consumption%27\
             %20and%20armRegionName%20eq%20%27eastus%27"
        );
    }
}
