//! Kubernetes resource quantities: the API server's grammar, and exact comparison.
//!
//! ```text
//! <quantity> ::= <sign>? <number> <suffix>
//! <number>   ::= <digits> | <digits>.<digits> | <digits>. | .<digits>
//! <suffix>   ::= "" | n | u | m | k | M | G | T | P | E
//!              | Ki | Mi | Gi | Ti | Pi | Ei | (e | E) <sign>? <digits>
//! ```
//! Kubernetes rounds a quantity up to nano precision, so a value is held as a whole
//! number of nano-units: exact, and ordered as the API server orders requests and limits.

/// Why a text is not a quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantityError {
    /// The text does not follow the grammar.
    Syntax,
    /// The value is beyond what this checker represents (about 10^29 units).
    TooLarge,
}

impl std::fmt::Display for QuantityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            QuantityError::Syntax => "not the quantity grammar",
            QuantityError::TooLarge => "too large",
        })
    }
}

/// Powers of ten of the decimal SI suffixes.
const DECIMAL_SUFFIXES: [(&str, i32); 10] = [
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("", 0),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];
/// Powers of two of the binary SI suffixes.
const BINARY_SUFFIXES: [(&str, u32); 6] = [
    ("Ki", 10),
    ("Mi", 20),
    ("Gi", 30),
    ("Ti", 40),
    ("Pi", 50),
    ("Ei", 60),
];
/// Nano-units per unit, as a power of ten.
const NANO: i32 = 9;
/// Largest exponent accepted after `e`/`E`; anything beyond overflows the representation anyway.
const MAX_EXPONENT: i32 = 64;

/// Parses a quantity into nano-units, rounded up as Kubernetes rounds.
pub fn parse(text: &str) -> Result<i128, QuantityError> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let number_end = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.len() + fraction.len() == 0 || fraction.contains('.') {
        return Err(QuantityError::Syntax);
    }
    let (power_of_ten, power_of_two) = suffix_powers(suffix)?;
    let mut mantissa: u128 = 0;
    for digit in whole.bytes().chain(fraction.bytes()) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(u128::from(digit - b'0')))
            .ok_or(QuantityError::TooLarge)?;
    }
    let fraction_digits = i32::try_from(fraction.len()).map_err(|_| QuantityError::TooLarge)?;
    let mantissa = mantissa
        .checked_mul(1u128 << power_of_two)
        .ok_or(QuantityError::TooLarge)?;
    let nanos = scale_by_ten(mantissa, power_of_ten - fraction_digits + NANO)?;
    let nanos = i128::try_from(nanos).map_err(|_| QuantityError::TooLarge)?;
    Ok(if negative { -nanos } else { nanos })
}

/// The powers of ten and two a suffix stands for.
fn suffix_powers(suffix: &str) -> Result<(i32, u32), QuantityError> {
    if let Some((_, ten)) = DECIMAL_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
        return Ok((*ten, 0));
    }
    if let Some((_, two)) = BINARY_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
        return Ok((0, *two));
    }
    let exponent = suffix
        .strip_prefix(['e', 'E'])
        .ok_or(QuantityError::Syntax)?;
    let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(QuantityError::Syntax);
    }
    let power: i32 = exponent.parse().map_err(|_| QuantityError::TooLarge)?;
    if power.abs() > MAX_EXPONENT {
        return Err(QuantityError::TooLarge);
    }
    Ok((power, 0))
}

/// `value * 10^power`, rounding a fraction up.
fn scale_by_ten(value: u128, power: i32) -> Result<u128, QuantityError> {
    let ten_to = |p: u32| 10u128.checked_pow(p);
    if power >= 0 {
        ten_to(power.unsigned_abs())
            .and_then(|scale| value.checked_mul(scale))
            .ok_or(QuantityError::TooLarge)
    } else {
        match ten_to(power.unsigned_abs()) {
            Some(scale) => Ok(value.div_ceil(scale)),
            // The divisor exceeds every representable value: only 0 stays 0.
            None => Ok(u128::from(value > 0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::plain("2", 2_000_000_000)]
    #[case::milli("100m", 100_000_000)]
    #[case::decimal("0.1", 100_000_000)]
    #[case::mebi("128Mi", 128 * (1 << 20) * 1_000_000_000)]
    #[case::fraction_of_binary("1.5Ki", 1536 * 1_000_000_000)]
    #[case::exponent("1e3", 1_000_000_000_000)]
    #[case::negative_exponent("5E-1", 500_000_000)]
    #[case::exa("1E", 1_000_000_000_000_000_000_000_000_000)]
    #[case::signed("+1k", 1_000_000_000_000)]
    #[case::negative("-1", -1_000_000_000)]
    #[case::rounds_up("1.0000000001", 1_000_000_001)]
    #[case::tiny("1e-20", 1)]
    #[case::zero("0", 0)]
    fn values_in_nanos(#[case] text: &str, #[case] nanos: i128) {
        assert_eq!(parse(text), Ok(nanos), "{text}");
    }

    #[rstest]
    #[case::empty("", QuantityError::Syntax)]
    #[case::sign_only("-", QuantityError::Syntax)]
    #[case::bad_suffix("1XB", QuantityError::Syntax)]
    #[case::two_dots("1.2.3", QuantityError::Syntax)]
    #[case::lone_e("1e", QuantityError::Syntax)]
    #[case::fraction_exponent("1e1.5", QuantityError::Syntax)]
    #[case::lower_kibi("1ki", QuantityError::Syntax)]
    #[case::space("1 Gi", QuantityError::Syntax)]
    #[case::huge_exponent("1e99", QuantityError::TooLarge)]
    #[case::huge_digits("9999999999999999999999999999999999999999", QuantityError::TooLarge)]
    fn refused(#[case] text: &str, #[case] error: QuantityError) {
        assert_eq!(parse(text), Err(error), "{text}");
    }

    #[test]
    fn equal_values_in_different_spellings_compare_equal() {
        assert_eq!(parse("100m"), parse("0.1"));
        assert_eq!(parse("1Ki"), parse("1024"));
        assert_eq!(parse("1k"), parse("1e3"));
        assert!(parse("129Mi").unwrap() > parse("128Mi").unwrap());
    }
}
