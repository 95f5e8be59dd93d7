//! Price ceilings for AI jobs in go-livepeer's `-maxPricePerCapability` format (AI spec
//! §2.6), and its `-aiModels` short form (§4.2).
use std::collections::BTreeMap;

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{Signed, Zero};

use super::Pipeline;

/// Why a price list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceListError {
    /// Not the expected JSON.
    #[error("max price list is not valid JSON: {0}")]
    Json(String),
    /// A pipeline name that is not a batch AI pipeline.
    #[error("max price list: unknown pipeline {0:?}")]
    UnknownPipeline(String),
    /// A price that is not a number.
    #[error("max price list: {field} of {pipeline} is not a number: {value}")]
    NotANumber {
        /// The pipeline of the entry.
        pipeline: String,
        /// `price_per_unit` or `pixels_per_unit`.
        field: &'static str,
        /// The raw value.
        value: String,
    },
    /// A currency other than wei / ETH (there is no price feed).
    #[error("max price list: currency {currency:?} of {pipeline} needs a price feed; give the price in wei")]
    Currency {
        /// The pipeline of the entry.
        pipeline: String,
        /// The currency given.
        currency: String,
    },
}

/// Price ceilings per (pipeline, model) in wei per unit, from go-livepeer's
/// `-maxPricePerCapability` JSON (§2.6), with the global `-maxPricePerUnit` fallback.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MaxPrices {
    per_model: BTreeMap<(u32, String), BigRational>,
    global: Option<BigRational>,
}

/// The model name that applies a ceiling to every model of a pipeline.
pub const DEFAULT_MODEL_KEY: &str = "default";

impl MaxPrices {
    /// Ceilings from `json` (`{"capabilities_prices": [...]}`); `global` is
    /// `max_price_per_unit / pixels_per_unit` (`None` or 0 = any price). An entry's
    /// missing or non-positive `pixels_per_unit` takes `default_pixels_per_unit`; a missing
    /// or non-positive `price_per_unit` takes the global price, or drops the entry when
    /// there is none. Unknown pipelines and non-numeric prices are errors here (go-livepeer
    /// panics or drops the whole list).
    pub fn parse(
        json: &str,
        global: Option<BigRational>,
        default_pixels_per_unit: u64,
    ) -> Result<MaxPrices, PriceListError> {
        #[derive(serde::Deserialize)]
        struct List {
            #[serde(default)]
            capabilities_prices: Vec<Entry>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            pipeline: String,
            #[serde(default)]
            model_id: Option<String>,
            #[serde(default)]
            price_per_unit: Option<serde_json::Number>,
            #[serde(default)]
            pixels_per_unit: Option<serde_json::Number>,
            #[serde(default)]
            currency: Option<String>,
        }
        let global = global.filter(|g| g.is_positive());
        let list: List = serde_json::from_str(json).map_err(|e| PriceListError::Json(e.to_string()))?;
        let mut out = MaxPrices { per_model: BTreeMap::new(), global: global.clone() };
        for e in list.capabilities_prices {
            let pipeline =
                Pipeline::from_name(&e.pipeline).ok_or_else(|| PriceListError::UnknownPipeline(e.pipeline.clone()))?;
            match e.currency.as_deref().map(str::to_ascii_lowercase).as_deref() {
                None | Some("") | Some("wei") | Some("eth") => {}
                Some(_) => {
                    return Err(PriceListError::Currency {
                        pipeline: e.pipeline,
                        currency: e.currency.unwrap_or_default(),
                    });
                }
            }
            let number = |field, n: &Option<serde_json::Number>| -> Result<Option<BigRational>, PriceListError> {
                n.as_ref()
                    .map(|n| {
                        parse_decimal(&n.to_string()).ok_or_else(|| PriceListError::NotANumber {
                            pipeline: e.pipeline.clone(),
                            field,
                            value: n.to_string(),
                        })
                    })
                    .transpose()
            };
            let pixels = number("pixels_per_unit", &e.pixels_per_unit)?
                .filter(|p| p.is_positive())
                .unwrap_or_else(|| BigRational::from_integer(default_pixels_per_unit.max(1).into()));
            let ceiling = match number("price_per_unit", &e.price_per_unit)?.filter(|p| p.is_positive()) {
                Some(p) => p / pixels,
                None => match &global {
                    Some(g) => g.clone(),
                    None => continue,
                },
            };
            let model = e.model_id.filter(|m| !m.is_empty()).unwrap_or_else(|| DEFAULT_MODEL_KEY.to_owned());
            out.per_model.insert((pipeline.capability(), model), ceiling);
        }
        Ok(out)
    }

    /// Only a global ceiling (`None` = any price).
    pub fn global(global: Option<BigRational>) -> MaxPrices {
        MaxPrices { per_model: BTreeMap::new(), global: global.filter(|g| g.is_positive()) }
    }

    /// Sets one ceiling at run time (go-livepeer's `/setMaxPriceForCapability`).
    pub fn set(&mut self, pipeline: Pipeline, model: &str, ceiling: BigRational) {
        self.per_model.insert((pipeline.capability(), model.to_owned()), ceiling);
    }

    /// The ceiling for a job asking for `jobs` (capability, model) pairs, wei per unit
    /// (`GetCapabilitiesMaxPrice`): the sum of each pair's ceiling (the exact model's, else
    /// its pipeline's `default`); the global ceiling when that sum is zero; `None` for no
    /// limit.
    pub fn ceiling<'a>(&self, jobs: impl IntoIterator<Item = (u32, &'a str)>) -> Option<BigRational> {
        let mut sum = BigRational::zero();
        for (cap, model) in jobs {
            let exact = self.per_model.get(&(cap, model.to_owned()));
            if let Some(c) = exact.or_else(|| self.per_model.get(&(cap, DEFAULT_MODEL_KEY.to_owned()))) {
                sum += c;
            }
        }
        if sum.is_zero() { self.global.clone() } else { Some(sum) }
    }

    /// True when no ceiling is set at all.
    pub fn is_empty(&self) -> bool {
        self.per_model.is_empty() && self.global.is_none()
    }
}

/// A JSON number's text (`1000`, `0.5`, `1e3`) as an exact rational.
fn parse_decimal(text: &str) -> Option<BigRational> {
    let (mantissa, exp) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: BigInt = format!("{int}{frac}").parse().ok()?;
    let scale = exp - frac.len() as i32;
    let ten = BigInt::from(10);
    Some(if scale >= 0 {
        BigRational::from_integer(digits * num_traits::pow(ten, scale as usize))
    } else {
        BigRational::new(digits, num_traits::pow(ten, (-scale) as usize))
    })
}

/// go-livepeer's short `-aiModels` form: `pipeline:model_id:warm,…` (§4.2, test vector 5).
pub fn parse_ai_models(text: &str) -> Result<Vec<(String, String, bool)>, String> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|entry| {
            let parts: Vec<&str> = entry.trim().split(':').collect();
            match parts.as_slice() {
                [p, m, w] => Ok((p.to_string(), m.to_string(), w.eq_ignore_ascii_case("true"))),
                _ => Err("invalid AI model config expected <pipeline>:<model_id>:<warm>".to_owned()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(n: i64, d: i64) -> BigRational {
        BigRational::new(n.into(), d.into())
    }

    /// Test vector 3: the three-entry list.
    #[test]
    fn max_price_list() {
        let json = r#"{"capabilities_prices": [
            {"pipeline": "text-to-image", "model_id": "stabilityai/sd-turbo", "price_per_unit": 1000, "pixels_per_unit": 1},
            {"pipeline": "image-to-video", "model_id": "default", "price_per_unit": 2000, "pixels_per_unit": 3},
            {"pipeline": "image-to-image", "price_per_unit": 3000, "pixels_per_unit": 1}
        ]}"#;
        let m = MaxPrices::parse(json, None, 1).unwrap();
        assert_eq!(m.ceiling([(27, "stabilityai/sd-turbo")]), Some(r(1000, 1)));
        assert_eq!(m.ceiling([(27, "other")]), None, "no default for text-to-image, no global");
        assert_eq!(m.ceiling([(29, "anything")]), Some(r(2000, 3)));
        assert_eq!(m.ceiling([(28, "x")]), Some(r(3000, 1)));
        // USD needs a price feed; a quoted price is not a number; unknown pipelines fail.
        let usd = r#"{"capabilities_prices":[{"pipeline":"llm","price_per_unit":1,"currency":"USD"}]}"#;
        assert!(matches!(MaxPrices::parse(usd, None, 1), Err(PriceListError::Currency { .. })));
        let quoted = r#"{"capabilities_prices":[{"pipeline":"llm","price_per_unit":"1"}]}"#;
        assert!(matches!(MaxPrices::parse(quoted, None, 1), Err(PriceListError::Json(_))));
        let unknown = r#"{"capabilities_prices":[{"pipeline":"i-love-tests","price_per_unit":1}]}"#;
        assert!(matches!(MaxPrices::parse(unknown, None, 1), Err(PriceListError::UnknownPipeline(_))));
        // No price: the global one, or no entry.
        let bare = r#"{"capabilities_prices":[{"pipeline":"llm"}]}"#;
        assert!(MaxPrices::parse(bare, None, 1).unwrap().is_empty());
        assert_eq!(MaxPrices::parse(bare, Some(r(7, 1)), 1).unwrap().ceiling([(33, "m")]), Some(r(7, 1)));
        // Fractional and exponent numbers are exact.
        let frac = r#"{"capabilities_prices":[{"pipeline":"llm","price_per_unit":0.5,"pixels_per_unit":1e1}]}"#;
        assert_eq!(MaxPrices::parse(frac, None, 1).unwrap().ceiling([(33, "m")]), Some(r(1, 20)));
    }
    /// Test vector 4: summation over the job's (capability, model) pairs.
    #[test]
    fn ceiling_summation() {
        let mut m = MaxPrices::global(Some(r(10, 1)));
        m.per_model.insert((1, "model1".into()), r(5, 1));
        m.per_model.insert((2, "model2".into()), r(7, 1));
        assert_eq!(m.ceiling([(1, "model1"), (2, "model2")]), Some(r(12, 1)));
        m.per_model.insert((1, "default".into()), r(3, 1));
        assert_eq!(m.ceiling([(1, "unknown")]), Some(r(3, 1)));
        assert_eq!(m.ceiling([]), Some(r(10, 1)));
        assert_eq!(MaxPrices::default().ceiling([(1, "x")]), None);
    }
    /// Test vector 5.
    #[test]
    fn ai_models_short_form() {
        let m = parse_ai_models("pipeline1:model1:true,pipeline2:model2:false").unwrap();
        assert_eq!(m, vec![("pipeline1".into(), "model1".into(), true), ("pipeline2".into(), "model2".into(), false)]);
        assert_eq!(
            parse_ai_models("pipeline1:model1").unwrap_err(),
            "invalid AI model config expected <pipeline>:<model_id>:<warm>"
        );
    }
}
