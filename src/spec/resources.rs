//! What one run of a step needs (`resources:`), in the units Slurm users write.

use crate::spec::node::Node;

/// What one run of a step needs (`resources:` in MLproject.yaml); `None` = the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU cores; the step sees the number as `FLOW_CPUS`.
    pub cpus: Option<u32>,
    /// Memory in bytes.
    pub memory: Option<u64>,
    /// Wall-time limit in seconds.
    pub time: Option<u64>,
}

/// The fields of `resources:`; others are warned about and ignored.
pub const RESOURCE_FIELDS: [&str; 3] = ["cpus", "memory", "time"];

impl Resources {
    /// Reads a `resources:` mapping; returns the fields flow ignores beside the values.
    pub(crate) fn read(node: &Node) -> Result<(Resources, Vec<String>), String> {
        let fields = match node {
            Node::Null => return Ok((Resources::default(), Vec::new())),
            Node::Map(fields) => fields,
            other => {
                return Err(format!(
                    "`resources` is {}; write a mapping like `{{cpus: 2, memory: 4G, time: 2h}}`",
                    other.kind()
                ))
            }
        };
        let mut resources = Resources::default();
        let mut ignored = Vec::new();
        for (key, value) in fields {
            let text = match value {
                Node::Null => continue,
                Node::Scalar(text) => text.as_str(),
                other => {
                    return Err(format!(
                        "`{key}` is {}; it must be a single value",
                        other.kind()
                    ))
                }
            };
            match key.as_str() {
                "cpus" => {
                    resources.cpus = match text.trim().parse::<u32>() {
                        Ok(cpus) if cpus > 0 => Some(cpus),
                        _ => {
                            return Err(format!(
                                "`cpus: {text}` is not a whole number of cores (1 or more)"
                            ))
                        }
                    }
                }
                "memory" => resources.memory = Some(parse_memory(text)?),
                "time" => resources.time = Some(parse_duration(text)?),
                _ => ignored.push(key.clone()),
            }
        }
        Ok((resources, ignored))
    }
}

/// `4G`, `512M`, `2GiB`, `1.5G` or a plain number of bytes.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let scale: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => {
            return Err(format!(
                "`memory: {text}`: unknown unit `{unit}`; use K, M, G or T"
            ))
        }
    };
    match number.parse::<f64>() {
        Ok(value) if value > 0.0 && (value * scale as f64) < u64::MAX as f64 => {
            Ok((value * scale as f64).round() as u64)
        }
        _ => Err(format!(
            "`memory: {text}` is not an amount of memory like `4G` or `512M`"
        )),
    }
}

/// `90s`, `30m`, `2h`, `1d`, combinations like `1h30m`, Slurm's `HH:MM:SS`, or seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let bad = || format!("`time: {text}` is not a duration like `2h`, `1h30m` or `02:00:00`");
    if trimmed.contains(':') {
        let fields: Vec<&str> = trimmed.split(':').collect();
        if fields.len() > 3 {
            return Err(bad());
        }
        let mut seconds = 0u64;
        for field in fields {
            let value: u64 = field.parse().map_err(|_| bad())?;
            seconds = seconds
                .checked_mul(60)
                .and_then(|s| s.checked_add(value))
                .ok_or_else(bad)?;
        }
        return if seconds > 0 { Ok(seconds) } else { Err(bad()) };
    }
    if let Ok(seconds) = trimmed.parse::<u64>() {
        return if seconds > 0 { Ok(seconds) } else { Err(bad()) };
    }
    let mut seconds = 0u64;
    let mut number = String::new();
    for c in trimmed.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let value: u64 = number.parse().map_err(|_| bad())?;
        seconds = value
            .checked_mul(unit)
            .and_then(|v| v.checked_add(seconds))
            .ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() || seconds == 0 {
        return Err(bad());
    }
    Ok(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_memory_read_like_slurm() {
        assert_eq!(parse_duration("02:00:00"), Ok(7200));
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("1d2h"), Ok(93_600));
        assert!(parse_duration("2x").is_err());
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
        assert_eq!(parse_memory("512M"), Ok(512 << 20));
        assert_eq!(parse_memory("1.5GiB"), Ok(3 << 29));
        assert!(parse_memory("-1G").is_err());
        assert!(parse_memory("1e30T").is_err());
    }
}
