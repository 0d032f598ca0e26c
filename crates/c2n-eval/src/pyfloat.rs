//! Python float formatting and rounding (spec §9.6), so printed scores match byte for byte.

/// Python's `repr(x)` for a float: the shortest string that round-trips, in exponent form when
/// the decimal exponent is below −4 or at least 16, and always with a `.0` on whole numbers in
/// fixed form.
///
/// ```
/// use c2n_eval::python_repr;
/// assert_eq!(python_repr(100.0), "100.0");
/// assert_eq!(python_repr(1.2213386697554703e-75), "1.2213386697554703e-75");
/// assert_eq!(python_repr(1e16), "1e+16");
/// assert_eq!(python_repr(0.0001), "0.0001");
/// ```
pub fn python_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    // `{:e}` gives the shortest round-trip digits, e.g. "-1.25e-7" or "1e16".
    let shortest = format!("{:e}", x.abs());
    let (mantissa, exponent) = shortest.split_once('e').unwrap_or((&shortest, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if x < 0.0 { "-" } else { "" };
    if (-4..16).contains(&exponent) {
        let point = exponent + 1; // digits before the decimal point
        let body = if point <= 0 {
            format!("0.{}{digits}", "0".repeat((-point) as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            let (int, frac) = digits.split_at(point as usize);
            format!("{int}.{frac}")
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{sign}{first}{frac}e{exp_sign}{:02}", exponent.abs())
    }
}

/// Python's `round(x, ndigits)` for a float: the exact binary value rounded to `ndigits`
/// decimals, exact ties to even (so `round(2.675, 2) == 2.67`). Rust's fixed-precision
/// formatting rounds the same way, and parsing it back gives the nearest double, as Python does.
///
/// ```
/// assert_eq!(c2n_eval::python_round(2.675, 2), 2.67);
/// assert_eq!(c2n_eval::python_round(17.796, 2), 17.8);
/// ```
pub fn python_round(x: f64, ndigits: usize) -> f64 {
    if !x.is_finite() {
        return x;
    }
    format!("{x:.ndigits$}").parse().unwrap_or(x)
}
