//! CloudWatch Embedded Metric Format, read as CloudWatch Logs reads it: a log event that is one
//! JSON object with an `_aws` member is validated against the specification (Timestamp, metric
//! directives, dimension sets that name string members, metric definitions that name number
//! members, known units), and its metrics are extracted. A document CloudWatch would reject is an
//! error here too, so a test cannot pass on a line CloudWatch would drop.

use std::collections::BTreeMap;

use serde_json::Value;

/// One extracted metric datum.
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    /// The namespace.
    pub namespace: String,
    /// Dimension name to value, for one dimension set.
    pub dimensions: BTreeMap<String, String>,
    /// The metric's name.
    pub name: String,
    /// Its value.
    pub value: f64,
    /// Its unit (`None` when the definition gives none).
    pub unit: Option<String>,
    /// The event's timestamp, in milliseconds since the epoch.
    pub timestamp_ms: u64,
}

/// The units the specification allows.
const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// The metrics of one log event; `Ok(empty)` for a line that is not an EMF document.
pub fn extract(line: &str) -> Result<Vec<Datum>, String> {
    let Ok(Value::Object(root)) = serde_json::from_str::<Value>(line.trim()) else {
        return Ok(Vec::new());
    };
    let Some(aws) = root.get("_aws") else {
        return Ok(Vec::new());
    };
    let aws = aws.as_object().ok_or("_aws is not an object")?;
    let timestamp_ms = aws
        .get("Timestamp")
        .and_then(Value::as_u64)
        .ok_or("_aws.Timestamp is not a number of milliseconds")?;
    let directives = aws
        .get("CloudWatchMetrics")
        .and_then(Value::as_array)
        .ok_or("_aws.CloudWatchMetrics is not an array")?;
    let mut data = Vec::new();
    for directive in directives {
        let directive = directive
            .as_object()
            .ok_or("a metric directive is not an object")?;
        let namespace = directive
            .get("Namespace")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty() && n.len() <= 1024)
            .ok_or("Namespace is not a string of 1 to 1024 characters")?;
        let sets = directive
            .get("Dimensions")
            .and_then(Value::as_array)
            .ok_or("Dimensions is not an array")?;
        let metrics = directive
            .get("Metrics")
            .and_then(Value::as_array)
            .filter(|m| m.len() <= 100)
            .ok_or("Metrics is not an array of at most 100")?;
        let mut dimension_sets = Vec::new();
        for set in sets {
            let names = set
                .as_array()
                .filter(|s| s.len() <= 30)
                .ok_or("a dimension set is not an array of at most 30")?;
            let mut dimensions = BTreeMap::new();
            for name in names {
                let name = name.as_str().ok_or("a dimension name is not a string")?;
                let value = root
                    .get(name)
                    .and_then(Value::as_str)
                    .ok_or(format!("dimension {name} is not a string member of the root"))?;
                dimensions.insert(name.to_owned(), value.to_owned());
            }
            dimension_sets.push(dimensions);
        }
        for metric in metrics {
            let name = metric
                .get("Name")
                .and_then(Value::as_str)
                .ok_or("a metric has no Name")?;
            let unit = match metric.get("Unit") {
                None => None,
                Some(unit) => Some(
                    unit.as_str()
                        .filter(|u| UNITS.contains(u))
                        .ok_or(format!("metric {name} has an unknown unit"))?
                        .to_owned(),
                ),
            };
            let value = root
                .get(name)
                .and_then(Value::as_f64)
                .ok_or(format!("metric {name} is not a number member of the root"))?;
            for dimensions in &dimension_sets {
                data.push(Datum {
                    namespace: namespace.to_owned(),
                    dimensions: dimensions.clone(),
                    name: name.to_owned(),
                    value,
                    unit: unit.clone(),
                    timestamp_ms,
                });
            }
        }
    }
    Ok(data)
}
