//! The few checks of built-in kinds that the operator's children can fail, as the real API
//! server makes them: a CronJob's schedule must parse (five fields within their ranges, or a
//! macro), which the TwinDataset schema only checks for shape.

use serde_json::Value;

use super::registry::ResourceType;

/// Checks a built-in object; the causes of a refusal as `field: message`.
pub fn validate(resource: &ResourceType, object: &Value) -> Result<(), Vec<String>> {
    if resource.group == "batch" && resource.kind == "CronJob" {
        let schedule = object["spec"]["schedule"].as_str().unwrap_or_default();
        if let Err(reason) = check_schedule(schedule) {
            return Err(vec![format!("spec.schedule: Invalid value: {schedule:?}: {reason}")]);
        }
    }
    Ok(())
}

const MACROS: &[&str] = &["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"];
const MONTHS: &[&str] = &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// A standard cron schedule (robfig/cron's parser, as Kubernetes uses it).
fn check_schedule(schedule: &str) -> Result<(), String> {
    if MACROS.contains(&schedule) || schedule.starts_with("@every ") {
        return Ok(());
    }
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!("expected exactly 5 fields, found {}", fields.len()));
    }
    let ranges: [(u32, u32, &[&str], u32); 5] =
        [(0, 59, &[], 0), (0, 23, &[], 0), (1, 31, &[], 0), (1, 12, MONTHS, 1), (0, 6, DAYS, 0)];
    for (field, (min, max, names, first)) in fields.iter().zip(ranges) {
        for part in field.split(',') {
            check_part(part, min, max, names, first)?;
        }
    }
    Ok(())
}

fn check_part(part: &str, min: u32, max: u32, names: &[&str], first: u32) -> Result<(), String> {
    let (range, step) = match part.split_once('/') {
        Some((range, step)) => (range, Some(step)),
        None => (part, None),
    };
    if let Some(step) = step {
        step.parse::<u32>().ok().filter(|s| *s > 0).ok_or_else(|| format!("invalid step {step:?}"))?;
    }
    if range == "*" || range == "?" {
        return Ok(());
    }
    let value = |text: &str| -> Result<u32, String> {
        let number = match names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
            Some(index) => index as u32 + first,
            None => text.parse().map_err(|_| format!("failed to parse int from {text}"))?,
        };
        if number < min {
            return Err(format!("beginning of range ({number}) below minimum ({min}): {part}"));
        }
        if number > max {
            return Err(format!("end of range ({number}) above maximum ({max}): {part}"));
        }
        Ok(number)
    };
    match range.split_once('-') {
        Some((low, high)) => {
            let (low, high) = (value(low)?, value(high)?);
            if low > high {
                return Err(format!("beginning of range ({low}) beyond end of range ({high}): {part}"));
            }
        }
        None => {
            value(range)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn schedules_parse_as_the_api_server_parses_them() {
        for good in ["0 4 * * *", "*/15 0-6 1,15 jan-mar mon-fri", "@daily", "@every 1h"] {
            assert_eq!(super::check_schedule(good), Ok(()), "{good}");
        }
        for bad in ["61 4 * * *", "0 24 * * *", "0 4 * * * *", "0 4 0 * *", "0 4 * * 7-1"] {
            assert!(super::check_schedule(bad).is_err(), "{bad}");
        }
    }
}
