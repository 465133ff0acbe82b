//! Durations, sizes and numbers as written in plans, with messages that say what is wrong.

/// Milliseconds in `250ms`, `30s`, `5m`, `2h` (fractions allowed: `1.5h`).
pub fn duration_ms(text: &str) -> Result<u64, String> {
    let (number, unit) = split_unit(text);
    if number.is_empty() {
        return Err(format!("`{text}` is not a duration"));
    }
    let scale = match unit {
        "ms" => 1.0,
        "s" => 1_000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        "" => return Err(format!("`{text}` has no unit")),
        other => return Err(format!("`{other}` is not a unit of time")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration"))?;
    let ms = value * scale;
    if !ms.is_finite() || ms > u64::MAX as f64 / 2.0 {
        return Err(format!("`{text}` is too long"));
    }
    Ok(ms.round() as u64)
}

/// A duration as a plan would write it: `600000` → `10m`.
pub fn human_ms(ms: u64) -> String {
    match ms {
        0 => "0ms".to_owned(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

/// Bytes in `512M`, `2G` (also `K`, `T`, with an optional `B` or `iB`).
pub fn size_bytes(text: &str) -> Result<u64, String> {
    let (number, unit) = split_unit(text);
    let unit = unit
        .strip_suffix("iB")
        .or_else(|| unit.strip_suffix('B'))
        .unwrap_or(unit);
    let scale: f64 = match unit {
        "" => 1.0,
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        "T" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("`{other}` is not a unit of size")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size"))?;
    let bytes = value * scale;
    if !bytes.is_finite() || bytes > u64::MAX as f64 / 2.0 {
        return Err(format!("`{text}` is too large"));
    }
    Ok(bytes.round() as u64)
}

/// A whole number in `min..=max`.
pub fn integer(text: &str, min: i64, max: i64) -> Result<i64, String> {
    match text.parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        Ok(_) => Err(format!("`{text}` is out of range ({min} to {max})")),
        Err(e)
            if matches!(
                e.kind(),
                std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow
            ) =>
        {
            Err(format!("`{text}` is out of range ({min} to {max})"))
        }
        Err(_) if text.parse::<f64>().is_ok() => Err(format!("`{text}` is not a whole number")),
        Err(_) => Err(format!("`{text}` is not a number")),
    }
}

/// A finite number at least `min`.
pub fn number(text: &str, min: f64) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= min => Ok(n),
        Ok(_) => Err(format!("`{text}` is out of range (at least {min})")),
        Err(_) => Err(format!("`{text}` is not a number")),
    }
}

fn split_unit(text: &str) -> (&str, &str) {
    let at = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    text.split_at(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration_ms("250ms"), Ok(250));
        assert_eq!(duration_ms("30s"), Ok(30_000));
        assert_eq!(duration_ms("5m"), Ok(300_000));
        assert_eq!(duration_ms("1.5h"), Ok(5_400_000));
        assert_eq!(duration_ms("5"), Err("`5` has no unit".into()));
        assert_eq!(
            duration_ms("5min"),
            Err("`min` is not a unit of time".into())
        );
        assert!(duration_ms("99999999999999999999999h").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(size_bytes("512M"), Ok(512 << 20));
        assert_eq!(size_bytes("2G"), Ok(2 << 30));
        assert_eq!(size_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(size_bytes("100"), Ok(100));
        assert_eq!(size_bytes("2X"), Err("`X` is not a unit of size".into()));
    }

    #[test]
    fn numbers() {
        assert_eq!(integer("3", 0, 100), Ok(3));
        assert!(integer("-1", 0, 100).unwrap_err().contains("out of range"));
        assert!(integer("1.5", 0, 100).unwrap_err().contains("whole"));
        assert_eq!(number("2.5", 1.0), Ok(2.5));
        assert!(number("0.5", 1.0).is_err());
    }
}
