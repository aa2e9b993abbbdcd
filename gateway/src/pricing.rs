//! Cost of a request from its usage and a price table.
//!
//! The table ships with the binary (`gateway/data/prices.toml`, list prices per one
//! million tokens); config entries under `[prices]` override or extend it. Lookup for a
//! request served by `provider/model`: `provider/model` in the overrides, then `model`
//! in the overrides, then `model` in the shipped table, then the model without a date
//! suffix (`gpt-4o-2024-08-06` → `gpt-4o`). A model with no price costs 0 and is marked
//! unpriced in its audit record and in `sluice_unpriced_requests_total`.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use crate::config::Price;

use sluice_shared::openai::Usage;

const SHIPPED: &str = include_str!("../data/prices.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Shipped {
    #[expect(
        dead_code,
        reason = "documents the table's date; required by deny_unknown_fields"
    )]
    as_of: String,
    models: HashMap<String, Price>,
}

/// The price table in force.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    shipped: HashMap<String, Price>,
    overrides: HashMap<String, Price>,
}

/// A request's cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cost {
    /// Millionths of a US dollar.
    pub micros: u64,
    pub priced: bool,
}

impl Cost {
    pub fn usd(self) -> f64 {
        self.micros as f64 / 1_000_000.0
    }
}

impl PriceTable {
    /// The shipped table plus `overrides` from config.
    pub fn new(overrides: &BTreeMap<String, Price>) -> Result<Self, String> {
        let shipped: Shipped = toml::from_str(SHIPPED)
            .map_err(|e| format!("the shipped price table is invalid: {e}"))?;
        Ok(PriceTable {
            shipped: shipped.models,
            overrides: overrides.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        })
    }

    /// The price for `model` served by `provider`.
    pub fn lookup(&self, provider: &str, model: &str) -> Option<Price> {
        // Gemini names models `models/gemini-2.5-flash` in some places.
        let model = model.strip_prefix("models/").unwrap_or(model);
        // Without overrides (the common case) no qualified name is built: this runs on
        // every admission and every priced answer.
        let overridden = (!self.overrides.is_empty()).then(|| {
            self.overrides
                .get(&format!("{provider}/{model}"))
                .or_else(|| self.overrides.get(model))
        });
        overridden
            .flatten()
            .or_else(|| self.shipped.get(model))
            .or_else(|| self.shipped.get(strip_date(model)))
            .copied()
    }

    /// Cost of `usage` at `model`'s price. OpenAI-style usage counts cached tokens inside
    /// `prompt_tokens`; they are billed at the cached price.
    pub fn cost(&self, provider: &str, model: &str, usage: &Usage) -> Cost {
        let Some(price) = self.lookup(provider, model) else {
            return Cost {
                micros: 0,
                priced: false,
            };
        };
        let cached = usage.cached_tokens().min(usage.prompt_tokens);
        let fresh = usage.prompt_tokens - cached;
        // Dollars per 1M tokens × tokens = micro-dollars.
        let micros = fresh as f64 * price.input
            + cached as f64 * price.cached_input.unwrap_or(price.input)
            + usage.completion_tokens as f64 * price.output;
        Cost {
            micros: micros.round() as u64,
            priced: true,
        }
    }

    /// Cost estimate before a request runs: `input_tokens` at the input price and
    /// `max_output` at the output price (the most it can cost).
    pub fn estimate(
        &self,
        provider: &str,
        model: &str,
        input_tokens: u64,
        max_output: u64,
    ) -> Cost {
        self.cost(provider, model, &Usage::new(input_tokens, max_output, None))
    }
}

/// `gpt-4o-2024-08-06` → `gpt-4o`; `claude-sonnet-4-5-20250929` → `claude-sonnet-4-5`.
fn strip_date(model: &str) -> &str {
    if let Some((base, suffix)) = model.rsplit_once('-') {
        if suffix.len() == 8 && suffix.bytes().all(|b| b.is_ascii_digit()) {
            return base;
        }
        if suffix.len() == 2 && suffix.bytes().all(|b| b.is_ascii_digit()) {
            // YYYY-MM-DD: three dash-separated numeric parts.
            let parts: Vec<&str> = model.rsplitn(4, '-').collect();
            if parts.len() == 4
                && parts[..3]
                    .iter()
                    .all(|p| p.bytes().all(|b| b.is_ascii_digit()))
            {
                return parts[3];
            }
        }
    }
    model
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_table_parses_and_costs() {
        let t = PriceTable::new(&BTreeMap::new()).unwrap();
        // 1M input + 1M output of gpt-4o-mini = 0.15 + 0.60 dollars.
        let c = t.cost(
            "openai",
            "gpt-4o-mini",
            &Usage::new(1_000_000, 1_000_000, None),
        );
        assert_eq!(
            c,
            Cost {
                micros: 750_000,
                priced: true
            }
        );
        let cached = t.cost(
            "openai",
            "gpt-4o-mini",
            &Usage::new(1_000_000, 0, Some(1_000_000)),
        );
        assert_eq!(cached.micros, 75_000);
    }

    /// `gateway/data/provider_models.toml` records what each shipped provider kind lists;
    /// every one of those models must have a price, or it would run uncosted (and be
    /// refused under a budget).
    #[test]
    fn every_model_the_shipped_providers_list_has_a_price() {
        #[derive(Deserialize)]
        struct Listing {
            kinds: BTreeMap<String, Kind>,
        }
        #[derive(Deserialize)]
        struct Kind {
            #[expect(dead_code, reason = "required by the file format, not read")]
            as_of: String,
            models: Vec<String>,
        }
        let listing: Listing =
            toml::from_str(include_str!("../data/provider_models.toml")).unwrap();
        let t = PriceTable::new(&BTreeMap::new()).unwrap();
        let mut missing = Vec::new();
        for (kind, k) in &listing.kinds {
            assert!(
                crate::config::kind::ALL_KINDS
                    .iter()
                    .any(|known| known.name() == kind),
                "unknown kind {kind}"
            );
            for m in &k.models {
                if t.lookup(kind, m).is_none() {
                    missing.push(format!("{kind}/{m}"));
                }
            }
        }
        assert!(missing.is_empty(), "models without a price: {missing:?}");
        assert!(listing.kinds.len() >= 11, "every hosted kind is listed");
    }

    #[test]
    fn dated_snapshots_and_overrides() {
        let mut o = BTreeMap::new();
        o.insert(
            "azure/gpt-4o".to_owned(),
            Price {
                input: 1.0,
                output: 1.0,
                cached_input: None,
            },
        );
        let t = PriceTable::new(&o).unwrap();
        assert_eq!(t.lookup("openai", "gpt-4o-2024-08-06").unwrap().input, 2.5);
        assert_eq!(
            t.lookup("anthropic", "claude-sonnet-4-5-20250929")
                .unwrap()
                .output,
            15.0
        );
        assert_eq!(t.lookup("azure", "gpt-4o").unwrap().input, 1.0);
        assert!(
            !t.cost("x", "unknown-model", &Usage::new(10, 10, None))
                .priced
        );
    }
}
