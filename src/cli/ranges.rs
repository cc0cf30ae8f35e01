//! Parsers for numeric flags that check the range as well as the type, so that `--lr -1` or
//! `--epochs 0` is refused with the allowed range instead of running to a useless end.
//! Flags taking reals also accept a leading minus sign as a value (`allow_negative_numbers`),
//! so the message is about the range, not an "unexpected argument".

fn real(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("'{s}' is not a finite number")),
    }
}

fn whole(s: &str) -> Result<usize, String> {
    s.trim()
        .parse::<usize>()
        .map_err(|_| format!("'{s}' is not a whole number (0, 1, 2, ...)"))
}

/// A real number above 0 (a learning rate).
pub fn positive(s: &str) -> Result<f32, String> {
    let v = real(s)?;
    if v > 0.0 && (v as f32) > 0.0 && (v as f32).is_finite() {
        Ok(v as f32)
    } else {
        Err(format!("{v} is out of range: expected a number above 0"))
    }
}

/// A real number of at least 0 (weight decay, magnitude thresholds).
pub fn non_negative(s: &str) -> Result<f32, String> {
    let v = real(s)?;
    if v >= 0.0 && (v as f32).is_finite() {
        Ok(v as f32)
    } else {
        Err(format!(
            "{v} is out of range: expected a number of at least 0"
        ))
    }
}

/// A fraction in [0, 1) (a share of samples, weights or neurons).
pub fn fraction(s: &str) -> Result<f64, String> {
    let v = real(s)?;
    if (0.0..1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "{v} is out of range: expected a fraction in [0, 1)"
        ))
    }
}

/// SGD momentum, in [0, 1).
pub fn momentum(s: &str) -> Result<f32, String> {
    fraction(s).map(|v| v as f32)
}

/// A whole number of at least 1 (sizes, counts of epochs, steps, repetitions, threads).
pub fn at_least_one(s: &str) -> Result<usize, String> {
    match whole(s)? {
        0 => Err("0 is out of range: expected a whole number of at least 1".into()),
        n => Ok(n),
    }
}

/// Folds of cross-validation: at least 2.
pub fn folds(s: &str) -> Result<usize, String> {
    match whole(s)? {
        n if n >= 2 => Ok(n),
        n => Err(format!("{n} is out of range: expected at least 2 folds")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_accept_their_interior_and_name_their_bounds() {
        assert_eq!(positive("0.01"), Ok(0.01));
        assert!(positive("-1").unwrap_err().contains("above 0"));
        assert!(positive("0").is_err() && positive("1e-50").is_err());
        assert!(positive("1e39").is_err() && positive("nan").is_err());
        assert_eq!(non_negative("0"), Ok(0.0));
        assert!(non_negative("-1").unwrap_err().contains("at least 0"));
        assert_eq!(fraction("0.999"), Ok(0.999));
        assert!(fraction("1").unwrap_err().contains("[0, 1)"));
        assert!(momentum("-5").is_err() && momentum("0.9").is_ok());
        assert!(at_least_one("0").unwrap_err().contains("at least 1"));
        assert!(at_least_one("-3").unwrap_err().contains("whole number"));
        assert_eq!(at_least_one("7"), Ok(7));
        assert!(folds("1").is_err() && folds("2").is_ok());
    }
}
