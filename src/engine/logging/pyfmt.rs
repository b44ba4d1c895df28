//! Python's number and JSON formatting, byte for byte, for the strings users
//! compare with MMEngine logs: `f'{x:.4e}'` (`1.0000e-05`, two-digit exponent),
//! `repr(float)` as `json.dump` writes it (`1e-05`, `0.5`, `3.0`),
//! `str(datetime.timedelta(seconds=n))` (`1 day, 2:03:04`) and `json.dumps`'s
//! default separators (`, ` and `: `). Hand-written because no crate mirrors
//! CPython here; Rust's shortest round-trip digits (`{:e}`) equal CPython's
//! `repr` digits, only the layout differs.

/// `f'{x:.{digits}e}'`: Rust's `{:.4e}` with the exponent as Python writes it
/// (sign always, at least two digits): `1.0000e-05`, `3.7531e+02`.
pub fn exp(x: f64, digits: usize) -> String {
    if !x.is_finite() {
        return nonfinite(x, false);
    }
    let s = format!("{x:.digits$e}");
    let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
    let (sign, magnitude) = match exponent.strip_prefix('-') {
        Some(m) => ('-', m),
        None => ('+', exponent),
    };
    format!("{mantissa}e{sign}{magnitude:0>2}")
}

/// `f'{x:.{digits}f}'` (Rust and CPython both round the exact binary value).
pub fn fixed(x: f64, digits: usize) -> String {
    if !x.is_finite() {
        return nonfinite(x, false);
    }
    format!("{x:.digits$}")
}

/// `repr(x)` as `json.dumps` writes a float (`NaN`/`Infinity` for non-finite).
pub fn float_repr(x: f64) -> String {
    if !x.is_finite() {
        return nonfinite(x, true);
    }
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if x == 0.0 {
        return format!("{sign}0.0");
    }
    // `{:e}` gives the shortest round-trip digits: `d.ddde[-]x`.
    let s = format!("{:e}", x.abs());
    let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exponent: i32 = exponent.parse().unwrap_or(0);
    // CPython's format_float_short: value = 0.DIGITS * 10^decpt.
    let decpt = exponent + 1;
    let n = digits.len() as i32;
    let body = if decpt <= -4 || decpt > 16 {
        let (head, tail) = digits.split_at(1);
        let frac = if tail.is_empty() {
            String::new()
        } else {
            format!(".{tail}")
        };
        let esign = if exponent < 0 { '-' } else { '+' };
        format!("{head}{frac}e{esign}{:02}", exponent.abs())
    } else if decpt <= 0 {
        format!("0.{}{digits}", "0".repeat((-decpt) as usize))
    } else if decpt >= n {
        format!("{digits}{}.0", "0".repeat((decpt - n) as usize))
    } else {
        let (int, frac) = digits.split_at(decpt as usize);
        format!("{int}.{frac}")
    };
    format!("{sign}{body}")
}

fn nonfinite(x: f64, json: bool) -> String {
    match (x.is_nan(), x > 0.0, json) {
        (true, _, true) => "NaN".into(),
        (true, _, false) => "nan".into(),
        (false, true, true) => "Infinity".into(),
        (false, false, true) => "-Infinity".into(),
        (false, true, false) => "inf".into(),
        (false, false, false) => "-inf".into(),
    }
}

/// `str(datetime.timedelta(seconds=int(secs)))`: `H:MM:SS`, with
/// `N day(s), ` in front past 24 hours (`int` truncates towards zero).
pub fn timedelta(secs: f64) -> String {
    let total = if secs.is_finite() {
        secs.trunc() as i64
    } else {
        0
    };
    let days = total.div_euclid(86_400);
    let rest = total.rem_euclid(86_400);
    let hms = format!("{}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60);
    match days {
        0 => hms,
        1 | -1 => format!("{days} day, {hms}"),
        _ => format!("{days} days, {hms}"),
    }
}

/// A JSON string as `json.dumps` writes it (`ensure_ascii=True`).
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected strings are CPython's (`repr`, `format`, `timedelta`).
    #[test]
    fn matches_cpython() {
        assert_eq!(exp(1e-5, 4), "1.0000e-05");
        assert_eq!(exp(375.31, 4), "3.7531e+02");
        assert_eq!(exp(0.0, 4), "0.0000e+00");
        assert_eq!(exp(1.5e-100, 2), "1.50e-100");
        for (x, want) in [
            (1e-5, "1e-05"),
            (1e-4, "0.0001"),
            (0.5, "0.5"),
            (3.0, "3.0"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456.789, "123456.789"),
            (-2.5e-7, "-2.5e-07"),
            (0.1 + 0.2, "0.30000000000000004"),
            (-0.0, "-0.0"),
            (1.2345e22, "1.2345e+22"),
        ] {
            assert_eq!(float_repr(x), want, "{x:e}");
        }
        assert_eq!(timedelta(93_784.9), "1 day, 2:03:04");
        assert_eq!(timedelta(59.0), "0:00:59");
        assert_eq!(timedelta(3.0 * 86_400.0 + 34_859.0), "3 days, 9:40:59");
        assert_eq!(json_str("coco/bbox_mAP"), "\"coco/bbox_mAP\"");
        assert_eq!(json_str("é"), "\"\\u00e9\"");
        assert_eq!(fixed(37.49935, 4), format!("{:.4}", 37.49935));
    }
}
