//! The price table `cost-budget` judges with: Azure's Linux pay-as-you-go
//! hourly price of each VM size, by region (`armRegionName`) and size
//! (`armSkuName`, the value of `node.kubernetes.io/instance-type`), in USD.
//!
//! It is read from the Azure Retail Prices API's own JSON pages (`Items`,
//! `NextPageLink`; learn.microsoft.com/rest/api/cost-management/
//! retail-prices/azure-retail-prices) or from the table this module writes
//! (the ConfigMap's `prices.yaml`, which `waf-admission prices` makes).
//! Of the API's items only `unitOfMeasure: "1 Hour"` meters of `type:
//! "Consumption"` count: `Reservation` items carry the price of the whole
//! term in the same unit, and `DevTestConsumption` is another offer. Spot
//! and Low Priority meters (`meterName` "… Spot", "… Low Priority") and
//! Windows products (`productName` "… Windows") share the size's
//! `armSkuName` and are dropped.
//!
//! Pure: the caller reads the files or the ConfigMap and says when they were
//! written; staleness is judged against a `now` it passes in.

pub mod fetch;

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::workload::typed;

/// The table's format, as its `schema` field names it.
pub const SCHEMA: &str = "waf-admission.dev/gpu-prices/v1";
/// The ConfigMap key the table is under.
pub const CONFIGMAP_KEY: &str = "prices.yaml";
/// Hours in a month, OpenCost's convention (365 × 24 / 12).
pub const HOURS_PER_MONTH: f64 = 730.0;
/// How old a table may be before it gives no verdict, unless a policy says
/// otherwise (`costBudget.maxAgeDays`): Azure changes list prices rarely,
/// and a weekly or daily CronJob stays far inside it even when a few runs
/// fail.
pub const DEFAULT_MAX_AGE_DAYS: u32 = 45;
/// The API, and the version whose filter values are case-sensitive.
pub const API: &str = "https://prices.azure.com/api/retail/prices";
pub const API_VERSION: &str = "2023-01-01-preview";

/// The API's filter for one region's VM pay-as-you-go meters.
pub fn filter(region: &str) -> String {
    format!(
        "serviceName eq 'Virtual Machines' and priceType eq 'Consumption' and armRegionName eq '{region}'"
    )
}

/// One size's price in one region.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SkuPrice {
    /// Linux pay-as-you-go, USD per hour (the item's `retailPrice`).
    pub payg: f64,
    /// The meter it was read from, to trace it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meter_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_start_date: Option<String>,
}

/// The table as the ConfigMap holds it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TableFile {
    schema: String,
    currency: String,
    hours_per_month: f64,
    source: String,
    generated_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    filter: Option<String>,
    /// region → size → price.
    #[serde(default)]
    regions: BTreeMap<String, BTreeMap<String, SkuPrice>>,
}

/// Prices by region and VM size.
#[derive(Clone, Debug, PartialEq)]
pub struct PriceTable {
    /// When the prices were read from the API (for raw API pages: when the
    /// files were written).
    pub generated_at: Timestamp,
    /// Where they come from (the API's URL, or the files read).
    pub source: String,
    pub hours_per_month: f64,
    filter: Option<String>,
    regions: BTreeMap<String, BTreeMap<String, SkuPrice>>,
}

/// One of the API's items, kept to what the table reads.
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    #[serde(default)]
    pub arm_sku_name: String,
    pub retail_price: f64,
    pub unit_of_measure: String,
    pub arm_region_name: String,
    #[serde(default)]
    pub meter_name: String,
    #[serde(default)]
    pub product_name: String,
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub is_primary_meter_region: Option<bool>,
    #[serde(default)]
    pub currency_code: Option<String>,
    #[serde(default)]
    pub meter_id: Option<String>,
    #[serde(default)]
    pub effective_start_date: Option<String>,
}

impl Item {
    /// A Linux pay-as-you-go hourly meter of a VM size: what the table
    /// keeps.
    pub fn is_linux_payg_hourly(&self) -> bool {
        self.unit_of_measure == "1 Hour"
            && self.type_ == "Consumption"
            && !self.meter_name.contains("Spot")
            && !self.meter_name.contains("Low Priority")
            && !self.product_name.contains("Windows")
            && !self.arm_sku_name.is_empty()
            && self.retail_price.is_finite()
            && self.retail_price >= 0.0
    }
}

/// One page of the API's answer.
#[derive(Deserialize, Clone, Debug, PartialEq)]
pub struct Page {
    #[serde(rename = "Items")]
    pub items: Vec<Item>,
    #[serde(rename = "NextPageLink", default)]
    pub next_page_link: Option<String>,
}

/// What a prices file holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Document {
    /// A page of the API's JSON.
    Page(Page),
    /// A table this module wrote (bare, or in a ConfigMap).
    Table(PriceTable),
}

impl Document {
    /// Reads a file's text: the API's JSON page, a table, or a ConfigMap
    /// holding one under `prices.yaml`. `at` names the file in errors.
    pub fn parse(text: &str, at: &str) -> Result<Document> {
        let mut docs = crate::yaml::documents(text);
        let value = match docs.next() {
            None => return Err(Error::input(at, "empty: no price table or API page")),
            Some(Err(e)) => return Err(Error::input(at, e.to_string())),
            Some(Ok(d)) => d.value,
        };
        if docs.next().is_some() {
            return Err(Error::input(
                at,
                "more than one document: give each API page or table as its own file",
            ));
        }
        Document::from_value(value, at)
    }

    pub fn from_value(value: serde_json::Value, at: &str) -> Result<Document> {
        let Some(object) = value.as_object() else {
            return Err(Error::input(
                at,
                "not a price table (schema, regions) or a Retail Prices API page (Items)",
            ));
        };
        if object.contains_key("Items") {
            let page: Page = typed(value, at)?;
            for (i, item) in page.items.iter().enumerate() {
                if let Some(c) = item.currency_code.as_deref().filter(|c| *c != "USD") {
                    return Err(Error::input(
                        at,
                        format!(
                            "field Items[{i}].currencyCode: {c}; the table is in USD, the API's \
                             authoritative currency: fetch without currencyCode"
                        ),
                    ));
                }
            }
            return Ok(Document::Page(page));
        }
        if object.get("kind").and_then(|k| k.as_str()) == Some("ConfigMap") {
            let Some(text) = value
                .pointer(&format!("/data/{CONFIGMAP_KEY}"))
                .and_then(|v| v.as_str())
            else {
                return Err(Error::input(
                    at,
                    format!(
                        "field data.{CONFIGMAP_KEY}: missing; the ConfigMap holds no price table"
                    ),
                ));
            };
            return PriceTable::parse(text, &format!("{at}: data.{CONFIGMAP_KEY}"))
                .map(Document::Table);
        }
        PriceTable::from_value(value, at).map(Document::Table)
    }
}

/// The table of several files: the API pages' items are chosen from
/// together (the pages of one answer), then tables are laid over them, a
/// later file's price replacing an earlier one's. Each document comes with
/// its file's name and when it was written; the table is as old as the
/// oldest.
pub fn combine(docs: Vec<(Document, String, Timestamp)>) -> Option<PriceTable> {
    let mut items = Vec::new();
    let mut pages_at: Option<Timestamp> = None;
    let mut page_names = Vec::new();
    let mut tables = Vec::new();
    for (doc, name, written) in docs {
        match doc {
            Document::Page(p) => {
                items.extend(p.items);
                pages_at = Some(pages_at.map_or(written, |t| t.min(written)));
                page_names.push(name);
            }
            Document::Table(t) => tables.push(t),
        }
    }
    let mut out =
        pages_at.map(|at| PriceTable::from_items(items, at, page_names.join(", "), None, |_| true));
    for t in tables {
        out = Some(match out {
            None => t,
            Some(mut base) => {
                base.generated_at = base.generated_at.min(t.generated_at);
                base.source = format!("{}, {}", base.source, t.source);
                for (region, sizes) in t.regions {
                    base.regions.entry(region).or_default().extend(sizes);
                }
                base
            }
        });
    }
    out
}

impl PriceTable {
    /// The table of the API's items: the Linux pay-as-you-go hourly meters
    /// (see [`Item::is_linux_payg_hourly`]) of the sizes `keep` accepts.
    /// Where several such meters remain for one size in one region, those
    /// the API marks `isPrimaryMeterRegion: true` are preferred when any
    /// is, and of those the lowest price is taken: a budget exceeded at the
    /// lowest is exceeded at every one.
    pub fn from_items(
        items: impl IntoIterator<Item = Item>,
        generated_at: Timestamp,
        source: String,
        filter: Option<String>,
        keep: impl Fn(&str) -> bool,
    ) -> PriceTable {
        // region → size → (primary, price)
        let mut chosen: BTreeMap<String, BTreeMap<String, (bool, SkuPrice)>> = BTreeMap::new();
        for item in items {
            if !item.is_linux_payg_hourly() || !keep(&item.arm_sku_name) {
                continue;
            }
            let primary = item.is_primary_meter_region == Some(true);
            let price = SkuPrice {
                payg: item.retail_price,
                meter_id: item.meter_id,
                effective_start_date: item.effective_start_date,
            };
            let sizes = chosen.entry(item.arm_region_name).or_default();
            match sizes.get(&item.arm_sku_name) {
                Some((was_primary, was))
                    if (*was_primary && !primary)
                        || (*was_primary == primary && was.payg <= price.payg) => {}
                _ => {
                    sizes.insert(item.arm_sku_name, (primary, price));
                }
            }
        }
        PriceTable {
            generated_at,
            source,
            hours_per_month: HOURS_PER_MONTH,
            filter,
            regions: chosen
                .into_iter()
                .map(|(r, sizes)| (r, sizes.into_iter().map(|(s, (_, p))| (s, p)).collect()))
                .collect(),
        }
    }

    /// Reads the table's YAML (the ConfigMap's `prices.yaml`).
    pub fn parse(text: &str, at: &str) -> Result<PriceTable> {
        let value = match crate::yaml::documents(text).next() {
            None => return Err(Error::input(at, "empty: no price table")),
            Some(Err(e)) => return Err(Error::input(at, e.to_string())),
            Some(Ok(d)) => d.value,
        };
        PriceTable::from_value(value, at)
    }

    fn from_value(value: serde_json::Value, at: &str) -> Result<PriceTable> {
        let file: TableFile = typed(value, at)?;
        if file.schema != SCHEMA {
            return Err(Error::input(
                at,
                format!(
                    "field schema: {:?}; this release reads {SCHEMA}",
                    file.schema
                ),
            ));
        }
        if file.currency != "USD" {
            return Err(Error::input(
                at,
                format!("field currency: {:?}; budgets are in USD", file.currency),
            ));
        }
        if !(file.hours_per_month > 0.0 && file.hours_per_month <= 744.0) {
            return Err(Error::input(
                at,
                format!(
                    "field hoursPerMonth: {}; a month has at most 744 hours",
                    file.hours_per_month
                ),
            ));
        }
        for (region, sizes) in &file.regions {
            for (size, p) in sizes {
                if !(p.payg.is_finite() && p.payg >= 0.0) {
                    return Err(Error::input(
                        at,
                        format!(
                            "field regions.{region}.{size}.payg: {} is not a price",
                            p.payg
                        ),
                    ));
                }
            }
        }
        Ok(PriceTable {
            generated_at: file.generated_at,
            source: file.source,
            hours_per_month: file.hours_per_month,
            filter: file.filter,
            regions: file.regions,
        })
    }

    /// The table as the ConfigMap's `prices.yaml` holds it.
    pub fn to_yaml(&self) -> String {
        let file = TableFile {
            schema: SCHEMA.into(),
            currency: "USD".into(),
            hours_per_month: self.hours_per_month,
            source: self.source.clone(),
            generated_at: self.generated_at,
            filter: self.filter.clone(),
            regions: self.regions.clone(),
        };
        // Strings, numbers and maps with string keys: serializing cannot fail.
        serde_yaml_ng::to_string(&file).unwrap_or_default()
    }

    /// A whole ConfigMap holding the table.
    pub fn to_configmap(&self, name: &str, namespace: &str) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": "waf-admission-prices"},
            },
            "data": {CONFIGMAP_KEY: self.to_yaml()},
        })
    }

    /// The price of a size in a region; sizes are matched
    /// case-insensitively, as the catalog matches them.
    pub fn price(&self, region: &str, size: &str) -> Option<&SkuPrice> {
        let sizes = self.regions.get(region)?;
        sizes.get(size).or_else(|| {
            sizes
                .iter()
                .find(|(s, _)| s.eq_ignore_ascii_case(size))
                .map(|(_, p)| p)
        })
    }

    pub fn regions(&self) -> impl Iterator<Item = &str> {
        self.regions.keys().map(String::as_str)
    }

    /// The region, when the table prices only one (what `prices --region`
    /// writes).
    pub fn only_region(&self) -> Option<&str> {
        let mut all = self.regions();
        let first = all.next()?;
        all.next().is_none().then_some(first)
    }

    /// Sizes priced, over every region.
    pub fn len(&self) -> usize {
        self.regions.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Older than `max_age_days` at `now`: it gives no verdict.
    pub fn is_stale(&self, now: Timestamp, max_age_days: u32) -> bool {
        now.duration_since(self.generated_at)
            > SignedDuration::from_hours(24 * i64::from(max_age_days))
    }

    /// The day it was generated, for messages: `2026-12-01`.
    pub fn date(&self) -> String {
        self.generated_at.strftime("%Y-%m-%d").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(sku: &str, price: f64, meter: &str, product: &str, type_: &str) -> serde_json::Value {
        json!({
            "currencyCode": "USD", "tierMinimumUnits": 0.0, "retailPrice": price,
            "unitPrice": price, "armRegionName": "eastus", "location": "US East",
            "effectiveStartDate": "2025-01-01T00:00:00Z", "meterId": format!("m-{meter}"),
            "meterName": meter, "productName": product, "skuName": meter,
            "serviceName": "Virtual Machines", "serviceFamily": "Compute",
            "unitOfMeasure": "1 Hour", "type": type_, "isPrimaryMeterRegion": true,
            "armSkuName": sku,
        })
    }

    fn page(items: Vec<serde_json::Value>) -> Document {
        Document::parse(
            &json!({"BillingCurrency": "USD", "CustomerEntityId": "Default",
                "CustomerEntityType": "Retail", "Items": items, "NextPageLink": null,
                "Count": 1})
            .to_string(),
            "page.json",
        )
        .unwrap()
    }

    fn at() -> Timestamp {
        "2026-12-01T00:00:00Z".parse().unwrap()
    }

    fn table_of(items: Vec<serde_json::Value>) -> PriceTable {
        combine(vec![(page(items), "page.json".into(), at())]).unwrap()
    }

    const A100: &str = "Standard_NC24ads_A100_v4";
    const SERIES: &str = "Virtual Machines NCadsA100v4 Series";

    #[test]
    fn only_linux_pay_as_you_go_hourly_meters_count() {
        let windows = format!("{SERIES} Windows");
        let t = table_of(vec![
            item(A100, 0.9, "NC24ads A100 v4 Spot", SERIES, "Consumption"),
            item(
                A100,
                1.1,
                "NC24ads A100 v4 Low Priority",
                SERIES,
                "Consumption",
            ),
            item(A100, 4.2, "NC24ads A100 v4", &windows, "Consumption"),
            item(A100, 20000.0, "NC24ads A100 v4", SERIES, "Reservation"),
            item(A100, 2.0, "NC24ads A100 v4", SERIES, "DevTestConsumption"),
            item(A100, 3.5, "NC24ads A100 v4", SERIES, "Consumption"),
        ]);
        assert_eq!(t.price("eastus", A100).unwrap().payg, 3.5);
        assert_eq!(t.len(), 1);
        // Sizes match case-insensitively, regions exactly.
        assert!(t.price("eastus", "standard_nc24ads_a100_v4").is_some());
        assert!(t.price("westeurope", A100).is_none());
    }

    #[test]
    fn of_several_meters_the_primary_then_the_lowest_is_taken() {
        let mut secondary = item(A100, 1.0, "NC24ads A100 v4", SERIES, "Consumption");
        secondary["isPrimaryMeterRegion"] = json!(false);
        let t = table_of(vec![
            item(A100, 3.9, "NC24ads A100 v4", SERIES, "Consumption"),
            secondary,
            item(A100, 3.6, "NC24ads A100 v4", SERIES, "Consumption"),
        ]);
        assert_eq!(t.price("eastus", A100).unwrap().payg, 3.6);
    }

    #[test]
    fn the_table_round_trips_through_its_yaml_and_a_configmap() {
        let t = table_of(vec![item(
            A100,
            3.5,
            "NC24ads A100 v4",
            SERIES,
            "Consumption",
        )]);
        let yaml = t.to_yaml();
        assert!(
            yaml.contains("schema: waf-admission.dev/gpu-prices/v1"),
            "{yaml}"
        );
        assert!(yaml.contains("hoursPerMonth: 730"), "{yaml}");
        assert_eq!(PriceTable::parse(&yaml, "prices.yaml").unwrap(), t);
        let cm = serde_yaml_ng::to_string(&t.to_configmap("waf-gpu-prices", "waf")).unwrap();
        match Document::parse(&cm, "cm.yaml").unwrap() {
            Document::Table(back) => assert_eq!(back, t),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_input_names_the_file_and_field() {
        let e = Document::parse(r#"{"Items": [{"retailPrice": "cheap"}]}"#, "p.json").unwrap_err();
        assert!(e.to_string().starts_with("p.json: field Items[0]"), "{e}");
        let e = Document::parse(
            "schema: waf-admission.dev/gpu-prices/v1\ncurrency: USD\nhoursPerMonth: 730\n\
             source: x\ngeneratedAt: yesterday\nregions: {}\n",
            "t.yaml",
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("t.yaml: field generatedAt"),
            "{e}"
        );
        let e = Document::parse("schema: other/v9\n", "t.yaml").unwrap_err();
        assert!(e.to_string().starts_with("t.yaml: "), "{e}");
        let mut eur = item(A100, 3.0, "NC24ads A100 v4", SERIES, "Consumption");
        eur["currencyCode"] = json!("EUR");
        let e = Document::parse(&json!({"Items": [eur]}).to_string(), "eur.json").unwrap_err();
        assert!(e.to_string().contains("Items[0].currencyCode: EUR"), "{e}");
        let e = Document::parse("[1, 2]", "list.json").unwrap_err();
        assert!(
            e.to_string().starts_with("list.json: not a price table"),
            "{e}"
        );
        let e = Document::parse(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: p}\ndata: {}\n",
            "cm.yaml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("data.prices.yaml: missing"), "{e}");
    }

    #[test]
    fn a_table_is_stale_past_its_maximum_age() {
        let t = table_of(vec![item(
            A100,
            3.5,
            "NC24ads A100 v4",
            SERIES,
            "Consumption",
        )]);
        let day = SignedDuration::from_hours(24);
        assert!(!t.is_stale(at() + day * 45, 45));
        assert!(t.is_stale(at() + day * 46, 45));
        assert_eq!(t.date(), "2026-12-01");
    }

    #[test]
    fn pages_are_chosen_from_together_and_tables_laid_over_them() {
        let first = page(vec![item(
            A100,
            3.5,
            "NC24ads A100 v4",
            SERIES,
            "Consumption",
        )]);
        let second = page(vec![item(
            A100,
            3.0,
            "NC24ads A100 v4",
            SERIES,
            "Consumption",
        )]);
        let later: Timestamp = "2026-12-05T00:00:00Z".parse().unwrap();
        let t = combine(vec![
            (first, "1.json".into(), later),
            (second, "2.json".into(), at()),
        ])
        .unwrap();
        assert_eq!(t.price("eastus", A100).unwrap().payg, 3.0);
        assert_eq!(t.generated_at, at(), "as old as its oldest file");
        assert_eq!(t.source, "1.json, 2.json");
        assert!(combine(vec![]).is_none());
    }
}
